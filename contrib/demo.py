#!/usr/bin/python3
"""make demo: the real thing, end to end, on a built-in configuration.

Starts msmilter and a private Postfix (its own config and queue under a
temp dir, loopback ports only), sends a few messages through Postfix's
smtpd, shows what landed in milterin and what Postfix logged, and stops
everything.  Needs root (Postfix's master, msmilter's privilege drop)."""

import os
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


def main():
    reason = P.skip_reason()
    if reason:
        say("make demo: " + reason)
        return 1
    base = P.make_base("msmilter-demo-")
    m = P.MsMilter(os.path.join(base, "msmilter"))
    pf = None
    try:
        m.write_config()
        banner("msmilter configuration (%s)" % m.conf)
        with open(m.conf) as f:
            sys.stdout.write(f.read())
        m.start()
        banner("msmilter is running (pid %d); its log so far" % m.pid)
        sys.stdout.write(m.stderr())

        pf = P.Postfix(os.path.join(base, "postfix"), milter=m)
        pf.start()
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
        banner("msmilter log")
        sys.stdout.write(m.stderr())
    finally:
        if pf is not None:
            pf.stop()
        m.stop()
        P.remove_base(base)
    banner("stopped; demo files removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
