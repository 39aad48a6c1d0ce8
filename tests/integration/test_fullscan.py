"""Full Milter Scanner mode against a real clamd (Debian's clamav-daemon)
on a private socket with a database the test writes: the verdict becomes
the SMTP reply (554 virus, 451 scanner trouble, ACCEPT clean, the
configured reply for clamd's size limits), Postfix delivers a clean
message itself, and no file stays in milterin whatever happened."""

import json
import os
import socket
import subprocess
import threading
import time

import pytest

from clamd import EICAR, EICAR_SIG, OWN_PATTERN, OWN_SIG, Clamd, available
from postfix import build_dir, child_pids, make_base, remove_base

pytestmark = pytest.mark.skipif(not available(),
                                reason="clamd (clamav-daemon) not installed")

CLEAN = b"Subject: clean\r\nFrom: a@example.org\r\n\r\nnothing here\r\n"


def msg(body, subject="test"):
    return (b"Subject: " + subject.encode() + b"\r\nFrom: a@example.org\r\n"
            b"\r\n" + body + b"\r\n")


@pytest.fixture(scope="module")
def clamd():
    """One clamd for the module (it starts in seconds with a tiny DB)."""
    base = make_base("msmtest-clamd-")
    c = Clamd(base).start()
    yield c
    c.stop()
    remove_base(base)


@pytest.fixture
def own_clamd(test_base):
    """A clamd of the test's own, for tests that stop or stall it."""
    made = []

    def factory(limits=None):
        c = Clamd(os.path.join(test_base, "clamd%d" % len(made)),
                  limits=limits).start()
        made.append(c)
        return c
    yield factory
    for c in made:
        c.stop()


def full(msmilter_factory, postfix_factory, clamd, extra=None, pf_kw=None):
    s = {"Milter Full Scanner": "yes", "Milter Clamd Socket": clamd.socket,
         "MTA": "postfix", "Milter Clamd Timeout": "20",
         "Milter Metrics Interval": "1"}
    s.update(extra or {})
    m = msmilter_factory(settings=s)
    kw = {"main_cf": {"message_size_limit": "60000000"}}
    kw.update(pf_kw or {})
    pf = postfix_factory(milter=m, **kw)
    return m, pf


def send(pf, data, sender="s@example.org", rcpt="r@example.com"):
    with pf.raw_smtp(timeout=120) as c:
        return c.message(sender, [rcpt], data)


def no_files(m):
    """milterin is empty: no queue file, no temp file."""
    return os.listdir(m.milterin) == []


def audit_scans(m):
    out = []
    with open(m.audit_log) as f:
        for line in f:
            rec = json.loads(line)
            if rec["event"] == "scan":
                out.append(rec)
    return out


