"""The Debian package and the installed system files (issue 14).

Builds msmilter_*.deb with dpkg-buildpackage from a copy of the tree (once
per source tree: cached under build/deb/ with a digest of the sources),
installs it on this machine with apt-get, checks what it installed and
what its postinst made, checks the systemd unit (systemd-analyze verify
and security, its ExecCondition, and that the parent starts and runs its
children within the unit's capability bounding set), and purges it: purge
must leave nothing the package made.  The purge also runs when a test
fails, so the rest of the suite (which runs msmilter from build/) never
sees an installed package.

Also here, without installing anything: `make` and `make install` never
install Debian packages, `make install` honours DESTDIR, PREFIX and the
other path variables (in the binaries, the unit and the init script), and
msmilter.conf(5) describes every key of common/config.c.
"""

import grp
import hashlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest

from postfix import PROJECT_ROOT, build_dir, free_port

PKG = "msmilter"
UNIT = "/lib/systemd/system/msmilter.service"
SNIPPET = "/etc/MailScanner/conf.d/msmilter.conf"
SPOOL = "/var/spool/MailScanner"
TOOLS = ("dpkg-buildpackage", "dh", "fakeroot", "apt-get",
         "systemd-analyze", "setpriv")

# What the package ships whatever the tree holds; the policies come on
# top when selinux/ and apparmor/ have them (expected_tree()).
BASE_TREE = {
    "/etc/MailScanner/conf.d/msmilter.conf",
    "/etc/init.d/msmilter",
    "/lib/systemd/system/msmilter.service",
    "/usr/sbin/msmilter",
    "/usr/libexec/msmilter/msmilter-capture",
    "/usr/libexec/msmilter/msmilter-spooler",
    "/usr/libexec/msmilter/msmilter-relay",
    "/usr/share/doc/msmilter/README.md",
    "/usr/share/doc/msmilter/SECURITY.md",
    "/usr/share/doc/msmilter/changelog.gz",
    "/usr/share/doc/msmilter/copyright",
    "/usr/share/doc/msmilter/examples/MailScanner.conf.example",
    "/usr/share/doc/msmilter/examples/postfix-main.cf",
    "/usr/share/man/man5/msmilter.conf.5.gz",
    "/usr/share/man/man8/msmilter.8.gz",
    "/usr/sbin/msmilter-audit",
    "/usr/share/man/man8/msmilter-audit.8.gz",
}

# Trees whose msmilter entries the package or its scripts may touch; in
# the shared ones only names with "msmilter" in them count.
OWN_ROOTS = ["/etc/MailScanner", "/var/lib/msmilter", SPOOL,
             "/var/log/msmilter", "/run/msmilter", "/usr/libexec/msmilter",
             "/usr/share/doc/msmilter"]
SHARED_ROOTS = ["/etc/init.d", "/etc/rc0.d", "/etc/rc1.d", "/etc/rc2.d",
                "/etc/rc3.d", "/etc/rc4.d", "/etc/rc5.d", "/etc/rc6.d",
                "/etc/rcS.d", "/etc/systemd/system", "/lib/systemd/system",
                "/var/lib/systemd/deb-systemd-helper-enabled",
                "/var/lib/systemd/deb-systemd-helper-masked",
                "/usr/sbin", "/usr/share/man/man5", "/usr/share/man/man8",
                "/etc/apparmor.d", "/usr/share/selinux/packages",
                "/var/cache/apparmor", "/var/lib/dpkg/info"]


