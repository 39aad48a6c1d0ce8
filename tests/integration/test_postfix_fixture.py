"""The private-Postfix fixture itself works, without any milter."""

import os
import socket
import uuid

from postfix import data_reply, first_error, free_port, port_is_free


def marker():
    return "marker-" + uuid.uuid4().hex


def test_delivers_to_sink_without_milter(postfix):
    assert postfix.milter == ""
    mark = marker()
    data = ("From: <sender@example.org>\r\n"
            "To: <a@example.com>\r\n"
            "Subject: fixture test\r\n"
            "\r\n"
            "first line\r\n"
            "%s\r\n"
            ".leading dot survives\r\n" % mark)
    rc, transcript = postfix.send(sender="sender@example.org",
                                  to=["a@example.com", "b@example.net"],
                                  data=data)
    assert rc == 0, transcript
    reply = data_reply(transcript)
    assert reply is not None and reply.startswith("250"), transcript
    assert postfix.wait_queue_empty(20), \
        "queue not empty: %s\n%s" % (postfix.queue_files(),
                                    postfix.maillog_tail())
    msgs = postfix.wait_sink(1, 10)
    assert len(msgs) == 1, postfix.maillog_tail()
    m = msgs[0]
    # byte check: the body arrives as sent (LF line ends in the dump)
    assert m.data.endswith(b"\n\nfirst line\n" + mark.encode() +
                           b"\n.leading dot survives\n"), m.raw
    assert m.data.startswith(b"Received: from "), m.raw
    assert b"\nSubject: fixture test\n" in m.data
    assert m.sender == "sender@example.org"
    assert m.recipients == ["a@example.com", "b@example.net"]
    assert m.client == "127.0.0.1"
    log = postfix.maillog()
    assert "status=sent" in log
    assert "relay=127.0.0.1[127.0.0.1]:%d" % postfix.sink.port in log


def test_xclient_is_allowed(postfix):
    rc, transcript = postfix.send(xclient_addr="192.0.2.7",
                                  xclient_name="client.example.net",
                                  body=marker())
    assert rc == 0, transcript
    assert data_reply(transcript).startswith("250"), transcript
    assert postfix.wait_queue_empty(20), postfix.maillog_tail()
    assert len(postfix.wait_sink(1)) == 1
    assert "client=client.example.net[192.0.2.7]" in postfix.maillog()


def test_dead_milter_tempfails(postfix_factory):
    port = free_port()
    assert port_is_free(port)
    pf = postfix_factory(milter=port, milter_default_action="tempfail")
    assert pf.milter == "inet:127.0.0.1:%d" % port
    rc, transcript = pf.send(body=marker())
    assert rc != 0, transcript
    err = first_error(transcript)
    assert err is not None and err.startswith("4"), transcript
    # nothing queued, nothing delivered
    assert pf.wait_queue_empty(5)
    assert pf.sink_messages() == []
    assert "milter" in pf.maillog().lower()


def test_instances_are_independent_and_clean_up(postfix_factory):
    a = postfix_factory()
    b = postfix_factory(sink=False)        # discards
    assert len({a.smtp_port, b.smtp_port, a.sink.port}) == 3
    assert b.send(body=marker()).rc == 0
    assert b.wait_queue_empty(20), b.maillog_tail()
    assert a.sink_messages() == []
    assert "status=sent" in b.maillog() and "relay=none" in b.maillog()
    pids = [a.master_pid, b.master_pid]
    a.stop()
    b.stop()
    for pid in pids:
        assert not os.path.exists("/proc/%d" % pid) or \
            open("/proc/%d/stat" % pid).read().split(") ")[1][0] == "Z"
    assert a.leftover_pids() == [] and b.leftover_pids() == []
    for port in (a.smtp_port, b.smtp_port, a.sink.port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0


def test_raw_smtp_is_byte_exact(postfix):
    mark = marker().encode()
    # complete headers, so that Postfix adds none of its own
    body = (b"From: <s@example.org>\r\n"
            b"To: <r@example.com>\r\n"
            b"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
            b"Message-ID: <" + mark + b"@example.org>\r\n"
            b"Subject: raw\r\n"
            b"X-Spaces:   three leading, two trailing  \r\n"
            b"X-Folded: a\r\n\tb\r\n"
            b"\r\n" + mark + b"\r\n"
            b"..dot-stuffed line\r\n"
            b"tab\there\r\n")
    with postfix.raw_smtp() as c:
        assert c.banner[0] == 220
        code, text = c.message("s@example.org", ["r@example.com"], body)
        assert code == 250, text
        assert c.cmd("QUIT")[0] == 221
    assert postfix.wait_queue_empty(20), postfix.maillog_tail()
    msgs = postfix.wait_sink(1)
    assert len(msgs) == 1
    expect = body.replace(b"\r\n", b"\n").replace(b"\n..", b"\n.")
    # exactly Postfix's Received: header, then the message as sent
    data = msgs[0].data
    assert data.startswith(b"Received: from client.test.invalid "), data
    lines = data.split(b"\n")
    n = 1
    while lines[n][:1] in (b"\t", b" "):
        n += 1                  # continuation lines of Received:
    assert b"\n".join(lines[n:]) == expect, data


def test_bad_config_fails_fast_with_log(postfix_factory):
    import pytest
    from postfix import PostfixError
    with pytest.raises(PostfixError) as e:
        # smtpd refuses to run an open relay without a reject rule
        postfix_factory(main_cf={"smtpd_relay_restrictions": "permit",
                                 "relay_domains": None})
    assert "specify at least one working instance" in str(e.value)


def _netstring(b):
    return b"%d:%s," % (len(b), b)


def _qmqp(sock, sender, rcpts, message):
    """One QMQP transaction on a connected socket; returns the reply."""
    payload = _netstring(message) + _netstring(sender.encode()) + \
        b"".join(_netstring(r.encode()) for r in rcpts)
    sock.sendall(_netstring(payload))
    reply = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    length, _, rest = reply.partition(b":")
    return rest[:int(length)].decode()


def test_reinject_and_qmqp_listeners_bypass_the_milter(postfix_factory):
    dead = free_port()
    pf = postfix_factory(milter=dead, reinject=True, qmqp=True,
                         qmqp_unix=True)
    marks = [marker() for _ in range(3)]
    # the main listener refuses (dead milter), the re-injection one not
    assert first_error(pf.send(body=marks[0]).transcript).startswith("4")
    r = pf.send(body=marks[0], port=pf.reinject_port)
    assert r.rc == 0, r.transcript
    msg = lambda m: ("Subject: qmqp\n\n%s\n" % m).encode()
    with socket.create_connection(("127.0.0.1", pf.qmqp_port)) as s:
        reply = _qmqp(s, "q@example.org", ["r1@example.com"], msg(marks[1]))
    assert reply.startswith("K"), reply
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(pf.qmqp_socket)
        reply = _qmqp(s, "q@example.org", ["r2@example.com"], msg(marks[2]))
    assert reply.startswith("K"), reply
    assert pf.wait_queue_empty(20), pf.maillog_tail()
    msgs = pf.wait_sink(3)
    got = sorted(m.recipients[0] for m in msgs)
    assert got == ["r1@example.com", "r2@example.com", "rcpt@example.com"]
    for mk in marks:
        assert sum(mk.encode() in m.data for m in msgs) == 1
