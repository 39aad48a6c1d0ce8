"""The relay killed (kill -9) at each step of a delivery that the MTA
partly accepts, partly refuses for good and partly defers: after the
restart every recipient is delivered exactly once or requeued exactly
once, and nothing of ours is left in milterout.

The test-hooks build (common/testhook.h) stops the relay at a named point
when armed (SIGRTMIN+TESTHOOK_STOP_AT with the point's number); the test
waits for it to stop there and kills it with SIGKILL."""

import ctypes
import os
import re
import signal
import stat
import time

import pytest

from postfix import child_pids
from test_confinement import hooks_binary, wait_for
from test_relay import RelayStack, queue_file
from testhooks import ACTION, point

HOOK_STOP_AT = ACTION["STOP_AT"]
POINTS = {p: point(p) for p in ("recorded", "requeued", "done", "removed",
                                "accepted", "requeue sent", "sending")}

LIBC = ctypes.CDLL(None, use_errno=True)
# union sigval is passed in one register on x86-64, like a pointer.
LIBC.sigqueue.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]

NAME = "9A1B2C3D4.KILL1"
REFUSED = "nobody@example.com"
DEFERRED = "later@example.com"


def maps(base, defer):
    path = os.path.join(base, "rcpt_access")
    with open(path, "w") as f:
        f.write("%s REJECT 5.1.1 no such user here\n" % REFUSED)
        if defer:
            f.write("%s 450 4.2.0 not now\n" % DEFERRED)
    with open(path + ".headers", "w") as f:
        f.write("/^Subject: never matches this/ REJECT\n")
    return path


def stack(msmilter_factory, postfix_factory, base, defer=False):
    def factory(settings=None):
        return msmilter_factory(settings=settings, binary=hooks_binary())
    return RelayStack(factory, postfix_factory, reject_file=maps(base, defer),
                      settings={"Milter Relay Scan Interval": "1"})


def relay_pid(m):
    return wait_for(lambda: child_pids(m.pid)["relay"], 20, "the relay")


def stop_at(s, point, drop):
    """Arm the point, drop, and wait for the relay to stop there (SIGSTOP
    by the test hook).  Returns its pid."""
    pid = relay_pid(s.m)
    if LIBC.sigqueue(pid, signal.SIGRTMIN + HOOK_STOP_AT,
                     POINTS[point]) != 0:
        raise OSError(ctypes.get_errno(), "sigqueue")

    def stopped():
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"

    drop()
    wait_for(lambda: re.search(r"relay\[\d+\]: testhook: stopped at %s\n"
                               % point, s.m.stderr()), 20,
             "the relay at %s" % point)
    wait_for(stopped, 10, "the relay to stop")
    return pid


def kill_relay(s, pid):
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: child_pids(s.m.pid)["relay"] not in (None, pid),
             30, "a new relay")


def kill_at(s, point):
    """Returns a function that drops (its argument), waits for the relay
    to stop at the point and kills it (-9)."""
    def then(drop):
        kill_relay(s, stop_at(s, point, drop))
    return then


def requeued(s):
    """Queue files the spooler wrote into milterin (the requeues)."""
    out = []
    for n in sorted(os.listdir(s.m.milterin)):
        if re.fullmatch(r"\w+", n):
            with open(os.path.join(s.m.milterin, n), "rb") as f:
                out.append(f.read())
    return out


def delivered(s):
    return sorted(r for m in s.pf.sink_messages() for r in m.recipients)


def settle(s, want_delivered):
    s.wait_gone(NAME, timeout=40)
    wait_for(lambda: set(delivered(s)) >= set(want_delivered), 20,
             "the deliveries")
    time.sleep(3)                       # several rescans and retries


@pytest.mark.parametrize("point", ["recorded", "requeued", "done",
                                   "removed"])