def run(cmd, timeout=300, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    p = subprocess.run(cmd, timeout=timeout, **kw)
    if isinstance(p.stdout, bytes):
        p.stdout = p.stdout.decode(errors="replace")
    return p


def missing_tools():
    return [t for t in TOOLS if shutil.which(t) is None]


def root_skip():
    if os.geteuid() != 0:
        pytest.skip("installing a Debian package needs root")
    miss = missing_tools()
    if miss:
        pytest.skip("%s not installed (make deps)" % ", ".join(miss))


# ---------------------------------------------------------------------------
# Building the package once per source tree

IGNORE_DIRS = {".git", "__pycache__", ".pytest_cache"}


def ignored(rel):
    top = rel.split(os.sep, 1)[0]
    if top == "build" or top.startswith("build-"):
        return True
    if rel.startswith("debian" + os.sep):
        rest = rel[len("debian") + 1:]
        first = rest.split(os.sep, 1)[0]
        if first in (PKG, PKG + "-dbgsym", ".debhelper", "files",
                     "debhelper-build-stamp") or \
                first.endswith((".substvars", ".debhelper", ".log")):
            return True
    return any(part in IGNORE_DIRS for part in rel.split(os.sep)) or \
        rel.endswith(".pyc")


def source_files():
    out = []
    for d, dirs, files in os.walk(PROJECT_ROOT):
        dirs[:] = sorted(x for x in dirs if not ignored(
            os.path.relpath(os.path.join(d, x), PROJECT_ROOT)))
        for f in sorted(files):
            rel = os.path.relpath(os.path.join(d, f), PROJECT_ROOT)
            if not ignored(rel):
                out.append(rel)
    return out


def source_digest(files):
    h = hashlib.sha256()
    for rel in files:
        p = os.path.join(PROJECT_ROOT, rel)
        h.update(rel.encode() + b"\0")
        if os.path.islink(p):
            h.update(b"L" + os.readlink(p).encode())
        else:
            st = os.stat(p)
            h.update(b"%o\0" % (st.st_mode & 0o111))
            with open(p, "rb") as f:
                h.update(f.read())
        h.update(b"\0")
    return h.hexdigest()


@pytest.fixture(scope="module")
def deb():
    """Path of msmilter_*.deb built from this tree (cached in build/deb)."""
    if missing_tools():
        pytest.skip("%s not installed (make deps)" %
                    ", ".join(missing_tools()))
    files = source_files()
    digest = source_digest(files)
    cache = os.path.join(PROJECT_ROOT, "build", "deb")
    stampf = os.path.join(cache, "source.sha256")
    debs = sorted(f for f in os.listdir(cache) if re.match(
        r"msmilter_.*\.deb$", f)) if os.path.isdir(cache) else []
    try:
        with open(stampf) as f:
            cached = f.read().strip()
    except OSError:
        cached = ""
    if cached == digest and len(debs) == 1:
        return os.path.join(cache, debs[0])

    shutil.rmtree(cache, ignore_errors=True)
    os.makedirs(cache)
    work = tempfile.mkdtemp(prefix="msmtest-deb-")
    try:
        src = os.path.join(work, "msmilter")
        for rel in files:
            dst = os.path.join(src, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.join(PROJECT_ROOT, rel), dst,
                         follow_symlinks=False)
        env = dict(os.environ)
        env.pop("MSMILTER_BUILD", None)
        env.pop("MAKEFLAGS", None)
        env.pop("MFLAGS", None)
        env.pop("MAKELEVEL", None)
        p = run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=src,
                env=env, timeout=900)
        with open(os.path.join(cache, "build.log"), "w") as f:
            f.write(p.stdout)
        assert p.returncode == 0, "dpkg-buildpackage failed:\n" + \
            p.stdout[-4000:]
        built = [f for f in os.listdir(work)
                 if re.match(r"msmilter_.*\.deb$", f)]
        assert len(built) == 1, os.listdir(work)
        shutil.copy2(os.path.join(work, built[0]), cache)
        with open(stampf, "w") as f:
            f.write(digest + "\n")
        return os.path.join(cache, built[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------
# What is on the machine


def snapshot():
    """Every path the package may touch, with its owner and type, and
    the msmilter account."""
    seen = set()

    def add(path):
        try:
            st = os.lstat(path)
        except OSError:
            return
        seen.add((path, stat.S_IFMT(st.st_mode)))

    for root in OWN_ROOTS:
        add(root)
        for d, dirs, files in os.walk(root):
            for n in dirs + files:
                add(os.path.join(d, n))
    for root in SHARED_ROOTS:
        for d, dirs, files in os.walk(root):
            for n in dirs + files:
                if "msmilter" in n:
                    add(os.path.join(d, n))
    for db, getter in (("passwd", pwd.getpwnam), ("group", grp.getgrnam)):
        try:
            getter(PKG)
            seen.add(("%s:%s" % (db, PKG), 0))
        except KeyError:
            pass
    return seen


def pkg_installed():
    p = run(["dpkg-query", "-W", "-f=${Status}", PKG])
    return p.returncode == 0 and "installed" in p.stdout and \
        "not-installed" not in p.stdout and "config-files" not in p.stdout


def pkg_known():
    """Installed, or purged but for its configuration files."""
    p = run(["dpkg-query", "-W", "-f=${Status}", PKG])
    return p.returncode == 0 and "not-installed" not in p.stdout


APT = ["apt-get", "-y", "--no-install-recommends",
       "-o", "DPkg::Lock::Timeout=300"]


def purge():
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return run(APT + ["purge", PKG], env=env, timeout=600)


class Installed:
    def __init__(self, deb, before, output):
        self.deb = deb
        self.before = before
        self.output = output
        self.purged = None	# apt-get purge output, once purged


@pytest.fixture(scope="module")
def installed(deb):
    """The package, installed with apt-get; purged at the end, always."""
    root_skip()
    if pkg_known():
        pytest.skip("a msmilter package is already installed on this "
                    "machine: not touching it")
    before = snapshot()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = run(APT + ["install", os.path.abspath(deb)], env=env, timeout=600)
    inst = Installed(deb, before, p.stdout)
    try:
        assert p.returncode == 0, "apt-get install failed:\n" + p.stdout
        yield inst
    finally:
        if inst.purged is None and pkg_known():
            purge()


# ---------------------------------------------------------------------------
# The package


def expected_tree():
    want = set(BASE_TREE)
    if os.path.isfile(os.path.join(PROJECT_ROOT, "selinux", "msmilter.te")) \
            and os.path.isfile("/usr/share/selinux/devel/Makefile"):
        want.add("/usr/share/selinux/packages/msmilter.pp")
    aa = os.path.join(PROJECT_ROOT, "apparmor")
    for f in sorted(os.listdir(aa)) if os.path.isdir(aa) else []:
        if f.startswith("usr.") and os.path.isfile(os.path.join(aa, f)):
            want.add("/etc/apparmor.d/" + f)
    return want


def test_package_control(deb):
    p = run(["dpkg-deb", "-f", deb, "Package", "Depends", "Architecture"])
    assert p.returncode == 0, p.stdout
    assert "Package: msmilter" in p.stdout
    for lib in ("adduser", "libmilter", "libseccomp", "libcap-ng",
                "libsodium", "libpcre2-8"):
        assert lib in p.stdout, p.stdout


def test_dpkg_L_shows_the_tree(installed):
    p = run(["dpkg", "-L", PKG])
    assert p.returncode == 0, p.stdout
    files = {f for f in p.stdout.split("\n")
             if f and not os.path.isdir(f)}
    want = expected_tree()
    assert files == want, ("missing: %s\nunexpected: %s" %
                           (sorted(want - files), sorted(files - want)))
    conff = run(["dpkg-query", "-W", "-f=${Conffiles}", PKG]).stdout
    assert SNIPPET in conff and "/etc/init.d/msmilter" in conff, conff


def test_installed_files_modes(installed):
    for f in ("/usr/sbin/msmilter",
              "/usr/libexec/msmilter/msmilter-capture",
              "/usr/libexec/msmilter/msmilter-spooler",
              "/usr/libexec/msmilter/msmilter-relay",
              "/etc/init.d/msmilter"):
        st = os.stat(f)
        assert (st.st_uid, st.st_gid) == (0, 0), f
        assert stat.S_IMODE(st.st_mode) == 0o755, (f, oct(st.st_mode))
    st = os.stat(UNIT)
    assert stat.S_IMODE(st.st_mode) == 0o644


def test_postinst_made_account_chroot_and_queues(installed):
    pw = pwd.getpwnam(PKG)
    assert 0 < pw.pw_uid < 1000, pw
    assert pw.pw_shell in ("/usr/sbin/nologin", "/bin/false"), pw
    assert pw.pw_dir in ("/nonexistent", "/var/lib/msmilter/empty"), pw
    assert grp.getgrgid(pw.pw_gid).gr_name == PKG

    st = os.lstat("/var/lib/msmilter/empty")
    assert stat.S_ISDIR(st.st_mode)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o755)
    assert os.listdir("/var/lib/msmilter/empty") == []

    # No MailScanner.conf here (or one without Run As User): the guide's
    # postfix.  Whatever it is, never root.
    owner = pwd.getpwnam("postfix").pw_uid
    for q in ("milterin", "milterout"):
        st = os.lstat(os.path.join(SPOOL, q))
        assert stat.S_ISDIR(st.st_mode)
        if ("%s/%s" % (SPOOL, q), stat.S_IFDIR) not in installed.before:
            assert st.st_uid == owner, (q, st.st_uid)
        assert st.st_uid != 0

    with open("/var/lib/msmilter/created") as f:
        created = f.read()
    if ("passwd:msmilter", 0) not in installed.before:
        assert "user msmilter" in created, created


def write_main_conf(tmp, port):
    """A MailScanner.conf that ends, as MailScanner's does, by including
    conf.d, with the queues moved to tmp."""
    os.makedirs(os.path.join(tmp, "spool", "in"))
    os.makedirs(os.path.join(tmp, "spool", "out"))
    pf = pwd.getpwnam("postfix")
    # Run As User's spool: root needs CAP_DAC_OVERRIDE to make the relay's
    # quarantine directory in it, as in the guide's layout.
    for d in ("spool", "spool/in", "spool/out"):
        os.chown(os.path.join(tmp, d), pf.pw_uid, pf.pw_gid)
        os.chmod(os.path.join(tmp, d), 0o750)
    path = os.path.join(tmp, "MailScanner.conf")
    with open(path, "w") as f:
        f.write("Run As User = postfix\nRun As Group = postfix\n"
                "include %s\n"
                "Incoming Queue Dir = %s/spool/in\n"
                "Outgoing Queue Dir = %s/spool/out\n"
                "Milter PID File = %s/msmilter.pid\n"
                "Milter Port = %d\n" % (SNIPPET, tmp, tmp, tmp, port))
    return path


@pytest.fixture
def open_tmp():
    """A root-owned 0755 directory under /tmp that Run As User can
    traverse (pytest's tmp_path sits below a 0700 directory)."""
    d = tempfile.mkdtemp(prefix="msmtest-pkg-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_check_passes_on_installed_example_config(installed, open_tmp):
    conf = write_main_conf(open_tmp, free_port())
    p = run(["/usr/sbin/msmilter", "-t", "-f", conf])
    assert p.returncode == 0, p.stdout
    assert "MTA = msmail" in p.stdout
    assert "Delivery Method = queue" in p.stdout
    assert "Milter User = msmilter" in p.stdout
    assert "error:" not in p.stdout


def unit_values(key, path=UNIT):
    out = []
    with open(path) as f:
        for line in f:
            if line.startswith(key + "="):
                out.append(line[len(key) + 1:].strip())
    return out


def test_installed_daemon_starts_within_the_units_capabilities(
        installed, open_tmp):
    """The parent and its children start from /usr/sbin and /usr/libexec
    with only the unit's CapabilityBoundingSet, its umask and its open
    files limit (what systemd would give it; this machine's PID 1 is not
    systemd, so the namespaces and seccomp options are not reproduced)."""
    tmp = open_tmp
    port = free_port()
    conf = write_main_conf(tmp, port)
    caps = unit_values("CapabilityBoundingSet")
    assert len(caps) == 1, caps
    bound = ",".join("+" + c.lower()[len("cap_"):] for c in caps[0].split())
    nofile = unit_values("LimitNOFILE")[0]
    umask = int(unit_values("UMask")[0], 8)
    log = open(os.path.join(tmp, "msmilter.log"), "w+")
    proc = subprocess.Popen(
        ["prlimit", "--nofile=%s:%s" % (nofile, nofile), "--",
         "setpriv", "--bounding-set=-all," + bound, "--inh-caps=-all",
         "--", "/usr/sbin/msmilter", "-F", "-f", conf],
        stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=lambda: os.umask(umask))
    try:
        deadline = time.time() + 20
        text = ""
        while time.time() < deadline and proc.poll() is None:
            log.seek(0)
            text = log.read()
            if "msmilter ready" in text:
                break
            time.sleep(0.2)
        log.seek(0)
        text = log.read()
        assert "msmilter ready" in text, text
        kids = run(["pgrep", "-P", str(proc.pid)]).stdout.split()
        exes = sorted(os.readlink("/proc/%s/exe" % k) for k in kids)
        assert exes == ["/usr/libexec/msmilter/msmilter-%s" % c
                        for c in ("capture", "relay", "spooler")], (exes, text)
        assert "created %s/spool/milterout-invalid" % tmp in text, text
        with open("/proc/%d/status" % proc.pid) as f:
            status = f.read()
        bnd = int(re.search(r"CapBnd:\s*([0-9a-f]+)", status).group(1), 16)
        assert bnd != 0 and bnd & (1 << 21) == 0, hex(bnd)  # no sys_admin
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        log.seek(0)
        text = log.read()
        log.close()
    assert rc == 0, text
    assert "msmilter stopped" in text, text


def test_systemd_analyze_verify(installed):
    p = run(["systemd-analyze", "verify", UNIT], cwd="/")
    assert p.returncode == 0, p.stdout
    assert "msmilter.service" not in p.stdout, p.stdout


def test_unit_hardening(installed):
    p = run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
             UNIT], cwd="/")
    m = re.search(r"Overall exposure level for msmilter\.service: "
                  r"([0-9.]+)", p.stdout)
    assert m, p.stdout
    # 9.6 before the hardening; keep it from creeping back.
    assert float(m.group(1)) <= 3.5, p.stdout
    with open(UNIT) as f:
        unit = f.read()
    assert not re.search(r"^NoNewPrivileges=\s*(yes|true|1)", unit, re.M)
    assert unit_values("ProtectSystem") == ["strict"]
    assert unit_values("RestrictAddressFamilies") == [
        "AF_UNIX AF_INET AF_INET6 AF_NETLINK"]
    assert unit_values("RuntimeDirectory") == ["msmilter"]
    assert "-/var/spool/MailScanner" in unit_values("ReadWritePaths")
    caps = set(unit_values("CapabilityBoundingSet")[0].split())
    assert {"CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_SYS_CHROOT",
            "CAP_KILL"} <= caps
    assert not caps & {"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_NET_ADMIN",
                       "CAP_SYS_MODULE", "CAP_FOWNER"}, caps


