"""Permanent rejections and the quarantine, against the real relay and a
real Postfix (issue 15):

- one permanent rejection makes at most one requeue, ever: MailScanner's
  shipped Deliver Cleaned Messages = yes sends the quarantined message's
  cleaned copy back to milterout, still carrying our Relay-Reject header
  (or the Relay-Quarantine name MailScanner renames it to); refused again,
  it goes to the quarantine directory with a log line, not back to
  milterin;
- a file that cannot be moved to the quarantine directory stays, is said
  once, and is tried again with backoff (it moves soon once it can)."""

import os
import re
import time

import pytest

from test_capture import wait_for
from test_relay import RelayStack, message_part, queue_file, \
    write_reject_maps

NAME = "9E9E9E9E9.FFFF6"


def milterin_files(s):
    return sorted(n for n in os.listdir(s.m.milterin)
                  if re.fullmatch(r"\w+", n))


def mailscanner_cleaned_copy(s, variant):
    """What MailScanner does with the requeued file: takes it out of
    milterin, quarantines it and, Deliver Cleaned Messages = yes, writes
    the cleaned copy to milterout under its message id.  Its Message.pm
    renames our header to ...-Relay-Quarantine (and puts a stray "0" line
    before it)."""
    wait_for(lambda: milterin_files(s), 20, "the requeued file")
    qid = milterin_files(s)[0]
    path = os.path.join(s.m.milterin, qid)
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    if variant == "renamed":
        data = re.sub(rb"\nX-Test-MailScanner-Relay-Reject: ",
                      b"\n0\nX-Test-MailScanner-Relay-Quarantine: ", data)
    data = data.replace(b"\nReceived: ",
                        b"\nX-Test-MailScanner: Found to be clean"
                        b"\nReceived: ", 1)
    name = qid + ".C1EAN"
    s.drop(name, data)
    return name, data


@pytest.mark.parametrize("variant", ["as-requeued", "renamed"])
def test_rejected_again_is_quarantined_not_requeued(
        msmilter_factory, postfix_factory, test_base, variant):
    maps = write_reject_maps(test_base)
    s = RelayStack(msmilter_factory, postfix_factory, reject_file=maps,
                   settings={"Milter Relay Scan Interval": "1"})
    s.drop(NAME, queue_file("alice@example.org",
                            ["bob@example.com", "nobody@example.com"],
                            b"Subject: twice\n\nhello\n"))
    s.wait_gone(NAME)
    name, cleaned = mailscanner_cleaned_copy(s, variant)
    s.wait_gone(name)
    bad = os.path.join(os.path.dirname(s.m.milterout), "milterout-invalid")
    assert os.listdir(bad) == [name]
    with open(os.path.join(bad, name), "rb") as f:
        assert f.read() == cleaned
    # The relay's line comes through the parent, maybe after the move.
    s.m.logged("file=%s, status=quarantined (rejected again" % name)
    assert re.search(r"relay\[\d+\]: %s: file=%s, status=quarantined "
                     r"\(rejected again: 1 recipient refused again: 554 "
                     r"5\.1\.1 .*no such user here; MailScanner quarantined "
                     r"it once already, so it is not requeued a second "
                     r"time\), moved to %s/%s" % (
                         re.escape(name.split(".")[0]), re.escape(name),
                         re.escape(bad), re.escape(name)),
                     s.m.stderr()), s.m.stderr()
    time.sleep(3)                       # rescans, retries: nothing more
    assert milterin_files(s) == []      # no second requeue
    assert len(re.findall(r"status=requeued ", s.m.stderr())) == 1
    assert [m.recipients for m in s.pf.sink_messages()] == \
        [["bob@example.com"]]
    assert os.listdir(s.m.milterout) == []


def test_failed_quarantine_is_retried_with_backoff(msmilter_factory,
                                                   postfix_factory):
    """milterout read-only for the relay: an unreadable file can be moved
    neither to the quarantine directory nor to a hidden name.  It stays,
    is said once however many rescans pass, and goes as soon as it can
    (before, it waited 600 s)."""
    s = RelayStack(msmilter_factory, postfix_factory,
                   settings={"Milter Relay Scan Interval": "1"})
    name = "D6D6D6D6D.JUNK6"
    os.chmod(s.m.milterout, 0o550)
    try:
        s.drop(name, b"no envelope at all\n")
        line = (r"relay\[\d+\]: %s: unreadable queue file \(no S<sender> line\): "
                r"cannot move it to \S+ \(Permission denied\) nor rename it "
                r"\(Permission denied\); left in place, trying again in "
                r"\d+ s, then backing off to at most every 2 s" %
                re.escape(name))
        wait_for(lambda: re.search(line, s.m.stderr()), 20, "the line")
        time.sleep(5)                   # five rescans, several retries
        assert os.listdir(s.m.milterout) == [name]
        assert len([x for x in s.m.stderr().splitlines() if name in x]) \
            == 1, s.m.stderr()
    finally:
        os.chmod(s.m.milterout, 0o750)
    s.wait_gone(name, timeout=10)
    bad = os.path.join(os.path.dirname(s.m.milterout), "milterout-invalid")
    assert os.listdir(bad) == [name]
    moved = ("file=%s, status=quarantined (unreadable queue file: no "
             "S<sender> line), moved to " % name)
    assert s.m.logged(moved).count(moved) == 1
