"""Postfix -> capture -> spooler -> milterin, end to end with a real Postfix.

Every test checks the exact queue file against what was sent, and that
Postfix discarded its own copy (nothing reached the sink)."""

import os
import re
import signal
import time

import pytest

from postfix import RawSMTP, child_pids, data_reply, reply_to, vm_hwm_kb
from queuefile import RECEIVED_DATE, lf, parse, real_files, temp_files

CLIENT = dict(xclient_addr="192.0.2.25", xclient_name="client.example.net",
              helo="helo.example.net")


def queued_id(reply):
    m = re.search(r"queued as (\w+)", reply or "")
    assert m, "no queue id in %r" % reply
    return m.group(1)


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def assert_discarded(pf):
    """Postfix kept nothing and delivered nothing."""
    pf.wait_queue_empty(timeout=10)
    assert pf.sink_messages() == []


def only_file(m, qid=None):
    files = real_files(m.milterin)
    assert len(files) == 1, files
    assert temp_files(m.milterin) == []
    if qid is not None:
        assert files[0] == qid
    return parse(os.path.join(m.milterin, files[0]))


def xclient(c, addr="192.0.2.25", name="client.example.net",
            helo="helo.example.net"):
    """XCLIENT on a RawSMTP connection; EHLO again after it."""
    code, _ = c.cmd("EHLO t")
    assert code == 250
    code, text = c.cmd("XCLIENT ADDR=%s NAME=%s HELO=%s" % (addr, name, helo))
    assert code == 220, text


def test_one_recipient_exact_file(stack):
    msg = (b"Subject: hello\r\nFrom: <sender@example.org>\r\n"
           b"Message-Id: <one@example.org>\r\nDate: Thu, 26 Nov 2026 "
           b"07:00:00 +0000\r\nTo: a@example.com\r\n\r\nline one\r\n"
           b"line two\r\n")
    r = stack.pf.send(to=["a@example.com"], data=msg, **CLIENT)
    qid = queued_id(data_reply(r.transcript))
    q = only_file(stack.m, qid)
    assert q.sender == "sender@example.org"
    assert q.rcpts == ["a@example.com"] and q.dsn == [None]
    assert q.auth is None
    # swaks sent EHLO but used no extension: a milter cannot tell that
    # from HELO (test_received.py), so SMTP.
    assert re.fullmatch(
        r"Received: from helo\.example\.net \(client\.example\.net "
        r"\[192\.0\.2\.25\]\)\n\tby mx\.test\.invalid \(MailScanner Milter\) "
        r"with SMTP id %s\n\tfor <a@example\.com>; %s" % (qid, RECEIVED_DATE),
        q.received), q.received
    assert q.message == lf(msg)
    assert os.stat(os.path.join(stack.m.milterin, qid)).st_mode & 0o777 \
        == 0o600
    assert_discarded(stack.pf)


def test_many_recipients_in_smtp_order(stack):
    rcpts = ["r%02d@example.com" % i for i in range(25, 0, -1)]
    msg = b"Subject: many\r\nMessage-Id: <m@x>\r\n\r\nbody\r\n"
    r = stack.pf.send(to=rcpts, data=msg, **CLIENT)
    qid = queued_id(data_reply(r.transcript))
    q = only_file(stack.m, qid)
    assert q.rcpts == rcpts
    # More than one recipient: no "for <...>" clause, date on its own line.
    assert re.search(r"with SMTP id %s;\n\t%s$" % (qid, RECEIVED_DATE),
                     q.received), q.received
    assert q.message.endswith(b"\n\nbody\n")
    assert_discarded(stack.pf)


def test_null_sender(stack):
    with RawSMTP(stack.pf.smtp_port) as c:
        xclient(c)
        code, text = c.message("", ["a@example.com"],
                               b"Subject: bounce\r\n\r\nreport\r\n",
                               helo="helo.example.net")
    assert code == 250, text
    q = only_file(stack.m, queued_id(text))
    assert q.sender == ""
    assert q.raw.startswith(b"S<>\nO<a@example.com>\n")
    assert_discarded(stack.pf)