@pytest.mark.parametrize("defaults,started", [
    (None, False),
    ("run_mailscanner=0\n", False),
    ("# run_mailscanner=1\n", False),
    ("run_mailscanner=1\n", True),
])
def test_unit_needs_run_mailscanner(installed, tmp_path, defaults, started):
    (cond,) = unit_values("ExecCondition")
    assert cond.startswith("/bin/sh -c '") and cond.endswith("'"), cond
    script = cond[len("/bin/sh -c '"):-1].replace("$$", "$")
    path = str(tmp_path / "defaults")
    assert "/etc/MailScanner/defaults" in script
    script = script.replace("/etc/MailScanner/defaults", path)
    if defaults is not None:
        with open(path, "w") as f:
            f.write(defaults)
    p = run(["/bin/sh", "-c", script])
    assert (p.returncode == 0) == started, p.stdout
    if not started:
        assert 1 <= p.returncode <= 254, p.returncode	# skip, not fail
        assert "run_mailscanner=1" in p.stdout


# dh_installinit's prerm runs `invoke-rc.d msmilter stop || exit 1`: a stop
# that failed when msmilter is not running would make `apt-get remove`
# fail wherever no policy-rc.d denies the call.
def test_init_script_stop_when_not_running(installed):
    p = run(["/etc/init.d/msmilter", "stop"], timeout=60)
    assert p.returncode == 0, p.stdout