def test_killed_between_steps(msmilter_factory, postfix_factory, test_base,
                              point):
    s = stack(msmilter_factory, postfix_factory, test_base)
    data = queue_file("alice@example.org", ["bob@example.com", REFUSED,
                                            "carol@example.com"],
                      b"Subject: killed\n\nhello\n")
    kill_at(s, point)(lambda: s.drop(NAME, data))
    settle(s, ["bob@example.com", "carol@example.com"])
    assert delivered(s) == ["bob@example.com", "carol@example.com"]
    rq = requeued(s)
    assert len(rq) == 1, rq                     # one rejection, one requeue
    assert re.findall(rb"^O<(.*)>$", rq[0], re.M) == [REFUSED.encode()]
    assert b"\nX-Test-MailScanner-Relay-Reject: " in rq[0]
    assert os.listdir(s.m.milterout) == []      # no progress file left
    assert len(re.findall(r"relay\[\d+\]: %s: .*file=%s, status=requeued "
                          % (NAME.split(".")[0], re.escape(NAME)),
                          s.m.stderr())) <= 1


def test_killed_after_a_partial_delivery(msmilter_factory, postfix_factory,
                                         test_base):
    """One recipient deferred: the relay dies after recording the others;
    the restart sends only the deferred one, once, when the MTA takes it."""
    s = stack(msmilter_factory, postfix_factory, test_base, defer=True)
    data = queue_file("alice@example.org", ["bob@example.com", DEFERRED],
                      b"Subject: partial\n\nhello\n")
    kill_at(s, "recorded")(lambda: s.drop(NAME, data))
    wait_for(lambda: re.search(r"relay\[\d+\]: %s: .*file=%s, "
                               r"status=deferred" % (NAME.split(".")[0],
                                                     re.escape(NAME)),
                               s.m.stderr().split("stopped at recorded")[-1]),
             30, "the deferral after the restart")
    assert delivered(s) == ["bob@example.com"]
    maps(test_base, defer=False)
    s.pf.reload()
    settle(s, ["bob@example.com", DEFERRED])
    assert delivered(s) == ["bob@example.com", DEFERRED]
    assert requeued(s) == []
    assert os.listdir(s.m.milterout) == []


@pytest.mark.parametrize("point", ["accepted", "recorded"])
def test_killed_right_after_a_whole_delivery(msmilter_factory,
                                             postfix_factory, test_base,
                                             point):
    """One recipient, taken at once: the 250 is recorded before anything
    else (the file removed on the spot), so a relay killed right after it
    sends nothing again.  It used to log, audit and only then unlink, with
    no progress record: its successor delivered the file a second time."""
    s = stack(msmilter_factory, postfix_factory, test_base)
    data = queue_file("alice@example.org", ["bob@example.com"],
                      b"Subject: whole\n\nhello\n")
    kill_at(s, point)(lambda: s.drop(NAME, data))
    s.wait_gone(NAME)
    wait_for(lambda: delivered(s), 20, "the delivery")
    time.sleep(3)                       # several rescans and retries
    assert delivered(s) == ["bob@example.com"]
    assert os.listdir(s.m.milterout) == []


def test_readonly_milterout_mid_delivery(msmilter_factory, postfix_factory,
                                         test_base):
    """milterout turns read-only between the relay's check and the MTA's
    250: the file cannot be removed, nor a progress line written.  It is
    marked delivered (mode +t) and said once; the relay retries only the
    unlink, and so does its successor after a kill -9: one delivery."""
    s = stack(msmilter_factory, postfix_factory, test_base)
    data = queue_file("alice@example.org", ["bob@example.com"],
                      b"Subject: read-only\n\nhello\n")
    path = os.path.join(s.m.milterout, NAME)
    said = "%s: delivered but cannot unlink it" % NAME
    pid = stop_at(s, "sending", lambda: s.drop(NAME, data))
    os.chmod(s.m.milterout, 0o550)
    try:
        os.kill(pid, signal.SIGCONT)
        wait_for(lambda: said in s.m.stderr(), 20, "the unlink failure")
        assert os.stat(path).st_mode & stat.S_ISVTX
        time.sleep(4)                   # retries: Min/Max Retry 1/2 s
        assert delivered(s) == ["bob@example.com"]
        assert s.m.stderr().count(said) == 1        # said once
        kill_relay(s, pid)
        wait_for(lambda: s.m.stderr().count(said) == 2, 20,
                 "the new relay's unlink failure")
        time.sleep(3)
        assert delivered(s) == ["bob@example.com"]
    finally:
        os.chmod(s.m.milterout, 0o750)
    s.wait_gone(NAME)
    time.sleep(2)
    assert delivered(s) == ["bob@example.com"]
    assert os.listdir(s.m.milterout) == []