def test_notify_and_orcpt_kept_per_recipient(stack):
    with RawSMTP(stack.pf.smtp_port) as c:
        xclient(c)
        assert c.cmd("EHLO helo.example.net")[0] == 250
        assert c.cmd("MAIL FROM:<s@example.org> RET=HDRS")[0] == 250
        assert c.cmd("RCPT TO:<a@example.com> NOTIFY=SUCCESS,FAILURE "
                     "ORCPT=rfc822;orig-a@example.com")[0] == 250
        assert c.cmd("RCPT TO:<b@example.com>")[0] == 250
        assert c.cmd("RCPT TO:<c@example.com> NOTIFY=NEVER")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: dsn\r\n\r\nx\r\n")
        code, text = c.cmd(".")
    assert code == 250, text
    q = only_file(stack.m, queued_id(text))
    assert q.rcpts == ["a@example.com", "b@example.com", "c@example.com"]
    assert q.dsn == ["NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig-a@example.com",
                     None, "NOTIFY=NEVER"]
    assert q.raw.startswith(
        b"S<s@example.org>\nE<NOTIFY=SUCCESS,FAILURE "
        b"ORCPT=rfc822;orig-a@example.com>\nO<a@example.com>\n"
        b"O<b@example.com>\nE<NOTIFY=NEVER>\nO<c@example.com>\n")
    assert_discarded(stack.pf)


def test_two_messages_on_one_connection(stack):
    with RawSMTP(stack.pf.smtp_port) as c:
        xclient(c)
        code1, t1 = c.message("one@example.org", ["a@example.com"],
                              b"Subject: first\r\n\r\nfirst body\r\n",
                              helo="helo.example.net")
        code2, t2 = c.message("two@example.org", ["b@example.com"],
                              b"Subject: second\r\n\r\nsecond body\r\n",
                              ehlo=None)
    assert code1 == 250 and code2 == 250, (t1, t2)
    id1, id2 = queued_id(t1), queued_id(t2)
    assert id1 != id2
    assert real_files(stack.m.milterin) == sorted([id1, id2])
    q1 = parse(os.path.join(stack.m.milterin, id1))
    q2 = parse(os.path.join(stack.m.milterin, id2))
    assert (q1.sender, q1.rcpts) == ("one@example.org", ["a@example.com"])
    assert (q2.sender, q2.rcpts) == ("two@example.org", ["b@example.com"])
    assert q1.message.endswith(b"\n\nfirst body\n")
    assert q2.message.endswith(b"\n\nsecond body\n")
    assert temp_files(stack.m.milterin) == []
    assert_discarded(stack.pf)


def test_rset_mid_transaction_starts_fresh(stack):
    with RawSMTP(stack.pf.smtp_port) as c:
        xclient(c)
        assert c.cmd("EHLO helo.example.net")[0] == 250
        assert c.cmd("MAIL FROM:<dropped@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<dropped@example.com>")[0] == 250
        assert c.cmd("RSET")[0] == 250
        code, text = c.message("kept@example.org", ["kept@example.com"],
                               b"Subject: after rset\r\n\r\nkept\r\n",
                               ehlo=None)
    assert code == 250, text
    q = only_file(stack.m, queued_id(text))
    assert q.sender == "kept@example.org"
    assert q.rcpts == ["kept@example.com"]
    assert_discarded(stack.pf)


def test_client_disconnect_mid_data_leaves_nothing(stack):
    c = RawSMTP(stack.pf.smtp_port)
    xclient(c)
    assert c.cmd("EHLO helo.example.net")[0] == 250
    assert c.cmd("MAIL FROM:<gone@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<a@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: cut\r\n\r\n" + b"partial line\r\n" * 20000)
    time.sleep(0.5)
    c.close()
    stack.pf.wait_log(r"lost connection after DATA", timeout=10)
    wait_for(lambda: os.listdir(stack.m.milterin) == [], 10,
             "milterin to be empty")
    time.sleep(0.5)
    assert os.listdir(stack.m.milterin) == []
    assert_discarded(stack.pf)


