#!/usr/bin/python3
"""make bench: throughput of msmilter against Postfix alone, in one run.

For each message size, smtp-source sends the same load (20 sessions, 2000
messages) through a private Postfix (in_flow_delay = 0) three times:
  (a) no milter: Postfix queues and relays to smtp-sink;
  (b) nullmilter: a do-nothing libmilter milter that DISCARDs, the
      ceiling of any discarding milter;
  (c) msmilter: every message spooled durably into milterin, with the
      audit log off;
  (d) the same with the audit log on and keyed (as installed), (c) and
      (d) alternating BENCH_AUDIT_ROUNDS times (default 2).
Prints messages per second, the ratios c/a, c/b and d/c, CPU seconds per 1000
messages and peak RSS of msmilter's processes, and checks that every
message of (c) is in milterin exactly once.  Timings vary on shared
cores: compare within one run.  Nothing here fails on a timing."""

import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import postfix as P  # noqa: E402

SESSIONS = int(os.environ.get("BENCH_SESSIONS", "20"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "2000"))
SIZES = [4 * 1024, 100 * 1024]
SMTP_SOURCE = "/usr/sbin/smtp-source"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def smtp_source(port, size):
    args = [SMTP_SOURCE, "-s", str(SESSIONS), "-m", str(MESSAGES),
            "-l", str(size), "-f", "bench@example.org",
            "-t", "sink@example.com", "-M", "bench.example.org",
            "127.0.0.1:%d" % port]
    t0 = time.monotonic()
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=1800)
    elapsed = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError("smtp-source failed: %s" % p.stdout.decode())
    return elapsed


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def msmilter_pids(parent):
    pids = {"parent": parent}
    pids.update((k, v) for k, v in P.child_pids(parent).items() if v)
    return pids


def run_case(base, label, size, milter=None, msm=None):
    pf = P.Postfix(os.path.join(base, "%s-%d" % (label, size)), milter=milter,
                   main_cf={"in_flow_delay": "0",
                            "smtpd_client_connection_count_limit": "0"})
    pf.start()
    try:
        cpu0 = None
        if msm is not None:
            pids = msmilter_pids(msm.pid)
            cpu0 = {k: proc_cpu(p) for k, p in pids.items()}
        elapsed = smtp_source(pf.smtp_port, size)
        extra = {}
        if msm is not None:
            extra["cpu"] = {k: proc_cpu(p) - cpu0[k] for k, p in pids.items()}
            extra["hwm"] = {k: P.vm_hwm_kb(p) for k, p in pids.items()}
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


AUDIT_ROUNDS = int(os.environ.get("BENCH_AUDIT_ROUNDS", "2"))
AUDIT = os.path.join(P.build_dir(), "msmilter-audit")


def mean(xs):
    return sum(xs) / len(xs)


def audit_msmilter(base, size, mode, rnd):
    """msmilter with the audit log off, or on with a key (as installed)."""
    name = os.path.join(base, "msm-%d-%s-%d" % (size, mode, rnd))
    if mode == "off":
        return P.MsMilter(name, settings={"Milter Audit Log": ""}), None
    m = P.MsMilter(name)
    os.makedirs(m.base, exist_ok=True)
    out = os.path.join(m.base, "audit-out")
    subprocess.run([AUDIT, "keygen", "-k", m.audit_keydir, "-o", out,
                    "--lifetime", "1"], check=True, stdout=subprocess.DEVNULL)
    return m, out


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


def audit_cases(base, size):
    """(c) and (d) in alternating order, AUDIT_ROUNDS times each: the
    machine's drift falls on both alike."""
    rates = {"off": [], "on": []}
    cpu = {"off": [], "on": []}
    procs = {"off": {}, "on": {}}
    extra, counts = None, None
    for rnd in range(AUDIT_ROUNDS):
        for mode in ("off", "on") if rnd % 2 == 0 else ("on", "off"):
            m, keys = audit_msmilter(base, size, mode, rnd)
            m.start()
            try:
                rate, ex = run_case(base, "c-%s-%d" % (mode, rnd), size,
                                    milter=m, msm=m)
                time.sleep(0.5)
                check = check_milterin(m, size)
            finally:
                m.stop()
            rates[mode].append(rate)
            cpu[mode].append(sum(ex["cpu"].values()))
            for k, v in ex["cpu"].items():
                procs[mode].setdefault(k, []).append(v)
            if mode == "on":
                extra = ex
                counts = check + audit_log_checks(m, keys)
    extra["total"] = {k: mean(v) for k, v in cpu.items()}
    extra["procs"] = {mode: {k: mean(v) for k, v in p.items()}
                      for mode, p in procs.items()}
    return rates, extra, counts


RELAY_SIZE = 4 * 1024
QMQP_SOURCE = "/usr/sbin/qmqp-source"


