"""Milter Scanner: MailScanner's rulesets decide at DATA, before the body;
a blacklisted message is refused with 554 and nothing is spooled."""

import os
import signal
import time

from postfix import RawSMTP, child_pids, data_reply, reply_to
from queuefile import real_files
from test_capture import CLIENT, queued_id, wait_for, xclient

BLACK = """# Is Definitely Spam
From:   spammer@bad.example          yes
From:   198.51.100.                  yes
From:   host:*.spamhost.example      yes
FromOrTo:  default                   no
"""
WHITE = """# Is Definitely Not Spam
From:   friend@bad.example           yes
From:   /^.*@partner\\.example$/     yes
"""


def scanner(msmilter_factory, postfix_factory, test_base, extra=None,
            black=BLACK, white=WHITE):
    bl = os.path.join(test_base, "spam.blacklist.rules")
    wl = os.path.join(test_base, "spam.whitelist.rules")
    with open(bl, "w") as f:
        f.write(black)
    with open(wl, "w") as f:
        f.write(white)
    s = {"Milter Scanner": "yes", "Is Definitely Spam": bl,
         "Is Definitely Not Spam": wl,
         "Ignore Spam Whitelist If Recipients Exceed": "3"}
    s.update(extra or {})
    m = msmilter_factory(settings=s)
    pf = postfix_factory(milter=m)
    return m, pf, bl, wl


def send(pf, sender, rcpts=("a@example.com",), addr="192.0.2.25",
         name="client.example.net"):
    return pf.send(sender=sender, to=list(rcpts),
                   data=b"Subject: x\r\n\r\nbody\r\n", xclient_addr=addr,
                   xclient_name=name, helo="helo.example.net")


def refused_at_data(r):
    reply = reply_to(r.transcript, "DATA")
    return reply is not None and reply.startswith("554 5.7.1 Message "
                                                  "Blacklisted")


def test_blacklisted_sender_refused_before_body(msmilter_factory,
                                                postfix_factory, test_base):
    m, pf, _, _ = scanner(msmilter_factory, postfix_factory, test_base)
    r = send(pf, "spammer@bad.example")
    assert refused_at_data(r), r.transcript
    assert data_reply(r.transcript) is None         # no body was sent
    assert os.listdir(m.milterin) == []
    said = ("REJECT blacklisted by %s:2" % os.path.join(
        test_base, "spam.blacklist.rules"),
        "from=<spammer@bad.example> to=<a@example.com>")
    err = m.logged(*said)
    assert said[0] in err and said[1] in err
    pf.wait_queue_empty()
    assert pf.sink_messages() == []


def test_blacklisted_client_address_and_name(msmilter_factory,
                                             postfix_factory, test_base):
    m, pf, _, _ = scanner(msmilter_factory, postfix_factory, test_base)
    assert refused_at_data(send(pf, "x@ok.example", addr="198.51.100.7"))
    assert refused_at_data(send(pf, "x@ok.example",
                                name="mx1.spamhost.example"))
    assert os.listdir(m.milterin) == []
    r = send(pf, "x@ok.example")
    assert data_reply(r.transcript).startswith("250")
    assert len(real_files(m.milterin)) == 1


def test_whitelist_wins_until_too_many_recipients(msmilter_factory,
                                                  postfix_factory, test_base):
    m, pf, _, _ = scanner(msmilter_factory, postfix_factory, test_base,
                          black="From: *@bad.example yes\n")
    r = send(pf, "friend@bad.example", rcpts=["a@x.example", "b@x.example"])
    assert data_reply(r.transcript).startswith("250"), r.transcript
    assert len(real_files(m.milterin)) == 1
    r = send(pf, "friend@bad.example",
             rcpts=["a@x.example", "b@x.example", "c@x.example",
                    "d@x.example"])
    assert refused_at_data(r), r.transcript
    msg = "whitelist ignored: too many recipients"
    assert msg in m.logged(msg)
    assert len(real_files(m.milterin)) == 1
    # The regex whitelist rule works too.
    r = send(pf, "someone@partner.example")
    assert data_reply(r.transcript).startswith("250")


def test_scanner_off_spools_everything(msmilter_factory, postfix_factory,
                                       test_base):
    m, pf, _, _ = scanner(msmilter_factory, postfix_factory, test_base,
                          extra={"Milter Scanner": "no"})
    r = send(pf, "spammer@bad.example")
    assert data_reply(r.transcript).startswith("250"), r.transcript
    assert len(real_files(m.milterin)) == 1


def test_reload_changes_verdict_without_dropping_mail(
        msmilter_factory, postfix_factory, test_base):
    m, pf, bl, _ = scanner(msmilter_factory, postfix_factory, test_base)
    pids = child_pids(m.pid)
    assert data_reply(send(pf, "new@bad.example").transcript) \
        .startswith("250")
    # A message in flight across the reload.
    c = RawSMTP(pf.smtp_port)
    xclient(c)
    assert c.cmd("EHLO helo.example.net")[0] == 250
    assert c.cmd("MAIL FROM:<inflight@bad.example>")[0] == 250
    assert c.cmd("RCPT TO:<a@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: in flight\r\n\r\n")
    # First match wins: the new rule goes before the default line.
    with open(bl, "w") as f:
        f.write("From: *@bad.example yes\n" + BLACK)
    m.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in m.stderr(), 10, "reload")
    wait_for(lambda: m.stderr().count("Is Definitely Spam rules installed")
             >= 2, 10, "new rules in capture")
    c.send(b"body\r\n")
    code, text = c.cmd(".")
    c.close()
    assert code == 250, text                        # nothing dropped
    assert refused_at_data(send(pf, "new@bad.example"))
    assert child_pids(m.pid) == pids                # no restart
    assert len(real_files(m.milterin)) == 2


def test_broken_ruleset_refused_old_stays(msmilter_factory, postfix_factory,
                                          test_base):
    m, pf, bl, _ = scanner(msmilter_factory, postfix_factory, test_base)
    with open(bl, "w") as f:
        f.write("From: spammer@bad.example yes\nFrom: /unclosed( yes\n")
    m.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in m.stderr(), 10, "refusal")
    assert "%s:2:" % bl in m.stderr()
    # The old rules still decide.
    assert refused_at_data(send(pf, "spammer@bad.example"))
    assert refused_at_data(send(pf, "x@ok.example", addr="198.51.100.9"))


def test_rule_test_command(test_base):
    import subprocess
    from postfix import build_dir
    bl = os.path.join(test_base, "bl.rules")
    with open(bl, "w") as f:
        f.write(BLACK)
    conf = os.path.join(test_base, "ms.conf")
    with open(conf, "w") as f:
        f.write("Delivery Method = queue\nMTA = msmail\n"
                "Run As User = postfix\nMilter User = nobody\n"
                "Is Definitely Spam = %s\n" % bl)
    p = subprocess.run([os.path.join(build_dir(), "msmilter"), "-t", "-f",
                        conf, "--rule-test", "x@ok.example",
                        "a@example.com,b@example.com", "192.0.2.1",
                        "mx.spamhost.example"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr
    assert "Is Definitely Spam: yes (%s:4)" % bl in out
    assert "verdict: REJECT 554 5.7.1 Message Blacklisted" in out
