"""The relay: milterout back into a real Postfix by SMTP and QMQP, losing
nothing.  Each delivered message is compared byte for byte with its
milterout file; the sink records the envelopes."""

import fcntl
import os
import pwd
import re
import time

import pytest

from postfix import child_pids
from test_capture import wait_for

HEAD = (b"Received: from helo.example.net (client.example.net "
        b"[192.0.2.25])\n\tby mx.example.com (MailScanner Milter) with "
        b"ESMTP id 4F2A1B3C;\n\tThu, 26 Nov 2026 07:00:00 +0000 (UTC)\n"
        b"Message-Id: <relay@example.org>\n"
        b"Date: Thu, 26 Nov 2026 07:00:00 +0000\n"
        b"From: <alice@example.org>\n")


class RelayStack:
    def __init__(self, msmilter_factory, postfix_factory, method="SMTP",
                 socket_type="inet", start_postfix=True, reject_file=None,
                 settings=None, main_cf=None):
        extra_cf = main_cf
        main_cf = {"smtpd_authorized_xforward_hosts": "127.0.0.0/8",
                   "qmqpd_authorized_clients": "127.0.0.0/8",
                   "message_size_limit": "0"}
        if reject_file:
            main_cf["smtpd_recipient_restrictions"] = (
                "check_recipient_access texthash:%s permit_mynetworks "
                "reject" % reject_file)
            main_cf["header_checks"] = "regexp:%s.headers" % reject_file
        main_cf.update(extra_cf or {})
        self.pf = postfix_factory(reinject=True, qmqp=True, qmqp_unix=True,
                                  main_cf=main_cf) if start_postfix else None
        s = {"%org-name%": "Test", "Milter Relay Min Retry": "1",
             "Milter Relay Max Retry": "2", "Milter Relay Timeout": "30",
             "MSMail Delivery Method": method}
        if method == "QMQP" and socket_type == "unix":
            s.update({"MSMail Socket Type": "unix",
                      "MSMail Socket Dir": self.pf.qmqp_socket})
        elif method == "QMQP":
            s.update({"MSMail Socket Type": "inet",
                      "MSMail Relay Port": str(self.pf.qmqp_port)})
        s.update(settings or {})
        if method == "SMTP" and "MSMail Relay Port" not in s:
            s["MSMail Relay Port"] = str(self.pf.reinject_port)
        self.m = msmilter_factory(settings=s)
        # The fixture waits for capture's port; the relay may come up a
        # little later (much later under the sanitizers).
        wait_for(lambda: child_pids(self.m.pid)["relay"], 20,
                 "the relay to start")

    def drop(self, name, data, slow=False):
        """Write data as MailScanner does: under a temp- name, then rename."""
        pw = pwd.getpwnam("postfix")
        tmp = os.path.join(self.m.milterout, "temp-" + name)
        with open(tmp, "wb") as f:
            if slow:
                f.write(data[:len(data) // 2])
                f.flush()
                time.sleep(2)
                f.write(data[len(data) // 2:])
            else:
                f.write(data)
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        os.rename(tmp, os.path.join(self.m.milterout, name))

    def wait_gone(self, name, timeout=20):
        wait_for(lambda: name not in os.listdir(self.m.milterout), timeout,
                 "%s to leave milterout" % name)


def qid_of(name):
    """The Postfix queue id the relay's lines start with."""
    return name.split(".")[0]


def quarantined_line(name, what, why, bad):
    """The relay's line for a file moved to the quarantine directory."""
    return "%s: file=%s, status=quarantined (%s: %s), moved to %s/%s" % (
        qid_of(name), name, what, why, bad, name)


def queue_file(sender, rcpts, body, head=HEAD, dsn=None):
    env = b"S<%s>\n" % sender.encode()
    for i, r in enumerate(rcpts):
        if dsn and dsn[i]:
            env += b"E<%s>\n" % dsn[i].encode()
        env += b"O<%s>\n" % r.encode()
    # body starts with its own header lines (Subject:) and a blank line.
    return env + head + body


def message_part(data):
    """What follows the envelope lines of a queue file."""
    lines = data.split(b"\n")
    i = 0
    while re.fullmatch(rb"[OSEA]<.*>", lines[i]):
        i += 1
    return b"\n".join(lines[i:])


def without_first_received(data):
    """Drop the Received header the receiving Postfix prepended."""
    assert data.startswith(b"Received: "), data[:200]
    lines = data.split(b"\n")
    i = 1
    while lines[i][:1] in (b"\t", b" "):
        i += 1
    return b"\n".join(lines[i:])


def expected(data):
    m = message_part(data)
    return m if m.endswith(b"\n") else m + b"\n"


@pytest.fixture(params=["SMTP", "QMQP-unix", "QMQP-inet"])
def stack(request, msmilter_factory, postfix_factory):
    method, _, st = request.param.partition("-")
    return RelayStack(msmilter_factory, postfix_factory, method=method,
                      socket_type=st or "inet")


TRICKY = (b"Subject: relay =?utf-8?q?gr=C3=BC=C3=9Fe?=\n\n"
          b".starts with a dot\n..two dots\n.\n" +
          "Grüße, 8-bit: ".encode() + bytes(range(0xa0, 0x100)) + b"\n" +
          b"no final newline")


def test_byte_for_byte(stack):
    data = queue_file("alice@example.org", ["bob@example.com"], TRICKY)
    stack.drop("4F2A1B3C.AAEE6", data)
    msgs = stack.pf.wait_sink(1)
    stack.wait_gone("4F2A1B3C.AAEE6")
    assert len(msgs) == 1
    assert msgs[0].sender == "alice@example.org"
    assert msgs[0].recipients == ["bob@example.com"]
    assert without_first_received(msgs[0].data) == expected(data)
    assert re.search(r"relay\[\d+\]: 4F2A1B3C: to=<bob@example\.com>, "
                     r"relay=\S+, method=(SMTP|QMQP), delay=\d+, size=\d+, "
                     r"nrcpt=1, file=4F2A1B3C\.AAEE6, status=sent \(",
                     stack.m.stderr()), stack.m.stderr()
    time.sleep(1)
    assert len(stack.pf.sink_messages()) == 1      # exactly once


@pytest.mark.parametrize("socket_type", ["unix"])
def test_qmqp_crlf_becomes_lf_across_reads(msmilter_factory, postfix_factory,
                                           socket_type):
    """QMQP carries LF line ends: the relay turns the file's CRLF into LF
    as it sends, reading 64 KB at a time, and leaves a bare CR alone.  The
    first read holds no CR (sent as it is), the second holds CRLF lines
    and ends on a bare CR, the third opens with what follows it."""
    s = RelayStack(msmilter_factory, postfix_factory, method="QMQP",
                   socket_type=socket_type)
    head = queue_file("alice@example.org", ["bob@example.com"], b"")
    start = len(message_part(head))      # HEAD: the message's first bytes
    line = b"0123456789" * 7 + b"abcdef\n"
    crlf_line = b"0123456789" * 7 + b"abcde\r\n"
    body = b"Subject: crlf\n\n" + line * ((65536 - start) // len(line) - 1)
    body += b"x" * (65536 - start - len(body)) + b"\r\n"
    body += crlf_line * ((131071 - start - len(body)) // len(crlf_line))
    body += b"y" * (131071 - start - len(body)) + b"\rz\r\n"
    body += crlf_line * 10 + b"end\r\n"
    msg = message_part(head + body)
    assert b"\r" not in msg[:65536] and msg[65536:65538] == b"\r\n"
    assert msg[131071:131073] == b"\rz"
    s.drop("8D8D8D8D8.EEEE4", head + body)
    msgs = s.pf.wait_sink(1)
    s.wait_gone("8D8D8D8D8.EEEE4")
    # The bare CR reaches the sink as a space (Postfix on the way out);
    # had the relay dropped it, "yz" would.
    assert without_first_received(msgs[0].data) == \
        expected(head + body.replace(b"\r\n", b"\n").replace(b"\r", b" "))


def test_null_sender_and_100_recipients(stack):
    rcpts = ["r%03d@example.com" % i for i in range(100)]
    data = queue_file("", rcpts, b"Subject: many\n\nbounce report\n")
    stack.drop("5A5A5A5A5.BBBB1", data)
    stack.wait_gone("5A5A5A5A5.BBBB1")
    # Postfix may pass the 100 on to the sink in several transactions.
    wait_for(lambda: len([r for m in stack.pf.sink_messages()
                          for r in m.recipients]) >= 100, 30,
             "the 100 recipients at the sink")
    time.sleep(1)
    msgs = stack.pf.sink_messages()
    got = sorted(r for m in msgs for r in m.recipients)
    assert got == rcpts                            # each exactly once
    assert all(m.sender == "" for m in msgs)
    assert without_first_received(msgs[0].data) == expected(data)


def test_30mb_message(stack):
    line = b"0123456789" * 7 + b"abcdef\n"
    body = b"Subject: big\n\n" + line * (30 * 1024 * 1024 // len(line))
    data = queue_file("alice@example.org", ["bob@example.com"], body)
    stack.drop("6B6B6B6B6.CCCC2", data)
    stack.wait_gone("6B6B6B6B6.CCCC2", timeout=120)
    msgs = stack.pf.wait_sink(1, timeout=120)
    assert len(msgs) == 1
    assert without_first_received(msgs[0].data) == expected(data)


def test_smtp_notify_orcpt_and_xforward(msmilter_factory, postfix_factory):
    s = RelayStack(msmilter_factory, postfix_factory)
    data = queue_file("alice@example.org",
                      ["a@example.com", "b@example.com", "c@example.com"],
                      b"Subject: dsn\n\nx\n",
                      dsn=["NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig@example.com",
                           None, "NOTIFY=NEVER"])
    s.drop("7C7C7C7C7.DDDD3", data)
    msgs = s.pf.wait_sink(1)
    s.wait_gone("7C7C7C7C7.DDDD3")
    args = dict(zip(msgs[0].recipients, msgs[0].rcpt_args))
    assert "NOTIFY=SUCCESS,FAILURE" in args["a@example.com"]
    assert "ORCPT=rfc822;orig@example.com" in args["a@example.com"]
    assert "NOTIFY" not in args["b@example.com"]
    assert "NOTIFY=NEVER" in args["c@example.com"]
    # XFORWARD: Postfix logs the original client, not the relay.
    assert s.pf.wait_log(r"reinject/smtpd\[\d+\]: \w+: client=\S+, "
                         r"orig_queue_id=7C7C7C7C7, "
                         r"orig_client=client\.example\.net\[192\.0\.2\.25\]")


def test_orphan_dsn_lines(msmilter_factory, postfix_factory):
    """E lines MailScanner left after the O lines: applied only when
    certain (all equal), never guessed."""
    s = RelayStack(msmilter_factory, postfix_factory)
    data = (b"S<alice@example.org>\nO<a@example.com>\nO<b@example.com>\n"
            b"E<NOTIFY=NEVER>\nE<NOTIFY=NEVER>\n" + HEAD + b"\nx\n")
    s.drop("8D8D8D8D8.EEEE4", data)
    msgs = s.pf.wait_sink(1)
    assert all("NOTIFY=NEVER" in a for a in msgs[0].rcpt_args)
    data = (b"S<alice@example.org>\nO<a@example.com>\nO<b@example.com>\n"
            b"E<NOTIFY=NEVER>\nE<NOTIFY=SUCCESS>\n" + HEAD + b"\ny\n")
    s.drop("8D8D8D8D9.EEEE5", data)
    msgs = s.pf.wait_sink(2)
    assert all("NOTIFY" not in a for a in msgs[1].rcpt_args)
    assert "8D8D8D8D9.EEEE5: 2 E line(s) without a recipient" in \
        s.m.stderr()


def write_reject_maps(base):
    path = os.path.join(base, "rcpt_access")
    with open(path, "w") as f:
        f.write("nobody@example.com REJECT 5.1.1 no such user here\n")
    with open(path + ".headers", "w") as f:
        f.write("/^Subject: reject me/ REJECT 5.7.1 content refused\n")
    return path


# Lock Type = posix: the relay holds milterout files open for writing
# (fcntl locks), yet hands the spooler a read-only descriptor, which the
# spooler insists on (it never writes milterout; the MAC policies grant it
# read only).
@pytest.mark.parametrize("method,lock", [("SMTP", "flock"), ("QMQP", "flock"),
                                         ("SMTP", "posix")])
def test_permanent_reject_is_requeued(msmilter_factory, postfix_factory,
                                      test_base, method, lock):
    maps = write_reject_maps(test_base)
    s = RelayStack(msmilter_factory, postfix_factory, method=method,
                   socket_type="unix", reject_file=maps,
                   settings={"Lock Type": lock})
    if method == "SMTP":
        # One recipient refused: only it goes back, the other is delivered.
        data = queue_file("alice@example.org",
                          ["bob@example.com", "nobody@example.com"],
                          b"Subject: partly\n\nhello\n")
        reason = "no such user here"
    else:
        data = queue_file("alice@example.org", ["bob@example.com"],
                          b"Subject: reject me\n\nhello\n")
        reason = "content refused"
    s.drop("9E9E9E9E9.FFFF6", data)
    s.wait_gone("9E9E9E9E9.FFFF6")
    names = [n for n in os.listdir(s.m.milterin) if re.fullmatch(r"\w+", n)]
    assert names == ["9E9E9E9E9"], names
    with open(os.path.join(s.m.milterin, names[0]), "rb") as f:
        requeued = f.read()
    rejected = "nobody@example.com" if method == "SMTP" else \
        "bob@example.com"
    lines = requeued.split(b"\n")
    assert lines[0] == b"S<alice@example.org>"
    assert lines[1] == b"O<%s>" % rejected.encode()
    assert lines[2].startswith(b"X-Test-MailScanner-Relay-Reject: ")
    assert reason.encode() in lines[2]
    assert b"\n".join(lines[3:]) == message_part(data)
    if method == "SMTP":
        s.pf.wait_sink(1)               # Postfix takes its time under load
    time.sleep(1.5)
    msgs = s.pf.sink_messages()
    if method == "SMTP":
        assert [m.recipients for m in msgs] == [["bob@example.com"]]
    else:
        assert msgs == []


def test_mta_down_then_back(msmilter_factory, postfix_factory, test_base):
    from postfix import Postfix
    pf = Postfix(os.path.join(test_base, "late"), reinject=True)
    s = RelayStack(msmilter_factory, postfix_factory, start_postfix=False,
                   settings={"MSMail Relay Port": str(pf.reinject_port)})
    data = queue_file("alice@example.org", ["bob@example.com"],
                      b"Subject: wait\n\nlater\n")
    s.drop("AF1F1F1F1.AAAA7", data)
    relay = child_pids(s.m.pid)["relay"]

    def cpu():
        with open("/proc/%d/stat" % relay) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = cpu()
    time.sleep(4)
    assert cpu() - before < 0.2        # sleeping, not spinning
    assert "AF1F1F1F1.AAAA7" in os.listdir(s.m.milterout)
    assert "cannot reach the MTA" in s.m.logged("cannot reach the MTA")
    pf.start()
    try:
        s.wait_gone("AF1F1F1F1.AAAA7", timeout=30)
        msgs = pf.wait_sink(1)
        time.sleep(1)
        assert len(pf.sink_messages()) == 1
        assert without_first_received(msgs[0].data) == expected(data)
    finally:
        pf.stop()


def test_file_written_slowly_is_delivered_once_after_rename(
        msmilter_factory, postfix_factory):
    s = RelayStack(msmilter_factory, postfix_factory)
    data = queue_file("alice@example.org", ["bob@example.com"],
                      b"Subject: slow\n\n" + b"line\n" * 1000)
    s.drop("B0B0B0B0B.SLOW1", data, slow=True)
    s.wait_gone("B0B0B0B0B.SLOW1")
    msgs = s.pf.wait_sink(1)
    time.sleep(1)
    assert len(s.pf.sink_messages()) == 1
    assert without_first_received(msgs[0].data) == expected(data)


def test_locked_file_left_alone_until_unlocked(msmilter_factory,
                                               postfix_factory):
    s = RelayStack(msmilter_factory, postfix_factory)
    data = queue_file("alice@example.org", ["bob@example.com"],
                      b"Subject: locked\n\nx\n")
    s.drop("C1C1C1C1C.LOCK1", data)
    # The file appears already locked, as MailScanner holds it.
    path = os.path.join(s.m.milterout, "C2C2C2C2C.LOCK2")
    tmp = os.path.join(s.m.milterout, "temp-lock2")
    with open(tmp, "wb") as f:
        f.write(queue_file("alice@example.org", ["carol@example.com"],
                           b"Subject: locked\n\ny\n"))
    pw = pwd.getpwnam("postfix")       # MailScanner writes as Run As User
    os.chown(tmp, pw.pw_uid, pw.pw_gid)
    f = open(tmp, "rb")
    fcntl.flock(f, fcntl.LOCK_EX)
    os.rename(tmp, path)
    time.sleep(4)
    assert os.path.exists(path)
    assert all(m.recipients != ["carol@example.com"]
               for m in s.pf.sink_messages())
    fcntl.flock(f, fcntl.LOCK_UN)
    f.close()
    s.wait_gone("C2C2C2C2C.LOCK2")
    time.sleep(1)
    assert sorted(r for m in s.pf.sink_messages() for r in m.recipients) \
        == ["bob@example.com", "carol@example.com"]


@pytest.mark.parametrize("name,content,why", [
    ("D1D1D1D1D.JUNK1", bytes(range(256)) * 4, "no S<sender> line"),
    ("D2D2D2D2D.JUNK2", b"S<a@example.org>\n" + HEAD + b"\nx\n",
     "no O<recipient> line"),
    ("D3D3D3D3D.JUNK3", b"O<b@example.com>\n" + HEAD + b"\nx\n",
     "no S<sender> line"),
    ("D4D4D4D4D.JUNK4", b"S<a@example.org>\nO<b@example.com>\n",
     "no message after the envelope"),
    # A header must never be taken for a sender (MailScanner's reader did).
    ("D5D5D5D5D.JUNK5", b"O<b@example.com>\nSubject: <x@evil>\n\nx\n",
     "no S<sender> line"),
])
def test_garbage_goes_to_quarantine(msmilter_factory, postfix_factory,
                                    name, content, why):
    s = RelayStack(msmilter_factory, postfix_factory)
    s.drop(name, content)
    s.wait_gone(name)
    bad = os.path.join(os.path.dirname(s.m.milterout), "milterout-invalid")
    assert os.listdir(bad) == [name]
    with open(os.path.join(bad, name), "rb") as f:
        assert f.read() == content
    # The line reaches stderr through the parent, after the move.
    line = quarantined_line(name, "unreadable queue file", why, bad)
    wait_for(lambda: line in s.m.stderr(), 10, "the line " + line)
    assert s.pf.sink_messages() == []


def test_names_that_are_not_message_ids_are_ignored(msmilter_factory,
                                                    postfix_factory):
    s = RelayStack(msmilter_factory, postfix_factory)
    data = queue_file("alice@example.org", ["bob@example.com"],
                      b"Subject: ignored\n\nx\n")
    for name in ("temp-E1E1E1", "E2E2.E2.E2", ".hidden", "with space"):
        s.drop(name, data)
    s.m.signal(0)
    time.sleep(3)
    assert sorted(os.listdir(s.m.milterout)) == sorted(
        ["temp-E1E1E1", "E2E2.E2.E2", ".hidden", "with space"])
    assert s.pf.sink_messages() == []


def test_too_many_recipients_sent_in_several_transactions(
        msmilter_factory, postfix_factory, test_base):
    """452 4.5.3 for recipients past smtpd_recipient_limit: the rest go
    in another transaction on the same connection, each exactly once."""
    s = RelayStack(msmilter_factory, postfix_factory,
                   main_cf={"smtpd_recipient_limit": "10"})
    rcpts = ["t%02d@example.com" % i for i in range(25)]
    data = queue_file("alice@example.org", rcpts, b"Subject: 452\n\nx\n")
    s.drop("F0F0F0F0F.MANY1", data)
    s.wait_gone("F0F0F0F0F.MANY1")
    s.pf.wait_sink(1)
    time.sleep(1)
    msgs = s.pf.sink_messages()
    # Postfix may merge them again for the sink; each arrives once.
    got = [r for m in msgs for r in m.recipients]
    assert sorted(got) == rcpts
    # Three transactions into the re-injection smtpd: 10 + 10 + 5.
    log = s.pf.maillog()
    assert len(re.findall(r"reinject/smtpd\[\d+\]: \w+: client=", log)) == 3
    # ... on one connection.
    assert len(re.findall(r"reinject/smtpd\[\d+\]: disconnect .*mail=3 ",
                          log)) == 1


def test_readonly_milterout_sends_nothing(msmilter_factory, postfix_factory):
    """milterout read-only for the relay: nothing it did could be recorded
    (no progress line, no unlink), so nothing is sent until it is writable
    again; then once.  (Read-only in the middle of a delivery:
    test_relay_kill.py.)"""
    s = RelayStack(msmilter_factory, postfix_factory)
    data = queue_file("alice@example.org", ["bob@example.com"],
                      b"Subject: once\n\nonly once\n")
    tmp = os.path.join(s.m.milterout, "temp-once")
    with open(tmp, "wb") as f:
        f.write(data)
    pw = pwd.getpwnam("postfix")
    os.chown(tmp, pw.pw_uid, pw.pw_gid)
    os.chmod(s.m.milterout, 0o550)
    os.rename(tmp, os.path.join(s.m.milterout, "FA0FA0FA0.ONCE1"))
    try:
        wait_for(lambda: re.search(r"file=FA0FA0FA0\.ONCE1, status=deferred "
                                   r"\(.*is not writable for us",
                                   s.m.stderr()), 10, "the deferral")
        time.sleep(3)          # several retries with Min Retry = 1
        assert s.pf.sink_messages() == []
    finally:
        os.chmod(s.m.milterout, 0o750)
    s.wait_gone("FA0FA0FA0.ONCE1")
    time.sleep(1)
    assert len(s.pf.sink_messages()) == 1


# ESMTP parameter injection from milterout (issue 13): an address that
# carries "> PARAM=..." or an E line that is not exactly NOTIFY=/ORCPT=
# must never reach the MTA.  The file is unreadable: quarantined, nothing
# sent.  Before the fix these parameters reached the sink (X-Mail-Args /
# X-Rcpt-Args below).
INJECTIONS = [
    ("A1A1A1A1A.INJ01", b"S<s@example.org> RET=HDRS ENVID=zz>\n"
     b"O<r@example.com>\n", "S line: angle bracket in an address"),
    ("A2A2A2A2A.INJ02", b"S<s@example.org>\n"
     b"O<r@example.com NOTIFY=SUCCESS ORCPT=rfc822;evil@example.com>\n",
     "O line: space outside a quoted local part"),
    ("A3A3A3A3A.INJ03", b"S<s@example.org>\nE<NOTIFY=NEVER RET=HDRS>\n"
     b"O<r@example.com>\n", "E line: not NOTIFY= or ORCPT="),
    ("A4A4A4A4A.INJ04", b"S<s@example.org>\n"
     b"E<ORCPT=rfc822;a@example.com ENVID=zz>\nO<r@example.com>\n",
     "E line: not NOTIFY= or ORCPT="),
    ("A5A5A5A5A.INJ05", b"S<s@example.org>\nE<NOTIFY=NEVER,SUCCESS>\n"
     b"O<r@example.com>\n", "E line: NOTIFY=NEVER with another value"),
    ("A6A6A6A6A.INJ06", b"S<s@example.org>\n"
     b"E<ORCPT=rfc822;a=b@example.com>\nO<r@example.com>\n",
     "E line: ORCPT= is not addr-type;xtext"),
    ("A7A7A7A7A.INJ07", b"S<s@example.org>\nE<NOTIFY=NEVER NOTIFY=DELAY>\n"
     b"O<r@example.com>\n", "E line: NOTIFY= twice"),
    ("A8A8A8A8A.INJ08", b"S<s@ex<ample.org>\nO<r@example.com>\n",
     "S line: angle bracket in an address"),
]


@pytest.mark.parametrize("name,env,why", INJECTIONS)
def test_parameter_injection_quarantined(msmilter_factory, postfix_factory,
                                         name, env, why):
    s = RelayStack(msmilter_factory, postfix_factory)
    content = env + HEAD + b"Subject: inject\n\nx\n"
    s.drop(name, content)
    s.wait_gone(name)
    bad = os.path.join(os.path.dirname(s.m.milterout), "milterout-invalid")
    assert os.listdir(bad) == [name]
    # The line reaches stderr through the parent, after the move.
    line = quarantined_line(name, "unreadable queue file", why, bad)
    wait_for(lambda: line in s.m.stderr(), 10, "the line " + line)
    time.sleep(1)
    assert s.pf.sink_messages() == []
    assert not re.search(r"reinject/smtpd\[\d+\]: \w+: client=",
                         s.pf.maillog())


@pytest.mark.parametrize("method", ["SMTP", "QMQP"])
def test_quoted_local_part_with_space_delivered(msmilter_factory,
                                                postfix_factory, method):
    """"john smith"@example.com is legal SMTP and is carried: by SMTP the
    relay sends it quoted as it stands in the file; by QMQP in Postfix's
    internal form (qmqpd does not unquote; before, the quotes became part
    of the local part: <"\\"alice b\\""@example.org> at the next hop)."""
    s = RelayStack(msmilter_factory, postfix_factory, method=method)
    data = queue_file('"alice b"@example.org', ['"john smith"@example.com',
                                                '"a\\"b"@example.com',
                                                "plain@example.com"],
                      b"Subject: quoted\n\nx\n")
    s.drop("B1B1B1B1B.QUOT1", data)
    s.wait_gone("B1B1B1B1B.QUOT1")
    msgs = s.pf.wait_sink(1)
    assert msgs[0].mail_args.startswith('<"alice b"@example.org>')
    assert sorted(a.split(">")[0] + ">" for a in msgs[0].rcpt_args) == [
        '<"a\\"b"@example.com>', '<"john smith"@example.com>',
        "<plain@example.com>"]
