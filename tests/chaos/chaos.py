#!/usr/bin/python3
"""make chaos: faults injected into the whole loop under load, then the
books are checked (issue 15).

    Postfix (in) --milter--> msmilter --> milterin --[MailScanner stand-in]-->
    milterout --relay--> Postfix (out, rejects reject-* recipients) --> sink

20 SMTP sessions send uniquely tagged messages through the inbound
Postfix while faults are injected one after another at random moments:
capture, spooler or relay kill -9'd; the spooler SIGSTOPped past the
commit timeout; milterin (a small tmpfs, or chmod when nothing can be
mounted) filled up; the relay's MTA taken down mid-delivery (its listener
closed, its smtpd processes kill -9'd) and brought back; the relay killed
between a delivery and the unlink (milterout made read-only until the
relay says "delivered but cannot unlink it", then kill -9; the relay sends
nothing while milterout is read-only, so this happens only when the chmod
lands mid-delivery, and otherwise the relay is killed after 5 s).  The
stand-in for MailScanner is contrib/demo.py's: it moves milterin to milterout, and
quarantines what the relay requeued with its Relay-Reject header.

At the end every message that got 250 must be at the sink exactly once
(its accepted recipients) and, when a recipient was rejected there,
requeued exactly once; no temp file left; nothing in milterout-invalid.

Each duplicate is classified with its evidence (Evidence below), copy by
copy: a copy at the sink is recorded when "out" queued it under the queue
id of a 250 the relay logged ("file=NAME, status=sent (250 ... queued as
ID)"), which it does right after recording the 250 (relay/settle.c).  A copy the
relay never recorded is explained only by SMTP's own window (RFC 1047),
shown from the logs of both sides:

  relay-window  the relay's MTA logged its 250 for that queue id, its
                client then vanished without another command (the smtpd's
                next line is a disconnect with no QUIT), and the relay
                died (the audit log's child_exit) in that second:
                killed after the MTA had the whole message and before the
                relay could record the 250.
  mta-window    the relay's MTA was killed (an mta-down fault) while out
                queued that copy, its smtpd never reported the session's
                end, and the relay deferred the file after the fault: the
                250 died with the smtpd, so the relay, which never saw it,
                sent the message again.

Any other duplicate is a failure, with what the logs say about it.

    chaos.py [--faults N | --seconds S] [--seed N] [--keep]

Exit status 0 when nothing was lost and every duplicate is explained, 1
otherwise (--strict: also when a duplicate is explained).
tests/integration/test_chaos.py runs a short version in make check."""

import argparse
import calendar
import os
import pwd
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "contrib"))

import postfix as P  # noqa: E402
from load import TAG_RE, Load  # noqa: E402
from demo import mailscanner_move, read_queue_file  # noqa: E402

ORG = "Chaos"
REJECT_HEADER = b"X-%s-MailScanner-Relay-Reject:" % ORG.encode()
COMMIT_TIMEOUT = 3
# Each session waits this long after every transaction: about 40 messages
# a second in all, which the relay (16 connections, restarted every few
# seconds, its queue still quadratic, issue 15) can keep up with, so that
# the books are closed on a drained system, not on a growing backlog.
PAUSE = 0.5
KINDS = ("capture-kill", "spooler-kill", "relay-kill", "relay-unlink",
         "spooler-stop", "milterin-full", "mta-down")
WEIGHTS = (25, 25, 25, 6, 3, 8, 8)
# Why a message was delivered twice, when the logs show it (the docstring;
# Evidence): SMTP's own window, on the relay's side or its MTA's.
DUP_CLASSES = ("relay-window", "mta-window", "unexplained")
EXPLAINED = ("relay-window", "mta-window")
QUEUED_BY_OUT = re.compile(rb"\(Postfix\) with E?SMTP id (\w+)")
WORD = re.compile(r"^\w+$")
SUFFIX_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
MSGID = re.compile(r"^\w+(\.\w+)?$")


def category(tag):
    """normal: one recipient the MTA takes; reject: one it refuses (the
    message is requeued); mixed: one of each (delivered once, requeued
    once)."""
    n = sum(tag.encode()) * 7 + len(tag)
    return "reject" if n % 13 == 0 else "mixed" if n % 13 == 1 else "normal"


