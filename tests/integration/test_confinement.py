"""Confinement of msmilter's processes, read back from /proc (issue 4).

Each running child must show Seccomp 2, NoNewPrivs 1, no capability in
any set, its account and no supplementary group; capture must sit in its
chroot; every process holds only the descriptors it needs.  SECURITY.md's
per-process table is checked against the same /proc files.

A test-only build (make testhooks: build*-testhooks, compiled with
-DMSM_TESTHOOKS) lets a test tell a child to make a forbidden call
(SIGRTMIN+n, see common/testhook.h): the kernel must kill it, the parent
log and restart it, and mail keep flowing with nothing lost."""

import grp
import os
import pwd
import re
import shutil
import signal
import time

import pytest

from postfix import PROJECT_ROOT, build_dir, child_pids, data_reply
from queuefile import real_files, temp_files
from testhooks import ACTION

CLIENT = dict(xclient_addr="192.0.2.25", xclient_name="client.example.net",
              helo="helo.example.net")

CHILDREN = ("capture", "spooler", "relay")

# linux/capability.h
CAPS = {"chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3,
        "fsetid": 4, "kill": 5, "setgid": 6, "setuid": 7, "setpcap": 8,
        "net_bind_service": 10, "net_admin": 12, "net_raw": 13,
        "sys_chroot": 18, "sys_ptrace": 19, "sys_admin": 21,
        "sys_resource": 24, "audit_write": 29, "setfcap": 31}

# SIGRTMIN + action
HOOK_OPEN, HOOK_EXEC, HOOK_CONNECT, HOOK_SOCKET, HOOK_BAD_RECORD = (
    ACTION[a] for a in ("OPEN", "EXEC", "CONNECT", "SOCKET", "BAD_RECORD"))

SECSYS = r"killed by signal 31 \(Bad system call\): a forbidden system " \
         r"call \(seccomp"


def hooks_binary():
    b = os.path.join(build_dir() + "-testhooks", "msmilter")
    if not os.access(b, os.X_OK):
        pytest.fail("%s not built: make BUILD=%s testhooks"
                    % (b, os.path.basename(build_dir())))
    return b


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def capmask(names):
    m = 0
    for n in names:
        m |= 1 << CAPS[n]
    return m


def fds(pid):
    """{fd: readlink target} of pid."""
    d = "/proc/%d/fd" % pid
    out = {}
    for n in os.listdir(d):
        try:
            out[int(n)] = os.readlink(os.path.join(d, n))
        except FileNotFoundError:
            pass
    return out


def running_children(m, names=CHILDREN):
    return wait_for(lambda: (lambda p: p if all(p[n] for n in names)
                             else None)(child_pids(m.pid)), 20,
                    "children %s" % (names,))


def send_ok(pf, subject, tries=100):
    """One message through Postfix; retried while a child restarts."""
    for _ in range(tries):
        r = pf.send(to=["a@example.com"],
                    data=("Subject: %s\r\n\r\n%s\r\n" % (subject, subject)
                          ).encode(), **CLIENT)
        reply = data_reply(r.transcript)
        if reply and reply.startswith("250"):
            return re.search(r"queued as (\w+)", reply).group(1)
        time.sleep(0.2)
    raise AssertionError("no 250 for %s: %s" % (subject, r.transcript))


def expected_ids(m):
    nobody = pwd.getpwnam(m.settings["Milter User"])
    postfix = pwd.getpwnam(m.settings["Run As User"])
    pgid = grp.getgrnam(m.settings["Run As Group"]).gr_gid
    return {"capture": (nobody.pw_uid, nobody.pw_gid),
            "spooler": (postfix.pw_uid, pgid),
            "relay": (postfix.pw_uid, pgid)}


# ---------------------------------------------------------------------------
# What /proc shows for a running stack