def relay_ceiling(tool, target):
    """Messages per second the receiving side takes from Postfix's own
    load generator, 20 sessions, the same message size."""
    args = [tool, "-s", str(SESSIONS), "-m", str(MESSAGES), "-l",
            str(RELAY_SIZE), "-f", "bench@example.org",
            "-t", "sink@example.com", target]
    t0 = time.monotonic()
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=1800)
    if p.returncode != 0:
        raise RuntimeError("%s failed: %s" % (tool, p.stdout.decode()))
    return MESSAGES / (time.monotonic() - t0)


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
    s = {"MSMail Delivery Method": method, "Milter Relay Min Retry": "1"}
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
        pids = msmilter_pids(m.pid)
        cpu = proc_cpu(pids["relay"])
        hwm = P.vm_hwm_kb(pids["relay"])
    finally:
        m.stop()
    return rate, cpu, hwm


def relay_bench(base):
    pf = P.Postfix(os.path.join(base, "relay-pf"), reinject=True,
                   qmqp_unix=True,
                   main_cf={"in_flow_delay": "0",
                            "qmqpd_authorized_clients": "127.0.0.0/8"})
    pf.start()
    ok = True
    try:
        smtp_ceiling = relay_ceiling(SMTP_SOURCE,
                                     "127.0.0.1:%d" % pf.reinject_port)
        qmqp_ceiling = relay_ceiling(QMQP_SOURCE, "unix:" + pf.qmqp_socket)
        for method, ceiling in (("SMTP", smtp_ceiling),
                                ("QMQP", qmqp_ceiling)):
            pf.wait_queue_empty(timeout=120)
            pf.sink.clear()
            rate, cpu, hwm = relay_case(base, method, pf)
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
            print("  relay CPU s per 1000 msgs: %.2f, peak RSS %d kB" % (
                cpu * 1000 / MESSAGES, hwm))
            print("  delivered to the sink: %d (expected %d)" % (
                delivered, MESSAGES))
            if delivered != MESSAGES:
                ok = False
                print("  ERROR: not every message delivered exactly once")
            sys.stdout.flush()
    finally:
        pf.stop()
    return ok


def main():
    reason = P.skip_reason()
    if reason:
        print("make bench: " + reason)
        return 1
    build = P.build_dir()
    base = P.make_base("msmilter-bench-")
    null_port = P.free_port()
    null = subprocess.Popen([os.path.join(build, "nullmilter"),
                             "inet:%d@127.0.0.1" % null_port])
    print("msmilter bench: %d sessions, %d messages per case, smtp-source "
          "through a private Postfix with in_flow_delay = 0" %
          (SESSIONS, MESSAGES), flush=True)
    ok = True
    try:
        if not P.wait_port(null_port, proc=null):
            raise RuntimeError("nullmilter did not start")
        for size in SIZES if os.environ.get("BENCH_MILTER", "1") != "0" \
                else []:
            a, _ = run_case(base, "a", size)
            null_cpu = proc_cpu(null.pid)
            b, _ = run_case(base, "b", size, milter=null_port)
            null_cpu = proc_cpu(null.pid) - null_cpu
            rates, extra, counts = audit_cases(base, size)
            c, d = mean(rates["off"]), mean(rates["on"])
            print()
            print("message size %d KB" % (size // 1024))
            print("  (a) Postfix, no milter   %8.1f msg/s" % a)
            print("  (b) nullmilter           %8.1f msg/s" % b)
            print("  (c) msmilter, audit off  %8.1f msg/s  (%s)" % (
                c, ", ".join("%.1f" % r for r in rates["off"])))
            print("  (d) msmilter, audit on   %8.1f msg/s  (%s; keyed, "
                  "60 s epochs, Milter Audit Sync = epoch)" % (
                      d, ", ".join("%.1f" % r for r in rates["on"])))
            print("  c/a = %.2f   c/b = %.2f   audit on/off d/c = %.3f "
                  "(%+.1f%%)" % (c / a, c / b, d / c, (d / c - 1) * 100))
            tot = extra["total"]
            print("  CPU s per 1000 msgs, all of msmilter: audit off %.2f, "
                  "on %.2f (%+.1f%%)" % (tot["off"] * 1000 / MESSAGES,
                                        tot["on"] * 1000 / MESSAGES,
                                        (tot["on"] / tot["off"] - 1) * 100))
            for mode in ("off", "on"):
                cpu = extra["procs"][mode]
                print("  CPU s per 1000 msgs (audit %s): " % mode + ", ".join(
                    "%s %.2f" % (k, v * 1000 / MESSAGES)
                    for k, v in cpu.items()) + " (nullmilter %.2f)" % (
                        null_cpu * 1000 / MESSAGES))
            print("  peak RSS (VmHWM): " + ", ".join(
                "%s %d kB" % (k, v) for k, v in extra["hwm"].items()))
            files, temps, small, commits, verified = counts
            print("  milterin: %d files (expected %d), %d temp files, "
                  "%d shorter than the message; audit: %d commit records, "
                  "verify %s" % (files, MESSAGES, temps, small, commits,
                                 "ok" if verified else "FAILED"))
            if files != MESSAGES or temps or small or \
                    commits != MESSAGES or not verified:
                ok = False
                print("  ERROR: (c)/(d) did not account for every message")
            sys.stdout.flush()
        if os.environ.get("BENCH_RELAY", "1") != "0":
            ok = relay_bench(base) and ok
    finally:
        null.terminate()
        null.wait(10)
        P.remove_base(base)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
