"""The audit log (issue 17), end to end with private Postfix instances.

Every decision msmilter takes leaves exactly one record, written by the
parent from what each child may report; every commit record carries the
BLAKE2b-256 of the file as it is in milterin; msmilter-audit verify
accepts the log of a clean stop with audit.pub and with audit.k0, names
the place of every kind of tampering (exit 1), and reports a truncated
tail as unsealed with the last trusted seq (exit 2).  Epochs are 1 s so
that tests see several of them."""

import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time

import pytest

from postfix import (MsMilter, Postfix, RawSMTP, build_dir, child_pids,
                     data_reply, make_base, remove_base, skip_reason)
from queuefile import real_files
from test_capture import CLIENT, queued_id, wait_for
from test_confinement import hooks_binary, running_children
from testhooks import ACTION

AUDIT = os.path.join(build_dir(), "msmilter-audit")
EPOCH = {"Milter Audit Epoch": "1"}
SEAL_EVENTS = {"file_start", "epoch_close", "checkpoint"}
MAIL_EVENTS = {"accept_loopback", "reject", "tempfail", "commit",
               "delivered", "deferred", "requeued", "quarantined"}
HOOK_FOREIGN_AUDIT = ACTION["FOREIGN_AUDIT"]


def audit(*args, check=False):
    p = subprocess.run([AUDIT] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120)
    out = p.stdout.decode("utf-8", "replace")
    if check:
        assert p.returncode == 0, out
    return p.returncode, out


def keygen(m, days="0.05"):
    """A key for m (1 s epochs); returns the directory of audit.pub/k0."""
    out = os.path.join(m.base, "audit-out")
    audit("keygen", "-k", m.audit_keydir, "-o", out, "--lifetime", days,
          "--epoch", "1", check=True)
    return out


def keyed(msmilter_factory, settings=None):
    """A stopped msmilter with a key; start it with m.start()."""
    s = dict(EPOCH)
    s.update(settings or {})
    m = msmilter_factory(settings=s, start=False)
    os.makedirs(m.base, exist_ok=True)
    return m, keygen(m)


def log_files(m):
    """The log's files, oldest first (rotated names sort by time)."""
    d = os.path.dirname(m.audit_log)
    name = os.path.basename(m.audit_log)
    rotated = sorted(f for f in os.listdir(d) if f.startswith(name + "."))
    return [os.path.join(d, f) for f in rotated] + \
        ([m.audit_log] if os.path.exists(m.audit_log) else [])


def records(m):
    out = []
    for path in log_files(m):
        with open(path, "rb") as f:
            for line in f.read().splitlines():
                out.append(json.loads(line.decode("utf-8",
                                                  "surrogateescape")))
    return out


def mail_records(m):
    return [r for r in records(m) if r["event"] in MAIL_EVENTS]


def verify(keys, files, how="-p"):
    anchor = os.path.join(keys, "audit.pub" if how == "-p" else "audit.k0")
    return audit("verify", how, anchor, *files)


def blake2b(path):
    with open(path, "rb") as f:
        data = f.read()
    return hashlib.blake2b(data, digest_size=32).hexdigest(), len(data)


# ---------------------------------------------------------------------------
# What happened is what the log says


BLACK = "From:   spammer@bad.example   yes\nFromOrTo: default  no\n"
HOSTILE_HELO = b"he\"lo\\\\x\x01y\x7f\xc3\xbcz"   # quote, backslash, C0, DEL, UTF-8


def reject_maps(base):
    path = os.path.join(base, "rcpt_access")
    with open(path, "w") as f:
        f.write("nobody@example.com REJECT 5.1.1 no such user here\n")
    return path


def drop(m, name, data):
    import pwd
    pw = pwd.getpwnam("postfix")
    tmp = os.path.join(m.milterout, "temp-" + name)
    with open(tmp, "wb") as f:
        f.write(data)
    os.chown(tmp, pw.pw_uid, pw.pw_gid)
    os.rename(tmp, os.path.join(m.milterout, name))


def wait_gone(m, name):
    wait_for(lambda: name not in os.listdir(m.milterout), 30,
             "%s to leave milterout" % name)


