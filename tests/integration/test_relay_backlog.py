"""A large milterout backlog with the MTA down (issue 15): the relay's
periodic rescan must cost the same CPU per file whatever the backlog (one
rescan of 20k files took 1.0 s, of 60k 8.9 s: quadratic).  CPU is read
from /proc/PID/stat; rescans are counted by the relay's debug line."""

import os
import pwd
import re
import time

from postfix import child_pids, free_port
from test_capture import wait_for
from test_relay import HEAD

RESCAN = re.compile(r"relay\[\d+\]: rescanned \S+: (\d+) names, (\d+) queued")


def relay_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backlog(milterout, n):
    """n queue files as MailScanner leaves them, owned by Run As User."""
    pw = pwd.getpwnam("postfix")
    data = (b"S<alice@example.org>\nO<bob@example.com>\n" + HEAD +
            b"Subject: backlog\n\nx\n")
    for i in range(n):
        path = os.path.join(milterout, "%010X.B%04d" % (i, i % 10000))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.fchown(fd, pw.pw_uid, pw.pw_gid)
        os.close(fd)


def rescans(m, n):
    return [int(x[0]) for x in RESCAN.findall(m.stderr()) if int(x[1]) == n]


def cpu_per_file(msmilter_factory, n, window=8.0):
    """Seconds of relay CPU per file per rescan, with n files waiting and
    nothing listening on the MTA's port."""
    m = msmilter_factory(start=False, settings={
        "MSMail Relay Port": str(free_port()),
        "Milter Relay Scan Interval": "1", "Milter Relay Min Retry": "1",
        "Milter Relay Max Retry": "3600", "Debug": "yes"})
    m.write_config()
    backlog(m.milterout, n)
    m.start()
    relay = child_pids(m.pid)["relay"]
    # The first rescan has queued them all; measure the ones after it.
    wait_for(lambda: rescans(m, n), 120, "the first rescan of %d" % n)
    k0, c0 = len(rescans(m, n)), relay_cpu(relay)
    deadline = time.monotonic() + 120
    time.sleep(window)
    while len(rescans(m, n)) < k0 + 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    k1, c1 = len(rescans(m, n)), relay_cpu(relay)
    assert k1 > k0, "no rescan in %d s" % (window + 120)
    assert all(x == n + 2 for x in rescans(m, n))      # with . and ..
    m.stop()
    return (c1 - c0) / (k1 - k0) / n


def test_rescan_cpu_per_file_is_flat(msmilter_factory):
    small = cpu_per_file(msmilter_factory, 20000)
    large = cpu_per_file(msmilter_factory, 60000)
    print("relay CPU per file per rescan: 20k %.2f us, 60k %.2f us"
          % (small * 1e6, large * 1e6))
    # Linear: the same per file (clock ticks make it coarse: allow 2x;
    # the quadratic queue was 3x from 20k to 60k).
    assert large < 2 * max(small, 2e-7), (small, large)
