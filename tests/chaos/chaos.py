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
relay says "delivered but cannot unlink it", then kill -9).  The stand-in
for MailScanner is contrib/demo.py's: it moves milterin to milterout, and
quarantines what the relay requeued with its Relay-Reject header.

At the end every message that got 250 must be at the sink exactly once
(its accepted recipients) and, when a recipient was rejected there,
requeued exactly once; no temp file left; nothing in milterout-invalid.
Each duplicate is classified by the faults that happened while its file
was in flight.  The relay records delivery progress beside each file
(relay/progress.c), but a file delivered whole in one attempt gets no
record (its removal is the record): when the removal fails (the
relay-unlink fault makes milterout, where the records live, read-only)
and the relay then dies, its successor delivers again.  Those duplicates
are reported as such, never hidden.

    chaos.py [--faults N | --seconds S] [--seed N] [--keep]

Exit status 0 when nothing was lost and nothing duplicated, 1 otherwise.
tests/integration/test_chaos.py runs a short version in make check."""

import argparse
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
# Why a message was delivered (or requeued) twice.  A file delivered whole
# in one attempt gets no progress record; when the relay dies after that
# delivery and before the unlink, its successor delivers again
# ("relay-progress": above all after the relay-unlink fault, which makes
# milterout read-only, so that no record could be written either).  When
# it dies while the MTA has the whole message and has not answered yet,
# it cannot know the message was taken ("relay-in-transaction": SMTP's
# own window, RFC 1047; no record of ours can close it); the same when
# the MTA's smtpd is killed in that window ("mta-in-transaction").
DUP_CLASSES = ("relay-progress", "relay-in-transaction",
               "mta-in-transaction", "unexplained")
# What only the relay's durable progress removes, and what nothing on our
# side can: SMTP's window (RFC 1047) when the relay or its MTA dies.
PROGRESS = ("relay-progress",)
SMTP_WINDOW = ("relay-in-transaction", "mta-in-transaction")
RELAY_DEATH = re.compile(rb"^msmilter\[\d+\]: relay \(pid \d+\) (killed|exited)",
                         re.M)
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
        self.faults = []        # (kind, start offset, end offset, note)
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
        start = self.log.offset()
        if kind.endswith("-kill"):
            note = self.kill(kind[:-5])
        else:
            note = {"relay-unlink": self.relay_unlink,
                    "spooler-stop": self.spooler_stop,
                    "milterin-full": self.milterin_full,
                    "mta-down": self.mta_down}[kind]()
        self.faults.append((kind, start, self.log.offset(), note))

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
            copies.setdefault(tag, set()).add(qid.group(1) if qid else
                                              msg.path)
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
        deaths = [m.start() for m in RELAY_DEATH.finditer(log)]
        blame = Counter(self.blame(tag, log, deaths, sink[tag],
                                   requeued[tag]) for tag in dups)
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
                    relay_deaths=len(deaths),
                    relay_kills=sum(injected.values()),
                    wrong_rcpt=wrong_rcpt, temps=temps, invalid=invalid,
                    standin_errors=self.standin.errors)

    def blame(self, tag, log, deaths, delivered, requeued):
        """Which DUP_CLASSES explains a duplicated tag: did the relay die
        while its file was in flight (between the stand-in handing it over
        and the relay's last line about it), and had the relay logged
        every delivery and requeue the sink and the stand-in saw?"""
        logged_d = logged_r = 0
        died = mta_down = False
        for name, (t, start) in self.standin.moved.items():
            if t != tag:
                continue
            # The relay's lines name the file: "QID: ..., file=NAME,
            # status=sent (...)".
            key = rb"file=" + re.escape(name.encode()) + rb", status="
            logged_d += len(re.findall(key + rb"sent ", log))
            logged_r += len(re.findall(key + rb"requeued ", log))
            end = max(log.rfind(name.encode() + b":"),
                      log.rfind(b"file=" + name.encode() + b","))
            end = end if end >= start else len(log)
            died |= any(start <= d <= end for d in deaths)
            mta_down |= any(k == "mta-down" and e >= start and s <= end
                            for k, s, e, _ in self.faults)
        unlogged = delivered > logged_d or requeued > logged_r
        if died:
            return "relay-in-transaction" if unlogged else "relay-progress"
        if mta_down and unlogged:
            return "mta-in-transaction"
        return "unexplained"

    def report(self, b):
        self.last_books = b
        faults = Counter(k for k, _, _, _ in self.faults)
        blame = b["blame"]
        lines = [
            "chaos: %d faults in %.0f s (%s)" % (
                len(self.faults), self.elapsed,
                ", ".join("%s %d" % (k, faults[k]) for k in KINDS)),
            "chaos: %d transactions, %d accepted: availability %.1f%%" % (
                b["attempted"], b["accepted"],
                100.0 * b["accepted"] / max(1, b["attempted"])),
            "chaos: lost %d, duplicated %d (%s)" % (
                len(b["lost"]), len(b["dups"]),
                ", ".join("%s %d" % (k, blame[k]) for k in DUP_CLASSES
                          if blame[k]) or "none"),
            "chaos: the relay died %d times: %d injected kills, %d exits "
            "of its own (it exits when its spooler channel breaks during "
            "a requeue)" % (b["relay_deaths"], b["relay_kills"],
                            b["relay_deaths"] - b["relay_kills"]),
        ]
        if blame["relay-progress"]:
            lines.append(
                "chaos: relay-progress: %d delivered again after the relay "
                "died between a delivery and the unlink, with no progress "
                "record (a whole-file delivery writes none; milterout may have been "
                "read-only)" % blame["relay-progress"])
        if blame["relay-in-transaction"] or blame["mta-in-transaction"]:
            lines.append(
                "chaos: *-in-transaction: %d delivered again because the "
                "relay or the MTA died after the MTA had the message and "
                "before its reply arrived (SMTP's own window, RFC 1047)"
                % (blame["relay-in-transaction"] +
                   blame["mta-in-transaction"]))
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
    progress = sum(b["blame"][k] for k in PROGRESS)
    window = sum(b["blame"][k] for k in SMTP_WINDOW)
    if b["blame"]["unexplained"]:
        ok = False
        print("chaos: FAILED: %d duplicate(s) no fault explains"
              % b["blame"]["unexplained"])
    if progress:
        ok = False
        print("chaos: FAILED: %d duplicate(s) from the relay dying between "
              "a delivery and its unlink with no progress record (a "
              "whole-file delivery writes none until its unlink fails)"
              % progress)
    if window and a.strict:
        ok = False
        print("chaos: FAILED (--strict): %d duplicate(s) in SMTP's own "
              "window (RFC 1047)" % window)
    elif window:
        print("chaos: not counted as failures: %d duplicate(s) in SMTP's "
              "own window (RFC 1047): the relay or its MTA died after the "
              "MTA had the message and before its reply; no record the "
              "relay keeps can tell (--strict counts them)" % window)
    print("chaos: %s" % ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
