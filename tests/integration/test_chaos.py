"""The short chaos run (tests/chaos/chaos.py; `make chaos` is the long
one): every kind of fault under load, then nothing lost, no temp file,
nothing unreadable, and no duplicate except where the relay or its MTA
died mid-delivery: a whole-file delivery whose unlink failed has no
progress record when the relay dies (`make chaos` fails on those), and
SMTP itself cannot tell a message the MTA took just before dying
(RFC 1047)."""

import os
import sys

from postfix import make_base, remove_base

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "chaos"))
import chaos  # noqa: E402

SECONDS = float(os.environ.get("MSMTEST_CHAOS_SECONDS", "25"))


def test_chaos_short(test_base, capsys):
    base = make_base("msmilter-chaos-")
    lines = []
    c = chaos.Chaos(base, seed=int(os.environ.get("MSMTEST_SEED", "15")),
                    say=lines.append)
    try:
        c.start()
        c.run(seconds=SECONDS)
        settled = c.settle(timeout=90)
        b = c.books()
    finally:
        c.stop()
        remove_base(base)
    c.report(b)
    with capsys.disabled():         # the figures, in make check's output too
        print("\n" + "\n".join(lines))
    kinds = {k for k, _, _, _ in c.faults}
    assert kinds == set(chaos.KINDS), kinds
    assert settled, "the queues did not drain within 90 s"
    assert b["lost"] == [], b["lost"][:20]
    assert b["temps"] == [] and b["invalid"] == [], (b["temps"], b["invalid"])
    assert b["wrong_rcpt"] == [] and b["standin_errors"] == []
    # Every duplicate needs the relay, or its MTA, to die mid-delivery:
    # none from the other faults (capture, spooler, milterin).  `make
    # chaos` also fails on those from a whole-file delivery whose unlink
    # failed (no progress record).
    assert b["blame"]["unexplained"] == 0, \
        "duplicates no relay or MTA death explains: %s" % b["dups"][:20]
