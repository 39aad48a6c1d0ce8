"""Our Received header's "with" word (RFC 3848) and where the A line
goes, through a real Postfix: HELO, EHLO with ESMTP parameters, STARTTLS
with a self-signed certificate, and an authenticated session (XCLIENT
LOGIN, which Postfix reports to milters as SASL method XCLIENT).

Postfix tells a milter the HELO/EHLO argument but not which command
carried it, so capture takes EHLO as used when the client used something
only EHLO offers (an ESMTP parameter, STARTTLS, AUTH)."""

import os
import re
import subprocess

import pytest

from postfix import RawSMTP, data_reply
from queuefile import parse, real_files
from test_capture import queued_id, wait_for

MSG = b"Subject: proto\r\nMessage-Id: <proto@example.org>\r\n\r\nbody\r\n"


def self_signed(base):
    cert = os.path.join(base, "cert.pem")
    key = os.path.join(base, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "2", "-subj", "/CN=mx.test.invalid",
                    "-keyout", key, "-out", cert], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


@pytest.fixture
def tls_stack(msmilter_factory, postfix_factory, test_base):
    """msmilter behind a Postfix that offers STARTTLS and XCLIENT LOGIN
    (smtpd_sasl_auth_enable makes Postfix pass {auth_type} on)."""
    cert, key = self_signed(test_base)
    m = msmilter_factory()
    pf = postfix_factory(milter=m, main_cf={
        "smtpd_tls_security_level": "may",
        "smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key,
        "smtpd_sasl_auth_enable": "yes"})
    return m, pf


def queued(m, qid):
    wait_for(lambda: qid in real_files(m.milterin), 10, qid)
    return parse(os.path.join(m.milterin, qid))


def with_word(q):
    m = re.search(r"\(MailScanner Milter\) with (\w+) id ", q.received)
    assert m, q.received
    return m.group(1)


def raw_session(pf, tls=False, login=None, mail_args="", rcpts=("a@x.example",)):
    with RawSMTP(pf.smtp_port) as c:
        assert c.cmd("EHLO client.example.net")[0] == 250
        if tls:
            assert c.starttls("client.example.net")[0] == 250
        if login:
            code, text = c.cmd("XCLIENT LOGIN=%s" % login)
            assert code == 220, text
            assert c.cmd("EHLO client.example.net")[0] == 250
        assert c.cmd("MAIL FROM:<s@example.org>%s" % mail_args)[0] == 250
        for r in rcpts:
            assert c.cmd("RCPT TO:<%s>" % r)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(MSG)
        code, text = c.cmd(".")
    assert code == 250, text
    return queued_id(text)


def test_helo_is_smtp(tls_stack):
    m, pf = tls_stack
    r = pf.send(helo="client.example.net", extra_args=["--protocol", "SMTP"])
    q = queued(m, queued_id(data_reply(r.transcript)))
    assert with_word(q) == "SMTP"
    assert "HELO client.example.net" in r.transcript


def test_ehlo_with_esmtp_parameter_is_esmtp(tls_stack):
    m, pf = tls_stack
    q = queued(m, raw_session(pf, mail_args=" SIZE=100 BODY=8BITMIME"))
    assert with_word(q) == "ESMTP"


def test_starttls_is_esmtps(tls_stack):
    m, pf = tls_stack
    q = queued(m, raw_session(pf, tls=True))
    assert with_word(q) == "ESMTPS"
    assert re.search(r"\n\t\(using TLSv1\.[23] with cipher \S+ "
                     r"\(\d+/\d+ bits\)\)\n", q.received), q.received


def test_authenticated_is_esmtpa(tls_stack):
    m, pf = tls_stack
    r = pf.send(helo="client.example.net",
                extra_args=["--xclient-login", "alice"])
    q = queued(m, queued_id(data_reply(r.transcript)))
    assert with_word(q) == "ESMTPA"
    assert q.auth == "sasl_method=XCLIENT"


def test_tls_and_authenticated_is_esmtpsa(tls_stack):
    m, pf = tls_stack
    q = queued(m, raw_session(pf, tls=True, login="alice"))
    assert with_word(q) == "ESMTPSA"


def test_ehlo_using_nothing_reads_as_smtp(tls_stack):
    """The limit of what Postfix lets a milter see: an EHLO session that
    uses no extension cannot be told from HELO, and says SMTP."""
    m, pf = tls_stack
    r = pf.send(helo="client.example.net")
    assert "EHLO client.example.net" in r.transcript
    q = queued(m, queued_id(data_reply(r.transcript)))
    assert with_word(q) == "SMTP"


def mailscanner_body(raw):
    """What MailScanner's body reader keeps for quarantine and archive
    copies: it skips lines starting S<, O< or E< and keeps the rest."""
    lines = raw.split(b"\n")
    i = 0
    while re.match(rb"[SOE]<", lines[i]):
        i += 1
    return b"\n".join(lines[i:])


def test_auth_line_last_only_it_leaks(tls_stack):
    """Authenticated, several recipients with DSN: the A line comes after
    every S, E and O line, so a quarantine copy shows the A line and no
    recipient (before, A came second and everything after it leaked)."""
    m, pf = tls_stack
    rcpts = ("a@x.example", "b@x.example", "c@x.example")
    q = queued(m, raw_session(pf, login="alice", rcpts=rcpts,
                              mail_args=" RET=HDRS"))
    lines = q.raw.split(b"\n")
    assert lines[:5] == [b"S<s@example.org>", b"O<a@x.example>",
                         b"O<b@x.example>", b"O<c@x.example>",
                         b"A<sasl_method=XCLIENT>"]
    kept = mailscanner_body(q.raw)
    assert kept.startswith(b"A<sasl_method=XCLIENT>\nReceived: from ")
    head = kept.split(b"\n\n")[0]
    assert not any(r.encode() in head for r in rcpts), head
