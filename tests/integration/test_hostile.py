"""Capture against a hostile milter client or SMTP client (issue 13).

Raw milter packets (rawmilter.py) reach what miltertest cannot: miltertest
always negotiates options before any other stage, so a connection whose
first packet is HELO or MAIL can only be played byte by byte."""

import os
import re
import socket
import threading
import time

import pytest

from postfix import RawSMTP, child_pids
from rawmilter import (ABORT, BODY, BODYEOB, CONNECT, DATA, EOH, HEADER,
                       HELO, MAIL, QUIT, QUIT_NC, RCPT, R_CONTINUE,
                       R_REPLYCODE, R_TEMPFAIL, UNKNOWN, RawMilter,
                       connect_data, cstr)


def capture_pid(m):
    return child_pids(m.pid)["capture"]


def is_tempfail(reply, code=b"451"):
    if reply is None:
        return False
    if reply[0] == R_TEMPFAIL:
        return True
    return reply[0] == R_REPLYCODE and reply[1].startswith(code + b" 4.")


def legit_session_works(m):
    """A whole negotiated transaction still reaches the spooler."""
    with RawMilter(m.port) as c:
        c.negotiate(protocol=0)
        assert c.ask(CONNECT, connect_data())[0] == R_CONTINUE
        assert c.ask(HELO, cstr("helo.example.net"))[0] == R_CONTINUE
        assert c.ask(MAIL, cstr("<s@example.org>"))[0] == R_CONTINUE
        assert c.ask(RCPT, cstr("<r@example.com>"))[0] == R_CONTINUE
        assert c.ask(DATA)[0] == R_CONTINUE
        assert c.ask(HEADER, cstr("Subject", " t"))[0] == R_CONTINUE
        assert c.ask(EOH)[0] == R_CONTINUE
        assert c.ask(BODY, b"body\r\n")[0] == R_CONTINUE
        r = c.ask(BODYEOB)
        assert r is not None and r[0] == b"d", r      # DISCARD: spooled


# Without an option negotiation libmilter starts in its INIT state and
# jumps to HELO for anything but 'O': HELO and MAIL reach us directly; an
# unknown command ('U') opens the way to RCPT, DATA, body, abort and quit;
# RCPT keeps its state after a TEMPFAIL, which reaches header, end of
# headers and end of message; QUIT_NC ('K') after 'U' reaches connect.
# (sequence of (command, data, expect)) where expect is "tempfail",
# "continue" or None (no reply due).
WITHOUT_NEGOTIATION = {
    "helo": [(HELO, cstr("x"), "tempfail")],
    "mail": [(MAIL, cstr("<a@example.org>"), "tempfail")],
    "rcpt": [(UNKNOWN, cstr("FOO"), "continue"),
             (RCPT, cstr("<r@example.com>"), "tempfail")],
    "data": [(UNKNOWN, cstr("FOO"), "continue"), (DATA, b"", "tempfail")],
    "header": [(UNKNOWN, cstr("FOO"), "continue"),
               (RCPT, cstr("<r@example.com>"), "tempfail"),
               (HEADER, cstr("Subject", "x"), "tempfail")],
    "eoh": [(UNKNOWN, cstr("FOO"), "continue"),
            (RCPT, cstr("<r@example.com>"), "tempfail"),
            (EOH, b"", "tempfail")],
    "body": [(UNKNOWN, cstr("FOO"), "continue"),
             (BODY, b"chunk\r\n", "tempfail")],
    "eom": [(UNKNOWN, cstr("FOO"), "continue"),
            (RCPT, cstr("<r@example.com>"), "tempfail"),
            (BODYEOB, b"", "tempfail")],
    "abort": [(UNKNOWN, cstr("FOO"), "continue"), (ABORT, b"", None),
              (HELO, cstr("x"), "tempfail")],
    "quit": [(UNKNOWN, cstr("FOO"), "continue"), (QUIT, b"", None)],
    "connect": [(UNKNOWN, cstr("\x01garbage\xff"), "continue"),
                (QUIT_NC, b"", None),
                (CONNECT, connect_data(), "tempfail")],
}


