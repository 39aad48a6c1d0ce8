"""Addresses the queue file cannot carry (issue 13), end to end with a real
Postfix: capture answers a permanent 553 at MAIL / RCPT, naming the
problem, and no file appears in milterin.  Before, these got 250 and a
file the relay later refused (lost in milterout-invalid), or 451 at DATA
that clients retry for days.  Unusual but legal addresses still pass."""

import os
import re

import pytest

from postfix import RawSMTP, data_reply, reply_to
from queuefile import parse, real_files
from test_capture import CLIENT, assert_discarded, only_file, queued_id

# Postfix passes these to the milter (measured with Postfix 3.7).
REFUSED_BY_MSMILTER = [
    ("a\x01b@example.com", "control character in an address"),
    ("a\x7fb@example.com", "control character in an address"),
    ('"a\tb"@example.com', "tab in an address"),
    ('"a<b"@example.com', "angle bracket in an address"),
    ('"a>b"@example.com', "angle bracket in an address"),
    ('"a\\>b"@example.com', "angle bracket in an address"),
    # Over RFC 5321's 256-octet path: capture refuses it before the format
    # check (which would say "address longer than 1000 bytes").
    ("a" * 1001 + "@example.com", "longer than the 256 octets of an SMTP path"),
]

# Postfix refuses these itself (501 "Bad ... address syntax"): they never
# reach the milter.
REFUSED_BY_POSTFIX = ["a b@example.com", "a<b@example.com",
                      "a>b@example.com", 'a"b@example.com']


def no_file(m):
    assert real_files(m.milterin) == []


@pytest.mark.parametrize("addr,why", REFUSED_BY_MSMILTER)
def test_sender_refused_at_mail(stack, addr, why):
    r = stack.pf.send(sender=addr, to=["ok@example.com"], **CLIENT)
    assert reply_to(r.transcript, "MAIL") == \
        "553 5.1.7 Sender address refused: " + why, r.transcript
    assert reply_to(r.transcript, "DATA") is None or \
        reply_to(r.transcript, "DATA").startswith("503")
    no_file(stack.m)
    assert re.search(r"msmilter/capture\[\d+\]: NOQUEUE: 553 5\.1\.7 Sender "
                     r"address refused: %s \(client client\.example\.net"
                     r"\[192\.0\.2\.25\]\)" % re.escape(why), stack.m.stderr())
    assert_discarded(stack.pf)          # and Postfix kept nothing either


@pytest.mark.parametrize("addr,why", REFUSED_BY_MSMILTER)
def test_recipient_refused_at_rcpt_others_kept(stack, addr, why):
    r = stack.pf.send(to=["ok@example.com", addr, "ok2@example.com"],
                      **CLIENT)
    replies = [rep for cmd, rep in __import__("postfix").server_replies(
        r.transcript) if cmd and cmd.upper().startswith("RCPT")]
    assert replies[0].startswith("250") and replies[2].startswith("250")
    assert replies[1] == "553 5.1.3 Recipient address refused: " + why
    q = only_file(stack.m, queued_id(data_reply(r.transcript)))
    assert q.rcpts == ["ok@example.com", "ok2@example.com"]


@pytest.mark.parametrize("addr,why", REFUSED_BY_MSMILTER)
def test_only_recipient_refused_no_file(stack, addr, why):
    r = stack.pf.send(to=[addr], **CLIENT)
    assert reply_to(r.transcript, "RCPT") == \
        "553 5.1.3 Recipient address refused: " + why, r.transcript
    assert data_reply(r.transcript) is None
    no_file(stack.m)


@pytest.mark.parametrize("addr", REFUSED_BY_POSTFIX)
def test_postfix_refuses_before_the_milter(stack, addr):
    r = stack.pf.send(sender=addr, **CLIENT)
    assert reply_to(r.transcript, "MAIL").startswith(
        "501 5.1.7 Bad sender address syntax"), r.transcript
    r = stack.pf.send(to=[addr], **CLIENT)
    assert reply_to(r.transcript, "RCPT").startswith(
        "501 5.1.3 Bad recipient address syntax"), r.transcript
    no_file(stack.m)
    assert "refused:" not in stack.m.stderr()


def test_unusual_legal_addresses_carried(stack):
    """UTF-8 (SMTPUTF8), a quoted local part with a space or an escaped
    quote, an address literal, a bare postmaster: spooled exactly."""
    rcpts = ['"john smith"@example.com', "j\u00f6rg@b\u00fccher.example",
             '"a\\"b"@example.com', "a@[192.0.2.1]", "postmaster"]
    with RawSMTP(stack.pf.smtp_port) as c:
        assert c.cmd("EHLO t")[0] == 250
        assert c.cmd("XCLIENT ADDR=192.0.2.25 NAME=client.example.net "
                     "HELO=helo.example.net")[0] == 220
        assert c.cmd("EHLO helo.example.net")[0] == 250
        code, text = c.cmd('MAIL FROM:<"alice b"@example.org> SMTPUTF8')
        assert code == 250, text
        for r in rcpts:
            code, text = c.cmd("RCPT TO:<%s>" % r)
            assert code == 250, text
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: unusual\r\n\r\nx\r\n")
        code, text = c.cmd(".")
    assert code == 250, text
    q = only_file(stack.m, queued_id(text))
    assert q.sender == '"alice b"@example.org'
    assert q.rcpts == rcpts
    assert_discarded(stack.pf)


def test_bad_dsn_parameter_never_spooled(stack):
    """Postfix checks NOTIFY/ORCPT itself; what it passes, we carry."""
    with RawSMTP(stack.pf.smtp_port) as c:
        assert c.cmd("EHLO t")[0] == 250
        assert c.cmd("MAIL FROM:<s@example.org>")[0] == 250
        code, text = c.cmd("RCPT TO:<a@example.com> NOTIFY=NEVER,SUCCESS")
        assert code // 100 == 5, text
        code, text = c.cmd("RCPT TO:<b@example.com> ORCPT=rfc822;"
                           "x+3Dy@example.com NOTIFY=DELAY")
        assert code == 250, text
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: dsn\r\n\r\nx\r\n")
        code, text = c.cmd(".")
    assert code == 250, text
    q = only_file(stack.m, queued_id(text))
    assert q.rcpts == ["b@example.com"]
    assert q.dsn == ["ORCPT=rfc822;x+3Dy@example.com NOTIFY=DELAY"]