def recipients(tag):
    return {"normal": ["ok-%s@example.com" % tag],
            "reject": ["reject-%s@example.com" % tag],
            "mixed": ["ok-%s@example.com" % tag,
                      "reject-%s@example.com" % tag]}[category(tag)]

MAILLOG = re.compile(r"^(\w{3} +\d+ \d\d:\d\d:\d\d) \S+ [\w/-]+/smtpd\[(\d+)\]: "
                     r"(.*)$")
PROXY_ACCEPT = re.compile(r"proxy-accept: END-OF-MESSAGE: 250 .*queued as "
                          r"(\w+);")
OUT_QUEUED = re.compile(r"^(\w+): client=")
# The relay's line for a delivery, in Postfix's shape (relay/logline.c):
# "QID: to=<...>, relay=..., file=NAME, status=sent (250 ... queued as ID)".
RELAY_RECORDED = re.compile(rb"file=([\w.]+), status=sent \(2[^\n]*queued "
                            rb"as (\w+)\)")


def fmt(t):
    return time.strftime("%H:%M:%S", time.localtime(t)) + \
        ("%.3f" % (t % 1))[1:]


def maillog_time(stamp):
    """Postfix's "Dec 07 13:30:24" (local time, whole seconds)."""
    t = time.strptime("%d %s" % (time.localtime().tm_year,
                                 " ".join(stamp.split())), "%Y %b %d %H:%M:%S")
    return time.mktime(t)


