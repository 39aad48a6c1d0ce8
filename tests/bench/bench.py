#!/usr/bin/python3
"""make bench: throughput of msmilter against Postfix alone, in one run.

For each message size (4 KB, 100 KB) and number of smtp-source sessions
(20, and 100: Postfix's default_process_limit), the same load (2000
messages) goes through a private Postfix (in_flow_delay = 0) four times:
  (a) no milter: Postfix queues and relays to smtp-sink;
  (b) nullmilter: a do-nothing libmilter milter that DISCARDs, the
      ceiling of any discarding milter;
  (c) msmilter: every message spooled durably into milterin (ext4 here,
      or wherever BENCH_DIR is: /tmp unless set, or a journaled ext4 on
      a loop device when /tmp's ext4 has no journal, see LoopExt4);
  (t) msmilter with milterin on a tmpfs, where fsync costs nothing: c/t
      is the physical cost of durability;
  (d) msmilter with the audit log on and keyed, as installed ((c) runs
      with it off): d/c is the audit log's cost, and every message of (d)
      must have its commit record in a log that verifies;
  (f) msmilter in Full Milter Scanner mode: every message scanned by a
      private clamd (FDPASS, a test database of two signatures, so this
      is the cost of the round trip and of clamd's parsing, not of a full
      signature set), ACCEPTed and relayed by Postfix to smtp-sink: f/c
      is what scanning in the session costs against DISCARD, and the
      spooler's "verdict" p50/p99 (COMMIT read to verdict sent) sits
      beside (c)'s "commit" (COMMIT read to COMMITTED sent).  Every
      message of (f) must be scanned clean and nothing left in milterin.
      BENCH_FULLSCAN=0 leaves it out; it is skipped without clamd.
Prints messages per second, the ratios c/a and c/b, CPU seconds per 1000
messages and peak RSS of msmilter's processes, capture's RSS per session,
and the spooler's own figures (its "stats:" line, asked for with
SIGUSR1): microseconds from reading a session's COMMIT record to sending
the answer (spooler side: the IPC hop and capture's wait are not in it),
in write(2), fsync, rename and directory fsync, and files per directory
fsync (the round).  pNN is the upper bound of the histogram bucket that
holds it (within 12.5 %).  Beside it, capture's own end of message to
COMMITTED (msmilter -s; "eom p99" in the summary), in the coarser
buckets of msmilter_commit_seconds: that is the wait durability adds
before each DISCARD.  The machine's idle CPU share while each case ran
says what set the pace: near 0, the cores did, and the ratios compare
CPU per message.  It checks that every message of (c) is in milterin
exactly once.  Timings vary on shared cores: compare within one run
(BENCH_ROUNDS=3 repeats each case back to back and prints the spread).
Before each case everything is synced and the clean caches dropped
(settle()).  BENCH_DIR puts the Postfix queues and milterin on another
file system (BENCH_DIR=/tmp: there even without a journal); the header
says which.  Nothing here fails on a timing."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import postfix as P  # noqa: E402

# Sessions of smtp-source: 20, and Postfix's default_process_limit.
SESSIONS_LIST = [int(x) for x in
                 os.environ.get("BENCH_SESSIONS", "20,100").split(",")]
SESSIONS = SESSIONS_LIST[0]     # the relay's ceiling runs
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "2000"))
SIZES = [int(x) * 1024 for x in
         os.environ.get("BENCH_SIZES_KB", "4,100").split(",")]
# Each (size, sessions) runs a, b, c and c on tmpfs this many times in a
# row, so the ratios compare runs made seconds apart.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
SMTP_SOURCE = "/usr/sbin/smtp-source"
# Where Postfix's queues and milterin live (a 0755 directory); unset, see
# bench_dir().
BENCH_DIR = os.environ.get("BENCH_DIR")
CLK_TCK = os.sysconf("SC_CLK_TCK")


DROP_CACHES = "/proc/sys/vm/drop_caches"


def settle():
    """The same start for every case.  ext4 without a journal (this
    machine's) skips, when it looks for a free inode, every inode freed
    in the last minute whose inode-table block is still cached; the cases
    before this one freed thousands (Postfix's queue files, the last
    case's milterin), so a file created here would cost up to a whole
    group's scan more than in the case before.  Writing everything out
    and dropping the clean caches forgets most of them, not all (a block
    read again brings its freed inodes back): hence LoopExt4.  Needs
    root."""
    os.sync()
    try:
        with open(DROP_CACHES, "w") as f:
            f.write("3\n")
    except OSError:
        pass


def cpu_idle_ticks():
    """(idle, total) clock ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return ticks[3] + ticks[4], sum(ticks[:8])


def idle_share(since):
    """The machine's idle share of CPU time since cpu_idle_ticks() said
    since."""
    idle, total = cpu_idle_ticks()
    return (idle - since[0]) / max(1, total - since[1])


# /proc/fs/jbd2/<device>/info of the file system the cases run on, or
# None without a journal (journal_info(), set once in main()).
JOURNAL_INFO = None


def journal_info(path):
    """The jbd2 info file of the ext4 that holds path, or None."""
    p = subprocess.run(["findmnt", "-n", "-o", "SOURCE", "-T", path],
                       stdout=subprocess.PIPE, universal_newlines=True)
    dev = os.path.basename(p.stdout.strip())
    try:
        for n in os.listdir("/proc/fs/jbd2"):
            if dev and n.startswith(dev + "-"):
                return os.path.join("/proc/fs/jbd2", n, "info")
    except OSError:
        pass
    return None


def journal_commits():
    """Journal commits (jbd2 transactions) so far on the file system the
    cases run on, or None.  Each costs the machine CPU (the commit block,
    the cache flush behind it) whoever asked for it: Postfix's fsyncs and
    ours alike."""
    if JOURNAL_INFO is None:
        return None
    try:
        with open(JOURNAL_INFO) as f:
            return int(f.readline().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def smtp_source(port, size, sessions):
    """Seconds the run took, the share of the machine's CPU time that
    was idle meanwhile (near 0: the cores, not the disk, set the pace)
    and journal commits per message (or None)."""
    settle()
    commits = journal_commits()
    ticks = cpu_idle_ticks()
    args = [SMTP_SOURCE, "-s", str(sessions), "-m", str(MESSAGES),
            "-l", str(size), "-f", "bench@example.org",
            "-t", "sink@example.com", "-M", "bench.example.org",
            "127.0.0.1:%d" % port]
    t0 = time.monotonic()
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=1800)
    elapsed = time.monotonic() - t0
    idle = idle_share(ticks)
    after = journal_commits()
    commits = None if commits is None or after is None else \
        (after - commits) / MESSAGES
    if p.returncode != 0:
        raise RuntimeError("smtp-source failed: %s" % p.stdout.decode())
    return elapsed, idle, commits


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def msmilter_pids(parent):
    pids = {"parent": parent}
    pids.update((k, v) for k, v in P.child_pids(parent).items() if v)
    return pids


STATS_RE = re.compile(r"(\w+) n=(\d+) p50=(\d+) p99=(\d+) max=(\d+)")
SCANNED_RE = re.compile(r"scanned clean=(\d+) virus=(\d+) tempfail=(\d+) "
                        r"oversize=(\d+)")


def capture_commit(m):
    """Capture's end of message to COMMITTED from msmilter -s: (count,
    mean us, p50 bound us, p99 bound us), or None (an older build, or
    full-scan mode, which commits nothing)."""
    p = subprocess.run([m.binary, "-s", "--json", "-f", m.conf],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       timeout=30)
    try:
        c = json.loads(p.stdout).get("commit")
    except ValueError:
        return None
    if not c or not c["count"] or c["p99_le_us"] is None:
        return None
    return (c["count"], c["sum_us"] / c["count"], c["p50_le_us"],
            c["p99_le_us"])


def spooler_stats(m, pid):
    """The spooler's "stats:" line, asked for with SIGUSR1: {stage: (n,
    p50, p99, max)} plus "round_mean"."""
    before = m.stderr().count("stats: ")
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = m.stderr()
        if text.count("stats: ") > before:
            line = text[text.rindex("stats: "):].split("\n", 1)[0]
            st = {k: tuple(int(x) for x in v)
                  for k, *v in STATS_RE.findall(line)}
            mm = re.search(r"mean=([\d.]+)", line)
            st["round_mean"] = float(mm.group(1)) if mm else 0.0
            mm = SCANNED_RE.search(line)
            st["scanned"] = tuple(int(x) for x in mm.groups()) if mm \
                else (0, 0, 0, 0)
            return st
        time.sleep(0.05)
    return {}


def run_case(base, label, size, sessions, milter=None, msm=None):
    pf = P.Postfix(os.path.join(base, "%s-%d-%d" % (label, size, sessions)),
                   milter=milter,
                   main_cf={"in_flow_delay": "0",
                            "smtpd_client_connection_count_limit": "0"})
    pf.start()
    try:
        cpu0 = None
        if msm is not None:
            pids = msmilter_pids(msm.pid)
            cpu0 = {k: proc_cpu(p) for k, p in pids.items()}
            rss0 = vm_rss_kb(pids["capture"])
        elapsed, idle, commits = smtp_source(pf.smtp_port, size, sessions)
        extra = {"idle": idle, "commits": commits}
        if msm is not None:
            extra["cpu"] = {k: proc_cpu(p) - cpu0[k] for k, p in pids.items()}
            extra["hwm"] = {k: P.vm_hwm_kb(p) for k, p in pids.items()}
            extra["rss_session"] = (extra["hwm"]["capture"] - rss0) / sessions
            extra["stats"] = spooler_stats(msm, pids["spooler"])
            extra["eom_commit"] = capture_commit(msm)
        return MESSAGES / elapsed, extra
    finally:
        pf.stop()


def check_milterin(m, size):
    names = [n for n in os.listdir(m.milterin) if re.fullmatch(r"\w+", n)]
    temps = [n for n in os.listdir(m.milterin) if n.startswith("temp-")]
    # CRLF becomes LF in the file: allow for one byte per line.
    small = [n for n in names
             if os.path.getsize(os.path.join(m.milterin, n)) < size * 0.95]
    return len(names), len(temps), len(small)


AUDIT = os.path.join(P.build_dir(), "msmilter-audit")


def audit_log_checks(m, keys):
    """Commit records in the log, and whether verify -p accepts it."""
    logs = sorted(os.path.join(m.base, f) for f in os.listdir(m.base)
                  if f.startswith("audit.log"))
    commits = 0
    for path in logs:
        with open(path, "rb") as f:
            commits += f.read().count(b'"event":"commit"')
    p = subprocess.run([AUDIT, "verify", "-p",
                        os.path.join(keys, "audit.pub")] + logs,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        print(p.stdout.decode())
    return commits, p.returncode == 0


def msmilter_case(base, label, size, sessions, tmpfs=False, build=None,
                  audit=False):
    """(c), (t) with milterin on a tmpfs, (p) from another build, or (d)
    with the audit log on and keyed (the others run with it off).
    Returns (rate, extra, ok); rate None if the case cannot run here."""
    name = "%s-msm-%d-%d" % (label, size, sessions)
    # A metrics file, so that capture reports its commit times (-s shows
    # them); written at start and hourly, never during the run.
    prom = os.path.join(base, name + "-prom")
    os.makedirs(prom)
    settings = {"Milter Metrics File": os.path.join(prom, "msmilter.prom"),
                "Milter Metrics Interval": "3600"}
    if not audit:
        settings["Milter Audit Log"] = ""
    m = P.MsMilter(os.path.join(base, name),
                   binary=os.path.join(build, "msmilter") if build else None,
                   settings=settings)
    keys = None
    if audit:
        os.makedirs(m.base, exist_ok=True)
        keys = os.path.join(m.base, "audit-out")
        subprocess.run([AUDIT, "keygen", "-k", m.audit_keydir, "-o", keys,
                        "--lifetime", "1"], check=True,
                       stdout=subprocess.DEVNULL)
    mounted = False
    if tmpfs:
        os.makedirs(m.milterin)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g",
                           "tmpfs", m.milterin]).returncode != 0:
            return None, {}, True
        mounted = True
    try:
        m.start()
        try:
            rate, extra = run_case(base, label, size, sessions, milter=m,
                                   msm=m)
            time.sleep(0.5)
            extra["milterin"] = check_milterin(m, size)
        finally:
            m.stop()
    finally:
        if mounted:
            subprocess.run(["umount", "-l", m.milterin])
    files, temps, small = extra["milterin"]
    ok = files == MESSAGES and not temps and not small
    if audit:
        extra["audit"] = audit_log_checks(m, keys)
        ok = ok and extra["audit"] == (MESSAGES, True)
    return rate, extra, ok


def fullscan_case(base, label, size, sessions, clamd):
    """(f): Full Milter Scanner mode with the private clamd.  Returns
    (rate, extra, ok); rate None without clamd."""
    if clamd is None:
        return None, {}, True
    m = P.MsMilter(os.path.join(base, "%s-msm-%d-%d" % (label, size,
                                                         sessions)),
                   settings={"Milter Audit Log": "",
                             "Milter Full Scanner": "yes",
                             "Milter Clamd Socket": clamd.socket,
                             "MTA": "postfix"})
    m.start()
    try:
        rate, extra = run_case(base, label, size, sessions, milter=m, msm=m)
        time.sleep(0.5)
        extra["milterin"] = (len(os.listdir(m.milterin)), 0, 0)
    finally:
        m.stop()
    scanned = extra["stats"].get("scanned", (0, 0, 0, 0))
    ok = scanned == (MESSAGES, 0, 0, 0) and extra["milterin"][0] == 0
    if not ok:
        print("  (f) scanned clean/virus/tempfail/oversize %s, %d files "
              "left in milterin" % (scanned, extra["milterin"][0]))
    return rate, extra, ok


def start_clamd(base):
    """A private clamd for (f), or None (not installed, or switched off)."""
    if os.environ.get("BENCH_FULLSCAN", "1") == "0":
        return None
    import clamd as C
    if not C.available():
        print("(f) skipped: clamd (clamav-daemon) is not installed")
        return None
    return C.Clamd(os.path.join(base, "clamd")).start()


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def spread(xs):
    xs = [x for x in xs if x is not None]
    return "%.0f-%.0f" % (min(xs), max(xs)) if xs else "-"


# BENCH_COMPARE=DIR also runs the msmilter built in DIR, as (p), in the
# same rounds: before and after a change under the same load.
COMPARE = os.environ.get("BENCH_COMPARE", "")
STAGES = ("commit", "verdict", "scan", "create", "write", "fsync", "rename",
          "dirsync")


def print_msmilter(name, rate, extra, null_cpu):
    st = extra.get("stats", {})
    print("  %s CPU s per 1000 msgs: " % name + ", ".join(
        "%s %.2f" % (k, v * 1000 / MESSAGES)
        for k, v in extra["cpu"].items())
        + " (nullmilter %.2f)" % (null_cpu * 1000 / MESSAGES))
    print("  %s peak RSS (VmHWM): " % name + ", ".join(
        "%s %d kB" % (k, v) for k, v in extra["hwm"].items())
        + "; capture %.0f kB per session" % extra["rss_session"])
    print("  %s spooler, us (p50/p99/max): " % name + ", ".join(
        "%s %d/%d/%d" % (k, st[k][1], st[k][2], st[k][3])
        for k in STAGES if k in st))
    ec = extra.get("eom_commit")
    if ec:
        print("  %s capture, end of message to COMMITTED: mean %.1f ms, "
              "p50 <= %g ms, p99 <= %g ms (%d messages)" % (
                  name, ec[1] / 1000, ec[2] / 1000, ec[3] / 1000, ec[0]))
    if "round" in st and name != "(f)":
        print("  %s files per directory fsync: mean %.1f, p50 %d, p99 %d, "
              "max %d (%d directory fsyncs)" % (
                  name, st["round_mean"], st["round"][1], st["round"][2],
                  st["round"][3], st["round"][0]))
    files, temps, small = extra["milterin"]
    if name == "(f)":
        print("  (f) scanned clean/virus/tempfail/oversize: %s; milterin: "
              "%d files (expected 0)" % (st.get("scanned"), files))
        return
    print("  %s milterin: %d files (expected %d), %d temp files, %d shorter "
          "than the message" % (name, files, MESSAGES, temps, small))


def milter_bench(base, null, clamd=None):
    ok = True
    table = []
    for sessions in SESSIONS_LIST:
        for size in SIZES:
            rows = []
            for r in range(ROUNDS):
                row = {}
                a, a_extra = run_case(base, "a%d" % r, size, sessions)
                null_cpu = proc_cpu(null.pid)
                b, b_extra = run_case(base, "b%d" % r, size, sessions,
                                      milter=null_port_of(null))
                null_cpu = proc_cpu(null.pid) - null_cpu
                row.update(a=a, b=b)
                cases = [("c", {}), ("t", {"tmpfs": True}),
                         ("d", {"audit": True})]
                if COMPARE:
                    cases.append(("p", {"build": COMPARE}))
                for name, kw in cases:
                    rate, extra, case_ok = msmilter_case(
                        base, "%s%d" % (name, r), size, sessions, **kw)
                    row[name] = rate
                    row[name + "_extra"] = extra
                    ok = ok and case_ok
                rate, extra, case_ok = fullscan_case(
                    base, "f%d" % r, size, sessions, clamd)
                row["f"] = rate
                row["f_extra"] = extra
                ok = ok and case_ok
                if rate is not None:
                    cases.append(("f", {}))
                rows.append(row)
                print()
                print("message size %d KB, %d sessions%s" % (
                    size // 1024, sessions,
                    ", round %d of %d" % (r + 1, ROUNDS) if ROUNDS > 1
                    else ""))
                print("  (a) Postfix, no milter   %8.1f msg/s" % a)
                print("  (b) nullmilter           %8.1f msg/s" % b)
                print("  CPU idle while each ran: " + ", ".join(
                    "(%s) %.0f%%" % (n, e["idle"] * 100) for n, e in
                    [("a", a_extra), ("b", b_extra)] +
                    [(n, row[n + "_extra"]) for n, _ in cases
                     if row.get(n) is not None]))
                if a_extra["commits"] is not None:
                    print("  journal commits per message: " + ", ".join(
                        "(%s) %.2f" % (n, e["commits"]) for n, e in
                        [("a", a_extra), ("b", b_extra)] +
                        [(n, row[n + "_extra"]) for n, _ in cases
                         if row.get(n) is not None]))
                print("  (c) msmilter             %8.1f msg/s   c/a = %.2f"
                      "   c/b = %.2f" % (row["c"], row["c"] / a,
                                         row["c"] / b))
                if row["t"] is not None:
                    print("  (t) msmilter, tmpfs      %8.1f msg/s   c/t = "
                          "%.2f" % (row["t"], row["c"] / row["t"]))
                if row["d"] is not None:
                    commits, verified = row["d_extra"]["audit"]
                    print("  (d) msmilter, audit on   %8.1f msg/s   d/c = "
                          "%.3f (%+.1f%%); %d commit records, verify %s" % (
                              row["d"], row["d"] / row["c"],
                              (row["d"] / row["c"] - 1) * 100, commits,
                              "ok" if verified else "FAILED"))
                if row["f"] is not None:
                    fst = row["f_extra"].get("stats", {})
                    cst = row["c_extra"].get("stats", {})
                    print("  (f) msmilter, full scan  %8.1f msg/s   f/c = "
                          "%.2f   f/a = %.2f; p50/p99 us: verdict %d/%d, "
                          "(c) commit %d/%d" % (
                              row["f"], row["f"] / row["c"], row["f"] / a,
                              fst.get("verdict", (0, 0, 0, 0))[1],
                              fst.get("verdict", (0, 0, 0, 0))[2],
                              cst.get("commit", (0, 0, 0, 0))[1],
                              cst.get("commit", (0, 0, 0, 0))[2]))
                if COMPARE:
                    print("  (p) msmilter of %s %8.1f msg/s   p/a = %.2f   "
                          "p/b = %.2f" % (COMPARE, row["p"], row["p"] / a,
                                          row["p"] / b))
                for name, _ in cases:
                    if row[name] is not None:
                        print_msmilter("(%s)" % name, row[name],
                                       row[name + "_extra"], null_cpu)
                if not ok:
                    print("  ERROR: msmilter did not account for every "
                          "message")
                sys.stdout.flush()
            table.append((size, sessions, rows))
    print()
    print("summary (median of %d%s)" % (
        ROUNDS, "; spread min-max" if ROUNDS > 1 else ""))
    names = ["c", "p"] if COMPARE else ["c"]
    print("  size sess  run      a      b    run   tmpfs   r/a   r/b   "
          "commit p50/p99 us   round  CPU capture+spooler  capture RSS  "
          "eom p99")
    for size, sessions, rows in table:
        fc = [r["f"] / r["c"] for r in rows if r.get("f") and r["c"]]
        if fc:
            print("  %3dK %4d  full scan f %.0f msg/s, f/c %.2f (%s), "
                  "verdict p50/p99 %d/%d us" % (
                      size // 1024, sessions, median(r["f"] for r in rows),
                      median(fc), ", ".join("%.2f" % x for x in fc),
                      median(r["f_extra"]["stats"].get(
                          "verdict", (0, 0, 0, 0))[1] for r in rows),
                      median(r["f_extra"]["stats"].get(
                          "verdict", (0, 0, 0, 0))[2] for r in rows)))
        dc = [r["d"] / r["c"] for r in rows if r["d"] and r["c"]]
        if dc:
            print("  %3dK %4d  audit log on/off d/c %.3f (%s)" % (
                size // 1024, sessions, median(dc),
                ", ".join("%.3f" % x for x in dc)))
        a = median(r["a"] for r in rows)
        b = median(r["b"] for r in rows)
        t = median(r["t"] for r in rows)
        for name in names:
            st = [r[name + "_extra"].get("stats", {}) for r in rows]
            cpu = [r[name + "_extra"]["cpu"] for r in rows]
            hwm = [r[name + "_extra"]["hwm"]["capture"] for r in rows]
            eom = [r[name + "_extra"].get("eom_commit") for r in rows]
            eom = [e[3] / 1000 for e in eom if e]
            print("  %3dK %4d  (%s) %6.0f %6.0f %6.0f %7s %5.2f %5.2f "
                  "%8d/%-8d %5.1f   %5.2f+%.2f s   %6d kB  %s" % (
                      size // 1024, sessions, name, a, b,
                      median(r[name] for r in rows),
                      "%.0f" % t if t and name == "c" else "-",
                      median(r[name] / r["a"] for r in rows),
                      median(r[name] / r["b"] for r in rows),
                      median(x.get("commit", (0, 0, 0, 0))[1] for x in st),
                      median(x.get("commit", (0, 0, 0, 0))[2] for x in st),
                      median(x.get("round_mean", 0.0) for x in st),
                      median(x["capture"] * 1000 / MESSAGES for x in cpu),
                      median(x["spooler"] * 1000 / MESSAGES for x in cpu),
                      median(hwm),
                      "<= %g ms" % median(eom) if eom else "-"))
            if ROUNDS > 1:
                print("        spread  a %s  b %s  %s %s  r/a %.2f-%.2f  "
                      "r/b %.2f-%.2f  p99 %s" % (
                          spread(r["a"] for r in rows),
                          spread(r["b"] for r in rows), name,
                          spread(r[name] for r in rows),
                          min(r[name] / r["a"] for r in rows),
                          max(r[name] / r["a"] for r in rows),
                          min(r[name] / r["b"] for r in rows),
                          max(r[name] / r["b"] for r in rows),
                          spread(x.get("commit", (0, 0, 0, 0))[2]
                                 for x in st)))
    sys.stdout.flush()
    return ok


RELAY_SIZE = 4 * 1024
QMQP_SOURCE = "/usr/sbin/qmqp-source"


def relay_ceiling(tool, target):
    """Messages per second the receiving side takes from Postfix's own
    load generator, 20 sessions, the same message size."""
    args = [tool, "-s", str(SESSIONS), "-m", str(MESSAGES), "-l",
            str(RELAY_SIZE), "-f", "bench@example.org",
            "-t", "sink@example.com", target]
    settle()
    ticks = cpu_idle_ticks()
    t0 = time.monotonic()
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=1800)
    if p.returncode != 0:
        raise RuntimeError("%s failed: %s" % (tool, p.stdout.decode()))
    return MESSAGES / (time.monotonic() - t0), idle_share(ticks)


