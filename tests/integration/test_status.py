"""msmilter -s [--json]: live status over the control socket (root only,
0600), after a known mix of traffic; the socket answers nothing but a
status request, from uid 0, within a size cap."""

import json
import math
import os
import pwd
import re
import socket
import stat
import subprocess

import pytest

from postfix import child_pids
from queuefile import real_files
from test_capture import wait_for
from test_metrics import read_metrics, value
from test_metrics import stacks  # noqa: F401  (the fixture)
from test_relay import queue_file


def status(m, *args, user=None):
    def drop():
        pw = pwd.getpwnam(user)
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return subprocess.run([m.binary, "-s", "-f", m.conf] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=30, preexec_fn=drop if user else None)


def ask(path, data):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(data)
        out = b""
        try:
            while True:
                b = s.recv(4096)
                if not b:
                    break
                out += b
        except (ConnectionResetError, socket.timeout):
            pass
        return out


def commit_quantile_us(samples, q):
    """The upper bound, microseconds, of the msmilter_commit_seconds
    bucket of the metrics file that holds quantile q."""
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in samples.items()
                     if k[0] == "msmilter_commit_seconds_bucket")
    rank = max(1, math.ceil(q * buckets[-1][1]))
    return next(round(le * 1e6) for le, cum in buckets if cum >= rank)