def wait_for(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    return pred()


def metric(m, name):
    try:
        with open(m.metrics) as f:
            for line in f:
                if line.startswith(name + " "):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


@pytest.mark.parametrize("method", ["fdpass", "instream"])
def test_eicar_rejected_with_its_name(msmilter_factory, postfix_factory,
                                      clamd, test_base, method):
    metrics = os.path.join(test_base, "metrics.prom")
    m, pf = full(msmilter_factory, postfix_factory, clamd,
                 {"Milter Clamd Method": method,
                  "Milter Metrics File": metrics})
    m.metrics = metrics
    code, text = send(pf, msg(b"look: " + EICAR))
    assert code == 554, text
    assert "5.7.1" in text and EICAR_SIG in text, text
    assert no_files(m)
    pf.wait_queue_empty()
    assert pf.sink_messages() == []
    scans = wait_for(lambda: audit_scans(m))
    assert scans[0]["result"] == "virus", scans
    assert scans[0]["signature"] == EICAR_SIG
    assert scans[0]["sender"] == "s@example.org"
    assert scans[0]["rcpts"] == ["r@example.com"]
    assert wait_for(lambda: metric(
        m, 'msmilter_scan_total{result="virus"}') == 1)
    assert metric(m, 'msmilter_scan_total{result="clean"}') == 0
    # msmilter -s says so too.
    st = json.loads(subprocess.run(
        [m.binary, "-s", "--json", "-f", m.conf], stdout=subprocess.PIPE,
        check=True).stdout)
    assert st["scan"] == {"clean": 0, "virus": 1, "tempfail": 0,
                          "oversize": 0}, st
    # msmilter-audit reads the record back.
    out = subprocess.run([os.path.join(build_dir(), "msmilter-audit"),
                          "show", "--event", "scan", m.audit_log],
                         stdout=subprocess.PIPE, check=True).stdout.decode()
    assert "result=virus signature=%s" % EICAR_SIG in out, out


def test_own_pattern_rejected(msmilter_factory, postfix_factory, clamd):
    m, pf = full(msmilter_factory, postfix_factory, clamd)
    code, text = send(pf, msg(b"a line with " + OWN_PATTERN + b" in it"))
    assert code == 554 and OWN_SIG in text, text
    assert no_files(m)
    pf.wait_queue_empty()
    assert pf.sink_messages() == []


# Audit Sync = every: the spooler sends the verdict only once the parent
# has the scan record on disk (the event loop answers, not the pool).
@pytest.mark.parametrize("sync", ["epoch", "every"])
def test_clean_message_delivered_by_postfix(msmilter_factory,
                                            postfix_factory, clamd, sync):
    m, pf = full(msmilter_factory, postfix_factory, clamd,
                 {"Milter Audit Sync": sync})
    code, text = send(pf, CLEAN)
    assert code == 250, text
    assert no_files(m)
    got = pf.wait_sink(1)
    assert len(got) == 1 and b"nothing here" in got[0].data
    assert got[0].recipients == ["r@example.com"]
    assert m.milterout_files() == []
    scans = wait_for(lambda: audit_scans(m))
    assert scans[0]["result"] == "clean"


def test_several_messages_on_one_connection(msmilter_factory,
                                            postfix_factory, clamd):
    m, pf = full(msmilter_factory, postfix_factory, clamd)
    with pf.raw_smtp(timeout=120) as c:
        a = c.message("s@example.org", ["r@example.com"], CLEAN)
        b = c.message("s@example.org", ["r@example.com"], msg(EICAR),
                      ehlo=None)
        d = c.message("s@example.org", ["r@example.com"], CLEAN, ehlo=None)
    assert (a[0], b[0], d[0]) == (250, 554, 250), (a, b, d)
    assert len(pf.wait_sink(2)) == 2
    assert no_files(m)


def test_clamd_stopped_tempfails(msmilter_factory, postfix_factory,
                                 own_clamd):
    c = own_clamd()
    m, pf = full(msmilter_factory, postfix_factory, c)
    assert send(pf, CLEAN)[0] == 250
    # SIGKILL leaves the socket file behind: connect is refused.
    c.proc.kill()
    c.proc.wait()
    code, text = send(pf, CLEAN)
    assert code == 451 and "4.7.1" in text, text
    assert no_files(m)
    # No socket at all.
    c.stop()
    code, text = send(pf, msg(EICAR))
    assert code == 451 and "4.7.1" in text, text
    assert no_files(m)
    pf.wait_queue_empty()
    assert len(pf.sink_messages()) == 1     # only the first one
    said = "not scanned (tempfail): cannot connect to clamd"
    assert said in m.logged(said)


def test_clamd_stalled_tempfails_within_the_timeout(msmilter_factory,
                                                    postfix_factory,
                                                    own_clamd):
    c = own_clamd()
    m, pf = full(msmilter_factory, postfix_factory, c,
                 {"Milter Clamd Timeout": "3"})
    c.pause()
    try:
        t0 = time.monotonic()
        code, text = send(pf, CLEAN)
        took = time.monotonic() - t0
    finally:
        c.resume()
    assert code == 451 and "4.7.1" in text, text
    # Bounded by the spooler's Milter Clamd Timeout, far below capture's
    # own bound (3 + 60 s) and Postfix's 300 s; generous for a busy host.
    assert took < 40, took
    assert no_files(m)
    assert "within Milter Clamd Timeout" in m.logged(
        "within Milter Clamd Timeout")
    pf.wait_queue_empty()
    assert pf.sink_messages() == []


def rss_kb(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


@pytest.mark.parametrize("method", ["fdpass", "instream"])
def test_30mb_scanned_with_memory_flat(msmilter_factory, postfix_factory,
                                       clamd, method):
    m, pf = full(msmilter_factory, postfix_factory, clamd,
                 {"Milter Clamd Method": method, "Milter Clamd Timeout":
                  "120"})
    kids = child_pids(m.pid)
    # Warm up: one small message through both children first.
    assert send(pf, CLEAN)[0] == 250
    before = {k: rss_kb(kids[k]) for k in ("capture", "spooler")}
    line = b"x" * 76 + b"\r\n"
    body = line * (30 * 1024 * 1024 // len(line))
    # The signature at the very end: clamd saw every byte.
    code, text = send(pf, msg(body + EICAR))
    assert code == 554 and EICAR_SIG in text, text
    after = {k: rss_kb(kids[k]) for k in ("capture", "spooler")}
    for k in before:
        grew = after[k]["VmHWM"] - before[k]["VmHWM"]
        assert grew < 20 * 1024, (k, before[k], after[k])
    assert no_files(m)


@pytest.mark.parametrize("method,limits", [
    ("instream", {"StreamMaxLength": "1M"}),
    ("fdpass", {"MaxFileSize": "1M", "MaxScanSize": "1M"}),
])
@pytest.mark.parametrize("action,code", [("tempfail", 451), ("reject", 552)])
def test_clamd_size_limit_gets_the_configured_reply(
        msmilter_factory, postfix_factory, own_clamd, method, limits,
        action, code):
    c = own_clamd(limits)
    m, pf = full(msmilter_factory, postfix_factory, c,
                 {"Milter Clamd Method": method,
                  "Milter Clamd Oversize": action})
    body = (b"y" * 76 + b"\r\n") * (2 * 1024 * 1024 // 78)
    got, text = send(pf, msg(body))
    assert got == code, text
    assert "too large to be scanned" in text, text
    assert ("4.7.1" if code == 451 else "5.3.4") in text
    assert no_files(m)
    pf.wait_queue_empty()
    assert pf.sink_messages() == []
    scans = wait_for(lambda: audit_scans(m))
    assert scans[0]["result"] == "oversize", scans


def test_blacklisted_sender_refused_at_data_without_a_scan(
        msmilter_factory, postfix_factory, clamd, test_base):
    bl = os.path.join(test_base, "spam.blacklist.rules")
    with open(bl, "w") as f:
        f.write("From:   spammer@bad.example   yes\n"
                "FromOrTo:  default   no\n")
    m, pf = full(msmilter_factory, postfix_factory, clamd,
                 {"Milter Scanner": "yes", "Is Definitely Spam": bl})
    code, text = send(pf, CLEAN, sender="spammer@bad.example")
    assert code == 554 and "Message Blacklisted" in text, text
    assert no_files(m)
    # Refused at DATA: the spooler never had the message to scan.
    time.sleep(0.5)
    assert audit_scans(m) == []
    assert send(pf, CLEAN)[0] == 250


class Forwarder:
    """A unix socket that relays bytes to clamd's and back, as a socket
    forwarded from another host (ssh -L, socat) does: no descriptor
    crosses it, so FDPASS cannot work through it and INSTREAM must."""

    def __init__(self, path, target):
        self.path, self.target = path, target
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(path)
        os.chmod(path, 0o666)       # as clamd's LocalSocketMode 666
        self.srv.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                a, _ = self.srv.accept()
            except OSError:
                return
            b = socket.socket(socket.AF_UNIX)
            b.connect(self.target)
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(x, y),
                                 daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.srv.close()


def test_forwarded_clamd_needs_instream(msmilter_factory, postfix_factory,
                                        clamd, test_base):
    fw = Forwarder(os.path.join(test_base, "fwd.sock"), clamd.socket)
    try:
        fake = Clamd.__new__(Clamd)
        fake.socket = fw.path
        m, pf = full(msmilter_factory, postfix_factory, fake)
        code, text = send(pf, msg(EICAR))
        assert code == 451 and "4.7.1" in text, text
        assert "No file descriptor received" in m.stderr() or \
            "unparseable" in m.stderr(), m.stderr()
        rc, lines = doctor(m)
        bad = [ln for ln in lines if "error:" in ln]
        assert rc == 1 and len(bad) == 1, lines
        assert "answers PING but" in bad[0] and "instream" in bad[0], bad
        m2, pf2 = full(msmilter_factory, postfix_factory, fake,
                       {"Milter Clamd Method": "instream"})
        code, text = send(pf2, msg(EICAR))
        assert code == 554 and EICAR_SIG in text, text
        rc, lines = doctor(m2)
        assert [ln for ln in lines if "error:" in ln] == [], lines
        assert no_files(m) and no_files(m2)
    finally:
        fw.close()


def doctor(m):
    m.write_config()
    p = subprocess.run([m.binary, "-t", "-f", m.conf],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    return p.returncode, p.stderr.decode().splitlines()


def test_doctor_pings_clamd(msmilter_factory, own_clamd):
    c = own_clamd()
    m = msmilter_factory(settings={
        "Milter Full Scanner": "yes", "Milter Clamd Socket": c.socket,
        "MTA": "postfix", "Deliver Cleaned Messages": "no"}, start=False)
    rc, lines = doctor(m)
    assert [ln for ln in lines if "clamd" in ln.lower()] == [], lines
    assert [ln for ln in lines if "error:" in ln] == [], lines
    assert rc == 0, lines
    c.stop()
    rc, lines = doctor(m)
    bad = [ln for ln in lines if "error:" in ln]
    assert rc == 1, lines
    assert len(bad) == 1 and "Milter Clamd Socket" in bad[0] and \
        c.socket in bad[0], lines


def test_doctor_refuses_full_mode_with_mailscanner_on_milterin(
        msmilter_factory, clamd):
    m = msmilter_factory(settings={
        "Milter Full Scanner": "yes", "Milter Clamd Socket": clamd.socket,
        "MTA": "msmail", "Deliver Cleaned Messages": "no"}, start=False)
    rc, lines = doctor(m)
    bad = [ln for ln in lines if "error:" in ln]
    assert rc == 1
    assert len(bad) == 1 and "MTA = msmail" in bad[0], lines
