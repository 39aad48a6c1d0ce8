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
from test_relay import RelayStack, expected, quarantined_line, \
    queue_file, without_first_received

GOOD = "A0A0A0A0A.GOOD1"


def relay_cpu(m):
    """Seconds of CPU the relay used so far (utime + stime)."""
    # Started last: under load it may not be there yet.
    wait_for(lambda: child_pids(m.pid)["relay"], 20, "the relay")
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
        line = (r"%s: file=%s, status=quarantined \(not a queue file we "
                r"may deliver: %s\), cannot go to %s \(Permission denied\): "
                r"renamed to \.invalid\.%s in %s" % (
                    re.escape(name.split(".")[0]), re.escape(name), why,
                    re.escape(bad), re.escape(name),
                    re.escape(s.m.milterout)))
        assert os.path.isdir(os.path.join(s.m.milterout, ".invalid." + name))
    else:
        line = re.escape(quarantined_line(name, "not a queue file we may "
                                          "deliver", "@WHY@", bad)) \
            .replace("@WHY@", why)
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
    in one log line (not one per look, not one per rescan, not one per
    retry), and the relay sleeps; the good file next to them still goes
    out once."""
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
        assert "%s: %s: no quarantine directory (%s); left in place, "\
            "trying again in " % (name, why, nowhere) in lines[0]
        assert "then backing off to at most every 2 s" in lines[0]
    assert [m.recipients for m in s.pf.sink_messages()] == \
        [["bob@example.com"]]


def planting_factory(msmilter_factory, plant_at_quarantine):
    """msmilter_factory whose msmilter finds plant_at_quarantine(path)'s
    work at its quarantine path when it starts."""
    def factory(settings=None):
        m = msmilter_factory(settings=settings, start=False)
        m.write_config()
        plant_at_quarantine(os.path.join(os.path.dirname(m.milterout),
                                         "milterout-invalid"))
        return m.start()
    return factory


def root_dir(test_base):
    d = os.path.join(test_base, "root-owned")
    os.mkdir(d, 0o755)
    return d


@pytest.mark.parametrize("case", ["symlink-to-root-dir",
                                  "symlink-to-milterin", "dangling-symlink",
                                  "nobody's-dir", "group-writable-dir",
                                  "regular-file"])
def test_planted_quarantine_path_refused(msmilter_factory, postfix_factory,
                                         test_base, case):
    """Whatever the Run As User left at the quarantine path, root neither
    creates nor chowns through it, and the relay does not move files into
    it: unreadable files stay in milterout, each logged once."""
    uid, gid = postfix_ids()
    target = {}

    def plant_it(path):
        if case == "symlink-to-root-dir":
            target["path"] = root_dir(test_base)
            os.symlink(target["path"], path)
        elif case == "symlink-to-milterin":
            target["path"] = os.path.join(os.path.dirname(path), "milterin")
            os.symlink(target["path"], path)
        elif case == "dangling-symlink":
            target["path"] = os.path.join(test_base, "created-by-root")
            os.symlink(target["path"], path)
        elif case == "nobody's-dir":
            os.mkdir(path, 0o750)
            nobody = pwd.getpwnam("nobody")
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        elif case == "group-writable-dir":
            os.mkdir(path)
            os.chown(path, uid, gid)
            os.chmod(path, 0o770)
        else:
            with open(path, "w") as f:
                f.write("not a directory\n")
            os.chown(path, uid, gid)
        if os.path.islink(path):
            os.lchown(path, uid, gid)
        if "path" in target and os.path.exists(target["path"]):
            st = os.stat(target["path"])
            target["before"] = (st.st_uid, st.st_gid, st.st_mode)
        target["lstat"] = os.lstat(path)

    s = RelayStack(planting_factory(msmilter_factory, plant_it),
                   postfix_factory)
    bad = os.path.join(os.path.dirname(s.m.milterout), "milterout-invalid")
    why = {"nobody's-dir": "owned by uid %d, not %d" % (
               pwd.getpwnam("nobody").pw_uid, uid),
           "group-writable-dir": "group or world writable"}.get(
               case, "a symbolic link or not a directory")
    log = s.m.stderr()
    assert ("REFUSING %s as the quarantine directory: %s; unreadable "
            "milterout files stay where they are" % (bad, why)) in log, log
    # The planted entry and what it points at are as they were.
    after = os.lstat(bad)
    assert (after.st_mode, after.st_uid, after.st_ino) == (
        target["lstat"].st_mode, target["lstat"].st_uid,
        target["lstat"].st_ino)
    if "before" in target:
        st = os.stat(target["path"])
        assert (st.st_uid, st.st_gid, st.st_mode) == target["before"]
    if case == "dangling-symlink":
        assert not os.path.lexists(target["path"])  # root made nothing
    # The relay will not use it either (it logs once it has started, which
    # under the sanitizers can be well after the parent's line).
    refusal = re.compile(r"relay\[\d+\]: cannot use %s \(.*\): unreadable files "
                         r"stay in milterout" % re.escape(bad))
    wait_for(lambda: refusal.search(s.m.stderr()), 20, "the relay's refusal")
    s.drop("6CDE345.DDDDD", b"garbage, no envelope\n")
    s.drop(GOOD, queue_file("alice@example.org", ["bob@example.com"],
                            b"Subject: next to it\n\nfine\n"))
    s.pf.wait_sink(1)
    s.wait_gone(GOOD)
    wait_for(lambda: "6CDE345.DDDDD: unreadable" in s.m.stderr(), 10,
             "the refusal")
    assert os.listdir(s.m.milterout) == ["6CDE345.DDDDD"]
    if case in ("symlink-to-root-dir", "symlink-to-milterin"):
        assert "6CDE345.DDDDD" not in os.listdir(target["path"])


def test_fresh_quarantine_dir_is_the_relays(msmilter_factory):
    m = msmilter_factory()
    bad = os.path.join(os.path.dirname(m.milterout), "milterout-invalid")
    st = os.lstat(bad)
    assert stat.S_ISDIR(st.st_mode)
    assert (st.st_uid, st.st_gid) == postfix_ids()
    assert stat.S_IMODE(st.st_mode) == 0o750
    said = "created %s for unreadable milterout files" % bad
    assert said in m.logged(said)


def load_demo():
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "..", "contrib",
                        "demo.py")
    spec = importlib.util.spec_from_file_location("msmilter_demo", path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


class Dirs:
    def __init__(self, base):
        self.milterin = os.path.join(base, "milterin")
        self.milterout = os.path.join(base, "milterout")
        for d in (self.milterin, self.milterout):
            os.mkdir(d, 0o750)
            os.chown(d, *postfix_ids())

    def milterin_files(self):
        return sorted(os.listdir(self.milterin))


def test_demo_mailscanner_stand_in_follows_no_link(test_base, capsys):
    """contrib/demo.py plays MailScanner as root in postfix's directories:
    a link planted at its temp name or in milterin is not followed."""
    demo = load_demo()
    d = Dirs(test_base)
    victim = os.path.join(test_base, "root-file")
    with open(victim, "wb") as f:
        f.write(b"precious\n")
    os.chmod(victim, 0o644)
    secret = os.path.join(test_base, "root-secret")
    with open(secret, "wb") as f:
        f.write(b"S<x@example.org>\nO<y@example.com>\nSubject: secret\n\n")
    os.chmod(secret, 0o600)
    good = queue_file("alice@example.org", ["bob@example.com"],
                      b"Subject: demo\n\nx\n")
    for name in ("AB12CD34E", "AB12CD34F"):
        with open(os.path.join(d.milterin, name), "wb") as f:
            f.write(good)
    # At the temp name of the first; in milterin instead of a file.
    os.symlink(victim, os.path.join(d.milterout, "temp-AB12CD34E"))
    os.symlink(secret, os.path.join(d.milterin, "AB12CD350"))
    os.mkfifo(os.path.join(d.milterin, "AB12CD351"))
    demo.play_mailscanner(d)
    out = capsys.readouterr().out
    with open(victim, "rb") as f:
        assert f.read() == b"precious\n"
    st = os.stat(victim)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644)
    assert os.stat(secret).st_uid == 0
    assert "AB12CD34E: cannot write milterout/temp-AB12CD34E (File exists)" \
        in out
    assert "AB12CD350: not a plain file" in out
    assert "AB12CD351: not a plain file" in out
    assert sorted(os.listdir(d.milterout)) == ["AB12CD34F.A1B2C",
                                               "temp-AB12CD34E"]
    done = os.path.join(d.milterout, "AB12CD34F.A1B2C")
    st = os.lstat(done)
    assert stat.S_ISREG(st.st_mode) and (st.st_uid, st.st_gid) == \
        postfix_ids()
    with open(done, "rb") as f:
        assert b"X-Demo-MailScanner: Found to be clean" in f.read()
    assert sorted(os.listdir(d.milterin)) == ["AB12CD34E", "AB12CD350",
                                              "AB12CD351"]
