"""msmilter -s [--json]: live status over the control socket (root only,
0600), after a known mix of traffic; the socket answers nothing but a
status request, from uid 0, within a size cap."""

import json
import os
import pwd
import re
import socket
import stat
import subprocess

from postfix import child_pids
from queuefile import real_files
from test_capture import wait_for
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


def test_status_after_known_traffic(stacks):  # noqa: F811
    st, _ = stacks()
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
    assert s["queues"]["milterout"] == {"files": 0, "oldest_seconds": 0}

    p = status(m)
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr
    assert "msmilter pid %d up " % m.pid in out
    assert "relay    pid %d up " % pids["relay"] in out
    assert "messages: committed 2 rejected 0 tempfailed 0 " \
        "accepted_loopback 0\n" in out
    assert "relay: delivered 1 deferred 0 requeued 0 quarantined 0\n" in out
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