def test_purge_leaves_nothing_behind(installed):
    """Last in this file: purges the package for every test after it."""
    # A message still in milterin: purge must keep it and its queue.
    msg = os.path.join(SPOOL, "milterin", "4XkTestQueueFile")
    with open(msg, "w") as f:
        f.write("S<a@example.org>\nO<b@example.com>\n\nbody\n")
    installed.purged = purge().stdout
    assert not pkg_known(), installed.purged
    try:
        assert os.path.isfile(msg), installed.purged
        assert "kept %s/milterin" % SPOOL in installed.purged
    finally:
        # What the purge rightly kept, gone the way an admin would.
        os.unlink(msg)
        for d in (os.path.join(SPOOL, "milterin"), SPOOL):
            if (d, stat.S_IFDIR) not in installed.before:
                try:
                    os.rmdir(d)
                except OSError:
                    pass
    after = snapshot()
    assert after == installed.before, (
        "left behind: %s\nremoved: %s" % (
            sorted(after - installed.before),
            sorted(installed.before - after)))


# ---------------------------------------------------------------------------
# The Makefile (no install on this machine)


def make_n(*args):
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(k, None)
    p = run(["make", "-n", "-B", "--no-print-directory",
             "BUILD=" + os.path.join(tempfile.gettempdir(),
                                     "msmtest-make-n")] + list(args),
            cwd=PROJECT_ROOT, env=env, timeout=120)
    assert p.returncode == 0, p.stdout
    return p.stdout


