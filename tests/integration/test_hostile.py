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

from postfix import RawSMTP, build_dir, child_pids
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


# ---------------------------------------------------------------------------
# Milter Max Children: concurrent sessions


def open_session(m):
    c = RawMilter(m.port)
    c.negotiate(protocol=0)
    return c, c.ask(CONNECT, connect_data())


def test_session_cap_refuses_at_connect_and_frees_slots(msmilter_factory):
    m = msmilter_factory(settings={"Milter Max Children": "3"})
    held = []
    for _ in range(3):
        c, r = open_session(m)
        assert r[0] == R_CONTINUE, r
        held.append(c)
    c, r = open_session(m)
    assert r[0] == R_REPLYCODE and r[1].startswith(b"451 4.3.2 "), r
    # Refused: every later stage is answered TEMPFAIL, nothing spooled.
    assert is_tempfail(c.ask(HELO, cstr("x")))
    assert is_tempfail(c.ask(MAIL, cstr("<s@example.org>")))
    c.close()
    # Every way a session can end gives its slot back.
    held[0].send(MAIL, cstr("<s@example.org>"))     # EOF mid-transaction
    held[0].reply()
    held[0].close()
    held[1].ask(MAIL, cstr("<s@example.org>"))
    held[1].send(ABORT)
    held[1].send(QUIT)                              # QUIT
    assert held[1].closed(5)
    held[2].close()                                 # EOF after connect
    time.sleep(0.5)
    for _ in range(3):                              # a few rounds
        again = [open_session(m) for _ in range(3)]
        assert all(r[0] == R_CONTINUE for _, r in again), again
        for c, _ in again:
            c.close()
        time.sleep(0.3)
    legit_session_works(m)
    lines = [x for x in m.stderr().splitlines() if "sessions reached" in x]
    assert len(lines) == 1, lines


def first_session(port, timeout=10):
    """An SMTP session past MAIL FROM.  The Postfix fixture waits for
    smtpd's banner, and that connection is a milter session too; until
    capture has seen it close (slower under the sanitizers), it holds the
    one slot and MAIL gets 451: try again, briefly."""
    deadline = time.monotonic() + timeout
    while True:
        c = RawSMTP(port)
        assert c.cmd("EHLO one.example")[0] == 250
        code, text = c.cmd("MAIL FROM:<s@example.org>")
        if code == 250:
            return c
        c.close()
        assert code == 451 and time.monotonic() < deadline, (code, text)
        time.sleep(0.2)


def test_session_cap_through_postfix(msmilter_factory, postfix_factory):
    m = msmilter_factory(settings={"Milter Max Children": "1"})
    pf = postfix_factory(milter=m)
    with first_session(pf.smtp_port) as first:
        with RawSMTP(pf.smtp_port) as second:
            code, text = second.cmd("EHLO two.example")
            if code == 250:
                code, text = second.cmd("MAIL FROM:<s@example.org>")
            assert code == 451 and "4.3.2" in text, (code, text)
        assert first.cmd("RCPT TO:<r@example.com>")[0] == 250
        assert first.cmd("DATA")[0] == 354
        first.send(b"Subject: one\r\n\r\nbody\r\n")
        code, text = first.cmd(".")
        assert code == 250, text
    # The slot is free again once the first session ends.
    time.sleep(0.5)
    with RawSMTP(pf.smtp_port) as third:
        code, text = third.message("s@example.org", ["r@example.com"],
                                   b"Subject: three\r\n\r\nbody\r\n")
        assert code == 250, text


# ---------------------------------------------------------------------------
# Milter Max Envelope Size and address lengths, through a real Postfix


def vm_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for %d" % (field, pid))


def pipelined_rcpts(c, lines, batch=100):
    """Send RCPT lines in pipelined batches; returns the replies."""
    replies = []
    for i in range(0, len(lines), batch):
        c.send(b"".join(x + b"\r\n" for x in lines[i:i + batch]))
        for _ in lines[i:i + batch]:
            replies.append(c.reply())
    return replies


# Postfix's own limits would stop the attack before capture sees it: let
# it through (its default smtpd_hard_error_limit of 20 would also hang up
# after twenty 452 replies).
BIG_POSTFIX = {"smtpd_recipient_limit": "5000",
               "line_length_limit": "65536",
               "message_size_limit": "0",
               "smtpd_soft_error_limit": "5000",
               "smtpd_hard_error_limit": "5000",
               "smtpd_error_sleep_time": "0"}


