"""Nothing lost: a message Postfix was told to DISCARD is complete in
milterin exactly once; every other path leaves no file and a 4xx."""

import os
import signal
import threading
import time

import pytest

from postfix import RawSMTP, reply_to
from queuefile import parse, real_files, temp_files
from test_capture import child_pids, queued_id, wait_for, xclient

BODY_LINE = b"0123456789" * 7 + b"abcdef\r\n"


def start_big_message(pf, lines):
    """Open a session and send DATA plus `lines` body lines, unfinished."""
    c = RawSMTP(pf.smtp_port, timeout=60)
    xclient(c)
    assert c.cmd("EHLO helo.example.net")[0] == 250
    assert c.cmd("MAIL FROM:<s@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<a@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: in flight\r\n\r\n" + BODY_LINE * lines)
    return c


def finish(c, lines=10):
    c.send(BODY_LINE * lines)
    return c.cmd(".")


def test_sigterm_lets_session_in_flight_finish(stack):
    c = start_big_message(stack.pf, 2000)
    wait_for(lambda: temp_files(stack.m.milterin) != [], 10,
             "temp file of the message in flight")
    stack.m.signal(signal.SIGTERM)
    wait_for(lambda: "stopping: no new transactions" in stack.m.stderr(), 10,
             "capture to stop listening")
    # A new transaction while draining is refused with a 4xx ...
    r = stack.pf.send(to=["b@example.com"], data=b"Subject: late\r\n\r\nx\r\n",
                      xclient_addr="192.0.2.26", xclient_name="late.example")
    assert (reply_to(r.transcript, "DATA") or "").startswith("451"), \
        r.transcript
    # ... while the one in flight completes and is committed.
    code, text = finish(c)
    c.close()
    assert code == 250, text
    assert len(real_files(stack.m.milterin)) == 1
    q = parse(os.path.join(stack.m.milterin, queued_id(text)))
    assert q.message.endswith(b"\n\n" + (BODY_LINE * 2010).replace(
        b"\r\n", b"\n"))
    assert stack.m.proc.wait(20) == 0
    assert temp_files(stack.m.milterin) == []
    assert stack.pf.sink_messages() == []


def test_spooler_killed_mid_body_leaves_no_file(stack):
    c = start_big_message(stack.pf, 2000)
    wait_for(lambda: temp_files(stack.m.milterin) != [], 10, "temp file")
    old = child_pids(stack.m.pid)["spooler"]
    os.kill(old, signal.SIGKILL)
    code, text = finish(c)
    c.close()
    assert code // 100 == 4, text
    # The restarted spooler removes what its predecessor left behind.
    wait_for(lambda: child_pids(stack.m.pid)["spooler"] not in (None, old),
             20, "spooler restart")
    wait_for(lambda: os.listdir(stack.m.milterin) == [], 10,
             "leftover temp file removal")
    stack.pf.wait_queue_empty(timeout=10)
    assert stack.pf.sink_messages() == []


def test_capture_killed_mid_body_leaves_no_file(stack):
    c = start_big_message(stack.pf, 2000)
    wait_for(lambda: temp_files(stack.m.milterin) != [], 10, "temp file")
    os.kill(child_pids(stack.m.pid)["capture"], signal.SIGKILL)
    try:
        code, text = finish(c)
    except Exception as e:          # Postfix may also drop the session
        code, text = 421, str(e)
    c.close()
    assert code // 100 == 4, text
    # The spooler sees the session channel close and removes the file.
    wait_for(lambda: os.listdir(stack.m.milterin) == [], 10,
             "temp file removal")
    stack.pf.wait_queue_empty(timeout=10)
    assert stack.pf.sink_messages() == []


def test_parallel_sessions_all_committed_once(stack):
    """20 sessions at once share group commits; every one lands once."""
    results = []

    def one(i):
        with RawSMTP(stack.pf.smtp_port, timeout=60) as c:
            xclient(c)
            for j in range(5):
                body = b"Subject: p%d-%d\r\n\r\nbody %d %d\r\n" % (i, j, i, j)
                code, text = c.message("s%d@example.org" % i,
                                       ["r%d@example.com" % j], body,
                                       helo="helo.example.net",
                                       ehlo=True if j == 0 else None)
                results.append((code, text, i, j))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 100
    ids = set()
    for code, text, i, j in results:
        assert code == 250, text
        qid = queued_id(text)
        q = parse(os.path.join(stack.m.milterin, qid))
        assert q.sender == "s%d@example.org" % i
        assert q.message.endswith(b"\n\nbody %d %d\n" % (i, j))
        ids.add(qid)
    assert sorted(ids) == real_files(stack.m.milterin)
    assert temp_files(stack.m.milterin) == []
    stack.pf.wait_queue_empty(timeout=20)
    assert stack.pf.sink_messages() == []


def test_work_group_makes_files_group_readable(msmilter_factory,
                                               postfix_factory):
    m = msmilter_factory(settings={"Incoming Work Group": "postdrop"})
    pf = postfix_factory(milter=m)
    r = pf.send(to=["a@example.com"], data=b"Subject: g\r\n\r\ng\r\n",
                xclient_addr="192.0.2.25", xclient_name="c.example.net")
    names = real_files(m.milterin)
    assert len(names) == 1, r.transcript
    st = os.stat(os.path.join(m.milterin, names[0]))
    import grp
    import pwd
    assert st.st_mode & 0o777 == 0o640
    assert st.st_uid == pwd.getpwnam("postfix").pw_uid
    assert st.st_gid == grp.getgrnam("postdrop").gr_gid