class Evidence:
    """What the logs of both sides say about each copy at the sink: the
    relay's "delivered" lines (with the queue id its MTA answered), the
    MTA's smtpd lines (its 250 for that queue id, then how the session
    ended), out's (when it queued the copy), the relay's deaths (the
    audit log's child_exit, microseconds) and the faults' wall times."""

    def __init__(self, c, log):
        self.c = c
        self.log = log
        self.recorded = {q.decode(): n.decode()
                         for n, q in RELAY_RECORDED.findall(log)}
        self.accept = {}        # qid -> (time, smtpd pid, its next line)
        self.out_time = {}      # qid -> time "out" queued it
        self.out_end = {}       # qid -> time out's smtpd saw its client go
        self.read_mta(c.pf_mta.maillog_path)
        self.read_out(c.pf_out.maillog_path)
        self.deaths = self.relay_deaths()

    def read_mta(self, path):
        open_accept = {}        # smtpd pid -> qid waiting for its next line
        for line in self.lines(path):
            m = MAILLOG.match(line)
            if not m:
                continue
            t, pid, text = maillog_time(m.group(1)), m.group(2), m.group(3)
            if pid in open_accept:
                qid = open_accept.pop(pid)
                self.accept[qid] = self.accept[qid][:2] + ((t, text),)
            a = PROXY_ACCEPT.search(text)
            if a:
                self.accept[a.group(1)] = (t, pid, None)
                open_accept[pid] = a.group(1)

    def read_out(self, path):
        """When out queued each copy, and when its smtpd then saw its
        client (the MTA's smtpd, the proxy) go: at once when that one
        was killed, however long out's own commit took."""
        open_qid = {}           # smtpd pid -> queue id of its transaction
        for line in self.lines(path):
            m = MAILLOG.match(line)
            if not m:
                continue
            t, pid, text = maillog_time(m.group(1)), m.group(2), m.group(3)
            q = OUT_QUEUED.match(text)
            if q:
                self.out_time[q.group(1)] = t
                open_qid[pid] = q.group(1)
            elif pid in open_qid and (text.startswith("disconnect from") or
                                      text.startswith("lost connection")):
                self.out_end[open_qid.pop(pid)] = t

    @staticmethod
    def lines(path):
        try:
            with open(path, errors="replace") as f:
                return f.read().splitlines()
        except OSError:
            return []

    def relay_deaths(self):
        """Wall times of the relay's deaths: the audit log's, else the
        harness's own kills."""
        out = []
        path = os.path.join(os.path.dirname(self.c.m.milterout), "audit.log")
        for line in self.lines(path):
            if '"child_exit"' not in line or '"relay"' not in line:
                continue
            m = re.search(r'"time":"([^"]+)Z"', line)
            if m:
                out.append(calendar.timegm(time.strptime(
                    m.group(1).split(".")[0], "%Y-%m-%dT%H:%M:%S")) +
                    float("0." + m.group(1).split(".")[1]))
        if not out:
            out = [f[5] for f in self.c.faults if f[0] in ("relay-kill",
                                                           "relay-unlink")]
        return sorted(out)

    def names(self, tag):
        return [n for n, (t, _) in self.c.standin.moved.items() if t == tag]

    def relay_lines(self, tag):
        """The relay's lines about the tag's milterout files."""
        out = []
        for n in self.names(tag):
            key = re.escape(n.encode())
            out += re.findall(rb"^[^\n]*relay\[\d+\]: [^\n]*(?:file=" + key +
                              rb",|" + key + rb": )[^\n]*", self.log, re.M)
        return [x.decode("utf-8", "replace")[:160] for x in out]

    def deferred_after(self, name, offset):
        """Did the relay defer this file after that log offset (so it
        never saw the 250 of the attempt the MTA's death cut)?"""
        return re.search(rb"file=" + re.escape(name.encode()) +
                         rb", status=deferred ", self.log[offset:])

    def window(self, qid, name):
        """(class, why) when this unrecorded copy is SMTP's window."""
        acc = self.accept.get(qid)
        if acc and acc[2]:
            t250, pid, (tend, nxt) = acc
            # A client gone mid-transaction is "lost connection after
            # MAIL" (RCPT, DATA...); one gone between transactions, after
            # this 250 and before its next command, only "disconnect",
            # with no quit= among the session's counts.
            vanished = nxt.startswith("disconnect from") and \
                "quit=" not in nxt
            # The client's socket closes when the relay dies: the smtpd
            # logs the disconnect at once, in the second of the death
            # (Postfix logs whole seconds, the audit log microseconds).
            died = [d for d in self.deaths if tend - 1 <= d < tend + 1]
            if vanished and died:
                return ("relay-window", "%s: the MTA's smtpd[%s] logged its "
                        "250 at %s; its client then vanished with no other "
                        "command (\"%s\" at %s); the relay died at %s; the "
                        "relay never recorded %s" % (
                            qid, pid, fmt(t250), nxt[:60], fmt(tend),
                            fmt(died[0]), qid))
        tq = self.out_time.get(qid, acc[0] if acc else None)
        # out's smtpd sees its client go when the MTA's smtpd is killed,
        # also when out's commit took long (a loaded machine).
        tq = self.out_end.get(qid, tq)
        if tq is not None and (acc is None or acc[2] is None):
            # The nearest mta-down (Postfix logs whole seconds).
            near = sorted((f for f in self.c.faults if f[0] == "mta-down"),
                          key=lambda f: 0 if f[4] <= tq <= f[5] else
                          min(abs(tq - f[4]), abs(tq - f[5])))
            for f in near[:1]:
                if f[4] - 1 <= tq <= f[5] + 1 and \
                        self.deferred_after(name, f[1]):
                    return ("mta-window", "%s: out queued it (its client "
                            "gone) at %s, during "
                            "mta-down %s-%s (%s); the MTA's smtpd %s; the "
                            "relay deferred the file after that, never "
                            "recording %s" % (
                                qid, fmt(tq), fmt(f[4]), fmt(f[5]), f[3],
                                "was killed after logging its 250" if acc
                                else "was killed before logging its 250",
                                qid))
        return None

    def judge(self, tag, copies, requeued):
        """(class, evidence) for a duplicated tag."""
        want_sink = 0 if category(tag) == "reject" else 1
        want_rq = 0 if category(tag) == "normal" else 1
        lines = "; ".join(self.relay_lines(tag)) or "no relay lines"
        if requeued > want_rq:
            return ("unexplained", "requeued %d times; relay: %s" % (
                requeued, lines))
        unrecorded = sorted(q for q in copies if q not in self.recorded)
        recorded = sorted(q for q in copies if q in self.recorded)
        if len(recorded) > want_sink:
            return ("unexplained", "the relay recorded %d deliveries (%s); "
                    "relay: %s" % (len(recorded), " ".join(recorded), lines))
        why = []
        for q in unrecorded:
            w = None
            for n in self.names(tag):
                w = w or self.window(q, n)
            if w is None:
                acc = self.accept.get(q)
                return ("unexplained", "%s was never recorded by the relay "
                        "and no window explains it (MTA: %s); relay: %s" % (
                            q, acc, lines))
            why.append(w)
        kinds = sorted({w[0] for w in why})
        return (kinds[0] if len(kinds) == 1 else "relay-window",
                "; ".join(w[1] for w in why) + "; then delivered as %s" %
                " ".join(recorded))