def mail_stack(msmilter_factory, postfix_factory, test_base):
    """msmilter with a key, a blacklist and loopback accepts; pf_in uses
    it, pf_out is the relay's target and refuses nobody@example.com."""
    maps = reject_maps(test_base)
    pf_out = postfix_factory(reinject=True, main_cf={
        "smtpd_recipient_restrictions": "check_recipient_access "
        "texthash:%s permit_mynetworks reject" % maps})
    bl = os.path.join(test_base, "black.rules")
    with open(bl, "w") as f:
        f.write(BLACK)
    m, keys = keyed(msmilter_factory, {
        "Milter Scanner": "yes", "Is Definitely Spam": bl,
        "Milter Ignore Loopback": "yes", "%org-name%": "Test",
        "MSMail Relay Port": str(pf_out.reinject_port),
        "Milter Relay Min Retry": "1", "Milter Relay Max Retry": "2"})
    m.start()
    pf_in = postfix_factory(milter=m)
    return m, keys, pf_in, pf_out


def send_everything(m, pf_in):
    """Two commits, a reject (with a hostile HELO), a tempfail, a
    loopback accept; returns the commit queue ids."""
    ids = []
    for i in range(2):
        r = pf_in.send(to=["a@example.com", "b@example.com"],
                       data=b"Subject: %d\r\n\r\nbody\r\n" % i, **CLIENT)
        ids.append(queued_id(data_reply(r.transcript)))
    with RawSMTP(pf_in.smtp_port) as c:
        code, _ = c.cmd("EHLO t")
        code, text = c.cmd(b"XCLIENT ADDR=192.0.2.66 NAME=[UNAVAILABLE]")
        assert code == 220, text
        code, text = c.cmd(b"EHLO " + HOSTILE_HELO)
        assert code == 250, text
        code, text = c.message("spammer@bad.example", ["v@example.com"],
                               b"Subject: spam\r\n\r\nx\r\n", ehlo=None)
        assert code == 554, text
    os.chmod(m.milterin, 0o550)          # the spooler cannot create files
    try:
        r = pf_in.send(to=["t@example.com"], data=b"Subject: t\r\n\r\nt\r\n",
                       **CLIENT)
        assert data_reply(r.transcript) is None or \
            data_reply(r.transcript).startswith("4")
    finally:
        os.chmod(m.milterin, 0o750)
    r = pf_in.send(to=["local@example.com"],
                   data=b"Subject: local\r\n\r\nlocal\r\n")
    assert data_reply(r.transcript).startswith("250")
    return ids


def relay_everything(m):
    """A delivery, a requeue of one refused recipient, a quarantine."""
    data = (b"S<alice@example.org>\nO<bob@example.com>\n"
            b"O<nobody@example.com>\nReceived: from h (h [192.0.2.9])\n"
            b"Subject: relay\n\nhello\n")
    drop(m, "9E9E9E9E9.FFFF6", data)
    wait_gone(m, "9E9E9E9E9.FFFF6")
    drop(m, "8B8B8B8B8.AAAA1", b"\x00\x01 not a queue file\n")
    wait_gone(m, "8B8B8B8B8.AAAA1")