@pytest.mark.parametrize("goal", ["all", "install"])
def test_make_and_install_never_install_packages(goal):
    out = make_n(goal)
    assert "tests/deps.sh check" in out, out
    assert "deps.sh install" not in out and "apt-get" not in out, out


def test_make_check_installs_packages_before_compiling():
    out = make_n("check").split("\n")
    first = [i for i, line in enumerate(out) if "deps.sh install" in line]
    cc = [i for i, line in enumerate(out) if re.match(r"^cc |^clang ", line)]
    assert first and cc and first[0] < cc[0], "\n".join(out[:40])


def test_make_fuzz_installs_clang_first():
    out = make_n("fuzz").split("\n")
    first = [i for i, line in enumerate(out)
             if re.search(r"deps\.sh install .*fuzz", line)]
    clang = [i for i, line in enumerate(out) if line.startswith("clang ")]
    assert first and clang and first[0] < clang[0], "\n".join(out[:40])


def test_make_install_honours_destdir_and_paths(tmp_path):
    """An install under /opt: the programs, the unit, the init script and
    the man pages all carry the variables' paths; nothing is created on
    the machine itself."""
    tmp = str(tmp_path)
    dest = os.path.join(tmp, "dest")
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(k, None)
    p = run(["make", "--no-print-directory", "install",
             "BUILD=" + os.path.join(tmp, "build"), "DESTDIR=" + dest,
             "PREFIX=/opt/msm", "SYSCONFDIR=/opt/msm/etc",
             "MANDIR=/opt/msm/man", "LIBEXECDIR=/opt/msm/lib"],
            cwd=PROJECT_ROOT, env=env, timeout=600)
    assert p.returncode == 0, p.stdout
    d = lambda path: dest + path  # noqa: E731
    for f in ("/opt/msm/sbin/msmilter",
              "/opt/msm/lib/msmilter/msmilter-capture",
              "/opt/msm/lib/msmilter/msmilter-spooler",
              "/opt/msm/lib/msmilter/msmilter-relay",
              "/opt/msm/man/man8/msmilter.8",
              "/opt/msm/man/man5/msmilter.conf.5",
              "/opt/msm/etc/init.d/msmilter",
              "/opt/msm/etc/MailScanner/conf.d/msmilter.conf",
              "/opt/msm/lib/systemd/system/msmilter.service",
              "/opt/msm/share/doc/msmilter/README.md"):
        assert os.path.isfile(d(f)), f
    with open(d("/opt/msm/sbin/msmilter"), "rb") as f:
        binary = f.read()
    assert b"/opt/msm/lib/msmilter\0" in binary
    assert b"/opt/msm/etc/MailScanner/MailScanner.conf\0" in binary
    unit = d("/opt/msm/lib/systemd/system/msmilter.service")
    assert unit_values("ExecStart", unit) == [
        "/opt/msm/sbin/msmilter -F -f /opt/msm/etc/MailScanner/"
        "MailScanner.conf"]
    with open(unit) as f:
        assert "/opt/msm/etc/MailScanner/defaults" in f.read()
    with open(d("/opt/msm/etc/init.d/msmilter")) as f:
        init = f.read()
    assert "/usr/sbin/msmilter" not in init
    assert "/opt/msm/sbin/msmilter" in init
    with open(d("/opt/msm/man/man8/msmilter.8")) as f:
        assert "/opt/msm/lib/msmilter" in f.read()
    # DESTDIR: the account and the chroot are named, not made.
    assert "useradd --system" in p.stdout, p.stdout
    assert "/var/lib/msmilter/empty" in p.stdout
    assert not os.path.exists(os.path.join(dest, "var"))


# ---------------------------------------------------------------------------
# The man page against the key table


def config_keys():
    with open(os.path.join(PROJECT_ROOT, "common", "config.c")) as f:
        src = f.read()
    table = src[src.index("static const struct key keys[]"):]
    table = table[:table.index("\n};")]
    names = re.findall(r'"[a-z0-9]+",\s*(?:\.name\s*=\s*)?"([^"]+)"', table)
    assert len(names) > 30, names
    return names


def test_man_page_describes_every_key():
    with open(os.path.join(PROJECT_ROOT, "man", "msmilter.conf.5")) as f:
        page = f.read().replace("\\-", "-").replace("\\fB", "") \
            .replace("\\fP", "").replace("\\fR", "")
    heads = set()
    lines = page.split("\n")
    for i, line in enumerate(lines):
        if line == ".TP" and i + 1 < len(lines):
            heads.add(re.sub(r"^\.B\s+", "", lines[i + 1]).strip())
    missing = [k for k in config_keys() + ["%org-name%"] if k not in heads]
    assert not missing, missing
