"""The commit pool (spooler/commit.c): many sessions committing at once,
and faults injected in the middle of a commit with the test-hooks build
(common/testhook.h, TESTHOOK_STALL_* and TESTHOOK_FAIL_*).  The rule
under test, from DESIGN.md: either the complete file and a 250 (DISCARD),
or no file and a 4xx."""

import ctypes
import os
import re
import signal
import subprocess
import threading

import pytest

from postfix import RawSMTP
from queuefile import parse, real_files, temp_files
from testhooks import ACTION
from test_capture import child_pids, queued_id, wait_for, xclient
from test_confinement import hooks_binary

(HOOK_STALL_COMMIT, HOOK_STALL_DIRSYNC, HOOK_FAIL_FSYNC, HOOK_FAIL_DIRSYNC,
 HOOK_FAIL_WRITEBACK) = (
    ACTION[a] for a in ("STALL_COMMIT", "STALL_DIRSYNC", "FAIL_FSYNC",
                        "FAIL_DIRSYNC", "FAIL_WRITEBACK"))

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.sigqueue.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]

SMTP_SOURCE = "/usr/sbin/smtp-source"


def hook(m, action, value):
    """Set a fault in the spooler and wait until it says so."""
    pid = child_pids(m.pid)["spooler"]
    before = m.stderr().count("fault %d set to %d" % (action, value))
    if LIBC.sigqueue(pid, signal.SIGRTMIN + action, value) != 0:
        raise OSError(ctypes.get_errno(), "sigqueue")
    wait_for(lambda: m.stderr().count("fault %d set to %d" % (action, value))
             > before, 10, "the spooler to set fault %d" % action)


def stats(m):
    """The spooler's stats line (SIGUSR1): committed, failed, withdrawn."""
    before = m.stderr().count("stats: ")
    os.kill(child_pids(m.pid)["spooler"], signal.SIGUSR1)
    wait_for(lambda: m.stderr().count("stats: ") > before, 10, "stats line")
    line = m.stderr()[m.stderr().rindex("stats: "):].split("\n", 1)[0]
    r = re.match(r"stats: (\d+) committed, (\d+) failed, (\d+) withdrawn",
                 line)
    return tuple(int(x) for x in r.groups())


def body(i):
    return b"Subject: c%d\r\n\r\n" % i + b"line %d of the body\r\n" % i * 40


def send(port, i, results):
    """One message on its own connection; (code, text, i) into results."""
    try:
        with RawSMTP(port, timeout=60) as c:
            xclient(c)
            code, text = c.message("s%d@example.org" % i, ["a@example.com"],
                                   body(i), helo="helo.example.net")
    except Exception as e:          # Postfix may drop the session
        code, text = 421, str(e)
    results.append((code, text, i))


