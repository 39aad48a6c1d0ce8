"""msmilter -t where SELinux or AppArmor enforces: milterin and milterout
must carry the module's types (else the restorecon fix), msmilter's four
profiles must be loaded and enforcing, and the queues must lie where the
children's profiles allow.  Neither LSM runs here, so the test build
(make testhooks) reads sysfs and /etc/apparmor.d under
MSM_TEST_MAC_ROOT: a fake root presents an enforcing SELinux or an
AppArmor with its profile list; the labels are real security.selinux
extended attributes on the test's queues (ext4 keeps them without an
LSM)."""

import os
import subprocess

import pytest

from postfix import build_dir
from test_confinement import hooks_binary
from test_doctor import ms

SPOOL_IN = "system_u:object_r:msmilter_spool_in_t:s0"
SPOOL_OUT = "system_u:object_r:msmilter_spool_out_t:s0"
WRONG = "system_u:object_r:var_spool_t:s0"
PROFILES = ("msmilter", "msmilter-capture", "msmilter-spooler",
            "msmilter-relay")


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


class Fake:
    """A fake root for sysfs and /etc/apparmor.d."""

    def __init__(self, base):
        self.root = os.path.join(base, "macroot")
        os.makedirs(self.root)

    def selinux(self, enforce):
        write(os.path.join(self.root, "sys/fs/selinux/enforce"),
              "%d" % enforce)

    def apparmor(self, profiles, enabled="Y"):
        write(os.path.join(self.root,
                           "sys/module/apparmor/parameters/enabled"),
              enabled + "\n")
        write(os.path.join(self.root,
                           "sys/kernel/security/apparmor/profiles"),
              "".join("%s (%s)\n" % p for p in profiles))

    def local(self, profile, text):
        write(os.path.join(self.root, "etc/apparmor.d/local",
                           "usr.libexec.msmilter." + profile), text)


def label(path, context):
    if context is None:
        try:
            os.removexattr(path, "security.selinux")
        except OSError:
            pass
        return
    try:
        os.setxattr(path, "security.selinux", context.encode() + b"\0")
    except OSError as e:
        pytest.skip("no security.selinux xattr on this file system: %s" % e)


def doctor(m, fake, binary=None):
    """msmilter -t with the fake root; (rc, the SELinux/AppArmor lines)."""
    m.binary = binary or hooks_binary()
    env = dict(os.environ, MSM_TEST_MAC_ROOT=fake.root)
    p = subprocess.run([m.binary, "-t", "-f", m.conf],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60, env=env)
    lines = [ln for ln in p.stderr.decode().splitlines()
             if ("error:" in ln or "warning:" in ln) and
             ("SELinux" in ln or "AppArmor" in ln)]
    return p.returncode, lines


@pytest.fixture
def setup(test_base):
    m = ms(test_base)
    m.write_config()
    fake = Fake(test_base)
    m.write_config = lambda: None       # keep the labels we set
    return m, fake


def test_selinux_wrong_label_is_an_error_with_the_fix(setup):
    m, fake = setup
    fake.selinux(1)
    label(m.milterin, WRONG)
    label(m.milterout, SPOOL_OUT)
    rc, lines = doctor(m, fake)
    assert rc == 1 and len(lines) == 1, lines
    assert ("error: Incoming Queue Dir %s is labelled %s, not "
            "msmilter_spool_in_t: SELinux enforces and denies "
            "msmilter-spooler its queue; fix the label: semanage fcontext "
            "-a -t msmilter_spool_in_t '%s(/.*)?' && restorecon -R -v %s"
            % (m.milterin, WRONG, m.milterin, m.milterin)) in lines[0], lines


def test_selinux_unlabelled_queue_is_an_error(setup):
    m, fake = setup
    fake.selinux(1)
    label(m.milterin, SPOOL_IN)
    label(m.milterout, None)
    rc, lines = doctor(m, fake)
    assert rc == 1 and len(lines) == 1, lines
    assert "error: Outgoing Queue Dir %s: no SELinux label" % m.milterout \
        in lines[0] and "restorecon -R -v %s" % m.milterout in lines[0]


def test_selinux_right_labels_no_finding(setup):
    m, fake = setup
    fake.selinux(1)
    label(m.milterin, SPOOL_IN)
    label(m.milterout, SPOOL_OUT)
    rc, lines = doctor(m, fake)
    assert rc == 0 and lines == [], lines


def test_selinux_permissive_is_not_checked(setup):
    m, fake = setup
    fake.selinux(0)
    label(m.milterin, WRONG)
    label(m.milterout, None)
    rc, lines = doctor(m, fake)
    assert rc == 0 and lines == [], lines


def test_release_build_ignores_the_fake_root(setup):
    """Only the test build reads MSM_TEST_MAC_ROOT: an installed msmilter
    looks at the real /sys, where nothing enforces here."""
    m, fake = setup
    fake.selinux(1)
    label(m.milterin, WRONG)
    rc, lines = doctor(m, fake, binary=os.path.join(build_dir(), "msmilter"))
    assert rc == 0 and lines == [], lines


def test_apparmor_profiles_and_queue_paths(setup):
    m, fake = setup
    fake.apparmor([(p, "enforce") for p in PROFILES])
    # The test's queues are not the guide's: the spooler's local include
    # names milterin, the relay's says nothing of milterout.
    fake.local("msmilter-spooler", "  %s/ r,\n  %s/* rwl,\n"
               % (m.milterin, m.milterin))
    rc, lines = doctor(m, fake)
    assert rc == 1 and len(lines) == 1, lines
    assert ("error: Outgoing Queue Dir %s lies outside what the AppArmor "
            "profile msmilter-relay allows (/var/spool/MailScanner/"
            "milterout): add \"%s/ r, %s/* rwk,\" to /etc/apparmor.d/local/"
            "usr.libexec.msmilter.msmilter-relay and reload it: "
            "apparmor_parser -r /etc/apparmor.d/usr.libexec.msmilter."
            "msmilter-relay" % (m.milterout, m.milterout, m.milterout)) \
        in lines[0], lines
    fake.local("msmilter-relay", "  %s/ r,\n  %s/** rwk,\n"
               % (m.milterout, m.milterout))
    rc, lines = doctor(m, fake)
    assert rc == 0 and lines == [], lines


def test_apparmor_profile_missing_or_complaining(setup):
    m, fake = setup
    fake.local("msmilter-spooler", "%s/ r,\n" % m.milterin)
    fake.local("msmilter-relay", "%s/ r,\n" % m.milterout)
    fake.apparmor([("msmilter", "enforce"), ("msmilter-capture", "complain"),
                   ("msmilter-spooler", "enforce"),
                   ("/usr/sbin/ntpd", "enforce")])
    rc, lines = doctor(m, fake)
    assert rc == 1 and len(lines) == 2, lines
    assert "warning: AppArmor profile msmilter-capture is in complain " \
        "mode, not enforce" in lines[0] and "aa-enforce /etc/apparmor.d/" \
        "usr.libexec.msmilter.msmilter-capture" in lines[0], lines
    assert "error: AppArmor profile msmilter-relay is not loaded" \
        in lines[1] and "apparmor_parser -r /etc/apparmor.d/usr.libexec." \
        "msmilter.msmilter-relay" in lines[1], lines


def test_apparmor_disabled_is_not_checked(setup):
    m, fake = setup
    fake.apparmor([], enabled="N")
    rc, lines = doctor(m, fake)
    assert rc == 0 and lines == [], lines
