"""The short chaos run (tests/chaos/chaos.py; `make chaos` is the long
one): every kind of fault under load, then nothing lost, no temp file,
nothing unreadable, and no duplicate that the logs do not show to be
SMTP's own window (RFC 1047): the relay or its MTA died after the MTA had
taken the message and before the relay saw its 250."""

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
    kinds = {f[0] for f in c.faults}
    assert kinds == set(chaos.KINDS), kinds
    assert settled, "the queues did not drain within 90 s"
    assert b["lost"] == [], b["lost"][:20]
    assert b["temps"] == [] and b["invalid"] == [], (b["temps"], b["invalid"])
    assert b["wrong_rcpt"] == [] and b["standin_errors"] == []
    # Every duplicate must be SMTP's own window, shown by the logs of the
    # relay and its MTA (chaos.Evidence); the report lists each.
    assert b["blame"]["unexplained"] == 0, \
        "duplicates SMTP's window does not explain: %s" % [
            (t, v) for t, v in b["verdicts"].items()
            if v[0] == "unexplained"][:5]
