"""Confinement by path (Landlock), proved by doing what it forbids.

The test-hooks build (common/testhook.h) makes a child try, on a signal,
a call its seccomp filter lets through: the spooler creates a file beside
milterin, the relay reads /etc/passwd or connects to a port that is not
the MTA's.  The child logs the kernel's answer.  Each probe runs twice:
with Landlock (refused, although the uid could) and with Milter Landlock
= no (allowed), so the probe itself is shown to work."""

import ctypes
import os
import re
import signal
import socket

import pytest

from postfix import build_dir, free_port
from test_confinement import (hooks_binary, running_children, send_ok,
                              wait_for)
from queuefile import real_files
from testhooks import ACTION

HOOK_CREATE_OUTSIDE, HOOK_READ_OUTSIDE, HOOK_CONNECT_PORT = (
    ACTION[a] for a in ("CREATE_OUTSIDE", "READ_OUTSIDE", "CONNECT_PORT"))

LIBC = ctypes.CDLL(None, use_errno=True)
# union sigval is passed in one register on x86-64, like a pointer.
LIBC.sigqueue.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]


def landlock_abi():
    nr_create_ruleset = 444     # the same number on every architecture
    abi = LIBC.syscall(nr_create_ruleset, None, 0, 1)
    return abi if abi > 0 else 0


needs_landlock = pytest.mark.skipif(landlock_abi() == 0,
                                    reason="this kernel has no Landlock")


def hook(m, child, action, value=0):
    pid = running_children(m)[child]
    if LIBC.sigqueue(pid, signal.SIGRTMIN + action, value) != 0:
        raise OSError(ctypes.get_errno(), "sigqueue")
    return pid


def hook_result(m, child, what):
    pat = r"%s\[\d+\]: testhook: %s: (.*)" % (child, re.escape(what))
    return wait_for(lambda: re.search(pat, m.stderr()), 10,
                    "the hook's log line").group(1)


@pytest.fixture(params=["yes", "no"])
def landlocked(request, msmilter_factory, postfix_factory):
    m = msmilter_factory(binary=hooks_binary(),
                         settings={"Milter Landlock": request.param})
    pf = postfix_factory(milter=m)
    return m, pf, request.param == "yes"


@needs_landlock
def test_start_logs_abi_per_child(stack):
    log = stack.m.stderr()
    abi = landlock_abi()
    assert "landlock: ABI %d, file system and TCP rules" % abi in log, log
    wait_for(lambda: all(re.search(r"%s\[\d+\]: landlock: ABI %d" % (c, abi),
                                   stack.m.stderr())
                         for c in ("capture", "spooler", "relay")), 10,
             "a landlock line from every child")
    log = stack.m.stderr()
    assert re.search(r"capture\[\d+\]: landlock: .*: no file system access; no "
                     r"TCP", log), log
    assert re.search(r"spooler\[\d+\]: landlock: .*: beneath %s; no TCP"
                     % re.escape(stack.m.milterin), log), log
    assert re.search(r"relay\[\d+\]: landlock: .*: beneath %s and .*; TCP: "
                     r"connect to port \d+ only"
                     % re.escape(stack.m.milterout), log), log


@needs_landlock
def test_spooler_cannot_create_outside_milterin(landlocked):
    m, pf, on = landlocked
    probe = m.milterin + "-landlock-probe"
    # The uid could: the directory beside milterin is open to everyone.
    os.chmod(os.path.dirname(m.milterin), 0o1777)
    try:
        hook(m, "spooler", HOOK_CREATE_OUTSIDE)
        got = hook_result(m, "spooler", "create " + probe)
    finally:
        os.chmod(os.path.dirname(m.milterin), 0o755)
    if on:
        assert got == "Permission denied", got
        assert not os.path.exists(probe)
    else:
        assert got == "allowed", got
        assert os.path.exists(probe)
        os.unlink(probe)
    # Mail still flows into milterin.
    qid = send_ok(pf, "after the probe")
    assert qid in real_files(m.milterin)


@needs_landlock
def test_relay_cannot_read_outside_its_directories(landlocked):
    m, pf, on = landlocked
    assert os.stat("/etc/passwd").st_mode & 0o004     # the uid could
    hook(m, "relay", HOOK_READ_OUTSIDE)
    got = hook_result(m, "relay", "read /etc/passwd")
    assert got == ("Permission denied" if on else "allowed"), got


@needs_landlock
def test_relay_cannot_connect_to_another_port(landlocked):
    m, pf, on = landlocked
    port = free_port()
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", port))
    lsn.listen(4)
    lsn.settimeout(2)
    try:
        hook(m, "relay", HOOK_CONNECT_PORT, port)
        got = hook_result(m, "relay", "connect 127.0.0.1:%d" % port)
        if on:
            assert got == "Permission denied", got
            with pytest.raises(socket.timeout):
                lsn.accept()
        else:
            assert got == "allowed", got
            lsn.accept()[0].close()
    finally:
        lsn.close()


def no_landlock_wrapper():
    w = os.path.join(build_dir(), "tests", "no-landlock")
    if not os.access(w, os.X_OK):
        pytest.fail("%s not built (make %s)" % (w, w))
    return w


def test_kernel_without_landlock_still_runs_loudly(test_base,
                                                   msmilter_factory,
                                                   postfix_factory):
    # tests/no-landlock.c makes the landlock system calls fail with ENOSYS
    # for msmilter and its children, as on a kernel built without it.
    wrapper = os.path.join(test_base, "msmilter-no-landlock")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec %s %s \"$@\"\n"
                % (no_landlock_wrapper(),
                   os.path.join(build_dir(), "msmilter")))
    os.chmod(wrapper, 0o755)
    m = msmilter_factory(binary=wrapper)
    log = wait_for(lambda: (lambda s: s if all(
        re.search(r"%s\[\d+\]: landlock: NOT AVAILABLE" % c, s)
        for c in ("capture", "spooler", "relay")) else None)(m.stderr()),
        10, "a loud line from every child")
    assert "landlock: NOT AVAILABLE in this kernel" in log
    pf = postfix_factory(milter=m)
    qid = send_ok(pf, "no landlock")
    assert real_files(m.milterin) == [qid]