def test_records_match_what_happened(msmilter_factory, postfix_factory,
                                     test_base):
    m, keys, pf_in, pf_out = mail_stack(msmilter_factory, postfix_factory,
                                        test_base)
    ids = send_everything(m, pf_in)
    relay_everything(m)
    time.sleep(1.5)                      # an epoch or two passes
    assert m.stop() == 0
    got = sorted((r["event"], r.get("queue_id", ""), r.get("sender", ""),
                  tuple(r.get("rcpts", ()))) for r in mail_records(m)
                 if r["event"] != "accept_loopback")
    want = sorted([
        ("commit", ids[0], "sender@example.org",
         ("a@example.com", "b@example.com")),
        ("commit", ids[1], "sender@example.org",
         ("a@example.com", "b@example.com")),
        ("reject", "", "spammer@bad.example", ("v@example.com",)),
        ("tempfail", got_tempfail_id(m), "", ()),
        ("delivered", "9E9E9E9E9.FFFF6", "", ("bob@example.com",)),
        ("requeued", "9E9E9E9E9.FFFF6", "", ("nobody@example.com",)),
        ("commit", "9E9E9E9E9", "alice@example.org",
         ("nobody@example.com",)),
        ("quarantined", "8B8B8B8B8.AAAA1", "", ()),
    ])
    assert got == want
    # Every SMTP session begins on 127.0.0.1 (the tests' XCLIENT comes
    # later): one ACCEPT at connect each, the banner checks' included.
    loopback = [r for r in mail_records(m) if r["event"] == "accept_loopback"]
    assert len(loopback) == len(re.findall(
        r"smtpd\[\d+\]: connect from localhost\[127\.0\.0\.1\]",
        pf_in.maillog()))
    by_event = {r["event"]: r for r in mail_records(m)}
    reject = by_event["reject"]
    assert reject["client_addr"] == "192.0.2.66"
    assert reject["rule"].endswith("black.rules:1")
    # The HELO's hostile bytes come back exactly (surrogateescape).
    assert reject["helo"].encode("utf-8", "surrogateescape") == HOSTILE_HELO
    assert by_event["accept_loopback"]["client_addr"] == "127.0.0.1"
    assert by_event["requeued"]["requeued_as"] == "9E9E9E9E9"
    assert by_event["delivered"]["method"] == "SMTP"
    assert "no such user" in by_event["requeued"]["reply"]
    # Every commit's digest is the file in milterin, byte for byte.
    commits = [r for r in mail_records(m) if r["event"] == "commit"]
    assert sorted(real_files(m.milterin)) == sorted(
        r["queue_id"] for r in commits)
    for r in commits:
        digest, size = blake2b(os.path.join(m.milterin, r["queue_id"]))
        assert (r["digest"], r["size"]) == (digest, size), r
        assert r["client_addr"] in ("192.0.2.25", "192.0.2.9")
    for how in ("-p", "-K"):
        rc, out = verify(keys, log_files(m), how)
        assert rc == 0, out
        assert "OK: every line verifies" in out


def got_tempfail_id(m):
    t = [r for r in mail_records(m) if r["event"] == "tempfail"]
    assert len(t) == 1, t
    assert "queue file not written" in t[0]["reason"], t
    return t[0].get("queue_id", "")


def test_log_format(msmilter_factory, postfix_factory):
    """Keys in DESIGN.md's order, seq from 1 without gaps, UTC times with
    microseconds, prev chained, a MAC on every keyed line."""
    m, keys = keyed(msmilter_factory)
    m.start()
    pf = postfix_factory(milter=m)
    pf.send(to=["a@example.com"], **CLIENT)
    time.sleep(1.2)
    m.stop()
    prev = "0" * 64
    for path in log_files(m):
        with open(path, "rb") as f:
            raw = f.read().splitlines()
        for i, line in enumerate(raw):
            r = json.loads(line)
            keys_in_order = list(r)
            assert keys_in_order[:4] == ["seq", "time", "epoch", "event"]
            assert keys_in_order[-2:] == ["prev", "mac"]
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z",
                                r["time"])
            assert r["prev"] == prev
            prev = hashlib.blake2b(line, digest_size=32).hexdigest()
    recs = records(m)
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    assert recs[0]["event"] == "file_start" and recs[1]["event"] == "start"
    assert recs[-2]["event"] == "stop" and recs[-1]["event"] == "checkpoint"
    assert "commit" in [r["event"] for r in recs]


# ---------------------------------------------------------------------------
# A child may report only its own events


