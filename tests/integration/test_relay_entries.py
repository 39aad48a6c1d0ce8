"""What else an attacker with the Run As User's uid can put in milterout,
and in the directory around it (issue 13): FIFOs, directories, links,
files of another owner under message-id names, a link planted where the
parent makes the quarantine directory.  Nothing of that is delivered,
each is moved aside or refused with one log line, and the relay stays
idle, against the real relay and a real Postfix as in test_relay.py."""

import os
import pwd
import re
import stat
import time

import pytest

from postfix import child_pids
from test_capture import wait_for
from test_relay import RelayStack, expected, queue_file, \
    without_first_received

GOOD = "A0A0A0A0A.GOOD1"


def relay_cpu(m):
    """Seconds of CPU the relay used so far (utime + stime)."""
    pid = child_pids(m.pid)["relay"]
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postfix_ids():
    pw = pwd.getpwnam("postfix")
    return pw.pw_uid, pw.pw_gid


def outside_file(test_base, rcpt):
    """A valid queue file outside milterout that the relay's uid can read
    (and, being postfix's, link): it must never be delivered."""
    d = os.path.join(test_base, "outside")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "victim")
    with open(path, "wb") as f:
        f.write(queue_file("mallory@example.org", [rcpt],
                           b"Subject: stolen\n\nnot for the relay\n"))
    os.chown(path, *postfix_ids())
    os.chmod(path, 0o644)
    return path


def plant(s, test_base, kind, name):
    """Put an odd entry of this kind at milterout/name, as an attacker
    would: made under a temp- name and renamed in (inotify sees that at
    once; the periodic scan would find it later anyway)."""
    tmp = os.path.join(s.m.milterout, "temp-odd")
    uid, gid = postfix_ids()
    victim = None
    if kind == "fifo":
        os.mkfifo(tmp, 0o600)
    elif kind == "directory":
        os.mkdir(tmp, 0o700)
    elif kind == "root-directory":
        os.mkdir(tmp, 0o755)     # postfix may not re-parent it
    elif kind == "symlink":
        victim = outside_file(test_base, "symlink@example.com")
        os.symlink(victim, tmp)
    elif kind == "hardlink":
        victim = outside_file(test_base, "hardlink@example.com")
        os.link(victim, tmp)
    elif kind == "other-owner":
        with open(tmp, "wb") as f:
            f.write(queue_file("mallory@example.org", ["nobody@example.com"],
                               b"Subject: not ours\n\nx\n"))
        os.chmod(tmp, 0o644)     # readable by the relay
        nobody = pwd.getpwnam("nobody")
        os.chown(tmp, nobody.pw_uid, nobody.pw_gid)
    if kind not in ("root-directory", "other-owner", "hardlink"):
        os.lchown(tmp, uid, gid)
    victim_data = None
    if victim:
        with open(victim, "rb") as f:
            victim_data = f.read()
    os.rename(tmp, os.path.join(s.m.milterout, name))
    return victim, victim_data


WHY = {
    "fifo": "a FIFO",
    "directory": "a directory",
    "root-directory": "a directory",
    "symlink": "a symbolic link",
    "hardlink": "2 hard links, not 1",
    "other-owner": "owned by uid %d, not %d" % (
        pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("postfix").pw_uid),
}


@pytest.mark.parametrize("kind", sorted(WHY))
def test_odd_entry_moved_aside_not_delivered(msmilter_factory,
                                             postfix_factory, test_base,
                                             kind):
    s = RelayStack(msmilter_factory, postfix_factory)
    name = "4ABC123.AAAAA"
    bad = os.path.join(os.path.dirname(s.m.milterout), "milterout-invalid")
    victim, victim_data = plant(s, test_base, kind, name)
    good = queue_file("alice@example.org", ["bob@example.com"],
                      b"Subject: next to it\n\nfine\n")
    s.drop(GOOD, good)
    before = relay_cpu(s.m)
    s.wait_gone(name)
    msgs = s.pf.wait_sink(1)
    s.wait_gone(GOOD)
    time.sleep(4)                       # several retry periods
    assert relay_cpu(s.m) - before < 0.3        # idle, not retrying
    log = s.m.stderr()
    why = re.escape(WHY[kind])
    if kind == "root-directory":
        # Cannot be re-parented by postfix: renamed within milterout.
        line = (r"%s: not a queue file we may deliver \(%s\) that cannot "
                r"go to %s \(Permission denied\); renamed to "
                r"\.invalid\.%s in %s" % (re.escape(name), why,
                                          re.escape(bad), re.escape(name),
                                          re.escape(s.m.milterout)))
        assert os.path.isdir(os.path.join(s.m.milterout, ".invalid." + name))
    else:
        line = r"%s: not a queue file we may deliver \(%s\); moved to %s/%s" \
            % (re.escape(name), why, re.escape(bad), re.escape(name))
        moved = os.lstat(os.path.join(bad, name))
        if kind == "symlink":
            assert stat.S_ISLNK(moved.st_mode)
        elif kind == "fifo":
            assert stat.S_ISFIFO(moved.st_mode)
        elif kind == "directory":
            assert stat.S_ISDIR(moved.st_mode)
    assert len(re.findall(line, log)) == 1, log
    assert name not in log.replace(re.search(line, log).group(0), ""), log
    # Only the good file went out, once.
    assert [m.recipients for m in s.pf.sink_messages()] == \
        [["bob@example.com"]]
    assert without_first_received(msgs[0].data) == expected(good)
    if victim:
        with open(victim, "rb") as f:
            assert f.read() == victim_data      # survives, untouched
    assert sorted(os.listdir(s.m.milterout)) == (
        [".invalid." + name] if kind == "root-directory" else [])


def test_no_quarantine_dir_left_in_place_logged_once(msmilter_factory,
                                                     postfix_factory,
                                                     test_base):
    """Nowhere to move them: each odd or unreadable file stays, is named
    in one log line (not one per look, not one per rescan), and the relay
    sleeps; the good file next to them still goes out once."""
    nowhere = os.path.join(test_base, "no", "such", "dir")
    s = RelayStack(msmilter_factory, postfix_factory, settings={
        "Milter Relay Quarantine Dir": nowhere,
        "Milter Relay Scan Interval": "1"})
    plant(s, test_base, "fifo", "5BCD234.BBBBB")
    s.drop("5BCD235.CCCCC", b"garbage, no envelope\n")
    s.drop(GOOD, queue_file("alice@example.org", ["bob@example.com"],
                            b"Subject: next to them\n\nfine\n"))
    before = relay_cpu(s.m)
    s.pf.wait_sink(1)
    s.wait_gone(GOOD)
    time.sleep(5)                       # five rescans
    assert relay_cpu(s.m) - before < 0.3
    assert sorted(os.listdir(s.m.milterout)) == ["5BCD234.BBBBB",
                                                 "5BCD235.CCCCC"]
    log = s.m.stderr()
    for name, why in (("5BCD234.BBBBB", "not a queue file we may deliver "
                       "(a FIFO)"),
                      ("5BCD235.CCCCC", "unreadable queue file (no S<sender> "
                       "line)")):
        lines = [l for l in log.splitlines() if name in l]
        assert len(lines) == 1, log
        assert "%s: %s: no quarantine directory; left in place (quarantine "\
            "directory %s), looking again every 600 s" % (name, why,
                                                          nowhere) \
            in lines[0]
    assert [m.recipients for m in s.pf.sink_messages()] == \
        [["bob@example.com"]]
