"""Logs a person can follow: one message through a private Postfix,
msmilter, a stand-in for MailScanner (milterin to milterout) and the
relay back into Postfix; then every line that carries the message's
Postfix queue id, in syslog (a private datagram socket standing for
/dev/log, Milter Syslog Socket) and on stderr (-F), tells its story:
each stage's line starts with the queue id and carries the tag of the
child that wrote it, msmilter/capture[PID] with that child's own pid,
as Postfix names its daemons."""

import os
import pwd
import re
import socket
import subprocess
import threading

import pytest

from postfix import MsMilter, Postfix, child_pids
from queuefile import real_files
from test_capture import wait_for
from test_supervise import daemons, stop_daemons

# What glibc's syslog(3) writes, and so what we must: "<PRI>Mmm dd
# hh:mm:ss TAG[PID]: text" (RFC 3164 without the host, which the daemon
# adds).
RECORD = re.compile(r"<(\d+)>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) "
                    r"([\w/.-]+)\[(\d+)\]: (.*)$", re.S)
STDERR_LINE = re.compile(r"^([\w/.-]+)\[(\d+)\]: (.*)$")
LOG_MAIL, LOG_INFO, LOG_NOTICE = 2 << 3, 6, 5


class SyslogSink:
    """A unix datagram socket that keeps every record it receives."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.records = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.records.append(data.decode("utf-8", "replace"))

    def lines(self):
        """[(pri, tag, pid, text)] received so far, in order."""
        out = []
        for r in list(self.records):
            m = RECORD.match(r)
            assert m, "not an RFC 3164 record: %r" % r
            out.append((int(m.group(1)), m.group(3), int(m.group(4)),
                        m.group(5)))
        return out

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def stderr_lines(m):
    """msmilter -F's stderr as [(None, tag, pid, text)]."""
    out = []
    for line in m.stderr().splitlines():
        g = STDERR_LINE.match(line)
        assert g, "untagged stderr line: %r" % line
        out.append((None, g.group(1), int(g.group(2)), g.group(3)))
    return out


class Stack:
    """Postfix with msmilter on its smtpd, the relay delivering into
    Postfix's re-injection listener (then its smtp-sink)."""

    def __init__(self, base, foreground):
        self.foreground = foreground
        self.syslog = None
        s = {"Milter Relay Min Retry": "1", "Milter Relay Max Retry": "2"}
        if not foreground:
            self.syslog = SyslogSink(os.path.join(base, "log.sock"))
            s["Milter Syslog Socket"] = self.syslog.path
        self.m = MsMilter(os.path.join(base, "ms"), settings=s)
        self.pf = Postfix(os.path.join(base, "pf"), milter=self.m,
                          reinject=True)
        self.m.settings["MSMail Relay Port"] = str(self.pf.reinject_port)
        self.parent = None

    def start(self):
        if self.foreground:
            self.m.start()
            self.parent = self.m.pid
        else:
            # A daemon, as in production: started without -F it returns
            # once every child is ready, and logs only to syslog.
            self.m.write_config()
            p = subprocess.run([self.m.binary, "-f", self.m.conf],
                               stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=60)
            assert p.returncode == 0, p.stderr
            self.parent = daemons(self.m)[0]
        wait_for(lambda: all(child_pids(self.parent).values()), 20,
                 "every child")
        self.pf.start()

    def lines(self):
        return self.syslog.lines() if self.syslog else \
            stderr_lines(self.m)

    def close(self):
        try:
            self.pf.stop()
        finally:
            if self.foreground:
                self.m.stop()
            else:
                stop_daemons(self.m)
            if self.syslog:
                self.syslog.close()


@pytest.fixture(params=["syslog", "stderr"])
def stack(request, test_base):
    st = Stack(test_base, request.param == "stderr")
    try:
        st.start()
        yield st
    finally:
        st.close()


