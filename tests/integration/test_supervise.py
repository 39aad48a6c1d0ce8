"""Supervision (issue 15): children restarted at once when they had
served, throttled only when they die before they are ready; the parent
keeps serving while a child starts; start, stop and restart by the init
script leave exactly one msmilter."""

import os
import random
import re
import signal
import socket
import subprocess
import threading
import time

from load import Load, message_for, tags_in_dir, temp_files
from postfix import (PROJECT_ROOT, RawSMTP, SMTPError, build_dir,
                     child_pids)
from test_capture import wait_for

CHILDREN = ("capture", "spooler", "relay")

# How long the kill-every-second test runs: long enough for every child
# to die several times (MSMTEST_KILL_SECONDS to change it).
KILL_SECONDS = int(os.environ.get("MSMTEST_KILL_SECONDS", "30"))


# Issue 15's target is 90 % for the build we ship.  Under AddressSanitizer
# every restart takes several times longer (87 to 92 % measured), and
# that run is for memory errors, not for the target: a lower floor there.
AVAILABILITY_SANITIZED = 0.80


def sanitized():
    """Whether the msmilter under test is built with AddressSanitizer."""
    with open(os.path.join(build_dir(), "msmilter"), "rb") as f:
        return b"__asan_init" in f.read()


def kill_random_child(m, rng):
    """kill -9 one of the running children, chosen at random: its name,
    or None when none was running at that moment."""
    pids = child_pids(m.pid)
    running = [n for n in CHILDREN if pids[n]]
    if not running:
        return None
    name = rng.choice(running)
    try:
        os.kill(pids[name], signal.SIGKILL)
    except ProcessLookupError:
        return None
    return name


def settle(m, timeout=60):
    """Every child running again and no temp file left in milterin."""
    wait_for(lambda: all(child_pids(m.pid).values()), timeout,
             "every child to run again")
    wait_for(lambda: temp_files(m.milterin) == [], timeout,
             "temp files to go from milterin")


def test_random_child_killed_every_second(msmilter_factory, postfix_factory,
                                          capsys):
    """20 sessions through a real Postfix while a random child is kill -9'd
    every second: >= 90% of transactions accepted (issue 15's target;
    80% under the sanitizers, see AVAILABILITY_SANITIZED),
    every accepted message in milterin exactly once, no temp file left.
    The clients send back to back and reconnect at once after a refusal,
    so refusals are counted as fast as Postfix can give them: the figure
    is a floor.  A capture kill costs the sessions it held, a spooler
    kill the messages it was writing; nothing else should."""
    m = msmilter_factory()
    pf = postfix_factory(milter=m, sink=False)
    rng = random.Random(int(os.environ.get("MSMTEST_SEED", "15")))
    load = Load(pf.smtp_port, sessions=20, prefix="k").start()
    kills = []
    deadline = time.monotonic() + KILL_SECONDS
    while time.monotonic() < deadline:
        time.sleep(1)
        name = kill_random_child(m, rng)
        if name:
            kills.append(name)
    load.stop()
    settle(m)
    accepted = load.accepted()
    found = tags_in_dir(m.milterin)
    missing = sorted(t for t in accepted if found[t] == 0)
    doubled = sorted(t for t in accepted if found[t] > 1)
    orphans = sorted(t for t in found if t not in accepted)
    avail = load.availability()
    with capsys.disabled():         # the figure, in make check's output too
        print("\nkill every second: %d kills (%s) in %d s, %d transactions, "
              "%d accepted, availability %.1f%%; in milterin: %d missing, "
              "%d twice, %d committed but tempfailed"
              % (len(kills), ", ".join("%s %d" % (n, kills.count(n))
                                       for n in CHILDREN), KILL_SECONDS,
                 load.attempted(), len(accepted), 100 * avail, len(missing),
                 len(doubled), len(orphans)))
    assert missing == [] and doubled == [], (missing[:5], doubled[:5])
    assert temp_files(m.milterin) == []
    floor = AVAILABILITY_SANITIZED if sanitized() else 0.90
    assert avail >= floor, ("availability %.1f%% below %.0f%%; refused: %s"
                            % (100 * avail, 100 * floor, load.failures()))
    # Children were there to be killed: restarted promptly every time.
    assert len(kills) >= KILL_SECONDS * 3 // 4, kills


HANGING_CHILD = r'''#!/usr/bin/python3
# A child whose set-up never ends: it takes its settings, says so, and
# never sends READY.
import socket, struct, time
s = socket.socket(fileno=3)
s.recv(70000)
text = b"set-up hangs here (test)\0"
s.send(struct.pack("=II", 7, 4 + len(text)) + struct.pack("=i", 6) + text)
time.sleep(3600)
'''