class Log:
    """msmilter's stderr file, read by offset (it grows to megabytes)."""

    def __init__(self, path):
        self.path = path

    def offset(self):
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def since(self, offset):
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")


class StandIn(threading.Thread):
    """MailScanner's part: clean files from milterin go to milterout
    (contrib/demo.py's mailscanner_move), requeued ones (our Relay-Reject
    header) go to its quarantine, as MailScanner quarantines them."""

    def __init__(self, m, quarantine, log):
        super().__init__(daemon=True)
        self.m = m
        self.quarantine = quarantine
        self.log = log
        self.stopping = threading.Event()
        self.pw = pwd.getpwnam("postfix")
        self.moved = {}         # milterout name -> (tag, log offset)
        self.errors = []
        self.rng = random.Random(1)

    def run(self):
        while not self.stopping.is_set():
            try:
                self.one_pass()
            except Exception as e:          # keep going, report at the end
                self.errors.append(repr(e))
            time.sleep(0.05)

    def one_pass(self):
        for name in sorted(os.listdir(self.m.milterin)):
            if not WORD.match(name):
                continue
            data = read_queue_file(self.m.milterin, name)
            if data is None:
                continue
            m = TAG_RE.search(data)
            tag = m.group(1).decode() if m else None
            if REJECT_HEADER in data:
                n = len(os.listdir(self.quarantine))
                with open(os.path.join(self.quarantine, "%s-%d" % (name, n)),
                          "wb") as f:
                    f.write(data)
                os.unlink(os.path.join(self.m.milterin, name))
                continue
            suffix = "".join(self.rng.choice(SUFFIX_CHARS)
                             for _ in range(5))
            offset = self.log.offset()
            try:
                out = mailscanner_move(self.m.milterin, self.m.milterout,
                                       name, self.pw.pw_uid, self.pw.pw_gid,
                                       suffix)
            except (OSError, ValueError):
                continue
            self.moved[out] = (tag, offset)

    def busy(self):
        return any(WORD.match(n) for n in os.listdir(self.m.milterin))