@pytest.mark.parametrize("child", ["capture", "spooler", "relay"])
@pytest.mark.parametrize("own_type", [0, 1], ids=["other-type", "own-type"])
def test_foreign_event_refused(msmilter_factory, child, own_type):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sigqueue.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    m = msmilter_factory(binary=hooks_binary())
    pid = running_children(m)[child]
    # Its hooks are in place once it is sandboxed, that is ready.
    wait_for(lambda: "%s started, pid %d" % (child, pid) in m.stderr(), 20,
             "%s ready" % child)
    assert libc.sigqueue(pid, signal.SIGRTMIN + HOOK_FOREIGN_AUDIT,
                         own_type) == 0
    if own_type:
        what = r"%s \(pid %d\): audit record refused: an event this child " \
            r"may not report" % (child, pid)
    else:
        what = r"%s \(pid %d\) sent a bad record \((SPOOLER|RELAY|CAPTURE)" \
            r"_AUDIT\); killing it" % (child, pid)
    wait_for(lambda: re.search(what, m.stderr()), 10, "the refusal")
    wait_for(lambda: "%s (pid %d) killed by signal 9" % (child, pid)
             in m.stderr(), 10, "the kill")
    running_children(m)
    m.stop()
    recs = records(m)
    assert not [r for r in recs if "FOREIGN0" in json.dumps(r)]
    assert not [r for r in recs if r["event"] in MAIL_EVENTS]
    assert {"event": "child_exit", "child": child, "status": "signal 9"} \
        .items() <= [r for r in recs if r["event"] == "child_exit"][0].items()


# ---------------------------------------------------------------------------
# Tampering: one log, many copies, each altered once


def kdf(key, subkey):
    return hashlib.blake2b(b"", digest_size=32, key=key,
                           salt=struct.pack("<Q", subkey) + bytes(8),
                           person=b"msmaudit" + bytes(8)).digest()


def key_at(k0_path, epoch):
    with open(k0_path, "rb") as f:
        k = f.read()
    assert len(k) == 104 and k[:8] == b"MSMAUDK1"
    key = k[72:104]
    for _ in range(epoch):
        key = kdf(key, 1)               # AUDIT_SUB_NEXT
    return key


def remac(line, epoch, k0_path):
    prefix = line[:line.rindex(b',"mac":')]
    mac = hashlib.blake2b(prefix, digest_size=32,
                          key=kdf(key_at(k0_path, epoch), 2)).hexdigest()
    return prefix + b',"mac":"' + mac.encode() + b'"}'