def test_setup_is_asynchronous_and_bounded(test_base, msmilter_factory,
                                           postfix_factory):
    """While a new relay hangs in its set-up, the parent keeps serving:
    capture killed meanwhile is back at once and mail flows, SIGHUP is
    handled; the hanging relay is killed at the set-up bound and throttled
    (it never became ready), then the real one comes up."""
    import shutil
    from test_confinement import hooks_binary
    bindir = os.path.join(test_base, "bin")
    os.makedirs(bindir)
    for n in ("msmilter", "msmilter-capture", "msmilter-spooler",
              "msmilter-relay"):
        shutil.copy2(os.path.join(os.path.dirname(hooks_binary()), n),
                     os.path.join(bindir, n))
    m = msmilter_factory(binary=os.path.join(bindir, "msmilter"),
                         env={"MSM_TEST_SETUP_TIMEOUT_MS": "4000"})
    pf = postfix_factory(milter=m, sink=False)
    relay = os.path.join(bindir, "msmilter-relay")
    os.rename(relay, relay + ".real")
    with open(relay, "w") as f:
        f.write(HANGING_CHILD)
    os.chmod(relay, 0o755)
    old = child_pids(m.pid)
    os.kill(old["relay"], signal.SIGKILL)
    wait_for(lambda: "set-up hangs here" in m.stderr(), 10, "the fake relay")
    t0 = time.monotonic()
    os.kill(old["capture"], signal.SIGKILL)
    m.signal(signal.SIGHUP)
    wait_for(lambda: child_pids(m.pid)["capture"] not in (None,
                                                          old["capture"]),
             3, "capture restarted while the relay sets up")
    load = Load(pf.smtp_port, sessions=2, per_conn=1, prefix="a").start()
    wait_for(lambda: len(load.accepted()) >= 5, 3, "mail accepted")
    load.stop()
    wait_for(lambda: "configuration reloaded" in m.stderr(), 3, "SIGHUP")
    assert time.monotonic() - t0 < 3.5
    assert "restarting relay in" not in m.stderr()
    # The bound: killed after 4 s and throttled, not restarted at once.
    wait_for(lambda: "did not finish set-up in 4 s; killing it"
             in m.stderr(), 10, "the set-up bound")
    os.rename(relay + ".real", relay)
    wait_for(lambda: "restarting relay in 1 s" in m.stderr(), 5,
             "the throttle")
    wait_for(lambda: re.search(r"relay started, pid \d+, ready in",
                               m.stderr().split("restarting relay in 1 s")
                               [1]), 10, "the real relay")
    assert m.stderr().count("restarting relay at once") == 1
    assert sorted(tags_in_dir(m.milterin)) == sorted(load.accepted())


# ---------------------------------------------------------------------------
# Starting in the background, and the SysV init script

INIT_SCRIPT = os.path.join(PROJECT_ROOT, "contrib", "msmilter.init")


def daemons(m):
    """Pids of the msmilter parents running with m's configuration (not
    counting a child between its fork and its exec)."""
    found = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % d) as f:
                comm = f.read().strip()
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        state, ppid = st[st.rindex(")") + 2:].split()[:2]
        if comm == "msmilter" and m.conf.encode() in argv and state != "Z":
            found[int(d)] = int(ppid)
    return sorted(p for p, pp in found.items() if pp not in found)


def pid_lock_held(path):
    """True when someone holds the pid file's lock (flock, as msmilter)."""
    import fcntl
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def stop_daemons(m):
    for pid in daemons(m):
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: daemons(m) == [], 60, "msmilter to stop")


def run_background(m, timeout=60):
    return subprocess.run([m.binary, "-f", m.conf], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)


def test_background_start_returns_when_ready(msmilter_factory):
    """Without -F, msmilter exits 0 only once the daemon holds the pid
    file lock and every child is ready: a client can connect at once."""
    m = msmilter_factory(start=False)
    m.write_config()
    try:
        p = run_background(m)
        assert p.returncode == 0, p.stderr
        pids = daemons(m)
        assert len(pids) == 1, pids
        with open(m.pidfile) as f:
            assert int(f.read()) == pids[0]
        assert pid_lock_held(m.pidfile)
        assert all(child_pids(pids[0]).values()), child_pids(pids[0])
        with socket.create_connection(("127.0.0.1", m.port), timeout=1):
            pass
    finally:
        stop_daemons(m)