# The attack as found (30 KB ORCPTs: refused by the DSN check, RFC 3461
# allows 500), and ORCPTs of legal length that cross the envelope budget.
@pytest.mark.parametrize("orcpt_len,budget,lo,hi,refusal", [
    (30 * 1024, None, 0, 0, "501 5.5.4 DSN parameters refused"),
    (480, "256k", 100, 1000, "452 4.5.3 Too many recipients"),
])
def test_envelope_budget_2000_rcpts_of_30k_orcpt(msmilter_factory,
                                                 postfix_factory, orcpt_len,
                                                 budget, lo, hi, refusal):
    m = msmilter_factory(settings={"Milter Max Envelope Size": budget}
                         if budget else None)
    pf = postfix_factory(milter=m, main_cf=BIG_POSTFIX)
    with RawSMTP(pf.smtp_port) as c:          # warm up: threads, channel
        assert c.message("s@example.org", ["a@example.com"],
                         b"Subject: warm\r\n\r\nx\r\n")[0] == 250
    pid = capture_pid(m)
    rss0, hwm0 = vm_kb(pid, "VmRSS"), vm_kb(pid, "VmHWM")
    orcpt = b"rfc822;" + b"x" * (orcpt_len - 20) + b"@example.com"
    lines = [b"RCPT TO:<r%d@example.com> ORCPT=%s" % (i, orcpt)
             for i in range(2000)]
    with RawSMTP(pf.smtp_port, timeout=120) as c:
        assert c.cmd("EHLO attacker.example")[0] == 250
        assert c.cmd("MAIL FROM:<s@example.org>")[0] == 250
        replies = pipelined_rcpts(c, lines)
        ok = sum(1 for code, _ in replies if code == 250)
        refused = [t for code, t in replies if code != 250]
        assert lo <= ok <= hi, (ok, refused[:3])
        assert all(t.startswith(refusal) for t in refused), set(refused)
        if ok == 0:
            assert c.cmd("RSET")[0] == 250
        else:
            assert c.cmd("DATA")[0] == 354
            c.send(b"Subject: big envelope\r\n\r\nbody\r\n")
            code, text = c.cmd(".")
            assert code == 250, text
    rss1, hwm1 = vm_kb(pid, "VmRSS"), vm_kb(pid, "VmHWM")
    print("capture VmRSS %d -> %d kB, VmHWM %d -> %d kB, %d recipients "
          "kept" % (rss0, rss1, hwm0, hwm1, ok))
    assert hwm1 - hwm0 < 8192, (hwm0, hwm1)
    assert capture_pid(m) == pid
    # What was kept went to the queue file; the rest is the client's to
    # send again in a new transaction, which starts with a fresh budget.
    files = sorted(os.listdir(m.milterin))
    assert len(files) == (2 if ok else 1), files
    if ok == 0:
        return
    with RawSMTP(pf.smtp_port, timeout=120) as c:
        assert c.cmd("EHLO attacker.example")[0] == 250
        assert c.cmd("MAIL FROM:<s@example.org>")[0] == 250
        replies = pipelined_rcpts(c, lines[ok:ok + 10])
        assert all(code == 250 for code, _ in replies), replies


def test_1000_ordinary_recipients_fit_the_default_budget(stack):
    rcpts = ["recipient.number.%04d@some-domain.example.com" % i
             for i in range(1000)]
    lines = [b"RCPT TO:<%s> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;%s"
             % (r.encode(), r.encode()) for r in rcpts]
    with RawSMTP(stack.pf.smtp_port, timeout=120) as c:
        assert c.cmd("EHLO t")[0] == 250
        assert c.cmd("MAIL FROM:<s@example.org>")[0] == 250
        replies = pipelined_rcpts(c, lines)
        assert all(code == 250 for code, _ in replies), \
            [t for code, t in replies if code != 250][:3]
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: many\r\n\r\nbody\r\n")
        code, text = c.cmd(".")
        assert code == 250, text


