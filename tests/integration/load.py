"""Uniquely tagged SMTP load through a real Postfix, and the books to check
it against: which tags got 250, and where each tag ended up.

Used by the supervision tests (a child killed every second) and by the
chaos script (tests/chaos/chaos.py).  Standard library only."""

import os
import re
import socket
import threading
import time
from collections import Counter

from postfix import RawSMTP, SMTPError

TAG_HEADER = b"X-Load-Tag"
TAG_RE = re.compile(rb"^X-Load-Tag: (\S+)$", re.M)


def message_for(tag):
    """A small message carrying its tag in a header and in the body."""
    t = tag.encode()
    return (b"Subject: load " + t + b"\r\n" + TAG_HEADER + b": " + t +
            b"\r\nMessage-Id: <" + t + b"@load.test.invalid>\r\n\r\n"
            b"body of " + t + b"\r\n")


class Load:
    """`sessions` threads, each sending messages back to back over SMTP
    connections of up to `per_conn` transactions; a connection that gave
    anything but 250 is closed and a new one opened (Postfix keeps a
    failed milter failed for the rest of its session).

    results: {tag: (code, reply)}; code 0 when the connection broke.
    rcpts(tag) gives each message's recipients.  pause: seconds each
    session waits after every transaction, accepted or not (0: back to
    back, refusals counted as fast as they come)."""

    def __init__(self, port, sessions=20, per_conn=5, prefix="m",
                 rcpts=None, timeout=120, pause=0.0):
        self.port = port
        self.sessions = sessions
        self.per_conn = per_conn
        self.prefix = prefix
        self.rcpts = rcpts or (lambda tag: ["r-%s@example.com" % tag])
        self.timeout = timeout
        self.pause = pause
        self.results = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = []
        self.started = self.stopped = None

    def start(self):
        self.started = time.monotonic()
        for i in range(self.sessions):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self, wait=180):
        self.stopping.set()
        deadline = time.monotonic() + wait
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self.stopped = time.monotonic()
        alive = [t for t in self.threads if t.is_alive()]
        if alive:
            raise AssertionError("%d load threads still running after %d s"
                                 % (len(alive), wait))

    def _record(self, tag, code, text):
        with self.lock:
            self.results[tag] = (code, text)

    def _run(self, n):
        seq = 0
        while not self.stopping.is_set():
            try:
                c = RawSMTP(self.port, timeout=self.timeout)
            except (OSError, SMTPError) as e:
                tag = "%s%d-%d" % (self.prefix, n, seq)
                seq += 1
                self._record(tag, 0, "connect: %s" % e)
                time.sleep(0.1)
                continue
            try:
                for k in range(self.per_conn):
                    if self.stopping.is_set():
                        break
                    tag = "%s%d-%d" % (self.prefix, n, seq)
                    seq += 1
                    try:
                        code, text = c.message(
                            "s-%s@example.org" % tag, self.rcpts(tag),
                            message_for(tag), helo="load.example.net",
                            ehlo=True if k == 0 else None)
                    except (OSError, SMTPError, socket.timeout) as e:
                        code, text = 0, "connection: %s" % e
                    self._record(tag, code, text)
                    if self.pause:
                        time.sleep(self.pause)
                    if code != 250:
                        break
                try:
                    c.cmd("QUIT")
                except (OSError, SMTPError):
                    pass
            finally:
                c.close()

    # -- the books -------------------------------------------------------

    def accepted(self):
        with self.lock:
            return {t for t, (code, _) in self.results.items()
                    if code == 250}

    def attempted(self):
        with self.lock:
            return len(self.results)

    def availability(self):
        n = self.attempted()
        return len(self.accepted()) / n if n else 0.0

    def failures(self, limit=5):
        """A few (tag, code, reply) of the refused ones, for messages."""
        with self.lock:
            bad = [(t, c, x) for t, (c, x) in self.results.items()
                   if c != 250]
        return bad[:limit]


def tags_in_dir(path):
    """Counter of the tags in every queue file of a directory (temp files
    and anything that is not a regular file left out)."""
    out = Counter()
    for name in os.listdir(path):
        if name.startswith("temp-"):
            continue
        p = os.path.join(path, name)
        try:
            with open(p, "rb") as f:
                data = f.read()
        except (IsADirectoryError, FileNotFoundError):
            continue
        m = TAG_RE.search(data)
        if m:
            out[m.group(1).decode()] += 1
    return out


def temp_files(path):
    return sorted(n for n in os.listdir(path) if n.startswith("temp-"))
