"""Reading msmilter queue files in tests: envelope lines, our Received
header, and the message after it."""

import os
import re
from collections import namedtuple

QueueFile = namedtuple("QueueFile", "name sender auth rcpts dsn received "
                                    "message raw")

ENVELOPE = re.compile(rb"^([SOEA])<(.*)>$")
RECEIVED_DATE = (r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} "
                 r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
                 r"\d\d:\d\d:\d\d [+-]\d{4} \([A-Za-z0-9+-]+\)")


def parse(path):
    """Split a queue file; raises AssertionError when it is malformed."""
    with open(path, "rb") as f:
        raw = f.read()
    lines = raw.split(b"\n")
    sender, auth, rcpts, dsn = None, None, [], []
    pending_dsn = None
    i = 0
    while i < len(lines):
        m = ENVELOPE.match(lines[i])
        if not m:
            break
        kind, value = m.group(1), m.group(2).decode()
        if kind == b"S":
            assert sender is None, "two S lines"
            sender = value
        elif kind == b"A":
            auth = value
        elif kind == b"E":
            pending_dsn = value
        else:
            rcpts.append(value)
            dsn.append(pending_dsn)
            pending_dsn = None
        i += 1
    assert sender is not None, "no S line in %s" % path
    assert rcpts, "no O line in %s" % path
    assert lines[i].startswith(b"Received: from "), lines[i]
    j = i + 1
    while j < len(lines) and lines[j][:1] == b"\t":
        j += 1
    received = b"\n".join(lines[i:j]).decode()
    message = b"\n".join(lines[j:])
    return QueueFile(os.path.basename(path), sender, auth, rcpts, dsn,
                     received, message, raw)


def lf(data):
    """What the queue file should hold for message bytes sent with CRLF."""
    return data.replace(b"\r\n", b"\n")


def real_files(milterin):
    """Queue files (not temp files) in milterin."""
    return sorted(n for n in os.listdir(milterin) if re.fullmatch(r"\w+", n))


def temp_files(milterin):
    return sorted(n for n in os.listdir(milterin) if n.startswith("temp-"))