def test_full_disk_tempfails_and_leaves_nothing(msmilter_factory,
                                                postfix_factory, test_base):
    """milterin on a 256 KB tmpfs: a message that does not fit gets a 4xx
    and leaves no file; a small one still gets through; a spool that is
    full from the start refuses at DATA, before the body."""
    import grp
    import pwd
    import subprocess
    import pytest
    mnt = os.path.join(test_base, "small")
    os.makedirs(mnt)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0750",
                       "tmpfs", mnt]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        os.chown(mnt, pwd.getpwnam("postfix").pw_uid,
                 grp.getgrnam("postfix").gr_gid)
        m = msmilter_factory(settings={"Incoming Queue Dir": mnt})
        pf = postfix_factory(milter=m)
        c = start_big_message(pf, 8000)            # ~620 KB
        code, text = finish(c)
        c.close()
        assert code == 451 and "4.3.0" in text, text
        assert os.listdir(mnt) == []
        # The children's log lines reach the parent's stderr a moment later.
        wait_for(lambda: "No space left on device" in m.stderr(), 10,
                 "the spooler's log line")
        with RawSMTP(pf.smtp_port) as c:
            xclient(c)
            code, text = c.message("s@example.org", ["a@example.com"],
                                   b"Subject: small\r\n\r\nfits\r\n",
                                   helo="helo.example.net")
        assert code == 250, text
        small = queued_id(text)
        assert os.listdir(mnt) == [small]
        # Fill what is left, as a runaway log or queue would.
        fd = os.open(os.path.join(mnt, "filler.tmp"), os.O_WRONLY |
                     os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"x" * 4096) > 0:
                pass
        except OSError:
            pass
        os.close(fd)
        c = RawSMTP(pf.smtp_port)
        xclient(c)
        assert c.cmd("EHLO helo.example.net")[0] == 250
        assert c.cmd("MAIL FROM:<s@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<a@example.com>")[0] == 250
        code, text = c.cmd("DATA")
        c.close()
        assert code == 451, text                   # before the body
        assert sorted(os.listdir(mnt)) == sorted([small, "filler.tmp"])
        pf.wait_queue_empty(timeout=10)
        assert pf.sink_messages() == []
    finally:
        subprocess.run(["umount", "-l", mnt])


@pytest.mark.parametrize("stage", ["file fsync", "directory fsync"])
def test_spooler_killed_with_commits_in_flight(msmilter_factory,
                                               postfix_factory, stage):
    """kill -9 of the spooler while commits wait in its commit pool (held
    there by a test hook): every client gets a 4xx, and milterin
    keeps complete files or none, never a temp or partial file.  Killed
    before the directory fsync, the files already renamed stay:
    duplicates of what the clients will send again, never a loss."""
    from test_commit import (HOOK_STALL_COMMIT, HOOK_STALL_DIRSYNC,
                             check_outcome, hook, hooked_stack, join,
                             send_all)
    m, pf = hooked_stack(msmilter_factory, postfix_factory)
    before_fsync = stage == "file fsync"
    # Longer than ten sessions take to arrive on a loaded machine; the
    # kill ends it.
    hook(m, HOOK_STALL_COMMIT if before_fsync else HOOK_STALL_DIRSYNC, 60000)
    threads, res = send_all(pf.smtp_port, 10)
    # Most of them, not all: libmilter's worker pool may hold a session
    # back for seconds while every worker waits in an end of message.
    if before_fsync:
        wait_for(lambda: len(temp_files(m.milterin)) >= 6, 30,
                 "six temp files")
        time.sleep(1)       # their COMMIT records reach the pool
    else:
        # A commit round renames its files after the directory fsync
        # that covers the round before (spooler/commit.c): the first
        # renamed files wait in the stalled fsync, the rest behind it.
        wait_for(lambda: len(real_files(m.milterin)) >= 1 and
                 len(os.listdir(m.milterin)) >= 6, 30,
                 "a renamed file and six in all")
        time.sleep(1)       # their COMMIT records reach the pool
    old = child_pids(m.pid)["spooler"]
    os.kill(old, signal.SIGKILL)
    join(threads)
    # Those in the pool get 4xx; one that reached DATA only after the
    # restart is committed by the new spooler.
    assert all(r[0] // 100 in (2, 4) for r in res), res
    assert sum(r[0] // 100 == 4 for r in res) >= 6, res
    wait_for(lambda: child_pids(m.pid)["spooler"] not in (None, old),
             20, "spooler restart")
    wait_for(lambda: temp_files(m.milterin) == [], 10,
             "leftover temp file removal")
    kept = check_outcome(m, res)
    tempfailed = {i for code, _, i in res if code // 100 == 4}
    if before_fsync:
        assert not tempfailed & set(kept), kept
    else:
        renamed = tempfailed & set(kept)
        assert renamed, kept
        assert len(tempfailed) >= 6, res
    pf.wait_queue_empty(timeout=10)
    assert pf.sink_messages() == []