def test_children_confined(stack):
    m = stack.m
    pids = running_children(m)
    ids = expected_ids(m)
    for name, pid in pids.items():
        st = status(pid)
        assert st["Seccomp"] == "2", (name, st["Seccomp"])
        assert st["NoNewPrivs"] == "1", name
        for s in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(st[s], 16) == 0, (name, s, st[s])
        uid, gid = ids[name]
        assert st["Uid"].split() == [str(uid)] * 4, (name, st["Uid"])
        assert st["Gid"].split() == [str(gid)] * 4, (name, st["Gid"])
        assert st["Groups"] == "", (name, st["Groups"])
        # not dumpable: /proc/PID files belong to root, not to the user
        assert os.stat("/proc/%d/environ" % pid).st_uid == 0, name
        with open("/proc/%d/limits" % pid) as f:
            core = [l for l in f if l.startswith("Max core file size")]
        assert core[0].split()[4:6] == ["0", "0"], (name, core)
    assert os.readlink("/proc/%d/root" % pids["capture"]) == m.chroot
    assert os.readlink("/proc/%d/root" % pids["spooler"]) == "/"
    assert os.readlink("/proc/%d/root" % pids["relay"]) == "/"
    send_ok(stack.pf, "confined")


def test_children_set_nnp_and_seccomp_after_exec(test_base, msmilter_factory,
                                                 postfix_factory):
    """no_new_privs and seccomp are each child's own doing, after exec.
    With no_new_privs set before exec, SELinux would refuse the transition
    into the child's domain (without nnp_transition) and AppArmor its Px
    into the child's profile.  A copy of the parent finds wrapper scripts
    beside it where the children would be: each records the state its new
    image starts in, then execs the real child (same process)."""
    bindir = os.path.join(test_base, "bin")
    os.makedirs(bindir)
    shutil.copy(os.path.join(build_dir(), "msmilter"), bindir)
    for name in CHILDREN:
        with open(os.path.join(bindir, "msmilter-" + name), "w") as f:
            f.write("#!/bin/sh\n"
                    "/bin/grep -E '^(NoNewPrivs|Seccomp):' /proc/$$/status "
                    ">%s\nexec %s\n"
                    % (os.path.join(test_base, name + ".at-exec"),
                       os.path.join(build_dir(), "msmilter-" + name)))
        os.chmod(os.path.join(bindir, "msmilter-" + name), 0o755)
    m = msmilter_factory(binary=os.path.join(bindir, "msmilter"))
    pf = postfix_factory(milter=m)
    pids = running_children(m)
    parent = status(m.pid)
    assert (parent["NoNewPrivs"], parent["Seccomp"]) == ("0", "0"), parent
    for name, pid in pids.items():
        with open(os.path.join(test_base, name + ".at-exec")) as f:
            at_exec = dict((k, v.strip()) for k, v in
                           (l.split(":", 1) for l in f if ":" in l))
        assert at_exec == {"NoNewPrivs": "0", "Seccomp": "0"}, (name, at_exec)
        st = status(pid)
        assert (st["NoNewPrivs"], st["Seccomp"]) == ("1", "2"), name
    send_ok(pf, "after exec")


def test_parent_capabilities(stack):
    st = status(stack.m.pid)
    keep = capmask(["kill", "setpcap"])
    bound = capmask(["chown", "setgid", "setuid", "setpcap", "sys_chroot"])
    assert int(st["CapEff"], 16) == keep, st["CapEff"]
    assert int(st["CapPrm"], 16) == keep, st["CapPrm"]
    assert int(st["CapInh"], 16) == 0
    assert int(st["CapAmb"], 16) == 0
    assert int(st["CapBnd"], 16) == bound, st["CapBnd"]
    assert st["Seccomp"] == "0"
    assert st["Uid"].split() == ["0"] * 4


def socket_inodes():
    """{inode: (kind, local port or None)} of every socket on the host."""
    out = {}
    with open("/proc/net/unix") as f:
        for line in f.readlines()[1:]:
            out[line.split()[6]] = ("unix", None)
    for kind in ("tcp", "tcp6"):
        with open("/proc/net/" + kind) as f:
            for line in f.readlines()[1:]:
                p = line.split()
                out[p[9]] = ("tcp" if p[3] != "0A" else "listen",
                             int(p[1].rsplit(":", 1)[1], 16))
    return out