@pytest.fixture(scope="module")
def sealed_log():
    """A clean log in three files (two SIGHUPs), several epochs."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    base = make_base()
    m = MsMilter(os.path.join(base, "m"), settings=EPOCH)
    os.makedirs(m.base, exist_ok=True)
    keys = keygen(m)
    m.start()
    pf = Postfix(os.path.join(base, "pf"), milter=m.milter)
    pf.start()
    try:
        for i in range(6):
            pf.send(to=["a%d@example.com" % i], **CLIENT)
            if i in (1, 3):
                n = len(log_files(m))
                m.signal(signal.SIGHUP)
                wait_for(lambda: len(log_files(m)) == n + 1, 10, "rotation")
            time.sleep(0.6)
    finally:
        pf.stop()
        m.stop()
    files = log_files(m)
    assert len(files) == 3, files
    for how in ("-p", "-K"):
        rc, out = verify(keys, files, how)
        assert rc == 0, out
    yield m, keys, files
    remove_base(base)


def copy_log(sealed_log, tmp_path):
    m, keys, files = sealed_log
    out = []
    for f in files:
        dst = os.path.join(str(tmp_path), os.path.basename(f))
        shutil.copy(f, dst)
        out.append(dst)
    return keys, out


def lines_of(path):
    with open(path, "rb") as f:
        return f.read().splitlines()


def write_lines(path, lines, final_newline=True):
    with open(path, "wb") as f:
        f.write(b"\n".join(lines) + (b"\n" if final_newline else b""))


def commit_line(lines):
    """Index of the first commit record in lines (not the first line)."""
    return next(i for i, l in enumerate(lines) if b'"event":"commit"' in l)


def place(path, lineno):
    return r"%s:%d\b" % (re.escape(os.path.basename(path)), lineno)


def assert_fails_at(keys, files, path, lineno):
    for how in ("-p", "-K"):
        rc, out = verify(keys, files, how)
        assert rc == 1, (how, out)
        assert "FAILED" in out and re.search(place(path, lineno), out), \
            (how, out)


def test_tamper_one_byte(sealed_log, tmp_path):
    keys, files = copy_log(sealed_log, tmp_path)
    path = files[1]
    lines = lines_of(path)
    i = commit_line(lines)
    lines[i] = lines[i].replace(b"sender@example.org", b"sendes@example.org")
    write_lines(path, lines)
    # -K names the altered line itself; -p the line whose prev breaks,
    # which names the altered one.
    assert_fails_at(keys, files, path, i + 1)


def test_tamper_line_deleted(sealed_log, tmp_path):
    keys, files = copy_log(sealed_log, tmp_path)
    path = files[1]
    lines = lines_of(path)
    i = commit_line(lines)
    del lines[i]
    write_lines(path, lines)
    assert_fails_at(keys, files, path, i + 1)


def test_tamper_lines_swapped(sealed_log, tmp_path):
    keys, files = copy_log(sealed_log, tmp_path)
    path = files[1]
    lines = lines_of(path)
    i = commit_line(lines)
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    write_lines(path, lines)
    assert_fails_at(keys, files, path, i + 1)


def test_tamper_line_inserted(sealed_log, tmp_path):
    keys, files = copy_log(sealed_log, tmp_path)
    path = files[1]
    lines = lines_of(path)
    i = commit_line(lines)
    lines.insert(i + 1, lines[i])
    write_lines(path, lines)
    assert_fails_at(keys, files, path, i + 2)


def test_tamper_resealed_with_later_key(sealed_log, tmp_path):
    """journald's re-sealing class: a line altered and MACed again with a
    key of a later epoch (as someone holding that key could)."""
    keys, files = copy_log(sealed_log, tmp_path)
    path = files[1]
    lines = lines_of(path)
    i = commit_line(lines)
    rec = json.loads(lines[i])
    later = max(json.loads(l)["epoch"] for f in files for l in lines_of(f))
    assert later > rec["epoch"]
    altered = lines[i].replace(b"sender@example.org", b"forged@example.org")
    altered = altered.replace(b'"epoch":%d,' % rec["epoch"],
                              b'"epoch":%d,' % later, 1)
    lines[i] = remac(altered, later, os.path.join(keys, "audit.k0"))
    write_lines(path, lines)
    assert_fails_at(keys, files, path, i + 1)
    # The same key, but the epoch left alone: the MAC gives it away.
    keys, files = copy_log(sealed_log, tmp_path)
    lines = lines_of(path)
    altered = lines[i].replace(b"sender@example.org", b"forged@example.org")
    lines[i] = remac(altered, later, os.path.join(keys, "audit.k0"))
    write_lines(path, lines)
    assert_fails_at(keys, files, path, i + 1)


def test_tamper_rotated_file_removed(sealed_log, tmp_path):
    keys, files = copy_log(sealed_log, tmp_path)
    rest = [files[0], files[2]]
    for how in ("-p", "-K"):
        rc, out = verify(keys, rest, how)
        assert rc == 1, out
        assert re.search(place(files[2], 1), out), out
        assert "a file of the sequence is missing" in out


def test_files_in_any_order(sealed_log, tmp_path):
    keys, files = copy_log(sealed_log, tmp_path)
    rc, out = verify(keys, [files[2], files[0], files[1]])
    assert rc == 0, out


@pytest.mark.parametrize("cut", [1, 2, 5])
def test_truncated_tail_is_unsealed(sealed_log, tmp_path, cut):
    keys, files = copy_log(sealed_log, tmp_path)
    lines = lines_of(files[2])
    write_lines(files[2], lines[:-cut])
    kept = [json.loads(l) for f in files for l in lines_of(f)]
    trusted = [r for r in kept if r["event"] == "checkpoint"][-1]
    for how in ("-p", "-K"):
        rc, out = verify(keys, files, how)
        assert rc == 2, out
        assert "last trusted seq %d (%s)" % (trusted["seq"],
                                             trusted["time"]) in out, out


def test_torn_last_line_is_unsealed(sealed_log, tmp_path):
    keys, files = copy_log(sealed_log, tmp_path)
    lines = lines_of(files[2])
    lines[-1] = lines[-1][:len(lines[-1]) // 2]
    write_lines(files[2], lines, final_newline=False)
    rc, out = verify(keys, files)
    assert rc == 2, out
    assert "incomplete" in out


def test_wrong_key_fails(sealed_log, tmp_path):
    keys, files = copy_log(sealed_log, tmp_path)
    other = os.path.join(str(tmp_path), "other")
    audit("keygen", "-k", other + "-k", "-o", other, "--lifetime", "0.01",
          "--epoch", "1", check=True)
    rc, out = verify(other, files)
    assert rc == 1, out
    assert "but the key given is" in out


# ---------------------------------------------------------------------------
# Downtime, restarts, rotation, sync, no key


def test_downtime_is_sealed_and_shown(msmilter_factory, postfix_factory):
    m, keys = keyed(msmilter_factory)
    m.start()
    pf = postfix_factory(milter=m)
    pf.send(to=["before@example.com"], **CLIENT)
    m.stop()
    time.sleep(3.5)                         # three epochs or so, nobody up
    m.start()
    wait_for(lambda: pf.send(to=["after@example.com"], **CLIENT).rc == 0,
             10, "msmilter back")
    m.stop()
    recs = records(m)
    stop = [r for r in recs if r["event"] == "stop"][0]
    start2 = [r for r in recs if r["event"] == "start"][1]
    between = [r for r in recs if stop["seq"] < r["seq"] < start2["seq"]]
    closes = [r for r in between if r["event"] == "epoch_close"]
    # Each epoch that passed while down is closed, the empty ones with 0.
    assert [r["epoch"] for r in closes] == list(
        range(stop["epoch"], start2["epoch"]))
    assert len(closes) >= 3 and all(r["count"] == 0 for r in closes[1:])
    assert between[-1]["event"] == "checkpoint"
    rc, out = verify(keys, log_files(m))
    assert rc == 0, out
    assert "msmilter was down from %s to %s" % (stop["time"],
                                                start2["time"]) in out


def test_crash_is_sealed_at_restart(msmilter_factory, postfix_factory):
    m, keys = keyed(msmilter_factory)
    m.start()
    pf = postfix_factory(milter=m)
    pf.send(to=["before@example.com"], **CLIENT)
    children = [p for p in child_pids(m.pid).values() if p]
    m.proc.kill()                           # no stop record
    m.stop()
    for p in children:
        wait_for(lambda: not os.path.exists("/proc/%d" % p), 20,
                 "the children to exit")
    rc, out = verify(keys, log_files(m))
    assert rc == 2 and "NOT SEALED" in out, out
    time.sleep(1.2)
    m.start()
    m.stop()
    rc, out = verify(keys, log_files(m), "-K")
    assert rc == 0, out
    assert "without a stop record: msmilter crashed or was killed" in out


def test_rotation_by_size(msmilter_factory, postfix_factory):
    m, keys = keyed(msmilter_factory, {"Milter Audit Rotate Size": "3k"})
    m.start()
    pf = postfix_factory(milter=m)
    # 14 commit records of about 480 bytes cross 3k twice by themselves,
    # however many epochs close meanwhile.
    for i in range(14):
        pf.send(to=["r%d@example.com" % i], **CLIENT)
    time.sleep(1.5)
    m.stop()
    files = log_files(m)
    assert len(files) >= 3, files
    assert "Milter Audit Rotate Size reached" in m.logged(
        "Milter Audit Rotate Size reached")
    rc, out = verify(keys, files)
    assert rc == 0, out


def test_sync_every(msmilter_factory, postfix_factory):
    m, keys = keyed(msmilter_factory, {"Milter Audit Sync": "every"})
    m.start()
    pf = postfix_factory(milter=m)
    for i in range(3):
        r = pf.send(to=["s%d@example.com" % i], **CLIENT)
        assert data_reply(r.transcript).startswith("250")
    m.stop()
    assert len([r for r in mail_records(m) if r["event"] == "commit"]) == 3
    assert "did not confirm" not in m.stderr()
    assert verify(keys, log_files(m))[0] == 0


def test_full_disk_never_stops_mail(msmilter_factory, postfix_factory,
                                    test_base):
    logdir = os.path.join(test_base, "small")
    os.makedirs(logdir)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs",
                    logdir], check=True)
    try:
        m, keys = keyed(msmilter_factory, {
            "Milter Audit Log": os.path.join(logdir, "audit.log")})
        m.audit_log = os.path.join(logdir, "audit.log")
        m.start()
        pf = postfix_factory(milter=m)
        filler = os.path.join(logdir, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"x" * 512)
        except OSError:
            pass
        os.close(fd)
        for i in range(8):
            r = pf.send(to=["full%d@example.com" % i], **CLIENT)
            assert data_reply(r.transcript).startswith("250"), r.transcript
        assert "AUDIT LOG NOT WRITTEN" in m.logged("AUDIT LOG NOT WRITTEN")
        os.unlink(filler)
        pf.send(to=["after@example.com"], **CLIENT)
        m.stop()
        recs = records(m)
        # Each time writing works again, a record says how many were lost.
        lost = sum(r["count"] for r in recs if r["event"] == "lost")
        assert lost >= 1
        commits = [r for r in recs if r["event"] == "commit"]
        assert len(commits) + lost >= 9
        assert commits[-1]["rcpts"] == ["after@example.com"]
        rc, out = verify(keys, log_files(m))
        assert rc == 0, out
    finally:
        subprocess.run(["umount", "-l", logdir])


def test_unkeyed_says_so(msmilter_factory, postfix_factory):
    m = msmilter_factory()
    pf = postfix_factory(milter=m)
    pf.send(to=["a@example.com"], **CLIENT)
    m.stop()
    assert re.search(r"audit log \S+: NOT KEYED \(", m.stderr())
    p = subprocess.run([m.binary, "-t", "-f", m.conf],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert "# audit log: %s, NOT KEYED" % m.audit_log in p.stdout.decode()
    recs = records(m)
    assert [r["event"] for r in recs if r["event"] == "commit"] == ["commit"]
    assert all("mac" not in r for r in recs)
    rc, out = audit("verify", *log_files(m))
    assert rc == 2 and "NOT VERIFIED" in out, out


def test_audit_log_off(msmilter_factory, postfix_factory):
    m = msmilter_factory(settings={"Milter Audit Log": ""})
    pf = postfix_factory(milter=m)
    r = pf.send(to=["a@example.com"], **CLIENT)
    assert data_reply(r.transcript).startswith("250")
    m.stop()
    assert not os.path.exists(m.audit_log)
    assert "audit log: off" in m.logged("audit log: off")


def test_show_and_stats(msmilter_factory, postfix_factory):
    m, keys = keyed(msmilter_factory)
    m.start()
    pf = postfix_factory(milter=m)
    r = pf.send(to=["x@example.com"], **CLIENT)
    qid = queued_id(data_reply(r.transcript))
    pf.send(to=["y@example.com"], **CLIENT)
    m.stop()
    rc, out = audit("show", "--queue-id", qid, *log_files(m))
    assert rc == 0 and out.count("\n") == 1 and qid in out, out
    rc, out = audit("show", "--rcpt", "Y@example.com", "--json",
                    *log_files(m))
    assert rc == 0 and json.loads(out)["rcpts"] == ["y@example.com"], out
    rc, out = audit("show", "--event", "checkpoint", "--json",
                    *log_files(m))
    assert rc == 0 and all(json.loads(l)["event"] == "checkpoint"
                           for l in out.splitlines()), out
    rc, out = audit("show", "--since", "2000-01-01", "--until", "2000-01-02",
                    *log_files(m))
    assert rc == 0 and out == "", out
    rc, out = audit("stats", *log_files(m))
    assert rc == 0 and re.search(r"commit\s+2\n", out), out
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:00\s+commit 2", out), out


def test_keygen_refuses_to_overwrite(test_base):
    k, o = os.path.join(test_base, "k"), os.path.join(test_base, "o")
    audit("keygen", "-k", k, "-o", o, "--lifetime", "0.01", "--epoch", "1",
          check=True)
    with open(os.path.join(k, "audit.key"), "rb") as f:
        before = f.read()
    rc, out = audit("keygen", "-k", k, "-o", o + "2", "--lifetime", "0.01")
    assert rc == 1 and "exists already" in out, out
    with open(os.path.join(k, "audit.key"), "rb") as f:
        assert f.read() == before
    assert oct(os.stat(os.path.join(k, "audit.key")).st_mode & 0o777) == \
        "0o600"
    assert oct(os.stat(os.path.join(o, "audit.k0")).st_mode & 0o777) == \
        "0o600"