def send_all(port, n):
    results = []
    threads = [threading.Thread(target=send, args=(port, i, results))
               for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def join(threads):
    for t in threads:
        t.join(120)
        assert not t.is_alive()


def check_outcome(m, results):
    """Every 250 has its complete file; a 4xx may leave a complete file
    (a duplicate, after a kill) but never a partial one; no temp files."""
    files = real_files(m.milterin)
    assert temp_files(m.milterin) == []
    by_sender = {}
    for name in files:
        q = parse(os.path.join(m.milterin, name))
        i = int(re.fullmatch(r"s(\d+)@example.org", q.sender).group(1))
        assert q.message.endswith(b"\n\n" + body(i).split(b"\r\n\r\n", 1)[1]
                                  .replace(b"\r\n", b"\n")), name
        assert i not in by_sender, "two files for message %d" % i
        by_sender[i] = name
    for code, text, i in results:
        if code == 250:
            assert by_sender.get(i) == queued_id(text), (i, text)
        else:
            assert code // 100 == 4, text
    return by_sender


def test_many_sessions_commit_exactly_once(stack):
    """50 smtp-source sessions at once through a private Postfix: every
    message lands in milterin once, complete, and no temp file stays."""
    n = 500
    p = subprocess.run([SMTP_SOURCE, "-s", "50", "-m", str(n), "-l", "4096",
                        "-f", "load@example.org", "-t", "a@example.com",
                        "127.0.0.1:%d" % stack.pf.smtp_port],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=600)
    assert p.returncode == 0, p.stdout
    wait_for(lambda: len(real_files(stack.m.milterin)) >= n, 20,
             "every file")
    files = real_files(stack.m.milterin)
    assert len(files) == n
    assert temp_files(stack.m.milterin) == []
    for name in files:
        q = parse(os.path.join(stack.m.milterin, name))
        assert q.sender == "load@example.org" and q.rcpts == ["a@example.com"]
        assert len(q.message) > 4000, name
    assert stats(stack.m) == (n, 0, 0)
    # Postfix discarded each one: nothing queued, nothing delivered.
    stack.pf.wait_queue_empty(timeout=20)
    assert stack.pf.sink_messages() == []
    assert len(re.findall(r"milter-discard", stack.pf.maillog())) == n


def hooked_stack(msmilter_factory, postfix_factory, settings=None):
    m = msmilter_factory(binary=hooks_binary(), settings=settings)
    pf = postfix_factory(milter=m)
    return m, pf


@pytest.mark.parametrize("fault, line", [
    (HOOK_FAIL_FSYNC, "Input/output error"),
    (HOOK_FAIL_WRITEBACK, "out: Input/output error")],
    ids=["fsync", "write-back wait"])
def test_commit_fault_gives_451_and_no_file(msmilter_factory,
                                            postfix_factory, fault, line):
    """A file fsync fails, or the wait for a commit round's write-back
    before it (spooler/commit.c): 451, no file, and the next message is
    committed.  The wait's error matters on its own: the kernel reports
    a write-back error there, counts it as seen, and the fsync after it
    returns 0."""
    m, pf = hooked_stack(msmilter_factory, postfix_factory)
    hook(m, fault, 1)
    res = []
    send(pf.smtp_port, 1, res)
    code, text, _ = res[0]
    assert code == 451 and "4.3.0" in text, text
    assert line in m.logged(line)
    wait_for(lambda: os.listdir(m.milterin) == [], 10, "no file")
    # The fault was used up: the next message is committed.
    send(pf.smtp_port, 2, res)
    assert res[1][0] == 250, res[1]
    check_outcome(m, res)
    assert len(real_files(m.milterin)) == 1
    assert stats(m) == (1, 1, 0)
    pf.wait_queue_empty(timeout=10)
    assert pf.sink_messages() == []


def test_directory_fsync_failure_removes_the_renamed_files(
        msmilter_factory, postfix_factory):
    """The directory fsync fails for a group of renamed files: each of
    them is removed again and its client gets 451; the rest get 250."""
    m, pf = hooked_stack(msmilter_factory, postfix_factory)
    hook(m, HOOK_STALL_DIRSYNC, 500)    # let a group gather
    hook(m, HOOK_FAIL_DIRSYNC, 1)
    threads, res = send_all(pf.smtp_port, 8)
    join(threads)
    hook(m, HOOK_STALL_DIRSYNC, 0)
    codes = sorted(r[0] for r in res)
    assert 451 in codes, res
    assert all(c in (250, 451) for c in codes), res
    by_sender = check_outcome(m, res)
    assert len(by_sender) == codes.count(250)
    committed, failed, withdrawn = stats(m)
    assert (committed, failed, withdrawn) == (codes.count(250),
                                              codes.count(451), 0)


def test_session_closed_mid_commit_leaves_no_file(msmilter_factory,
                                                  postfix_factory):
    """Capture gives up waiting (Milter Commit Timeout, 1 s) while the
    spooler's commit thread is stalled: the client gets 451, and the file
    the commit then completes is removed again."""
    m, pf = hooked_stack(msmilter_factory, postfix_factory,
                         {"Milter Commit Timeout": "1"})
    gave_up = "capture gave up while the file was committed"
    spooler = child_pids(m.pid)["spooler"]
    for n, action in enumerate((HOOK_STALL_COMMIT, HOOK_STALL_DIRSYNC)):
        hook(m, action, 3000)
        res = []
        send(pf.smtp_port, action, res)
        code, text, _ = res[0]
        assert code == 451 and "4.3.0" in text, text
        wait_for(lambda: m.stderr().count(gave_up) == n + 1, 10,
                 "the spooler to withdraw the file")
        hook(m, action, 0)
        wait_for(lambda: os.listdir(m.milterin) == [], 10, "no file")
        assert stats(m)[2] == n + 1
        assert child_pids(m.pid)["spooler"] == spooler
        res = []
        send(pf.smtp_port, 100 + action, res)
        assert res[0][0] == 250, res
        check_outcome(m, res)
        for name in real_files(m.milterin):
            os.unlink(os.path.join(m.milterin, name))
    assert "killed by signal" not in m.stderr()
    pf.wait_queue_empty(timeout=10)
    assert pf.sink_messages() == []