def test_descriptors(stack):
    m = stack.m
    pids = running_children(m)
    std = {0: "/dev/null", 1: m.stderr_path, 2: m.stderr_path}
    for name, pid in pids.items():
        got = fds(pid)
        inodes = socket_inodes()
        for fd, target in std.items():
            assert got.get(fd) == target, (name, fd, got.get(fd))
        assert got[3].startswith("socket:"), (name, got)
        rest = {fd: t for fd, t in got.items() if fd > 3}
        files = {t for t in rest.values() if t.startswith("/")}
        socks = [inodes.get(t[8:-1], ("gone", None))
                 for t in rest.values() if t.startswith("socket:")]
        others = sorted(t for t in rest.values()
                        if not t.startswith(("/", "socket:")))
        if name == "capture":
            # its listener, channels (unix), Postfix's connections to the
            # listener; libmilter's worker-pool wake-up pipe; no file
            assert files == set(), got
            assert socks.count(("listen", m.port)) == 1, (got, socks)
            # ("gone": closed between reading fd/ and /proc/net.)
            assert all(k in ("unix", "gone") or port == m.port
                       for k, port in socks), (got, socks)
            assert len(others) == 2 and all(o.startswith("pipe:")
                                            for o in others), got
        elif name == "spooler":
            # milterin; channels from capture and the relay, sessions;
            # the commit pool's wake-up eventfd
            assert files == {m.milterin}, got
            assert socks and all(k in ("unix", "gone") for k, _ in socks), \
                socks
            assert others == ["anon_inode:[eventfd]"], got
        else:
            # milterout and the quarantine, channels, connections to the
            # MTA; inotify and the workers' eventfd
            assert m.milterin not in files, got
            assert m.milterout in files, got
            assert all(os.path.isdir(f) for f in files), got
            assert all(k in ("unix", "tcp", "gone") for k, _ in socks), \
                socks
            assert all(o.startswith("anon_inode:") for o in others), got
    # The parent: signalfd, the pid file, the audit log (no key in this
    # fixture), milterin and milterout read-only (opened at start to count
    # their files: privsep/metrics.c), one channel per child and the
    # control socket.  No child holds the audit log.
    got = fds(m.pid)
    rest = {fd: t for fd, t in got.items() if fd > 2}
    assert sorted(t for t in rest.values() if t.startswith("/")) == \
        sorted([m.pidfile, m.audit_log, m.milterin, m.milterout]), got
    for pid in pids.values():
        assert m.audit_log not in fds(pid).values()
    assert len([t for t in rest.values() if t.startswith("socket:")]) == 4
    assert [t for t in rest.values() if t.startswith("anon_inode:")] == \
        ["anon_inode:[signalfd]"], got


# ---------------------------------------------------------------------------
# SECURITY.md's per-process table against /proc

def security_table():
    """{row title: [parent, capture, spooler, relay]} from SECURITY.md."""
    with open(os.path.join(PROJECT_ROOT, "SECURITY.md")) as f:
        text = f.read()
    sec = text.split("## Per process", 1)[1].split("\n## ", 1)[0]
    rows = {}
    header = None
    for line in sec.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set(cells[0]) <= set("-: "):
            continue
        rows[cells[0]] = cells[1:]
    assert header[1:] == ["msmilter (parent)", "msmilter-capture",
                          "msmilter-spooler", "msmilter-relay"], header
    return rows


def cell_caps(cell):
    """Capability names in backticks, outside parentheses ("none": 0)."""
    plain = re.sub(r"\([^)]*\)", "", cell)
    return capmask(re.findall(r"`([a-z_]+)`", plain))


def cell_int(cell):
    return int(re.match(r"\s*(\d+)", cell).group(1))


