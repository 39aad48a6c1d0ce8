"""Prometheus textfile metrics (Milter Metrics File): after a known mix of
traffic through a private Postfix the file holds exactly those counts, is
valid text format (a small parser here, promtool when installed), is
replaced atomically and says msmilter_up 0 at stop."""

import os
import re
import shutil
import subprocess

import pytest

from postfix import MsMilter, Postfix, child_pids
from test_capture import wait_for
from test_relay import RelayStack, queue_file
from queuefile import real_files

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(r"(%s)(?:\{(.*)\})? (\S+)$" % NAME)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')

# The names DESIGN.md lists: metric families, as in their TYPE lines.
WRITTEN = {"msmilter_up", "msmilter_messages_total", "msmilter_relay_total",
           "msmilter_queue_files", "msmilter_queue_oldest_seconds",
           "msmilter_child_restarts_total", "msmilter_commit_seconds"}
# Histograms: their samples are FAMILY_bucket{le=...}, _sum and _count.
HISTOGRAMS = {"msmilter_commit_seconds"}
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def family(name):
    """The family a sample (or a series a query names) belongs to."""
    base = HISTOGRAM_SUFFIX.sub("", name)
    return base if base in HISTOGRAMS and base != name else name


def parse(text):
    """{(name, frozenset(labels.items())): value}; asserts the format:
    HELP/TYPE before a family's samples, once each, label syntax, values
    that are numbers, a final newline."""
    assert text.endswith("\n")
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert re.match(r"# HELP %s .+" % NAME, line), line
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary",
                            "untyped"), line
            assert name not in types, "TYPE twice: " + line
            assert not any(k[0] == name for k in samples), line
            types[name] = kind
            continue
        assert not line.startswith("#") and line.strip(), repr(line)
        m = SAMPLE.match(line)
        assert m, "bad sample line %r" % line
        name, labels, value = m.groups()
        fam = family(name)
        assert fam in types, "sample before its TYPE: " + line
        if fam != name:
            assert types[fam] == "histogram", line
        lab = {}
        if labels:
            rest = labels
            while rest:
                lm = LABEL.match(rest)
                assert lm, "bad labels in %r" % line
                lab[lm.group(1)] = lm.group(2)
                rest = rest[lm.end():]
                if rest.startswith(","):
                    rest = rest[1:]
        float(value)
        if types[fam] == "counter":
            assert name.endswith("_total") and float(value) >= 0, line
        key = (name, frozenset(lab.items()))
        assert key not in samples, "duplicate sample " + line
        samples[key] = float(value)
    for h in HISTOGRAMS:
        if h in types:
            check_histogram(samples, h)
    return types, samples


def check_histogram(samples, name):
    """Buckets cumulative up to +Inf, which equals _count; a _sum."""
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in samples.items()
                     if k[0] == name + "_bucket")
    assert buckets and buckets[-1][0] == float("inf"), buckets
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), buckets
    assert buckets[-1][1] == samples[(name + "_count", frozenset())]
    assert samples[(name + "_sum", frozenset())] >= 0


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def read_metrics(path):
    with open(path) as f:
        text = f.read()
    promtool = shutil.which("promtool")
    if promtool:
        p = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert p.returncode == 0, p.stdout.decode()
    return parse(text)


class Stack:
    """msmilter with metrics behind a private Postfix whose smtpd uses it;
    the relay delivers into the Postfix's re-injection listener."""

    def __init__(self, test_base, extra=None):
        self.path = os.path.join(test_base, "prom", "msmilter.prom")
        os.makedirs(os.path.dirname(self.path))
        s = {"Milter Metrics File": self.path,
             "Milter Metrics Interval": "1",
             "Milter Relay Min Retry": "1", "Milter Relay Max Retry": "2"}
        s.update(extra or {})
        self.m = MsMilter(os.path.join(test_base, "ms"), settings=s)
        self.pf = Postfix(os.path.join(test_base, "pf"), milter=self.m,
                          reinject=True)
        self.m.settings["MSMail Relay Port"] = str(self.pf.reinject_port)
        self.m.start()
        try:
            self.pf.start()
        except Exception:
            self.m.stop()
            raise
        wait_for(lambda: child_pids(self.m.pid)["relay"], 20,
                 "the relay to start")

    # Dropping into milterout and waiting for the relay, as RelayStack does.
    drop = RelayStack.drop
    wait_gone = RelayStack.wait_gone

    def close(self):
        self.pf.stop()
        if self.m.proc is not None and self.m.proc.poll() is None:
            self.m.stop()


@pytest.fixture
def stacks(test_base):
    made = []

    def make(extra=None):
        base = os.path.join(test_base, "s%d" % len(made))
        os.makedirs(base)
        os.chmod(base, 0o755)
        st = Stack(base, extra)
        made.append(st)
        return st, st.path
    yield make
    for st in made:
        st.close()