def test_headers_byte_exact(stack):
    headers = (b"Subject:no space\r\n"
               b"X-Two-Spaces:  two\r\n"
               b"X-Tab:\tvalue\r\n"
               b"X-Folded: first\r\n\tsecond\r\n    third\r\n"
               b"X-Trailing: trailing  \r\n"
               b"X-Empty:\r\n"
               b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org;\r\n"
               b"\ts=sel; h=from:subject; bh=abc=;\r\n\tb=XYZ\r\n"
               b"Message-Id: <exact@example.org>\r\n"
               b"Date: Thu, 26 Nov 2026 07:00:00 +0000\r\n"
               b"From: sender@example.org\r\n")
    msg = headers + b"\r\nbody\r\n"
    with RawSMTP(stack.pf.smtp_port) as c:
        xclient(c)
        code, text = c.message("s@example.org", ["a@example.com"], msg,
                               helo="helo.example.net")
    assert code == 250, text
    q = only_file(stack.m, queued_id(text))
    assert q.message == lf(msg)
    assert_discarded(stack.pf)


def test_8bit_and_utf8_body(stack):
    body = ("Grüße aus Köln\r\n".encode("utf-8") +
            bytes(range(0x80, 0x100)) + b"\r\n" + b"end\r\n")
    msg = (b"Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body)
    with RawSMTP(stack.pf.smtp_port) as c:
        xclient(c)
        assert c.cmd("EHLO helo.example.net")[0] == 250
        assert c.cmd("MAIL FROM:<s@example.org> BODY=8BITMIME")[0] == 250
        assert c.cmd("RCPT TO:<a@example.com>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(msg)
        code, text = c.cmd(".")
    assert code == 250, text
    q = only_file(stack.m, queued_id(text))
    assert q.message.endswith(lf(b"\r\n" + body))
    assert_discarded(stack.pf)


def test_loopback_accepted_when_configured(msmilter_factory, postfix_factory):
    m = msmilter_factory(settings={"Milter Ignore Loopback": "yes"})
    pf = postfix_factory(milter=m)
    r = pf.send(to=["a@example.com"], data=b"Subject: local\r\n\r\nlocal\r\n")
    assert data_reply(r.transcript).startswith("250")
    msgs = pf.wait_sink(1)
    assert len(msgs) == 1 and b"\nlocal\n" in msgs[0].data
    assert os.listdir(m.milterin) == []
    # A non-loopback client on the same instance is still spooled.
    r = pf.send(to=["a@example.com"], data=b"Subject: remote\r\n\r\nx\r\n",
                **CLIENT)
    only_file(m, queued_id(data_reply(r.transcript)))


def test_loopback_spooled_when_not_ignored(stack):
    r = stack.pf.send(to=["a@example.com"],
                      data=b"Subject: local\r\n\r\nlocal\r\n")
    q = only_file(stack.m, queued_id(data_reply(r.transcript)))
    assert "(localhost [127.0.0.1])" in q.received
    assert_discarded(stack.pf)


def test_milterin_not_writable_tempfails(stack):
    os.chmod(stack.m.milterin, 0o500)
    r = stack.pf.send(to=["a@example.com"], data=b"Subject: x\r\n\r\nx\r\n",
                      **CLIENT)
    # Refused at DATA: the client does not even send the body.
    reply = reply_to(r.transcript, "DATA")
    assert reply.startswith("451 4.3.0"), r.transcript
    assert data_reply(r.transcript) is None
    assert os.listdir(stack.m.milterin) == []
    assert "Permission denied" in stack.m.logged("Permission denied")
    # Postfix kept nothing either: the client still owns the message.
    assert_discarded(stack.pf)
    os.chmod(stack.m.milterin, 0o750)
    r = stack.pf.send(to=["a@example.com"], data=b"Subject: y\r\n\r\ny\r\n",
                      **CLIENT)
    only_file(stack.m, queued_id(data_reply(r.transcript)))


def test_milterin_missing_tempfails_until_created(msmilter_factory,
                                                  postfix_factory):
    m = msmilter_factory(start=False)
    m.write_config()
    os.rmdir(m.milterin)
    real_write = m.write_config
    m.write_config = lambda: None
    try:
        m.start()
    finally:
        m.write_config = real_write
    assert "cannot open Incoming Queue Dir" in m.logged(
        "cannot open Incoming Queue Dir")
    pf = postfix_factory(milter=m)
    r = pf.send(to=["a@example.com"], data=b"Subject: x\r\n\r\nx\r\n",
                **CLIENT)
    assert reply_to(r.transcript, "DATA").startswith("451 4.3.0")
    assert not os.path.exists(m.milterin)
    assert_discarded(pf)
    real_write()   # creates milterin owned by Run As User
    # Landlock had no rule for the missing directory: the spooler restarts
    # to be confined to it, and meanwhile the client keeps getting 451.
    deadline = time.monotonic() + 20
    while True:
        r = pf.send(to=["a@example.com"], data=b"Subject: y\r\n\r\ny\r\n",
                    **CLIENT)
        if data_reply(r.transcript) or time.monotonic() > deadline:
            break
        assert reply_to(r.transcript, "DATA").startswith("451 4.3.0")
        time.sleep(0.5)
    only_file(m, queued_id(data_reply(r.transcript)))
    if "landlock: ABI" in m.stderr():
        assert "restarting so that Landlock confines the spooler" \
            in m.stderr()


def test_spooler_killed_next_message_waits_for_the_new_one(stack):
    """The parent restarts a spooler that had served at once, and a
    session at DATA waits (up to 2 s) for it instead of a 451."""
    old = child_pids(stack.m.pid)["spooler"]
    assert old
    os.kill(old, signal.SIGKILL)
    r = stack.pf.send(to=["a@example.com"], data=b"Subject: w\r\n\r\nw\r\n",
                      **CLIENT)
    only_file(stack.m, queued_id(data_reply(r.transcript)))
    assert child_pids(stack.m.pid)["spooler"] not in (None, old)


def test_spooler_down_tempfails_then_recovers(stack):
    # The parent stopped, so that nobody restarts the spooler.
    old = child_pids(stack.m.pid)["spooler"]
    assert old
    os.kill(stack.m.pid, signal.SIGSTOP)
    try:
        os.kill(old, signal.SIGKILL)
        r = stack.pf.send(to=["a@example.com"],
                          data=b"Subject: x\r\n\r\nx\r\n", **CLIENT)
    finally:
        os.kill(stack.m.pid, signal.SIGCONT)
    # Refused at DATA, before the client sends the body.
    assert reply_to(r.transcript, "DATA").startswith("451 4.3.0"), \
        r.transcript
    assert os.listdir(stack.m.milterin) == []
    wait_for(lambda: child_pids(stack.m.pid)["spooler"] not in (None, old),
             20, "spooler restart")
    wait_for(lambda: "killed by signal 9" in stack.m.stderr(), 5, "log")
    # The restarted spooler gets a new channel to capture; mail flows.
    for _ in range(50):
        r = stack.pf.send(to=["a@example.com"],
                          data=b"Subject: y\r\n\r\ny\r\n", **CLIENT)
        reply = data_reply(r.transcript)
        if reply and reply.startswith("250"):
            break
        time.sleep(0.2)
    only_file(stack.m, queued_id(reply))
    assert_discarded(stack.pf)


def test_30mb_message_streamed_with_flat_memory(msmilter_factory,
                                                postfix_factory):
    m = msmilter_factory()
    pf = postfix_factory(milter=m, main_cf={"message_size_limit": "0"})
    pids = {k: v for k, v in child_pids(m.pid).items() if v}
    with RawSMTP(pf.smtp_port) as c:
        xclient(c)
        code, text = c.message("s@example.org", ["a@example.com"],
                               b"Subject: small\r\n\r\nsmall\r\n",
                               helo="helo.example.net")
    assert code == 250, text
    before = {k: vm_hwm_kb(p) for k, p in pids.items()}
    line = b"0123456789" * 7 + b"abcdef\r\n"
    body = line * (30 * 1024 * 1024 // len(line))
    with RawSMTP(pf.smtp_port, timeout=120) as c:
        xclient(c)
        code, text = c.message("s@example.org", ["a@example.com"],
                               b"Subject: big\r\n\r\n" + body,
                               helo="helo.example.net")
    assert code == 250, text
    qid = queued_id(text)
    q = parse(os.path.join(m.milterin, qid))
    assert q.message.startswith(b"Subject: big\n")
    assert q.message.endswith(b"\n\n" + lf(body))
    after = {k: vm_hwm_kb(p) for k, p in pids.items()}
    for k in pids:
        grew = after[k] - before[k]
        assert grew < 6144, "%s peak RSS grew by %d kB for a 30 MB message " \
            "(%d -> %d kB)" % (k, grew, before[k], after[k])
    assert_discarded(pf)