def cell_ids(cell, m):
    """"Milter User / its primary group" and the like -> (uid, gid)."""
    user, _, group = (x.strip() for x in cell.partition("/"))
    names = {"root": "root", "Milter User": m.settings["Milter User"],
             "Run As User": m.settings["Run As User"]}
    pw = pwd.getpwnam(names[user])
    if group == "root":
        gid = 0
    elif group == "its primary group":
        gid = pw.pw_gid
    elif group.startswith("Incoming Work Group or Run As Group"):
        gid = grp.getgrnam(m.settings["Run As Group"]).gr_gid
    else:
        raise AssertionError("unknown group cell %r" % cell)
    return pw.pw_uid, gid


def test_security_md_matches_proc(stack):
    m = stack.m
    rows = security_table()
    pids = running_children(m)
    procs = [m.pid, pids["capture"], pids["spooler"], pids["relay"]]
    checked = 0
    for col, pid in enumerate(procs):
        st = status(pid)
        uid, gid = cell_ids(rows["uid / gid"][col], m)
        assert int(st["Uid"].split()[0]) == uid, (col, rows["uid / gid"])
        assert int(st["Gid"].split()[0]) == gid, (col, rows["uid / gid"])
        groups = rows["supplementary groups"][col]
        if groups == "none":
            assert st["Groups"] == ""
        root = rows["root directory"][col]
        want_root = m.chroot if root.startswith("Milter Chroot") else root
        assert os.readlink("/proc/%d/root" % pid) == want_root, col
        assert int(st["NoNewPrivs"]) == cell_int(rows["NoNewPrivs"][col])
        assert int(st["Seccomp"]) == cell_int(rows["Seccomp"][col]), col
        for title, keys in (("CapEff, CapPrm", ("CapEff", "CapPrm")),
                            ("CapInh, CapAmb", ("CapInh", "CapAmb")),
                            ("CapBnd", ("CapBnd",))):
            for k in keys:
                assert int(st[k], 16) == cell_caps(rows[title][col]), \
                    (col, title, k, st[k])
        checked += 1
    assert checked == 4


# ---------------------------------------------------------------------------
# Forbidden calls: killed by the kernel, logged, restarted, nothing lost

@pytest.fixture
def hooked(msmilter_factory, postfix_factory):
    def make(settings=None):
        m = msmilter_factory(binary=hooks_binary(), settings=settings)
        pf = postfix_factory(milter=m)
        return m, pf
    return make


@pytest.mark.parametrize("child,action", [
    ("capture", HOOK_OPEN), ("capture", HOOK_EXEC),
    ("capture", HOOK_CONNECT), ("capture", HOOK_SOCKET),
    ("spooler", HOOK_SOCKET), ("spooler", HOOK_OPEN),
    ("spooler", HOOK_CONNECT),     # connect: Full Scanner mode only
    ("relay", HOOK_OPEN), ("relay", HOOK_EXEC),
])
def test_forbidden_call_kills_and_restarts(hooked, child, action):
    m, pf = hooked()
    before = send_ok(pf, "before")
    pid = running_children(m)[child]
    os.kill(pid, signal.SIGRTMIN + action)
    wait_for(lambda: re.search(r"%s \(pid %d\) %s" % (child, pid, SECSYS),
                               m.stderr()), 10, "the parent's log line")
    running_children(m)
    assert child_pids(m.pid)[child] != pid
    after = send_ok(pf, "after")
    # Both messages are in milterin, once each; no temp file left behind.
    wait_for(lambda: temp_files(m.milterin) == [], 10, "no temp files")
    assert sorted(real_files(m.milterin)) == sorted([before, after])
    pf.wait_queue_empty(timeout=10)
    assert pf.sink_messages() == []


def test_record_a_child_may_not_send_kills_it(hooked):
    m, pf = hooked()
    pid = running_children(m)["capture"]
    os.kill(pid, signal.SIGRTMIN + HOOK_BAD_RECORD)
    wait_for(lambda: "capture (pid %d) sent a bad record (PARENT_STOP); "
             "killing it" % pid in m.stderr(), 10, "the broker's refusal")
    wait_for(lambda: "capture (pid %d) killed by signal 9" % pid
             in m.stderr(), 10, "the kill")
    running_children(m)
    qid = send_ok(pf, "after")
    assert real_files(m.milterin) == [qid]


