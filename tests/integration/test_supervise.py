"""Supervision (issue 15): children restarted at once when they had
served, throttled only when they die before they are ready; the parent
keeps serving while a child starts; start, stop and restart by the init
script leave exactly one msmilter."""

import os
import re
import random
import signal
import time

from load import Load, tags_in_dir, temp_files
from postfix import child_pids
from test_capture import wait_for

CHILDREN = ("capture", "spooler", "relay")

# How long the kill-every-second test runs: long enough for every child
# to die several times (MSMTEST_KILL_SECONDS to change it).
KILL_SECONDS = int(os.environ.get("MSMTEST_KILL_SECONDS", "30"))


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


def test_random_child_killed_every_second(msmilter_factory, postfix_factory):
    """20 sessions through a real Postfix while a random child is kill -9'd
    every second: >= 90% of transactions accepted, every accepted message
    in milterin exactly once, no temp file left."""
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
    print("\nkill every second: %d kills (%s) in %d s, %d transactions, "
          "%d accepted, availability %.1f%%; in milterin: %d missing, %d "
          "twice, %d committed but tempfailed"
          % (len(kills), ", ".join("%s %d" % (n, kills.count(n))
                                   for n in CHILDREN), KILL_SECONDS,
             load.attempted(), len(accepted), 100 * avail, len(missing),
             len(doubled), len(orphans)))
    assert missing == [] and doubled == [], (missing[:5], doubled[:5])
    assert temp_files(m.milterin) == []
    assert avail >= 0.90, ("availability %.1f%% below 90%%; refused: %s"
                           % (100 * avail, load.failures()))
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