def mailscanner(m, qid):
    """What MailScanner does with a clean message: milterin/QID out,
    milterout/QID.SUFFIX in (its message id), owned by Run As User."""
    pw = pwd.getpwnam("postfix")
    src = os.path.join(m.milterin, qid)
    tmp = os.path.join(m.milterout, "temp-" + qid)
    with open(src, "rb") as f:
        data = f.read()
    with open(tmp, "wb") as f:
        f.write(data)
    os.chown(tmp, pw.pw_uid, pw.pw_gid)
    os.rename(tmp, os.path.join(m.milterout, qid + ".A1B2C"))
    os.unlink(src)


def story(lines, qid):
    """The lines about qid, each (pri, tag, pid, text)."""
    return [x for x in lines if re.search(r"\b%s\b" % qid, x[3])]


def test_grep_the_queue_id_tells_the_story(stack):
    m, pf = stack.m, stack.pf
    pids = child_pids(stack.parent)
    r = pf.send(sender="alice@example.org", to=("bob@example.com",),
                data=b"Subject: follow me\r\n\r\nhello\r\n")
    assert r.rc == 0, r.transcript
    wait_for(lambda: len(real_files(m.milterin)) == 1, 20, "the commit")
    qid = real_files(m.milterin)[0]
    # Postfix's own lines start the story, under the same id.
    assert pf.wait_log(r"/smtpd\[\d+\]: %s: client=" % qid), \
        pf.maillog_tail()
    mailscanner(m, qid)
    assert pf.wait_sink(1)
    wait_for(lambda: os.listdir(m.milterout) == [], 20, "the delivery")

    def told():
        s = story(stack.lines(), qid)
        return {t for _, t, _, _ in s} >= {"msmilter/capture",
                                           "msmilter/spooler",
                                           "msmilter/relay"}
    wait_for(told, 20, "a line from capture, spooler and relay")
    s = story(stack.lines(), qid)
    by = {}
    for pri, tag, pid, text in s:
        # Each names its writer: the child's own pid, not the parent's.
        child = tag.split("/")[1]
        assert pid == pids[child], (tag, pid, pids)
        assert text.startswith(qid + ": "), text
        if pri is not None:
            assert pri & ~7 == LOG_MAIL and pri & 7 in (LOG_INFO,
                                                         LOG_NOTICE), pri
        by.setdefault(child, []).append(text[len(qid) + 2:])
    assert len(by["spooler"]) == 1 and re.fullmatch(
        r"committed as %s/%s, size=\d+" % (re.escape(m.milterin), qid),
        by["spooler"][0]), by
    assert len(by["capture"]) == 1 and re.fullmatch(
        r"from=<alice@example\.org>, size=\d+, nrcpt=1: discarded, "
        r"committed to milterin", by["capture"][0]), by
    assert len(by["relay"]) == 1 and re.fullmatch(
        r"to=<bob@example\.com>, relay=127\.0\.0\.1:%d, method=SMTP, "
        r"delay=\d+, size=\d+, nrcpt=1, file=%s\.A1B2C, status=sent "
        r"\(250 2\.0\.0 Ok: queued as \w+\)" % (pf.reinject_port, qid),
        by["relay"][0]), by
    # The parent's own lines carry its pid.
    assert any(tag == "msmilter" and pid == stack.parent
               for _, tag, pid, _ in stack.lines())


def test_refusals_have_their_lines(stack):
    """A sender refused at MAIL has no queue id yet: NOQUEUE, as Postfix
    says it, under capture's tag and pid."""
    m = stack.m
    pids = child_pids(stack.parent)
    r = stack.pf.send(sender='"a<b"@example.com', to=("bob@example.com",))
    assert r.rc != 0
    wait_for(lambda: any(tag == "msmilter/capture" and
                         text.startswith("NOQUEUE: 553 5.1.7 ")
                         for _, tag, _, text in stack.lines()), 10,
             "capture's NOQUEUE line")
    assert all(pid == pids["capture"] for _, tag, pid, _ in stack.lines()
               if tag == "msmilter/capture")
    assert real_files(m.milterin) == []