def fill_staging(m, count):
    """count queue files of about RELAY_SIZE bytes, as MailScanner writes
    them, in a staging directory beside milterout (same file system)."""
    import pwd
    pw = pwd.getpwnam("postfix")
    line = b"0123456789" * 7 + b"abcdef\n"
    body = line * (RELAY_SIZE // len(line))
    staging = m.milterout + ".staging"
    os.makedirs(staging)
    for i in range(count):
        name = "%011X.A%04d" % (0x10000000 + i, i % 10000)
        data = (b"S<bench@example.org>\nO<sink@example.com>\n"
                b"Received: from bench (bench [192.0.2.1])\n"
                b"Subject: relay bench %d\nMessage-Id: <%d@bench>\n"
                b"Date: Thu, 26 Nov 2026 07:00:00 +0000\n"
                b"From: bench@example.org\n\n" % (i, i) + body)
        path = os.path.join(staging, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return staging


def relay_case(base, method, pf):
    # As many connections as the ceiling's generator has sessions; the
    # audit log off, as in (c).
    s = {"MSMail Delivery Method": method, "Milter Relay Min Retry": "1",
         "Milter Relay Connections": str(SESSIONS), "Milter Audit Log": ""}
    if method == "QMQP":
        s.update({"MSMail Socket Type": "unix",
                  "MSMail Socket Dir": pf.qmqp_socket})
    else:
        s["MSMail Relay Port"] = str(pf.reinject_port)
    m = P.MsMilter(os.path.join(base, "relay-" + method), settings=s)
    m.start()
    staging = fill_staging(m, MESSAGES)
    # Steady state: the relay is up; the files arrive as MailScanner
    # renames them in, all at once.
    settle()
    ticks = cpu_idle_ticks()
    t0 = time.monotonic()
    for name in os.listdir(staging):
        os.rename(os.path.join(staging, name),
                  os.path.join(m.milterout, name))
    try:
        while os.listdir(m.milterout):
            time.sleep(0.05)
            if time.monotonic() - t0 > 600:
                raise RuntimeError("relay did not drain milterout")
        rate = MESSAGES / (time.monotonic() - t0)
        idle = idle_share(ticks)
        pids = msmilter_pids(m.pid)
        cpu = proc_cpu(pids["relay"])
        hwm = P.vm_hwm_kb(pids["relay"])
    finally:
        m.stop()
    return rate, cpu, hwm, idle


def relay_bench(base):
    pf = P.Postfix(os.path.join(base, "relay-pf"), reinject=True,
                   qmqp_unix=True,
                   main_cf={"in_flow_delay": "0",
                            "qmqpd_authorized_clients": "127.0.0.0/8"})
    pf.start()
    ok = True
    try:
        # Each ceiling right before its relay case, both from an empty
        # queue: Postfix delivers to the sink meanwhile in both.
        for method, tool, target in (
                ("SMTP", SMTP_SOURCE, "127.0.0.1:%d" % pf.reinject_port),
                ("QMQP", QMQP_SOURCE, "unix:" + pf.qmqp_socket)):
            pf.wait_queue_empty(timeout=120)
            ceiling, ceiling_idle = relay_ceiling(tool, target)
            pf.wait_queue_empty(timeout=120)
            pf.sink.clear()
            rate, cpu, hwm, idle = relay_case(base, method, pf)
            pf.wait_queue_empty(timeout=120)
            time.sleep(1)
            delivered = len(pf.sink.files())
            print()
            print("relay by %s, %d files of 4 KB" % (method, MESSAGES))
            print("  ceiling (%s, 20 sessions) %8.1f msg/s" % (
                "smtp-source" if method == "SMTP" else "qmqp-source",
                ceiling))
            print("  msmilter relay              %8.1f msg/s   ratio %.2f"
                  % (rate, rate / ceiling))
            print("  relay CPU s per 1000 msgs: %.2f, peak RSS %d kB; CPU "
                  "idle while each ran: ceiling %.0f%%, relay %.0f%%" % (
                      cpu * 1000 / MESSAGES, hwm, ceiling_idle * 100,
                      idle * 100))
            print("  delivered to the sink: %d (expected %d)" % (
                delivered, MESSAGES))
            if delivered != MESSAGES:
                ok = False
                print("  ERROR: not every message delivered exactly once")
            sys.stdout.flush()
    finally:
        pf.stop()
    return ok


_null_ports = {}


def null_port_of(null):
    return _null_ports[null.pid]


class LoopExt4:
    """A journaled ext4 of its own, on a loop device over a sparse image
    in /var/tmp.  ext4 without a journal (this machine's /tmp) skips, when
    it looks for a free inode, every inode freed in the last minute whose
    table block is cached: each case then pays for the deletions of the
    ones before it (measured: the spooler's create p50 from 0.04 to 0.77
    ms between the cases of one run), so the cases' order shows in their
    ratios.  A journal makes the allocator forget that,
    and it is what a mail server's file system has."""

    def __init__(self):
        self.image = self.mnt = None
        self.mounted = False
        fd, self.image = tempfile.mkstemp(prefix="msmilter-bench-",
                                          suffix=".img", dir="/var/tmp")
        os.close(fd)
        os.truncate(self.image, 8 << 30)
        self.mnt = tempfile.mkdtemp(prefix="msmilter-bench-mnt-",
                                    dir="/var/tmp")
        for cmd in (["mkfs.ext4", "-q", "-F", self.image],
                    ["mount", "-o", "loop", self.image, self.mnt]):
            p = subprocess.run(cmd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT,
                               universal_newlines=True)
            if p.returncode != 0:
                self.close()
                raise OSError("%s: %s" % (" ".join(cmd), p.stdout.strip()))
        self.mounted = True
        os.chmod(self.mnt, 0o755)

    def close(self):
        """Unmount (lazily: a process the bench could not stop may still
        hold a file there) and remove the image."""
        if self.mounted:
            subprocess.run(["umount", "-l", self.mnt])
            self.mounted = False
        for path, remove in ((self.mnt, os.rmdir), (self.image, os.unlink)):
            try:
                if path:
                    remove(path)
            except OSError as e:
                print("make bench: cannot remove %s: %s" % (path, e))
        self.mnt = self.image = None


def bench_dir():
    """(directory, LoopExt4 or None, why): BENCH_DIR; else /tmp, unless
    it is ext4 without a journal and we may mount a journaled one."""
    if BENCH_DIR:
        return BENCH_DIR, None, None
    if not fs_desc("/tmp").endswith("without a journal"):
        return "/tmp", None, None
    if os.geteuid() != 0:
        return "/tmp", None, "not root: no journaled ext4 to mount"
    try:
        loop = LoopExt4()
    except OSError as e:
        return "/tmp", None, "no journaled ext4 (%s)" % e
    return loop.mnt, loop, ("a loop device: /tmp's ext4 has no journal; "
                            "BENCH_DIR=/tmp runs there")


def main():
    reason = P.skip_reason()
    if reason:
        print("make bench: " + reason)
        return 1
    build = P.build_dir()
    global JOURNAL_INFO
    where, loop, why = bench_dir()
    JOURNAL_INFO = journal_info(where)
    try:
        return bench(build, where, why)
    finally:
        if loop is not None:
            loop.close()


def bench(build, where, why):
    base = P.make_base("msmilter-bench-", where)
    null_port = P.free_port()
    null = subprocess.Popen([os.path.join(build, "nullmilter"),
                             "inet:%d@127.0.0.1" % null_port])
    _null_ports[null.pid] = null_port
    print("msmilter bench: %s sessions, %d messages per case, smtp-source "
          "through a private Postfix with in_flow_delay = 0; %s%s" %
          (" and ".join(str(s) for s in SESSIONS_LIST), MESSAGES,
           fs_desc(where), " (%s)" % why if why else ""), flush=True)
    ok = True
    clamd = None
    try:
        if not P.wait_port(null_port, proc=null):
            raise RuntimeError("nullmilter did not start")
        if os.environ.get("BENCH_MILTER", "1") != "0":
            clamd = start_clamd(base)
            ok = milter_bench(base, null, clamd) and ok
        if os.environ.get("BENCH_RELAY", "1") != "0":
            ok = relay_bench(base) and ok
    finally:
        if clamd is not None:
            clamd.stop()
        null.terminate()
        null.wait(10)
        P.remove_base(base)
    return 0 if ok else 1


def fs_desc(path):
    """"/tmp is ext4 with a journal": ext4 without one (some virtual
    machines' disks) frees and finds inodes differently (settle())."""
    p = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", path],
                       stdout=subprocess.PIPE, universal_newlines=True)
    fields = p.stdout.split()
    if not fields:
        return "%s is on ?" % path
    desc = "%s is %s" % (path, fields[0])
    if fields[0] == "ext4" and len(fields) > 1:
        dev = os.path.basename(fields[1])
        try:
            journal = any(n.startswith(dev + "-")
                          for n in os.listdir("/proc/fs/jbd2"))
        except OSError:
            journal = False
        desc += " with a journal" if journal else " without a journal"
    return desc


if __name__ == "__main__":
    sys.exit(main())
