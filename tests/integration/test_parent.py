"""The privsep parent: configuration check, pid file, reload, restarts,
unix socket listener, and children that refuse to run on their own."""

import grp
import re
import shutil
import struct
import os
import pwd
import signal
import socket
import stat
import subprocess
import time

import pytest

from postfix import MsMilter, build_dir, data_reply
from queuefile import parse, real_files, temp_files
from test_capture import CLIENT, child_pids, queued_id, wait_for


# Accounts -t insists on (Run As User must not be root, Milter User must
# exist), added after the text unless the test sets them itself.
ACCOUNTS = {"Run As User": "postfix", "Milter User": "nobody"}


def run_t(conf_text, tmp_path_factory=None, base=None):
    path = os.path.join(base, "check.conf")
    with open(path, "w") as f:
        f.write(conf_text)
        for key, value in ACCOUNTS.items():
            if key.lower() not in conf_text.lower():
                f.write("%s = %s\n" % (key, value))
    p = subprocess.run([os.path.join(build_dir(), "msmilter"), "-t", "-f",
                        path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode(), path


def test_check_prints_effective_settings(test_base):
    rc, out, err, _ = run_t("Milter Port = 4444\nmilter ignore LOOPBACK = no\n"
                            "%org-name% = Example\nDelivery Method = queue\n",
                            base=test_base)
    assert rc == 0, err
    assert "Milter Port = 4444\n" in out
    assert "Milter Ignore Loopback = no\n" in out
    assert "Incoming Queue Dir = /var/spool/mqueue.in\n" in out
    assert "#   smtpd_milters = inet:127.0.0.1:4444" in out
    assert "#   in_flow_delay = 0" in out
    # MTA is not msmail: MailScanner would not read milterin.
    assert "MTA" in err and "msmail" in err


def test_check_reports_file_line_and_key(test_base):
    rc, out, err, path = run_t("# comment\nMilter Port = 4444\n"
                               "Milter Port = lots\n"
                               "MSMail Queue Type = medium\n",
                               base=test_base)
    assert rc == 1
    assert "%s:3: Milter Port:" % path in err, err
    assert "%s:4: MSMail Queue Type:" % path in err, err
    assert "2 errors" in err


def test_check_insists_on_delivery_method_queue(test_base):
    rc, out, err, path = run_t("MTA = msmail\n", base=test_base)
    assert rc == 1
    assert "Delivery Method: Delivery Method must be queue" in err, err


def test_check_qmqp_socket_must_exist(test_base):
    rc, out, err, path = run_t(
        "Delivery Method = queue\nMSMail Delivery Method = QMQP\n"
        "MSMail Socket Type = unix\n"
        "MSMail Socket Dir = %s/no-such-socket\n" % test_base, base=test_base)
    assert rc == 1
    assert "MSMail Socket Dir: QMQP socket %s/no-such-socket: No such file" \
        % test_base in err, err
    rc, out, err, path = run_t("Delivery Method = queue\n"
                               "MSMail Relay Address = mail.example.com\n",
                               base=test_base)
    assert rc == 1
    assert "MSMail Relay Address" in err, err


@pytest.mark.parametrize("value", ["", "root", "ROOT_BY_UID"])
def test_check_refuses_run_as_root(test_base, value):
    # MailScanner's default (empty: root), root by name, and by the
    # first other account that has uid 0 if the machine has one.
    if value == "ROOT_BY_UID":
        alias = [p.pw_name for p in pwd.getpwall()
                 if p.pw_uid == 0 and p.pw_name != "root"]
        if not alias:
            # An account that maps to uid 0 is still refused by its
            # gid: postfix with Run As Group = a group of gid 0 by name.
            zero = [g.gr_name for g in grp.getgrall() if g.gr_gid == 0]
            rc, out, err, path = run_t(
                "Delivery Method = queue\nMTA = msmail\n"
                "Run As Group = %s\n" % zero[0], base=test_base)
            assert rc == 1 and "Run As Group" in err, err
            return
        value = alias[0]
    rc, out, err, path = run_t("Delivery Method = queue\nMTA = msmail\n"
                               "Run As User = %s\n" % value, base=test_base)
    assert rc == 1, err
    assert "error:" in err and "Run As User" in err, err
    assert "root" in err, err


def test_check_refuses_missing_milter_user(test_base):
    rc, out, err, path = run_t("Delivery Method = queue\nMTA = msmail\n"
                               "Milter User = nosuchuser-msmtest\n",
                               base=test_base)
    assert rc == 1, err
    assert "Milter User: unknown user \"nosuchuser-msmtest\"" in err, err
    assert "useradd" in err, err
    assert "nobody" not in err, err


@pytest.mark.parametrize("settings,key", [
    ({"Run As User": "root"}, "Run As User"),
    ({"Run As User": ""}, "Run As User"),
    ({"Milter User": "nosuchuser-msmtest"}, "Milter User"),
])
def test_root_or_missing_account_refuses_to_start(test_base, settings, key):
    m = MsMilter(os.path.join(test_base, "m"), settings=settings)
    with pytest.raises(Exception) as e:
        m.start(timeout=5)
    assert key in str(e.value) and "not starting" in str(e.value), e.value
    assert "falling back" not in m.stderr()
    # Nothing was started: no child ever ran as root.
    assert "started, pid" not in m.stderr()


def test_reload_to_root_refused(msmilter_factory):
    m = msmilter_factory()
    # The port answers once capture listens; the relay may start later.
    wait_for(lambda: all(child_pids(m.pid).values()), 20,
             "all three children")
    pids = child_pids(m.pid)
    with open(m.conf, "a") as f:
        f.write("Run As User = root\n")
    m.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in m.stderr(), 10, "the refusal")
    assert "Run As User is empty or root" in m.stderr()
    assert child_pids(m.pid) == pids
    for pid in pids.values():
        with open("/proc/%d/status" % pid) as f:
            uid = [l for l in f if l.startswith("Uid:")][0].split()[1]
        assert uid != "0"


def test_bad_config_refuses_to_start(test_base):
    m = MsMilter(os.path.join(test_base, "m"),
                 settings={"Milter Port": "0"})
    with pytest.raises(Exception) as e:
        m.start(timeout=5)
    assert "Milter Port" in str(e.value)


def test_pidfile_written_locked_and_removed(msmilter):
    with open(msmilter.pidfile) as f:
        assert int(f.read().strip()) == msmilter.pid
    # A second instance with the same pid file refuses to start.
    second = MsMilter(msmilter.base + "-2",
                      settings={"Milter PID File": msmilter.pidfile})
    with pytest.raises(Exception) as e:
        second.start(timeout=5)
    assert "already running" in str(e.value)
    assert msmilter.stop() == 0
    assert not os.path.exists(msmilter.pidfile)


def test_leftover_temp_files_removed_at_start(msmilter_factory):
    m = msmilter_factory(start=False)
    m.write_config()
    pw = pwd.getpwnam("postfix")
    for name in ("temp-msm-OLD1-0000abcd", "KEEPME1"):
        p = os.path.join(m.milterin, name)
        with open(p, "w") as f:
            f.write("S<x@y>\n")
        os.chown(p, pw.pw_uid, pw.pw_gid)
    m.start()
    wait_for(lambda: temp_files(m.milterin) == [], 5, "temp file removal")
    assert real_files(m.milterin) == ["KEEPME1"]
    assert "removed leftover temp file" in m.logged(
        "removed leftover temp file")


def test_child_refuses_to_run_alone():
    for name in ("msmilter-capture", "msmilter-spooler"):
        p = subprocess.run([os.path.join(build_dir(), name)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        assert p.returncode == 2
        assert b"not started by msmilter" in p.stderr


def test_capture_killed_is_restarted(stack):
    old = child_pids(stack.m.pid)["capture"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: child_pids(stack.m.pid)["capture"] not in (None, old),
             20, "capture restart")
    said = "capture (pid %d) killed by signal 9" % old
    assert said in stack.m.logged(said)
    for _ in range(100):
        r = stack.pf.send(to=["a@example.com"], data=b"Subject: y\r\n\r\ny\r\n",
                          **CLIENT)
        reply = data_reply(r.transcript)
        if reply and reply.startswith("250"):
            break
        time.sleep(0.2)
    assert real_files(stack.m.milterin) == [queued_id(reply)]


def test_reload_applies_good_and_refuses_bad_config(msmilter_factory,
                                                    postfix_factory):
    m = msmilter_factory()
    pf = postfix_factory(milter=m)
    pids = child_pids(m.pid)

    # A broken configuration is refused; the old one stays in force.
    with open(m.conf, "a") as f:
        f.write("Milter Ignore Loopback = perhaps\n")
    m.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in m.stderr(), 10, "refusal")
    assert "Milter Ignore Loopback" in m.stderr()
    r = pf.send(to=["a@example.com"], data=b"Subject: 1\r\n\r\n1\r\n")
    assert len(real_files(m.milterin)) == 1     # loopback still spooled

    # A good one takes effect without restarting the children.
    m.write_config()
    with open(m.conf, "a") as f:
        f.write("Milter Ignore Loopback = yes\n")
    m.signal(signal.SIGHUP)
    wait_for(lambda: "settings reloaded" in m.stderr(), 10, "reload")
    r = pf.send(to=["a@example.com"], data=b"Subject: 2\r\n\r\n2\r\n")
    assert data_reply(r.transcript).startswith("250")
    assert len(real_files(m.milterin)) == 1     # accepted, not spooled
    assert len(pf.wait_sink(1)) == 1
    assert child_pids(m.pid) == pids


def test_unix_socket_owner_group_mode(msmilter_factory, postfix_factory,
                                      test_base):
    sockdir = os.path.join(test_base, "sock")
    os.makedirs(sockdir)
    os.chmod(sockdir, 0o755)
    path = os.path.join(sockdir, "msmilter.sock")
    m = msmilter_factory(start=False, settings={
        "Milter Socket": path, "Milter Socket Mode": "0660",
        "Milter Socket Owner": "postfix", "Milter Socket Group": "postdrop"})
    m.write_config()
    m.write_config = lambda: None
    m.port = None
    # Wait for the socket rather than a TCP port.
    errf = open(m.stderr_path, "ab")
    m._errf = errf
    m.proc = subprocess.Popen([m.binary, "-F", "-f", m.conf],
                              stdout=errf, stderr=errf)
    wait_for(lambda: os.path.exists(path), 10, "unix socket")
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_uid == pwd.getpwnam("postfix").pw_uid
    assert st.st_gid == grp.getgrnam("postdrop").gr_gid
    assert "listening on inet" not in m.stderr()
    pf = postfix_factory(milter="unix:" + path)
    r = pf.send(to=["a@example.com"], data=b"Subject: u\r\n\r\nunix\r\n",
                **CLIENT)
    q = parse(os.path.join(m.milterin, queued_id(data_reply(r.transcript))))
    assert q.message.endswith(b"\n\nunix\n")


# ---------------------------------------------------------------------------
# IPC protocol version (issue 13): after an upgrade a running parent may
# start new children, or a new parent meet old ones.  A child refuses a
# parent of another version before reading anything else, and says so.

IPC_MAGIC = 0x494d534d
# Read from common/ipc.h, so that a bump there cannot leave this behind.
with open(os.path.join(os.path.dirname(__file__), "..", "..", "common",
                       "ipc.h")) as _f:
    IPC_VERSION = int(re.search(r"^#define IPC_VERSION\s+(\d+)", _f.read(),
                                re.M).group(1))
MSG_PARENT_SETTINGS = 1    # never renumbered
MSG_CHILD_LOG = 7          # never renumbered
CHILD_EXIT_PROTOCOL = 78


def records(sock, timeout=10.0):
    """(type, payload) of every record until the peer closes."""
    sock.settimeout(timeout)
    out = []
    while True:
        data = sock.recv(70000)
        if not data:
            return out
        out.append((struct.unpack("=II", data[:8])[0], data[8:]))


def run_child_with_settings(name, payload):
    """A real child binary with our end of its channel on descriptor 3."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def to_fd3():
        os.dup2(child.fileno(), 3)

    p = subprocess.Popen([os.path.join(build_dir(), name)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, preexec_fn=to_fd3,
                         close_fds=False)
    child.close()
    parent.send(struct.pack("=II", MSG_PARENT_SETTINGS, len(payload)) +
                payload)
    recs = records(parent)
    rc = p.wait(timeout=10)
    parent.close()
    logs = [r[1][4:].rstrip(b"\0").decode() for r in recs
            if r[0] == MSG_CHILD_LOG]
    return rc, logs


@pytest.mark.parametrize("name", ["msmilter-capture", "msmilter-spooler",
                                  "msmilter-relay"])
@pytest.mark.parametrize("payload,words", [
    # a newer (or older) parent: another version's header, settings of
    # any size
    (struct.pack("=IIII", IPC_MAGIC, IPC_VERSION + 1, 4096, 0) + bytes(4096),
     ["parent speaks IPC protocol version %d" % (IPC_VERSION + 1),
      "this program version %d" % IPC_VERSION]),
    # a parent from before the version header: the settings come first
    (b"/etc/MailScanner/MailScanner.conf".ljust(30000, b"\0"),
     ["older than version 2", "this program version %d" % IPC_VERSION]),
    # same version, different struct msm_settings
    (struct.pack("=IIII", IPC_MAGIC, IPC_VERSION, 100, 0) + bytes(100),
     ["version %d on both sides" % IPC_VERSION, "settings are 100 bytes"]),
], ids=["version-next", "no-header", "other-size"])
def test_child_refuses_other_protocol_version(name, payload, words):
    rc, logs = run_child_with_settings(name, payload)
    assert rc == CHILD_EXIT_PROTOCOL, logs
    line = [l for l in logs if "refusing to run" in l]
    assert line, logs
    for w in words:
        assert w in line[0], line


FAKE_NEW_CHILD = r'''#!/usr/bin/python3
# A child of the next protocol version, as after an upgrade of the binaries.
import os, socket, struct, sys
s = socket.socket(fileno=3)
rec = s.recv(70000)
typ, n = struct.unpack("=II", rec[:8])
magic, version, size, _ = struct.unpack("=IIII", rec[8:24])
ok = typ == 1 and magic == 0x494d534d and n == len(rec) - 8 and \
    size == n - 16
text = ("refusing to run: the parent speaks IPC protocol version %d, this "
        "program version %d (header %s)" % (version, version + 1,
                                             "ok" if ok else "BAD"))
body = struct.pack("=i", 4) + text.encode() + b"\0"
s.send(struct.pack("=II", 7, len(body)) + body)
sys.exit(78)
'''


def test_parent_explains_child_of_other_version(test_base):
    """A running parent restarts a child whose binary was upgraded."""
    bindir = os.path.join(test_base, "bin")
    os.makedirs(bindir)
    for n in ("msmilter", "msmilter-capture", "msmilter-spooler",
              "msmilter-relay"):
        shutil.copy2(os.path.join(build_dir(), n), os.path.join(bindir, n))
    m = MsMilter(os.path.join(test_base, "m"),
                 binary=os.path.join(bindir, "msmilter"))
    m.start()
    try:
        wait_for(lambda: child_pids(m.pid)["relay"], 20, "relay")
        old = child_pids(m.pid)["relay"]
        fake = os.path.join(bindir, "msmilter-relay.new")
        with open(fake, "w") as f:
            f.write(FAKE_NEW_CHILD)
        os.chmod(fake, 0o755)
        os.rename(fake, os.path.join(bindir, "msmilter-relay"))
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while ("exited with status 78" not in m.stderr() and
               time.monotonic() < deadline):
            time.sleep(0.1)
        log = m.stderr()
        assert re.search(r"relay\[\d+\]: refusing to run: the parent speaks "
                         r"IPC protocol version %d, this program version %d "
                         r"\(header ok\)" % (IPC_VERSION, IPC_VERSION + 1),
                         log), log
        assert re.search(r"relay \(pid \d+\) exited with status 78: it "
                         r"refused our IPC protocol version %d" % IPC_VERSION,
                         log), log
        assert "restarting relay in" in log
    finally:
        m.stop()
