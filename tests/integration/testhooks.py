"""The test hooks of common/testhook.h, read from the header itself.

A test sends a child SIGRTMIN + ACTION[...] (and, for STOP_AT, the
sigqueue value POINT[...]); reading the numbers from the header keeps the
tests right when an enum gains or renumbers an entry.
"""

import os
import re

HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "..", "..", "common", "testhook.h")


def _enum(text, name):
    """{NAME: value} of enum name, names without their TESTHOOK_ prefix."""
    m = re.search(r"enum\s+%s\s*\{(.*?)\};" % name, text, re.S)
    if m is None:
        raise RuntimeError("%s: no enum %s" % (HEADER, name))
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    values, nxt = {}, 0
    for entry in body.split(","):
        entry = entry.strip()
        if not entry:
            continue
        em = re.fullmatch(r"TESTHOOK_(\w+)(?:\s*=\s*(\d+))?", entry)
        if em is None:
            raise RuntimeError("%s: cannot read %r" % (HEADER, entry))
        nxt = int(em.group(2)) if em.group(2) else nxt
        values[em.group(1)] = nxt
        nxt += 1
    return values


with open(HEADER) as _f:
    _text = _f.read()
ACTION = _enum(_text, "testhook_action")
POINT = {k[len("AT_"):]: v for k, v in _enum(_text, "testhook_point").items()}


def point(name):
    """The number of the point the child logs as name ("requeue sent")."""
    return POINT[name.upper().replace(" ", "_")]