def test_background_start_reports_failure(msmilter_factory):
    """The starting process fails, with the daemon's reason, when the pid
    file is locked (another msmilter) or a child cannot start."""
    import fcntl
    m = msmilter_factory(start=False)
    m.write_config()
    try:
        with open(m.pidfile, "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            p = run_background(m)
        assert p.returncode != 0
        assert b"is locked: is msmilter already running?" in p.stderr, \
            p.stderr
        assert daemons(m) == []
        # Capture's port is taken: it cannot listen, so no msmilter.
        with socket.socket() as s:
            s.bind(("127.0.0.1", m.port))
            s.listen()
            p = run_background(m)
        assert p.returncode != 0
        assert re.search(rb"capture\[\d+\]: cannot listen on inet:%d@"
                         rb"127\.0\.0\.1" % m.port, p.stderr), p.stderr
        assert b"cannot start capture" in p.stderr, p.stderr
        wait_for(lambda: daemons(m) == [], 10, "the failed daemon to go")
    finally:
        stop_daemons(m)


def init_script(m, action, defaults, timeout=120):
    env = dict(os.environ, MSMILTER_DAEMON=m.binary, MSMILTER_CONFIG=m.conf,
               MSMILTER_DEFAULTS=defaults)
    return subprocess.run(["sh", INIT_SCRIPT, action], env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout)


def test_init_script_restart_with_session_in_flight(msmilter_factory,
                                                    postfix_factory,
                                                    test_base):
    """restart while a session holds DATA: stop waits for the old msmilter
    (which lets the session finish), start returns once the new one is
    ready; exactly one msmilter runs and holds the lock, and the message
    was committed once or refused with a 4xx."""
    defaults = os.path.join(test_base, "defaults")
    with open(defaults, "w") as f:
        f.write("run_mailscanner=1\n")
    m = msmilter_factory(start=False)
    m.write_config()
    try:
        r = init_script(m, "start", defaults)
        assert r.returncode == 0, r.stdout
        first = daemons(m)
        assert len(first) == 1
        assert init_script(m, "status", defaults).returncode == 0
        pf = postfix_factory(milter=m, sink=False)
        c = RawSMTP(pf.smtp_port, timeout=120)
        assert c.cmd("EHLO t")[0] == 250
        assert c.cmd("MAIL FROM:<s@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<r@example.com>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(message_for("inflight")[:-2])
        out = {}
        t = threading.Thread(target=lambda: out.update(
            r=init_script(m, "restart", defaults)))
        t.start()
        # The old msmilter is draining, the init script waits for it.
        time.sleep(3)
        try:
            code, text = c.cmd(b"\r\n.")
        except (OSError, SMTPError) as e:
            code, text = 0, str(e)
        c.close()
        t.join(150)
        assert not t.is_alive(), "restart did not return"
        assert out["r"].returncode == 0, out["r"].stdout
        now = daemons(m)
        assert len(now) == 1 and now != first, (first, now)
        with open(m.pidfile) as f:
            assert int(f.read()) == now[0]
        assert pid_lock_held(m.pidfile)
        assert all(child_pids(now[0]).values())
        found = tags_in_dir(m.milterin)["inflight"]
        print("\nin-flight message across restart: %s; %d in milterin"
              % (text.splitlines()[-1] if text else code, found))
        if code == 250:
            assert found == 1
        else:
            assert code // 100 == 4 or code == 0, text
            assert found <= 1
        assert temp_files(m.milterin) == []
        # And the new one takes mail.
        code, text = RawSMTP(pf.smtp_port).message(
            "s@example.org", ["r@example.com"], message_for("after"))
        assert code == 250, text
        r = init_script(m, "stop", defaults)
        assert r.returncode == 0, r.stdout
        assert daemons(m) == []
        assert init_script(m, "status", defaults).returncode == 3
        # Stopping what is not running is not an error.
        assert init_script(m, "stop", defaults).returncode == 0
    finally:
        stop_daemons(m)


def test_init_script_ignores_stale_pid(msmilter_factory, test_base):
    """A pid file naming another program (a stale file whose pid was
    reused) is neither signalled by stop nor taken for a running msmilter
    by start."""
    defaults = os.path.join(test_base, "defaults")
    with open(defaults, "w") as f:
        f.write("run_mailscanner=1\n")
    m = msmilter_factory(start=False)
    m.write_config()
    other = subprocess.Popen(["sleep", "60"])
    try:
        with open(m.pidfile, "w") as f:
            f.write("%d\n" % other.pid)
        r = init_script(m, "stop", defaults)
        assert r.returncode == 0, r.stdout
        assert other.poll() is None, "stop killed a process not msmilter"
        assert init_script(m, "status", defaults).returncode != 0
        r = init_script(m, "start", defaults)
        assert r.returncode == 0, r.stdout
        assert len(daemons(m)) == 1
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
        stop_daemons(m)