class Chaos:
    def __init__(self, base, seed=15, sessions=20, say=print):
        self.base = base
        self.rng = random.Random(seed)
        self.sessions = sessions
        self.say = say
        self.faults = []        # (kind, start, end offset, note, t0, t1)
        self.mounted = None
        self.pf_in = self.pf_mta = self.pf_out = None
        self.m = self.standin = None

    # -- set-up ------------------------------------------------------------

    def start(self):
        """Postfix "out" relays to the sink; the relay's MTA ("mta") is a
        Postfix whose smtpd passes each transaction on to "out" before it
        answers (smtpd_proxy_filter): it keeps no queue of its own, so
        killing it mid-delivery loses or doubles nothing by itself."""
        rejects = os.path.join(self.base, "reject_rcpt")
        with open(rejects, "w") as f:
            f.write("/^reject-/ REJECT 5.1.1 no such user (chaos)\n")
        self.pf_out = P.Postfix(os.path.join(self.base, "out"),
                                reinject=True)
        self.pf_out.start()
        self.pf_mta = P.Postfix(os.path.join(self.base, "mta"), sink=False,
                                main_cf={
                                    "smtpd_proxy_filter": "127.0.0.1:%d"
                                    % self.pf_out.reinject_port,
                                    "smtpd_recipient_restrictions":
                                    "check_recipient_access regexp:%s "
                                    "permit_mynetworks reject" % rejects})
        self.pf_mta.start()
        self.m = P.MsMilter(os.path.join(self.base, "msm"), settings={
            "%org-name%": ORG,
            "MSMail Relay Port": str(self.pf_mta.smtp_port),
            "Milter Commit Timeout": str(COMMIT_TIMEOUT),
            "Milter Relay Min Retry": "1", "Milter Relay Max Retry": "2",
            "Milter Relay Scan Interval": "2",
            "Milter Relay Timeout": "30"})
        self.small_milterin()
        self.m.start()
        self.log = Log(self.m.stderr_path)
        self.pf_in = P.Postfix(os.path.join(self.base, "in"), milter=self.m,
                               sink=False)
        self.pf_in.start()
        self.quarantine = os.path.join(self.base, "ms-quarantine")
        os.makedirs(self.quarantine)
        self.standin = StandIn(self.m, self.quarantine, self.log)
        self.standin.start()

    def small_milterin(self):
        """milterin on a 1 MB tmpfs, so that it can be filled; chmod is
        the fall-back where nothing can be mounted."""
        os.makedirs(self.m.milterin, exist_ok=True)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0750",
                           "tmpfs", self.m.milterin],
                          stderr=subprocess.DEVNULL).returncode == 0:
            self.mounted = self.m.milterin

    def stop(self):
        if self.standin:
            self.standin.stopping.set()
            self.standin.join(10)
        for pf in (self.pf_in, self.pf_mta, self.pf_out):
            if pf:
                pf.stop()
        if self.m:
            for pid in P.child_pids(self.m.pid).values() if self.m.pid \
                    else ():
                if pid:
                    os.kill(pid, signal.SIGCONT)
            self.m.stop(timeout=60)
        if self.mounted:
            subprocess.run(["umount", "-l", self.mounted])

    # -- faults ------------------------------------------------------------

    def child(self, name, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = P.child_pids(self.m.pid)[name]
            if pid:
                return pid
            time.sleep(0.01)
        raise RuntimeError("%s not running after %d s" % (name, timeout))

    def kill(self, name):
        try:
            os.kill(self.child(name), signal.SIGKILL)
        except ProcessLookupError:
            pass
        return ""

    def relay_unlink(self):
        """Delivered, not yet unlinked: milterout read-only for the relay
        until it says so, then kill -9."""
        os.chmod(self.m.milterout, 0o550)
        try:
            start = self.log.offset()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if "delivered but cannot unlink it" in self.log.since(start):
                    self.kill("relay")
                    return "after a delivery"
                time.sleep(0.02)
            self.kill("relay")
            return "no delivery within 5 s"
        finally:
            os.chmod(self.m.milterout, 0o750)

    def spooler_stop(self):
        pid = self.child("spooler")
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(COMMIT_TIMEOUT + 1.5)
        finally:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                return "it died while stopped"   # the parent restarts it
        return ""

    def milterin_full(self):
        if not self.mounted:
            os.chmod(self.m.milterin, 0o550)
            time.sleep(1.5)
            os.chmod(self.m.milterin, 0o750)
            return "chmod"
        path = os.path.join(self.m.milterin, "filler.tmp")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError:
            pass
        finally:
            os.close(fd)
        time.sleep(1.5)
        os.unlink(path)
        return "tmpfs"

    def mta_down(self):
        """The relay's MTA killed (kill -9, every process, deliveries in
        flight included) and started again 1-3 s later."""
        pf = self.pf_mta
        killed = len(P.kill_session(pf.master_pid))
        time.sleep(self.rng.uniform(1, 3))
        # What `postfix stop` leaves, and kill -9 does not: start quickly.
        open(os.path.join(pf.queue_dir, "quick-start"), "w").close()
        pf.postfix_cmd("start", check=True)
        pf.master_pid = pf._read_master_pid()
        if not pf._wait_banner(pf.smtp_port, 30):
            raise RuntimeError("the relay's MTA did not come back")
        return "%d processes killed" % killed

    def inject(self, kind):
        t0 = time.time()
        start = self.log.offset()
        if kind.endswith("-kill"):
            note = self.kill(kind[:-5])
        else:
            note = {"relay-unlink": self.relay_unlink,
                    "spooler-stop": self.spooler_stop,
                    "milterin-full": self.milterin_full,
                    "mta-down": self.mta_down}[kind]()
        self.faults.append((kind, start, self.log.offset(), note, t0,
                            time.time()))

    def run(self, faults=None, seconds=None, gap=(0.05, 0.4)):
        """Load and faults until `faults` were injected or `seconds`
        passed; every kind comes once first, in random order."""
        load = Load(self.pf_in.smtp_port, sessions=self.sessions,
                    prefix="c", rcpts=recipients, pause=PAUSE)
        self.load = load.start()
        t0 = time.monotonic()
        first = list(KINDS)
        self.rng.shuffle(first)
        try:
            while True:
                n = len(self.faults)
                if faults is not None and n >= faults:
                    break
                if seconds is not None and time.monotonic() - t0 >= seconds \
                        and n >= len(KINDS):
                    break
                time.sleep(self.rng.uniform(*gap))
                kind = first[n] if n < len(first) else \
                    self.rng.choices(KINDS, WEIGHTS)[0]
                self.inject(kind)
                if (n + 1) % 100 == 0:
                    self.say("chaos: %d faults, %d transactions, %.1f s, "
                             "%d files in milterout"
                             % (n + 1, load.attempted(),
                                time.monotonic() - t0,
                                len(os.listdir(self.m.milterout))))
        finally:
            load.stop()
        self.elapsed = time.monotonic() - t0

    # -- the books ---------------------------------------------------------

    def settle(self, timeout=180):
        """Wait until everything accepted has gone as far as it goes: at
        most `timeout` seconds without progress."""
        deadline = time.monotonic() + timeout
        sink_n, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            pids = P.child_pids(self.m.pid)
            out = [n for n in os.listdir(self.m.milterout) if MSGID.match(n)
                   or n.startswith("temp-")]
            n = len(self.pf_out.sink.files())
            if n != sink_n:
                sink_n, quiet_since = n, time.monotonic()
                deadline = max(deadline, quiet_since + timeout)
            if all(pids.values()) and not self.standin.busy() and not out \
                    and not self.pf_out.queue_files() \
                    and time.monotonic() - quiet_since > 2:
                return True
            if self.pf_out.queue_files(("deferred",)):
                self.pf_out.flush()
            time.sleep(0.5)
        self.say("chaos: not drained after %d s: children %s; milterin %d "
                 "files, milterout %d; Postfix out: %s; sink %d" % (
                     timeout, P.child_pids(self.m.pid),
                     len(os.listdir(self.m.milterin)), len(out),
                     ", ".join("%s %d" % (q, len(self.pf_out.queue_files(
                         (q,)))) for q in self.pf_out.QUEUES), n))
        return False

    def books(self):
        accepted = self.load.accepted()
        # A copy is one the relay delivered: "out" queued it under its
        # own queue id (its Received header, the first one).  Copies with
        # the same id are Postfix's own redeliveries, not the relay's.
        copies = {}
        wrong_rcpt = []
        for msg in self.pf_out.sink_messages():
            m = TAG_RE.search(msg.data)
            if not m:
                continue
            tag = m.group(1).decode()
            qid = QUEUED_BY_OUT.search(msg.data)
            copies.setdefault(tag, set()).add(qid.group(1).decode() if qid
                                              else msg.path)
            if any(r.startswith("reject-") for r in msg.recipients):
                wrong_rcpt.append(tag)
        sink = Counter({t: len(ids) for t, ids in copies.items()})
        requeued = Counter()
        for name in os.listdir(self.quarantine):
            with open(os.path.join(self.quarantine, name), "rb") as f:
                m = TAG_RE.search(f.read())
            if m:
                requeued[m.group(1).decode()] += 1
        lost, dups = [], []
        for tag in sorted(accepted):
            cat = category(tag)
            want_sink = 0 if cat == "reject" else 1
            want_rq = 0 if cat == "normal" else 1
            if sink[tag] < want_sink or requeued[tag] < want_rq:
                lost.append(tag)
            if sink[tag] > want_sink or requeued[tag] > want_rq:
                dups.append(tag)
        orphans = sorted(t for t in set(sink) | set(requeued)
                         if t not in accepted)
        with open(self.log.path, "rb") as f:
            log = f.read()
        ev = Evidence(self, log)
        verdicts = {tag: ev.judge(tag, copies.get(tag, set()),
                                  requeued[tag]) for tag in dups}
        blame = Counter(v[0] for v in verdicts.values())
        injected = {k: sum(1 for f in self.faults if f[0] == k)
                    for k in ("relay-kill", "relay-unlink")}
        milterin = os.listdir(self.m.milterin)
        temps = [n for n in milterin + os.listdir(self.m.milterout)
                 if n.startswith("temp-")]
        invalid_dir = os.path.join(os.path.dirname(self.m.milterout),
                                   "milterout-invalid")
        invalid = os.listdir(invalid_dir) if os.path.isdir(invalid_dir) \
            else []
        return dict(accepted=len(accepted), attempted=self.load.attempted(),
                    lost=lost, dups=dups, blame=blame, orphans=orphans,
                    verdicts=verdicts, relay_deaths=len(ev.deaths),
                    relay_kills=sum(injected.values()),
                    wrong_rcpt=wrong_rcpt, temps=temps, invalid=invalid,
                    standin_errors=self.standin.errors)

    def report(self, b):
        self.last_books = b
        faults = Counter(f[0] for f in self.faults)
        blame = b["blame"]
        lines = [
            "chaos: %d faults in %.0f s (%s)" % (
                len(self.faults), self.elapsed,
                ", ".join("%s %d" % (k, faults[k]) for k in KINDS)),
            "chaos: %d transactions, %d accepted: availability %.1f%%" % (
                b["attempted"], b["accepted"],
                100.0 * b["accepted"] / max(1, b["attempted"])),
            "chaos: lost %d, duplicated %d (explained %d: %s; "
            "unexplained %d)" % (
                len(b["lost"]), len(b["dups"]),
                sum(blame[k] for k in EXPLAINED),
                ", ".join("%s %d" % (k, blame[k]) for k in EXPLAINED),
                blame["unexplained"]),
            "chaos: the relay died %d times: %d injected kills, %d other "
            "deaths" % (b["relay_deaths"], b["relay_kills"],
                        b["relay_deaths"] - b["relay_kills"]),
        ]
        for tag in sorted(b["verdicts"]):
            verdict, why = b["verdicts"][tag]
            lines.append("chaos: duplicate %s: %s: %s" % (tag, verdict, why))
        if b["orphans"]:
            lines.append(
                "chaos: %d refused messages were committed and delivered "
                "all the same (their clients retry: a duplicate, never a "
                "loss)" % len(b["orphans"]))
        lines.append("chaos: temp files left %d, milterout-invalid %d" % (
            len(b["temps"]), len(b["invalid"])))
        for line in lines:
            self.say(line)
        if b["lost"]:
            self.say("chaos: lost: %s" % " ".join(b["lost"][:20]))
        if b["dups"]:
            self.say("chaos: duplicated: %s" % " ".join(b["dups"][:20]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faults", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp directory")
    ap.add_argument("--strict", action="store_true",
                    help="fail on duplicates in SMTP's own window too")
    a = ap.parse_args()
    if a.faults is None and a.seconds is None:
        a.faults = 1000
    reason = P.skip_reason()
    if reason:
        print("make chaos: " + reason)
        return 1
    base = P.make_base("msmilter-chaos-")
    c = Chaos(base, seed=a.seed)
    print("chaos: seed %d, %s, in %s" % (
        a.seed, "%d faults" % a.faults if a.faults else
        "%.0f s" % a.seconds, base), flush=True)
    try:
        c.start()
        c.run(faults=a.faults, seconds=a.seconds)
        settled = c.settle()
        b = c.books()
    finally:
        c.stop()
        if not a.keep:
            P.remove_base(base)
    c.report(b)
    ok = settled and not b["lost"] and not b["temps"] and \
        not b["invalid"] and not b["wrong_rcpt"] and not b["standin_errors"]
    if not settled:
        print("chaos: FAILED: the queues did not drain")
    window = sum(b["blame"][k] for k in EXPLAINED)
    if b["blame"]["unexplained"]:
        ok = False
        print("chaos: FAILED: %d duplicate(s) that SMTP's own window does "
              "not explain" % b["blame"]["unexplained"])
    if window and a.strict:
        ok = False
        print("chaos: FAILED (--strict): %d duplicate(s) in SMTP's own "
              "window (RFC 1047)" % window)
    elif window:
        print("chaos: not counted as failures: %d duplicate(s) in SMTP's "
              "own window (RFC 1047), each shown above with its evidence: "
              "the MTA had taken the message and the relay never saw its "
              "250 (--strict counts them)" % window)
    print("chaos: %s" % ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