def wait_metric(path, name, want, **labels):
    def ok():
        try:
            _, samples = read_metrics(path)
            return value(samples, name, **labels) == want
        except (OSError, KeyError):
            return False
    wait_for(ok, 20, "%s%r = %s in %s" % (name, labels, want, path))


def test_counts_after_known_traffic(stacks):
    st, path = stacks()
    wait_for(lambda: os.path.exists(path), 10, "the metrics file")
    types, samples = read_metrics(path)
    assert set(types) == WRITTEN, types
    assert value(samples, "msmilter_up") == 1
    assert value(samples, "msmilter_messages_total", result="committed") == 0

    # Three messages through Postfix into milterin (no MailScanner here:
    # they stay), two files MailScanner "wrote" into milterout.
    for i in range(3):
        r = st.pf.send(to=("m%d@example.com" % i,))
        assert r.rc == 0, r.transcript
    wait_for(lambda: len(real_files(st.m.milterin)) == 3, 20, "3 commits")
    for name in ("4F2A1B3C01", "4F2A1B3C02"):
        st.drop(name, queue_file("a@example.org", ["b@example.com"],
                                 b"Subject: x\n\nbody\n"))
    for name in ("4F2A1B3C01", "4F2A1B3C02"):
        st.wait_gone(name)
    wait_metric(path, "msmilter_relay_total", 2, result="delivered")
    wait_metric(path, "msmilter_queue_files", 0, queue="milterout")
    # Capture reports each commit's time once Postfix has its answer.
    wait_metric(path, "msmilter_commit_seconds_count", 3)
    _, samples = read_metrics(path)
    assert value(samples, "msmilter_messages_total", result="committed") == 3
    for r in ("rejected", "tempfailed", "accepted_loopback"):
        assert value(samples, "msmilter_messages_total", result=r) == 0
    for r in ("deferred", "requeued", "quarantined"):
        assert value(samples, "msmilter_relay_total", result=r) == 0
    assert value(samples, "msmilter_queue_files", queue="milterin") == 3
    # Each committed message once in the commit latency histogram
    # (capture's time from the end of the message to COMMITTED).
    assert value(samples, "msmilter_commit_seconds_count") == 3
    assert value(samples, "msmilter_commit_seconds_bucket", le="+Inf") == 3
    assert 0 < value(samples, "msmilter_commit_seconds_sum") < 3 * 60
    assert value(samples, "msmilter_queue_oldest_seconds",
                 queue="milterout") == 0
    # The oldest file's age, from the scan that first saw it, grows.
    age = value(samples, "msmilter_queue_oldest_seconds", queue="milterin")
    assert 0 <= age <= 30

    def older():
        _, smp = read_metrics(path)
        return value(smp, "msmilter_queue_oldest_seconds",
                     queue="milterin") >= age + 2
    wait_for(older, 10, "milterin's oldest age to grow")
    for c in ("spooler", "capture", "relay"):
        assert value(samples, "msmilter_child_restarts_total", child=c) == 0

    # A child killed is one restart; no temp file is left beside the file.
    os.kill(child_pids(st.m.pid)["relay"], 9)
    wait_metric(path, "msmilter_child_restarts_total", 1, child="relay")
    assert os.listdir(os.path.dirname(path)) == ["msmilter.prom"]

    # At stop: written once more, msmilter_up 0, the counts kept.
    st.m.stop()
    _, samples = read_metrics(path)
    assert value(samples, "msmilter_up") == 0
    assert value(samples, "msmilter_messages_total", result="committed") == 3
    assert value(samples, "msmilter_child_restarts_total", child="relay") == 1


def test_counts_with_the_audit_log_off(stacks):
    st, path = stacks({"Milter Audit Log": ""})
    for i in range(2):
        assert st.pf.send().rc == 0
    wait_metric(path, "msmilter_messages_total", 2, result="committed")
    assert not os.path.exists(st.m.audit_log)


def test_loopback_is_counted(stacks):
    st, path = stacks({"Milter Ignore Loopback": "yes"})
    # Each smtpd connection is one (the fixture's banner check too).
    wait_metric(path, "msmilter_messages_total", 1,
                result="accepted_loopback")
    before = 1
    assert st.pf.send().rc == 0
    wait_metric(path, "msmilter_messages_total", before + 1,
                result="accepted_loopback")
    _, samples = read_metrics(path)
    assert value(samples, "msmilter_messages_total", result="committed") == 0
    # Each said in the log: no queue id yet at connect, as Postfix says.
    capture = child_pids(st.m.pid)["capture"]
    assert len(re.findall(r"^msmilter/capture\[%d\]: NOQUEUE: accept: "
                          r"loopback client \S+\[127\.0\.0\.1\] \(Milter "
                          r"Ignore Loopback = yes\): not spooled$" % capture,
                          st.m.stderr(), re.M)) >= 2, st.m.stderr()
