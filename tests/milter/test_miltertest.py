"""Protocol corners driven by miltertest (Lua scripts beside this file),
against a running msmilter; the queue files are checked here."""

import os
import re
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
MILTERTEST = shutil.which("miltertest") or "/usr/bin/miltertest"


def run_script(m, name):
    if not os.access(MILTERTEST, os.X_OK):
        pytest.skip("miltertest not installed (sh tests/deps.sh all)")
    p = subprocess.run([MILTERTEST, "-s", os.path.join(HERE, name),
                        "-D", "milter=inet:%d@127.0.0.1" % m.port, "-D", "scriptdir=" + HERE],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, "%s failed:\n%s\n--- msmilter:\n%s" % (
        name, out, m.stderr())
    return out


def files(m):
    return sorted(os.listdir(m.milterin))


def read(m, name):
    with open(os.path.join(m.milterin, name), "rb") as f:
        return f.read()


def test_no_macros_short_queue_id(msmilter):
    run_script(msmilter, "no-macros.lua")
    names = files(msmilter)
    assert len(names) == 1 and re.fullmatch(r"[0-9A-F]{6,}", names[0]), names
    data = read(msmilter, names[0])
    assert data.startswith(b"S<nomacro@example.org>\nO<a@example.com>\n"
                           b"Received: from helo.example.org "
                           b"(client.example.org [192.0.2.10])\n")
    # No j macro: the host name stands in; the id is ours.
    # No ESMTP parameter, TLS or AUTH in the script: SMTP.
    assert re.search(rb"\(MailScanner Milter\) with SMTP id %s\n"
                     % names[0].encode(), data)
    assert data.endswith(b"Subject: no macros\n\nbody\n")
    msg = "no usable queue id from Postfix (missing)"
    assert msg in msmilter.logged(msg)


def test_no_macros_long_queue_id(msmilter_factory):
    m = msmilter_factory(settings={"MSMail Queue Type": "long"})
    run_script(m, "no-macros.lua")
    names = files(m)
    assert len(names) == 1, names
    # Postfix's long ids: ten base-52 digits of time (which may include
    # 'z'), the separator 'z' at a fixed place, the inode part in base 51.
    assert re.fullmatch(r"[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10}z"
                        r"[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]+", names[0]), \
        names


def test_unsafe_queue_id_is_replaced(msmilter):
    run_script(msmilter, "unsafe-queue-id.lua")
    names = files(msmilter)
    assert len(names) == 1 and re.fullmatch(r"[0-9A-F]+", names[0]), names
    assert "(unsafe)" in msmilter.logged("(unsafe)")
    assert not os.path.exists("/etc/passwd.tmp")


def test_abort_after_headers_keeps_only_second(msmilter):
    run_script(msmilter, "abort-after-headers.lua")
    assert files(msmilter) == ["KEPT2"]
    data = read(msmilter, "KEPT2")
    assert data.startswith(b"S<second@example.org>\nO<b@example.com>\n")
    assert data.endswith(b"\nSubject: kept\n\nsecond body\n")


def test_line_break_in_sender_refused(msmilter):
    out = run_script(msmilter, "line-break-in-sender.lua")
    assert files(msmilter) == []
    msg = "FORGED1: 553 5.1.7 Sender address refused: line break in an " \
        "address"
    assert msg in msmilter.logged(msg), out


def test_crlf_split_across_chunks(msmilter):
    run_script(msmilter, "split-crlf.lua")
    assert files(msmilter) == ["SPLITCRLF"]
    data = read(msmilter, "SPLITCRLF")
    assert data.endswith(b"\nSubject: split\n\none\ntwo\rthree\nend\r")


def test_session_cap_refuses_every_stage(msmilter_factory):
    m = msmilter_factory(settings={"Milter Max Children": "1"})
    run_script(m, "session-cap.lua")
    assert len(files(m)) == 1, files(m)
    msg = "Milter Max Children sessions reached"
    assert msg in m.logged(msg)


def test_envelope_budget_and_address_lengths(msmilter_factory):
    m = msmilter_factory(settings={"Milter Max Envelope Size": "4096"})
    run_script(m, "envelope-limits.lua")
    names = files(m)
    assert len(names) == 1, names
    data = read(m, names[0])
    assert data.startswith(b"S<env@example.org>\n")
    assert re.findall(rb"^O<([^>]*)>$", data, re.M) == \
        [b"r%d@example.com" % i for i in range(1, 10)]
    msg = "Milter Max Envelope Size (4096 bytes) at 9 recipients"
    assert msg in m.logged(msg)


def test_bad_dsn_and_address_refused_at_rcpt(msmilter):
    run_script(msmilter, "bad-dsn-and-address.lua")
    assert files(msmilter) == ["BADDSN1"]
    assert read(msmilter, "BADDSN1").startswith(
        b"S<a@example.org>\nE<NOTIFY=DELAY>\nO<ok@example.com>\nReceived: ")
    msgs = ("BADDSN1: 501 5.5.4 DSN parameters refused: NOTIFY=NEVER "
            "with another value",
            "BADDSN1: 501 5.5.4 DSN parameters refused: ORCPT= is not "
            "addr-type;xtext",
            "BADDSN1: 553 5.1.3 Recipient address refused: space outside a "
            "quoted local part")
    err = msmilter.logged(*msgs)
    for msg in msgs:
        assert msg in err