def test_debug_mode_logs_and_refuses(hooked):
    m, pf = hooked({"Milter Seccomp Debug": "yes"})
    pids = running_children(m)
    os.kill(pids["spooler"], signal.SIGRTMIN + HOOK_SOCKET)
    wait_for(lambda: re.search(r"spooler\[\d+\]: forbidden system call socket "
                               r"\(41\) refused with ENOSYS", m.stderr()),
             10, "the debug line")
    assert child_pids(m.pid) == pids      # refused, not killed
    assert "Milter Seccomp Debug is on" in m.stderr()
    qid = send_ok(pf, "debug")
    assert real_files(m.milterin) == [qid]


# ---------------------------------------------------------------------------
# Restart throttling and unprivileged mode

def test_failing_child_is_throttled(msmilter_factory):
    m = msmilter_factory()
    running_children(m)
    # A chroot that does not exist: every capture start fails.  (An
    # unknown Run As User no longer gets that far: the reload is refused.)
    with open(m.conf, "a") as f:
        f.write("Milter Chroot = /nonexistent-msmtest\n")
    t0 = time.monotonic()
    m.signal(signal.SIGHUP)
    wait_for(lambda: "restarting capture in 4 s" in m.stderr(), 15,
             "a third, longer delay")
    time.sleep(1)
    log = m.stderr()
    # It never became ready: throttled 1, 2, 4 ... s (a child that had
    # served is restarted at once instead, test_supervise.py).
    delays = [int(d) for d in re.findall(r"restarting capture in (\d+) s",
                                         log)]
    assert delays[:3] == [1, 2, 4], delays
    starts = len(re.findall(r"capture \(pid \d+\) .*; it failed to "
                            r"start", log))
    assert 3 <= starts <= 4, log
    assert "restarting capture at once" not in log
    assert time.monotonic() - t0 >= 3


def test_unprivileged_mode(test_base, msmilter_factory, postfix_factory):
    nobody = pwd.getpwnam("nobody")
    own = os.path.join(test_base, "nobody")
    os.makedirs(own)
    os.chown(own, nobody.pw_uid, nobody.pw_gid)
    wrapper = os.path.join(test_base, "as-nobody")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec setpriv --reuid=%d --regid=%d "
                "--clear-groups --inh-caps=-all %s \"$@\"\n"
                % (nobody.pw_uid, nobody.pw_gid,
                   os.path.join(build_dir(), "msmilter")))
    os.chmod(wrapper, 0o755)
    m = msmilter_factory(start=False, binary=wrapper, settings={
        "Milter PID File": os.path.join(own, "msmilter.pid"),
        "Milter Relay Quarantine Dir": os.path.join(own, "bad")})
    m.write_config()
    for d in (m.milterin, m.milterout):
        os.chown(d, nobody.pw_uid, nobody.pw_gid)
    os.makedirs(os.path.join(own, "bad"))
    os.chown(os.path.join(own, "bad"), nobody.pw_uid, nobody.pw_gid)
    m.write_config = lambda: None
    m.start()
    assert "UNPRIVILEGED MODE" in m.stderr()
    pids = running_children(m)
    for name, pid in list(pids.items()) + [("parent", m.pid)]:
        st = status(pid)
        assert st["Uid"].split() == [str(nobody.pw_uid)] * 4, name
        assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0
        if name != "parent":
            assert st["Seccomp"] == "2", name
            assert st["NoNewPrivs"] == "1", name
            assert os.readlink("/proc/%d/root" % pid) == "/"
    pf = postfix_factory(milter=m)
    qid = send_ok(pf, "unprivileged")
    assert real_files(m.milterin) == [qid]
    assert os.stat(os.path.join(m.milterin, qid)).st_uid == nobody.pw_uid
    pf.wait_queue_empty(timeout=10)
    assert pf.sink_messages() == []