@pytest.mark.parametrize("stage", sorted(WITHOUT_NEGOTIATION))
def test_stage_without_negotiation_tempfails(msmilter, stage):
    m = msmilter
    before = capture_pid(m)
    with RawMilter(m.port) as c:
        for cmd, data, expect in WITHOUT_NEGOTIATION[stage]:
            c.send(cmd, data)
            if expect is None:
                continue
            r = c.reply()
            if expect == "tempfail":
                assert is_tempfail(r), (cmd, r)
            else:
                assert r is not None and r[0] == R_CONTINUE, (cmd, r)
    time.sleep(0.3)
    assert capture_pid(m) == before, "capture died:\n" + m.stderr()
    assert "killed by signal" not in m.stderr()
    legit_session_works(m)
    assert capture_pid(m) == before


def test_connect_after_quit_nc_tempfails(msmilter):
    """QUIT_NC ends a negotiated session (our context is freed); a new
    connect on the same connection then has none."""
    m = msmilter
    before = capture_pid(m)
    with RawMilter(m.port) as c:
        c.negotiate(protocol=0)
        assert c.ask(CONNECT, connect_data())[0] == R_CONTINUE
        # libmilter takes QUIT_NC only after end of message or 'U'.
        assert c.ask(UNKNOWN, cstr("NOOP"))[0] == R_CONTINUE
        c.send(QUIT_NC)
        assert is_tempfail(c.ask(CONNECT, connect_data()))
        # (HELO was negotiated without reply: libmilter answers continue)
        assert is_tempfail(c.ask(MAIL, cstr("<s@example.org>")))
    time.sleep(0.3)
    assert capture_pid(m) == before, m.stderr()


def test_flood_without_negotiation_is_logged_rarely(msmilter):
    m = msmilter
    before = capture_pid(m)
    for i in range(300):
        with RawMilter(m.port) as c:
            assert is_tempfail(c.ask(MAIL if i % 2 else HELO, cstr("<x>")))
    time.sleep(0.3)
    assert capture_pid(m) == before
    lines = [x for x in m.stderr().splitlines()
             if "before option negotiation" in x]
    assert 1 <= len(lines) <= 2, lines


def hostile_flood(port, stop, interval, counts):
    """One connection per interval whose only packet is HELO or MAIL."""
    i = 0
    while not stop.is_set():
        try:
            with RawMilter(port, timeout=2) as c:
                c.send(MAIL if i % 2 else HELO, cstr("<x@example.org>"))
                r = c.reply()
                counts["tempfail" if is_tempfail(r) else "other"] += 1
        except OSError:
            counts["refused"] += 1
        i += 1
        stop.wait(interval)


def test_flood_costs_no_legitimate_message(stack):
    m, pf = stack.m, stack.pf
    before = capture_pid(m)
    stop = threading.Event()
    counts = {"tempfail": 0, "other": 0, "refused": 0}
    t = threading.Thread(target=hostile_flood,
                         args=(m.port, stop, 0.1, counts))
    t.start()
    try:
        ok = 0
        for i in range(40):
            with RawSMTP(pf.smtp_port) as c:
                code, text = c.message(
                    "s@example.org", ["r%d@example.com" % i],
                    b"Subject: %d\r\n\r\nbody\r\n" % i)
            ok += code == 250
            time.sleep(0.05)
    finally:
        stop.set()
        t.join()
    assert ok == 40, "%d of 40 legitimate messages accepted" % ok
    files = [f for f in os.listdir(m.milterin) if not f.startswith(".")]
    assert len(files) == 40, files
    assert counts["tempfail"] >= 20 and counts["other"] == 0 and \
        counts["refused"] == 0, counts
    assert capture_pid(m) == before
    assert "restarting capture" not in m.stderr()
