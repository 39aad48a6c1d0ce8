"""msmilter -t on MailScanner.conf as MailScanner ships it, with the
milter guide's lines set: keys left empty take MailScanner's defaults,
Delivery Method may be a ruleset (every value queue), and Deliver Cleaned
Messages = yes is explained."""

import os

from test_parent import run_t

# The values MailScanner's stock MailScanner.conf (v5) gives the keys
# msmilter reads, in its order, and then the milter guide's lines.
STOCK = """\
%org-name% = yoursite
Milter Max Children = 10
Run As User =
Run As Group =
Incoming Queue Dir = /var/spool/mqueue.in
Outgoing Queue Dir = /var/spool/mqueue
Milter PID File = /var/run/MSMilter.pid
MTA = sendmail
MSMail Queue Type = short
MSMail Delivery Method = SMTP
MSMail Socket Type = unix
MSMail Socket Dir = /var/spool/postfix/public/qmqp
MSMail Relay Port = 25
MSMail Relay Address = 127.0.0.1
Milter Ignore Loopback = yes
Milter Scanner = no
Milter Port = 33333
Milter Bind = 127.0.0.1
Incoming Work Group =
Deliver Cleaned Messages = yes
Is Definitely Spam = no
Ignore Spam Whitelist If Recipients Exceed = 20
Syslog Facility = mail
Debug = no
Run In Foreground = no
Delivery Method = batch
Lock Type =
"""

GUIDE = """\
Run As User = postfix
Run As Group = postfix
Incoming Queue Dir = /var/spool/MailScanner/milterin
Outgoing Queue Dir = /var/spool/MailScanner/milterout
MTA = msmail
Milter User = nobody
"""


def test_stock_conf_with_the_guides_lines_passes(test_base):
    rc, out, err, path = run_t(STOCK + GUIDE + "Delivery Method = queue\n",
                               base=test_base)
    assert rc == 0, err
    assert "expected flock or posix" not in err
    assert "Lock Type = flock\n" in out
    assert "Delivery Method = queue\n" in out
    # What happens to a rejected message's cleaned copy, said once.
    assert err.count("Deliver Cleaned Messages:") == 1, err
    assert "requeued once" in err
    assert "milterout-invalid" in err


def test_delivery_method_as_a_ruleset(test_base):
    rules = os.path.join(test_base, "delivery.rules")
    with open(rules, "w") as f:
        f.write("# MailScanner documents rulesets for Delivery Method\n"
                "From: *@example.com queue\n"
                "FromOrTo: default queue\n")
    rc, out, err, path = run_t(STOCK + GUIDE + "Delivery Method = %s\n"
                               % rules, base=test_base)
    assert rc == 0, err
    assert "Delivery Method = queue\n" in out
    with open(rules, "a") as f:
        f.write("To: *@example.net batch\n")
    rc, out, err, path = run_t(STOCK + GUIDE + "Delivery Method = %s\n"
                               % rules, base=test_base)
    assert rc == 1
    assert "%s:4: Delivery Method: this rule says batch" % rules in err, err