def test_status_after_known_traffic(stacks):  # noqa: F811
    st, path = stacks()
    m = st.m
    for i in range(2):
        assert st.pf.send(to=("s%d@example.com" % i,)).rc == 0
    wait_for(lambda: len(real_files(m.milterin)) == 2, 20, "2 commits")
    st.drop("4F2A1B3C09", queue_file("a@example.org", ["b@example.com"],
                                     b"Subject: x\n\nbody\n"))
    st.wait_gone("4F2A1B3C09")

    def delivered():
        p = status(m, "--json")
        return p.returncode == 0 and \
            json.loads(p.stdout)["relay"]["delivered"] == 1
    wait_for(delivered, 20, "the delivery in the status")

    mode = os.stat(m.control).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert os.stat(m.control).st_uid == 0

    wait_for(lambda: json.loads(status(m, "--json").stdout)["commit"]
             ["count"] == 2, 10, "capture's two commit times")
    p = status(m, "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["pid"] == m.pid and s["uptime"] >= 0
    pids = child_pids(m.pid)
    assert [c["name"] for c in s["children"]] == ["spooler", "capture",
                                                  "relay"]
    for c in s["children"]:
        assert c["pid"] == pids[c["name"]] and c["running"], c
        assert c["restarts"] == 0 and c["uptime"] >= 0
    assert s["messages"] == {"committed": 2, "rejected": 0, "tempfailed": 0,
                             "accepted_loopback": 0}
    assert s["relay"] == {"delivered": 1, "deferred": 0, "requeued": 0,
                          "quarantined": 0}
    assert s["queues"]["milterin"]["files"] == 2
    assert 0 <= s["queues"]["milterin"]["oldest_seconds"] < 60
    # Capture's end of message to COMMITTED, bounded by the buckets of
    # msmilter_commit_seconds.
    c = s["commit"]
    assert c["count"] == 2 and c["sum_us"] > 0, c
    # The same histogram as the metrics file's, once it has both.
    wait_for(lambda: value(read_metrics(path)[1],
                           "msmilter_commit_seconds_count") == 2, 10,
             "both commits in the metrics file")
    _, samples = read_metrics(path)
    assert c["p50_le_us"] == commit_quantile_us(samples, 0.5), c
    assert c["p99_le_us"] == commit_quantile_us(samples, 0.99), c
    assert c["p50_le_us"] <= c["p99_le_us"], c
    assert c["sum_us"] <= 2 * c["p99_le_us"], c
    assert s["queues"]["milterout"] == {"files": 0, "oldest_seconds": 0}

    p = status(m)
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr
    assert "msmilter pid %d up " % m.pid in out
    assert "relay    pid %d up " % pids["relay"] in out
    assert "messages: committed 2 rejected 0 tempfailed 0 " \
        "accepted_loopback 0\n" in out
    assert "relay: delivered 1 deferred 0 requeued 0 quarantined 0\n" in out
    r = re.search(r"commit: 2 messages, mean ([\d.]+) ms, p50 <= ([\d.]+) ms, "
                  r"p99 <= ([\d.]+) ms \(end of message to COMMITTED\)\n", out)
    assert r, out
    assert float(r.group(1)) == pytest.approx(c["sum_us"] / 2000, abs=0.06)
    assert float(r.group(2)) * 1000 == c["p50_le_us"]
    assert re.search(r"milterin: 2 files, oldest \d+ s\n"
                     r"milterout: 0 files, oldest 0 s\n", out), out

    # A restart shows.
    os.kill(pids["capture"], 9)
    wait_for(lambda: json.loads(status(m, "--json").stdout)["children"][1]
             ["restarts"] == 1, 20, "capture's restart in the status")


def test_control_socket_refuses(stacks):  # noqa: F811
    st, _ = stacks()
    m = st.m
    # Not root: the socket's mode stops the client before the parent does.
    p = status(m, user="nobody")
    assert p.returncode == 1 and b"Permission denied" in p.stderr
    # Past the mode (an admin's chmod): the parent checks the uid itself.
    os.chmod(m.control, 0o666)
    p = status(m, user="nobody")
    assert p.returncode == 1 and b"no answer" in p.stderr, p.stderr
    wait_for(lambda: "control socket: refused a client (uid %d)"
             % pwd.getpwnam("nobody").pw_uid in m.stderr(), 10,
             "the refusal in the log")
    os.chmod(m.control, 0o600)
    # Only status requests, one line within the cap.
    assert ask(m.control, b"stop\n").startswith(b"error: only")
    assert ask(m.control, b"status\nstatus\n").startswith(b"error: only")
    assert ask(m.control, b"status" * 100) .startswith(b"error: only")
    assert ask(m.control, b"status\n").startswith(b"msmilter pid ")
    # A silent client is dropped; msmilter answers the next one.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(m.control)
        assert ask(m.control, b"status json\n").startswith(b"{")
    # Stopped: the socket is gone and -s says so.
    m.stop()
    assert not os.path.exists(m.control)
    p = status(m)
    assert p.returncode == 1 and b"is msmilter running?" in p.stderr


def test_status_shows_confinement_per_child(stacks):  # noqa: F811
    """seccomp from /proc (mode 2, filter) and Landlock as each child
    applied it: the kernel's ABI here, TCP rules from ABI 4."""
    from test_landlock import landlock_abi
    st, _ = stacks()
    m = st.m
    abi = landlock_abi()
    s = json.loads(status(m, "--json").stdout)
    pids = child_pids(m.pid)
    for c in s["children"]:
        assert c["pid"] == pids[c["name"]]
        assert c["seccomp"] == 2, c
        assert c["landlock_abi"] == abi, c
        assert c["landlock_tcp"] == (abi >= 4), c
    out = status(m).stdout.decode()
    for name in ("spooler", "capture", "relay"):
        line = re.search(r"^%s +pid %d up .*$" % (name, pids[name]), out,
                         re.M)
        assert line, out
        want = ", seccomp filter, landlock ABI %d%s" % (
            abi, " (TCP too)" if abi >= 4 else "") if abi else \
            ", seccomp filter, landlock NONE"
        assert line.group(0).endswith(want), line.group(0)


def test_status_with_the_mta_down_shows_deferrals_and_next_retry(stacks):  # noqa: F811,E501
    """Nothing listens where the relay delivers: the file is deferred, the
    status counts the deferral and names a retry in the future."""
    import time
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))         # bound, never listening: refused
    port = dead.getsockname()[1]
    try:
        st, _ = stacks({"Milter Relay Min Retry": "60",
                        "Milter Relay Max Retry": "120"})
        m = st.m
        # Point the relay at the dead port (a reload restarts the relay).
        m.settings["MSMail Relay Port"] = str(port)
        m.write_config()
        old_relay = child_pids(m.pid)["relay"]
        m.signal(1)
        wait_for(lambda: child_pids(m.pid)["relay"] not in (None, old_relay),
                 20, "the relay to restart with the new port")
        st.drop("4F2A1B3C0D", queue_file("a@example.org", ["b@example.com"],
                                         b"Subject: x\n\nbody\n"))

        def deferred():
            s = json.loads(status(m, "--json").stdout)
            q = s["relay_queue"]
            return s if s["relay"]["deferred"] >= 1 and q and \
                q["deferred"] == 1 else None
        wait_for(deferred, 30, "the deferral in the status")
        s = deferred()
        now = time.time()
        q = s["relay_queue"]
        assert q["files"] == 1 and s["relay"]["delivered"] == 0
        # Backing off 60 s (plus jitter) from the failed attempt.
        assert now < q["next_retry"] <= now + 60 + 16, (now, q)
        assert 0 < q["next_retry_in"] <= 60 + 16, q
        assert q["mta_down_until"] is not None and \
            q["mta_down_until"] > now - 1, q
        out = status(m).stdout.decode()
        r = re.search(r"^relay queue: 1 files, 1 deferred, next retry in "
                      r"(\d+) s, MTA unreachable: no delivery for \d+ s$",
                      out, re.M)
        assert r and int(r.group(1)) > 0, out
        assert os.listdir(m.milterout) == ["4F2A1B3C0D"]
    finally:
        dead.close()


def test_status_without_metrics_says_commit_not_measured(msmilter_factory):
    """Capture reports commit times only when there is a metrics file:
    without one, -s says so instead of showing an empty histogram."""
    m = msmilter_factory()
    p = status(m)
    assert p.returncode == 0, p.stderr
    assert "commit: not measured (no Milter Metrics File)\n" in \
        p.stdout.decode()
    p = status(m, "--json")
    assert json.loads(p.stdout)["commit"] is None