def test_overlong_addresses_refused(stack):
    local = "l" * 250
    with RawSMTP(stack.pf.smtp_port) as c:
        assert c.cmd("EHLO t")[0] == 250
        code, text = c.cmd("MAIL FROM:<%s@example.org>" % local)
        assert code == 553 and text.startswith("553 5.1.7 "), text
        # 254 octets between the brackets: the longest path allowed.
        ok = "k" * (254 - len("@example.org"))
        assert c.cmd("MAIL FROM:<%s@example.org>" % ok)[0] == 250
        code, text = c.cmd("RCPT TO:<%s@example.com>" % local)
        assert code == 553 and text.startswith("553 5.1.3 "), text
        assert c.cmd("RCPT TO:<r@example.com>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: x\r\n\r\nbody\r\n")
        code, text = c.cmd(".")
        assert code == 250, text
    files = os.listdir(stack.m.milterin)
    assert len(files) == 1
    with open(os.path.join(stack.m.milterin, files[0]), "rb") as f:
        head = f.read(4096)
    assert head.startswith(b"S<%s@example.org>\nO<r@example.com>\n"
                           % ok.encode()), head[:100]


# ---------------------------------------------------------------------------
# Milter Idle Timeout


def test_idle_session_closed_and_slot_freed(msmilter_factory):
    m = msmilter_factory(settings={"Milter Idle Timeout": "2",
                                   "Milter Max Children": "2"})
    idle, r = open_session(m)
    assert r[0] == R_CONTINUE
    busy, r = open_session(m)
    assert r[0] == R_CONTINUE
    t0 = time.monotonic()
    for _ in range(5):                  # busy talks every second
        time.sleep(1)
        assert busy.ask(HELO, cstr("busy.example"))[0] == R_CONTINUE
    assert idle.closed(0.1), "idle session still open after %.1f s" % (
        time.monotonic() - t0)
    # Its slot is free again: a new session gets in beside busy.
    again, r = open_session(m)
    assert r[0] == R_CONTINUE, r
    again.close()
    busy.close()
    assert re.search(r"closed 1 milter session idle for 2 s", m.stderr())


# ---------------------------------------------------------------------------
# RLIMIT_NOFILE sized for Milter Max Children


def nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no open files limit for %d" % pid)


def wrapped(test_base, name, *prefix):
    """A script that starts build/msmilter under prefix (prlimit, setpriv)."""
    path = os.path.join(test_base, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexec %s %s \"$@\"\n"
                % (" ".join(prefix), os.path.join(build_dir(), "msmilter")))
    os.chmod(path, 0o755)
    return path


def test_nofile_raised_for_the_session_cap(msmilter_factory, test_base):
    # A low soft limit under a high hard one (raising the hard limit needs
    # CAP_SYS_RESOURCE, which not every test machine gives root).
    binary = wrapped(test_base, "low-nofile", "prlimit",
                     "--nofile=1024:16384")
    m = msmilter_factory(settings={"Milter Max Children": "3000"},
                         binary=binary,
                         env={"MSMILTER_LIBEXECDIR": build_dir()})
    pids = child_pids(m.pid)
    for name in ("capture", "spooler"):
        soft, hard = nofile(pids[name])
        assert soft >= 2 * 3000 + 64 and hard >= soft, (name, soft, hard)
    assert "hard limit" not in m.stderr()


def test_nofile_hard_limit_too_low_is_logged(msmilter_factory, test_base):
    binary = wrapped(test_base, "no-sys-resource", "prlimit",
                     "--nofile=512:512", "setpriv",
                     "--bounding-set=-sys_resource")
    m = msmilter_factory(settings={"Milter Max Children": "3000"},
                         binary=binary,
                         env={"MSMILTER_LIBEXECDIR": build_dir()})
    assert re.search(r"open files hard limit 512 is below the 6064 that "
                     r"Milter Max Children = 3000 needs", m.stderr())
    assert nofile(child_pids(m.pid)["capture"]) == (512, 512)
    legit_session_works(m)


def test_idle_session_closed_on_unix_socket(msmilter_factory, test_base):
    import subprocess
    path = os.path.join(test_base, "msmilter.sock")
    m = msmilter_factory(start=False, settings={
        "Milter Socket": path, "Milter Idle Timeout": "1"})
    m.write_config()
    errf = open(m.stderr_path, "ab")
    m._errf = errf
    m.proc = subprocess.Popen([m.binary, "-F", "-f", m.conf],
                              stdout=errf, stderr=errf)
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    c = RawMilter(path)
    c.negotiate(protocol=0)
    assert c.ask(CONNECT, connect_data())[0] == R_CONTINUE
    assert c.closed(5), m.stderr()
    assert "cannot find libmilter's session socket" not in m.stderr()
