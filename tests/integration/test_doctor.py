"""msmilter -t as the doctor: the machine (queue directories, chroot) and
a private Postfix instance (--postfix-config DIR) set up wrong in each way
the guide warns about, each giving its one line; a correct set-up passes
with no warning but the inet note."""

import os
import pwd
import subprocess

from postfix import MsMilter, Postfix, build_dir


def doctor(m, pf=None, args=()):
    """Write msmilter's config (and Postfix's, unless it runs) and run
    msmilter -t; returns (rc, stdout, stderr lines of error/warning)."""
    m.write_config()
    if pf is not None and not pf.running:
        pf.write_config()
    cmd = [m.binary, "-t", "-f", m.conf]
    if pf is not None:
        cmd += ["--postfix-config", pf.config_dir]
    p = subprocess.run(cmd + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    err = p.stderr.decode()
    lines = [ln for ln in err.splitlines()
             if "error:" in ln or "warning:" in ln]
    return p.returncode, p.stdout.decode(), lines


def errors(lines):
    return [ln for ln in lines if "error:" in ln]


def warnings(lines):
    return [ln for ln in lines if "warning:" in ln]


def only_inet_note(lines, reachable=False):
    """The findings but the inet note and, for an instance that is not
    running (reachable False), the relay target being unreachable."""
    return [ln for ln in lines if "Milter Socket: listening on inet" not in ln
            and (reachable or "is unreachable" not in ln)]


# Every test's msmilter: the one warning a correct set-up may still get
# is the inet note.
QUIET = {"Deliver Cleaned Messages": "no"}


def ms(test_base, settings=None):
    s = dict(QUIET)
    s.update(settings or {})
    return MsMilter(os.path.join(test_base, "ms"), settings=s)


def build(test_base, settings=None, **pfkw):
    m = ms(test_base, settings)
    pfkw.setdefault("milter", m)
    pfkw.setdefault("sink", False)
    pf = Postfix(os.path.join(test_base, "pf"), **pfkw)
    return m, pf


def relay_to(port, extra=None):
    s = {"MSMail Relay Address": "127.0.0.1", "MSMail Relay Port": str(port)}
    s.update(extra or {})
    return s


def test_correct_setup_passes(test_base):
    m = ms(test_base)
    pf = Postfix(os.path.join(test_base, "pf"), milter=m, sink=False,
                 reinject=True)
    m.settings.update(relay_to(pf.reinject_port))
    pf.start()
    try:
        rc, out, lines = doctor(m, pf)
    finally:
        pf.stop()
    assert rc == 0, lines
    assert only_inet_note(lines, reachable=True) == [], lines


def test_msmilter_missing_from_smtpd_milters(test_base):
    m, pf = build(test_base, milter="inet:127.0.0.1:9", reinject=True)
    m.settings.update(relay_to(pf.reinject_port))
    rc, out, lines = doctor(m, pf)
    assert rc == 1
    e = errors(lines)
    assert len(e) == 1 and ("no smtpd service has msmilter (inet:127.0.0.1:%d)"
                            " in smtpd_milters" % m.port) in e[0], lines


def test_msmilter_not_last(test_base):
    m = ms(test_base)
    pf = Postfix(os.path.join(test_base, "pf"), sink=False, reinject=True,
                 milter=[m, "inet:127.0.0.1:9"])
    m.settings.update(relay_to(pf.reinject_port))
    rc, out, lines = doctor(m, pf)
    assert rc == 1
    e = errors(lines)
    assert len(e) == 1 and "is not last in smtpd_milters" in e[0], lines
    assert "move inet:127.0.0.1:%d to the end" % m.port in e[0]


def test_default_action_accept(test_base):
    m, pf = build(test_base, milter_default_action="accept", reinject=True)
    m.settings.update(relay_to(pf.reinject_port))
    rc, out, lines = doctor(m, pf)
    assert rc == 1
    e = errors(lines)
    assert len(e) == 1, lines
    assert "milter_default_action = accept" in e[0]
    assert "set milter_default_action = tempfail" in e[0]


def test_in_flow_delay(test_base):
    m, pf = build(test_base, main_cf={"in_flow_delay": "1s"}, reinject=True)
    m.settings.update(relay_to(pf.reinject_port))
    rc, out, lines = doctor(m, pf)
    assert rc == 0, lines              # slow, not wrong: a warning
    w = only_inet_note(lines)
    assert len(w) == 1 and "warning:" in w[0], lines
    assert "in_flow_delay = 1s" in w[0] and "set in_flow_delay = 0" in w[0]


def test_hold_header_check(test_base):
    hc = os.path.join(test_base, "header_checks")
    with open(hc, "w") as f:
        f.write("# MailScanner's old recipe\n/^Received:/ HOLD\n")
    m, pf = build(test_base, main_cf={"header_checks": "regexp:" + hc},
                  reinject=True)
    m.settings.update(relay_to(pf.reinject_port))
    rc, out, lines = doctor(m, pf)
    assert rc == 1
    e = errors(lines)
    assert len(e) == 1 and "header_checks %s:2:" % hc in e[0], lines
    assert "/^Received:/ HOLD" in e[0] and "remove the line" in e[0]
    # pcre: and other actions: only a Received HOLD line counts.
    with open(hc, "w") as f:
        f.write("/^Subject: spam/ REJECT\n/^received:/i  hold\n")
    pf.main_cf_extra["header_checks"] = "pcre:" + hc
    rc, out, lines = doctor(m, pf)
    assert rc == 1 and len(errors(lines)) == 1, lines
    assert "header_checks %s:2:" % hc in errors(lines)[0]


def test_relay_into_filtered_smtpd_is_a_loop(test_base):
    m, pf = build(test_base)
    m.settings.update(relay_to(pf.smtp_port,
                               {"Milter Ignore Loopback": "no"}))
    rc, out, lines = doctor(m, pf)
    assert rc == 1
    e = errors(lines)
    assert len(e) == 1 and "mail loop" in e[0], lines
    assert "127.0.0.1:%d" % pf.smtp_port in e[0]
    assert "Milter Ignore Loopback is no" in e[0]
    # With loopback ignored the relay's mail passes capture: no loop.
    m.settings["Milter Ignore Loopback"] = "yes"
    rc, out, lines = doctor(m, pf)
    assert rc == 0 and errors(lines) == [], lines


def test_relay_target_missing_and_unreachable(test_base):
    m, pf = build(test_base, reinject=True)
    m.settings.update(relay_to(pf.reinject_port + 1
                               if pf.reinject_port < 65535 else 1))
    rc, out, lines = doctor(m, pf)
    assert rc == 0, lines
    w = only_inet_note(lines, reachable=True)
    assert any("no smtpd service listens on 127.0.0.1:" in ln for ln in w), w
    assert any("is unreachable" in ln for ln in w), w


def test_qmqp_not_authorised(test_base):
    m, pf = build(test_base, qmqp=True,
                  main_cf={"qmqpd_authorized_clients": "192.0.2.0/24"})
    m.settings.update(relay_to(pf.qmqp_port, {
        "MSMail Delivery Method": "QMQP", "MSMail Socket Type": "inet"}))
    rc, out, lines = doctor(m, pf)
    assert rc == 1
    e = errors(lines)
    assert len(e) == 1 and ("qmqpd_authorized_clients = 192.0.2.0/24 does "
                            "not admit the relay (127.0.0.1)") in e[0], lines
    pf.main_cf_extra["qmqpd_authorized_clients"] = "127.0.0.0/8"
    rc, out, lines = doctor(m, pf)
    assert errors(lines) == [], lines


def test_qmqp_unix_socket_authorised(test_base):
    m, pf = build(test_base, qmqp_unix=True,
                  main_cf={"qmqpd_authorized_clients": "[::1]/128, 10.0.0.1"})
    pf.write_config()
    m.settings.update({"MSMail Delivery Method": "QMQP",
                       "MSMail Socket Type": "unix",
                       "MSMail Socket Dir": pf.qmqp_socket})
    rc, out, lines = doctor(m, pf)
    # The socket does not exist (Postfix is not running): config_check
    # says so; the doctor then runs no further.  Start Postfix.
    pf.start()
    try:
        rc, out, lines = doctor(m, pf)
    finally:
        pf.stop()
    e = errors(lines)
    assert rc == 1 and len(e) == 1, lines
    assert "qmqpd service qmqp:" in e[0] and "(127.0.0.1)" in e[0]


def test_milterin_owned_by_someone_else(test_base):
    m, pf = build(test_base, reinject=True)
    m.settings.update(relay_to(pf.reinject_port))
    m.write_config()
    nobody = pwd.getpwnam("nobody")
    os.chown(m.milterin, nobody.pw_uid, nobody.pw_gid)
    m.write_config = lambda: None       # keep the wrong owner
    rc, out, lines = doctor(m, pf)
    assert rc == 1
    e = errors(lines)
    assert len(e) == 1, lines
    assert "Incoming Queue Dir %s belongs to uid %d, not Run As User " \
        "postfix" % (m.milterin, nobody.pw_uid) in e[0]


def test_chroot_missing_then_not_empty(test_base):
    m, pf = build(test_base, reinject=True)
    m.settings.update(relay_to(pf.reinject_port))
    m.write_config()
    os.rmdir(m.chroot)
    write = m.write_config
    m.write_config = lambda: None
    rc, out, lines = doctor(m, pf)
    w = only_inet_note(lines)
    assert len(w) == 1 and "warning: Milter Chroot %s: No such file" \
        % m.chroot in w[0], lines
    assert "install -d -o root -g root -m 0755 %s" % m.chroot in w[0]
    write()
    open(os.path.join(m.chroot, "stray"), "w").close()
    rc, out, lines = doctor(m, pf)
    assert rc == 1
    assert len(errors(lines)) == 1 and "is not empty" in errors(lines)[0]
    os.unlink(os.path.join(m.chroot, "stray"))
    os.chmod(m.chroot, 0o777)
    rc, out, lines = doctor(m, pf)
    assert rc == 1 and "writable only by root" in errors(lines)[0], lines
    os.chmod(m.chroot, 0o755)


def test_mta_postfix_is_named(test_base):
    m, pf = build(test_base, settings={"MTA": "postfix"}, reinject=True)
    m.settings.update(relay_to(pf.reinject_port))
    rc, out, lines = doctor(m, pf)
    assert any("MTA is postfix, not msmail" in ln and "set MTA = msmail"
               in ln for ln in lines), lines


def test_unreadable_postfix_config_is_an_error(test_base):
    m = ms(test_base)
    d = os.path.join(test_base, "no-postfix")
    os.makedirs(d)
    rc, out, lines = doctor(m, args=("--postfix-config", d))
    assert rc == 1
    assert any("postconf -c %s cannot read it" % d in ln for ln in lines)


def test_default_instance_without_postfix_is_quiet(test_base):
    # No --postfix-config: the default instance is read only if postconf
    # can; without msmilter in it that is a warning, never an error.
    m = ms(test_base)
    rc, out, lines = doctor(m)
    assert rc == 0, lines
    assert errors(lines) == []
    assert build_dir()