def test_spooler_killed_during_a_requeue(msmilter_factory, postfix_factory,
                                         test_base):
    """The spooler dies while the relay waits for its answer to a requeue:
    the relay stays up (it used to exit, and every delivery it had under
    way was then SMTP's window), waits for the new spooler's channel and
    asks again: one delivery, one requeue."""
    s = stack(msmilter_factory, postfix_factory, test_base)
    data = queue_file("alice@example.org", ["bob@example.com", REFUSED],
                      b"Subject: requeue\n\nhello\n")
    spooler = wait_for(lambda: child_pids(s.m.pid)["spooler"], 20,
                       "the spooler")
    os.kill(spooler, signal.SIGSTOP)
    try:
        relay = stop_at(s, "requeue sent", lambda: s.drop(NAME, data))
    finally:
        os.kill(spooler, signal.SIGKILL)
    os.kill(relay, signal.SIGCONT)
    wait_for(lambda: "file=%s, the spooler's channel broke" % NAME in
             s.m.stderr(), 20, "the relay to see the channel break")
    settle(s, ["bob@example.com"])
    assert child_pids(s.m.pid)["relay"] == relay        # still the same
    assert delivered(s) == ["bob@example.com"]
    rq = requeued(s)
    assert len(rq) == 1, rq
    assert re.findall(rb"^O<(.*)>$", rq[0], re.M) == [REFUSED.encode()]
    assert os.listdir(s.m.milterout) == []


def test_readonly_milterout_requeue_not_asked(msmilter_factory,
                                              postfix_factory, test_base):
    """milterout turns read-only mid-delivery of a file whose one recipient
    the MTA refuses: the requeue cannot be recorded, so the spooler is not
    asked (it used to be, and a relay killed after the spooler committed
    it and before the file was marked requeued it again after the
    restart, under a token nobody knew).  Killed anyway, the relay's
    successor requeues it once milterout is writable: one requeue."""
    s = stack(msmilter_factory, postfix_factory, test_base)
    data = queue_file("alice@example.org", [REFUSED],
                      b"Subject: refused\n\nhello\n")
    pid = stop_at(s, "sending", lambda: s.drop(NAME, data))
    os.chmod(s.m.milterout, 0o550)
    try:
        # Stop the relay again if it asks the spooler after all.
        if LIBC.sigqueue(pid, signal.SIGRTMIN + HOOK_STOP_AT,
                         POINTS["requeued"]) != 0:
            raise OSError(ctypes.get_errno(), "sigqueue")
        os.kill(pid, signal.SIGCONT)
        wait_for(lambda: re.search(r"relay\[\d+\]: (testhook: stopped at "
                                   r"requeued|.*file=%s, status=deferred)"
                                   % re.escape(NAME), s.m.stderr()), 20,
                 "the deferral (or the requeue)")
        kill_relay(s, pid)
    finally:
        os.chmod(s.m.milterout, 0o750)
    s.wait_gone(NAME, timeout=40)
    time.sleep(3)                       # several rescans and retries
    rq = requeued(s)
    assert len(rq) == 1, rq
    assert re.findall(rb"^O<(.*)>$", rq[0], re.M) == [REFUSED.encode()]
    assert delivered(s) == []
    assert os.listdir(s.m.milterout) == []
