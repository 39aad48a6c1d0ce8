#!/usr/bin/python3
"""make demo: the real thing, end to end, on a built-in configuration.

Starts msmilter and a private Postfix (its own config and queue under a
temp dir, loopback ports only), sends a few messages through Postfix's
smtpd, shows what landed in milterin and what Postfix logged, then plays
MailScanner's part (moves each file to milterout, as MailScanner does after
scanning) and shows msmilter's relay delivering it back into Postfix,
which hands it to its smtp-sink.  Needs root (Postfix's master, msmilter's
privilege drop)."""

import os
import stat
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import postfix as P  # noqa: E402


def say(text=""):
    print(text, flush=True)


def banner(text):
    say()
    say("== " + text)


def read_queue_file(dirpath, name):
    """A milterin file's bytes, or None when it is not a plain file with
    one link: we are root in a directory postfix can write, so never
    follow a link planted there (O_NOFOLLOW), never block on a FIFO."""
    try:
        fd = os.open(os.path.join(dirpath, name),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            return None
        return f.read()


def write_queue_file(dirpath, name, data, uid, gid):
    """Write data to dirpath/name for uid:gid, exclusively: a link or
    anything else already at that name makes it fail rather than write
    (or chown) through it.  Ownership and mode by descriptor."""
    fd = os.open(os.path.join(dirpath, name),
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        os.fchown(f.fileno(), uid, gid)
        os.fchmod(f.fileno(), 0o640)


def mark_clean(data):
    """MailScanner's header for a clean message, after the envelope."""
    lines = data.split(b"\n")
    i = 0
    while i < len(lines) and lines[i][:2] in (b"S<", b"O<", b"E<", b"A<"):
        i += 1
    lines.insert(i, b"X-Demo-MailScanner: Found to be clean")
    return b"\n".join(lines)


def mailscanner_move(milterin, milterout, name, uid, gid, suffix="A1B2C"):
    """What MailScanner does with one clean message: read it from
    milterin, add its header, write it to milterout under a temp- name and
    rename it to its message id (queue id, a dot, five characters), then
    remove it from milterin.  Returns the milterout name; raises OSError
    (nothing moved) or ValueError (not a plain file: left alone).  Also
    used by the chaos test (tests/chaos/chaos.py)."""
    data = read_queue_file(milterin, name)
    if data is None:
        raise ValueError("%s: not a plain file, left alone" % name)
    tmp = "temp-" + name
    write_queue_file(milterout, tmp, mark_clean(data), uid, gid)
    out = "%s.%s" % (name, suffix)
    os.rename(os.path.join(milterout, tmp), os.path.join(milterout, out))
    os.unlink(os.path.join(milterin, name))
    return out


def play_mailscanner(m):
    """MailScanner's part for every file in milterin."""
    import pwd
    pw = pwd.getpwnam("postfix")
    banner("playing MailScanner: milterin -> milterout")
    for name in m.milterin_files():
        try:
            out = mailscanner_move(m.milterin, m.milterout, name, pw.pw_uid,
                                   pw.pw_gid)
        except ValueError as e:
            say(str(e))
            continue
        except OSError as e:
            say("%s: cannot write milterout/temp-%s (%s), left in milterin"
                % (name, name, e.strerror))
            continue
        say("%s -> milterout/%s" % (name, out))


def main():
    reason = P.skip_reason()
    if reason:
        say("make demo: " + reason)
        return 1
    base = P.make_base("msmilter-demo-")
    pf = P.Postfix(os.path.join(base, "postfix"), reinject=True)
    m = P.MsMilter(os.path.join(base, "msmilter"),
                   settings={"MSMail Relay Port": str(pf.reinject_port),
                             "%org-name%": "Demo"})
    pf.milter = P.milter_spec(m)
    started = False
    try:
        m.write_config()
        banner("msmilter configuration (%s)" % m.conf)
        with open(m.conf) as f:
            sys.stdout.write(f.read())
        m.start()
        banner("msmilter is running (pid %d); its log so far" % m.pid)
        sys.stdout.write(m.stderr())

        pf.start()
        started = True
        banner("private Postfix on 127.0.0.1:%d, smtpd_milters = %s"
               % (pf.smtp_port, pf.milter))

        client = dict(xclient_addr="192.0.2.25",
                      xclient_name="mail.example.net",
                      helo="mail.example.net")
        sends = [
            ("a plain message", dict(
                sender="alice@example.net", to=["bob@example.com"],
                data=b"Subject: hello from the demo\r\n\r\n"
                     b"Scanned by MailScanner, spooled by msmilter.\r\n")),
            ("three recipients", dict(
                sender="list@example.net",
                to=["a@example.com", "b@example.com", "c@example.com"],
                data=b"Subject: to three\r\n\r\nOne file, three O lines.\r\n")),
            ("8-bit body", dict(
                sender="carol@example.net", to=["dave@example.com"],
                data="Subject: Grüße\r\nContent-Type: text/plain; "
                     "charset=utf-8\r\n\r\nGrüße aus Köln\r\n".encode())),
        ]
        for what, kw in sends:
            r = pf.send(**dict(client, **kw))
            say("sent %-18s -> %s" % (what, P.data_reply(r.transcript)))

        os.chmod(m.milterin, 0o500)
        r = pf.send(sender="erin@example.net", to=["frank@example.com"],
                    data=b"Subject: spool not writable\r\n\r\nx\r\n",
                    **client)
        say("sent %-18s -> %s (at DATA, before the body)"
            % ("milterin read-only", P.reply_to(r.transcript, "DATA")))
        os.chmod(m.milterin, 0o750)

        time.sleep(0.5)
        banner("milterin: %s" % m.milterin)
        for name in m.milterin_files():
            st = os.stat(os.path.join(m.milterin, name))
            say("%s  %o  %d bytes" % (name, st.st_mode & 0o777, st.st_size))
        for name in m.milterin_files():
            banner("queue file " + name)
            with open(os.path.join(m.milterin, name), "rb") as f:
                sys.stdout.write(f.read().decode("utf-8", "replace"))

        banner("Postfix discarded its copies (maillog)")
        for line in pf.maillog().splitlines():
            if "milter-" in line:
                say(line)
        pf.wait_queue_empty(timeout=10)
        say("Postfix queue empty; delivered onward: %d message(s)"
            % len(pf.sink_messages()))
        play_mailscanner(m)
        banner("the relay delivered them back into Postfix (127.0.0.1:%d, "
               "no milter); Postfix relayed them to its smtp-sink"
               % pf.reinject_port)
        msgs = pf.wait_sink(3, timeout=30)
        for msg in msgs:
            subject = [l for l in msg.data.split(b"\n")
                       if l.startswith(b"Subject:")]
            say("sink got from=<%s> to=%s %s" % (
                msg.sender, ",".join("<%s>" % r for r in msg.recipients),
                subject[0].decode("utf-8", "replace") if subject else ""))
        say("milterout now: %s" % (os.listdir(m.milterout) or "empty"))
        banner("msmilter log")
        sys.stdout.write(m.stderr())
    finally:
        if started:
            pf.stop()
        m.stop()
        P.remove_base(base)
    banner("stopped; demo files removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
