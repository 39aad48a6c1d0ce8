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
import time

import pytest

from postfix import child_pids
from test_confinement import hooks_binary, wait_for
from test_relay import RelayStack, queue_file

HOOK_STOP_AT = 9
POINTS = {"recorded": 1, "requeued": 2, "done": 3, "removed": 4}

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


def kill_at(s, point):
    """Arm the point, let the test drop a file, stop there, kill -9.
    Returns a function that does the dropping and the killing."""
    pid = relay_pid(s.m)
    if LIBC.sigqueue(pid, signal.SIGRTMIN + HOOK_STOP_AT,
                     POINTS[point]) != 0:
        raise OSError(ctypes.get_errno(), "sigqueue")

    def stopped():
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"

    def then(drop):
        drop()
        wait_for(lambda: re.search(r"relay\[\d+\]: testhook: stopped at %s"
                                   % point, s.m.stderr()), 20,
                 "the relay at %s" % point)
        wait_for(stopped, 10, "the relay to stop")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: child_pids(s.m.pid)["relay"] not in (None, pid),
                 30, "a new relay")
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
