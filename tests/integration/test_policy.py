"""The SELinux module and the AppArmor profiles (issue 14), analysed.

SELinux: selinux/ is built with Debian's selinux-policy-dev into a scratch
directory, linked with the modules of Debian's selinux-policy-default
(base, mta, postfix, milter and what they need; fetched once with
`apt-get download` and cached under the build directory, never installed)
and expanded; sesearch and sedta then prove the separation DESIGN.md
states.  Deliberately wrong rules in scratch copies must fail the expand
on the module's neverallow rules.

AppArmor: every profile parses with apparmor_parser against the kernel
features Debian 12 pins, with --warn=all and no warning but the one those
features force (unix rules fall back to the generic network rule), and
the rules that make the separation are checked by content.

Neither is enforced by this kernel; test_confined_flow runs the flow
confined where one is, and says why it skipped otherwise."""

import glob
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from postfix import PROJECT_ROOT, build_dir, child_pids
from queuefile import real_files

SELINUX = os.path.join(PROJECT_ROOT, "selinux")
APPARMOR = os.path.join(PROJECT_ROOT, "apparmor")
DEVEL_MAKEFILE = "/usr/share/selinux/devel/Makefile"
FEATURES = "/usr/share/apparmor-features/features"

DOMAINS = {"parent": "msmilter_t", "capture": "msmilter_capture_t",
           "spooler": "msmilter_spooler_t", "relay": "msmilter_relay_t"}
CHILD_DOMAINS = {DOMAINS[c] for c in ("capture", "spooler", "relay")}
FILE_TYPES = ["msmilter_spool_in_t", "msmilter_spool_out_t",
              "msmilter_quarantine_t", "msmilter_chroot_t",
              "msmilter_runtime_t", "msmilter_audit_log_t",
              "msmilter_audit_key_t"]
EXEC_TYPES = ["msmilter_exec_t", "msmilter_capture_exec_t",
              "msmilter_spooler_exec_t", "msmilter_relay_exec_t"]
SPOOL_TYPES = ["msmilter_spool_in_t", "msmilter_spool_out_t",
               "msmilter_quarantine_t"]

# Debian's modules to link with: base and the modules whose interfaces
# the module uses (postfix needs hostname; clamav and nscd switch on the
# optional blocks that name them).
REFPOLICY_MODULES = ["base", "mta", "postfix", "milter", "hostname",
                     "clamav", "nscd"]

PROFILES = {
    "parent": "usr.sbin.msmilter",
    "capture": "usr.libexec.msmilter.msmilter-capture",
    "spooler": "usr.libexec.msmilter.msmilter-spooler",
    "relay": "usr.libexec.msmilter.msmilter-relay",
}
PROFILE_NAMES = {"parent": "msmilter", "capture": "msmilter-capture",
                 "spooler": "msmilter-spooler", "relay": "msmilter-relay"}
AA_PARSE = ["apparmor_parser", "-Q", "-K", "--warn=all", "--kernel-features",
            FEATURES, "-I", "/etc/apparmor.d"]
# The only warning Debian 12's pinned features may cause (TESTING.md).
AA_DOWNGRADED = ("downgrading extended network unix socket rule to generic "
                 "network rule")

SPOOL = "/var/spool/MailScanner"

# Domains that manage every ordinary file in Debian's policy (package
# scripts, the administrator's role, systemd-tmpfiles and init under
# booleans): not msmilter's processes, and not Postfix or MailScanner.
ADMIN_DOMAINS = {"dpkg_t", "dpkg_script_t", "sysadm_t", "init_t",
                 "systemd_tmpfiles_t"}


def run(cmd, cwd=None, check=True):
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    if check and r.returncode != 0:
        pytest.fail("%s: exit %d\n%s%s" % (" ".join(cmd), r.returncode,
                                            r.stdout, r.stderr))
    return r


def need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail("missing %s: sh tests/deps.sh policy (make policy "
                    "installs them)" % ", ".join(missing))


# ---------------------------------------------------------------------------
# SELinux: build, link, expand

def build_module(src_dir, dest):
    """make -f DEVEL_MAKEFILE msmilter.pp on a copy of src_dir in dest."""
    need("checkmodule", "semodule_package", "make")
    if not os.path.exists(DEVEL_MAKEFILE):
        pytest.fail("%s missing: install selinux-policy-dev" % DEVEL_MAKEFILE)
    os.makedirs(dest, exist_ok=True)
    if os.path.realpath(src_dir) != os.path.realpath(dest):
        for ext in ("te", "fc", "if"):
            shutil.copy(os.path.join(src_dir, "msmilter." + ext), dest)
    r = run(["make", "-s", "-f", DEVEL_MAKEFILE, "msmilter.pp"], cwd=dest,
            check=False)
    return r, os.path.join(dest, "msmilter.pp")


@pytest.fixture(scope="module")
def refpolicy():
    """{module: path of its .pp} from Debian's selinux-policy-default,
    downloaded once and cached under the build directory."""
    need("apt-get", "dpkg-deb", "bunzip2")
    cache = os.path.join(build_dir(), "selinux-policy-default")
    want = {m: os.path.join(cache, m + ".pp") for m in REFPOLICY_MODULES}
    if all(os.path.exists(p) for p in want.values()):
        return want
    scratch = tempfile.mkdtemp(prefix="msmtest-refpolicy-")
    try:
        r = run(["apt-get", "download", "selinux-policy-default"],
                cwd=scratch, check=False)
        debs = glob.glob(os.path.join(scratch, "selinux-policy-default_*"))
        if r.returncode != 0 or not debs:
            pytest.fail("apt-get download selinux-policy-default failed "
                        "(Debian's archive needed once; cached in %s):\n%s%s"
                        % (cache, r.stdout, r.stderr))
        run(["dpkg-deb", "-x", debs[0], os.path.join(scratch, "x")])
        os.makedirs(cache, exist_ok=True)
        for m, path in want.items():
            src = os.path.join(scratch, "x/usr/share/selinux/default",
                               m + ".pp.bz2")
            with open(path + ".part", "wb") as out:
                subprocess.run(["bunzip2", "-c", src], stdout=out,
                               check=True)
            os.rename(path + ".part", path)
        with open(os.path.join(cache, "VERSION"), "w") as f:
            f.write(os.path.basename(debs[0]) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return want


def link_expand(refpolicy, modules, out_dir):
    """semodule_link + semodule_expand; (result of the expand, policy)."""
    need("semodule_link", "semodule_expand")
    lnk = os.path.join(out_dir, "policy.lnk")
    pol = os.path.join(out_dir, "policy.33")
    base = [refpolicy[m] for m in REFPOLICY_MODULES]
    run(["semodule_link", "-o", lnk] + base + list(modules))
    return run(["semodule_expand", lnk, pol], check=False), pol


@pytest.fixture(scope="module")
def module_pp(tmp_path_factory):
    r, pp = build_module(SELINUX, str(tmp_path_factory.mktemp("module")))
    assert r.returncode == 0, r.stdout + r.stderr
    return pp


@pytest.fixture(scope="module")
def policy(refpolicy, module_pp, tmp_path_factory):
    r, pol = link_expand(refpolicy, [module_pp],
                         str(tmp_path_factory.mktemp("policy")))
    assert r.returncode == 0, r.stdout + r.stderr
    return pol


def sesearch(pol, *args):
    """Allow rules (lines) of sesearch -A ARGS on pol."""
    need("sesearch")
    r = run(["sesearch", "-A"] + list(args) + [pol])
    return [l for l in r.stdout.splitlines() if l.startswith("allow ")]


_members = {}


def members(pol, name):
    """The types a rule's source or target name stands for."""
    key = (pol, name)
    if key not in _members:
        r = run(["seinfo", "-a", name, "-x", pol], check=False)
        if r.returncode == 0 and "attribute %s;" % name in r.stdout:
            _members[key] = {l.strip() for l in
                             r.stdout.split("attribute %s;" % name, 1)[1]
                             .splitlines() if l.strip() and
                             not l.strip().startswith("<")}
        else:
            _members[key] = {name}
    return _members[key]


def rule_sources(pol, rules):
    out = set()
    for rule in rules:
        out |= members(pol, rule.split()[1])
    return out


def test_module_builds_with_the_design_names(module_pp, policy):
    need("seinfo")
    types = set(run(["seinfo", policy, "-t"]).stdout.split())
    for t in list(DOMAINS.values()) + EXEC_TYPES + FILE_TYPES:
        assert t in types, t
    assert members(policy, "milter_domains") >= {"msmilter_capture_t"}
    assert "msmilter_runtime_t" in members(policy, "milter_data_type")
    # Nothing else of ours is a milter (Postfix may connect to capture only).
    assert not (members(policy, "milter_domains") &
                {"msmilter_t", "msmilter_spooler_t", "msmilter_relay_t"})


def test_capture_has_no_access_to_queues_or_audit(policy):
    for t in SPOOL_TYPES + ["msmilter_audit_log_t", "msmilter_audit_key_t"]:
        assert sesearch(policy, "-s", "msmilter_capture_t", "-t", t) == [], t
    # The same query finds what the spooler may do: the method can see.
    assert sesearch(policy, "-s", "msmilter_spooler_t", "-t",
                    "msmilter_spool_in_t", "-c", "file", "-p", "write")


def test_only_the_spooler_writes_milterin(policy):
    assert sesearch(policy, "-s", "msmilter_relay_t", "-t",
                    "msmilter_spool_in_t") == []
    for perm in ("write", "append", "create", "rename", "unlink"):
        writers = rule_sources(policy, sesearch(
            policy, "-t", "msmilter_spool_in_t", "-c", "file", "-p", perm))
        assert writers - ADMIN_DOMAINS == \
            (set() if perm == "append" else {"msmilter_spooler_t"}), \
            (perm, writers)
    adders = rule_sources(policy, sesearch(
        policy, "-t", "msmilter_spool_in_t", "-c", "dir", "-p", "add_name"))
    assert adders - ADMIN_DOMAINS == {"msmilter_spooler_t"}, adders
    # The relay reads milterout; the spooler only reads it (the requeue's
    # read-only descriptor).
    assert sesearch(policy, "-s", "msmilter_relay_t", "-t",
                    "msmilter_spool_out_t", "-c", "file", "-p", "unlink")
    for perm in ("write", "append", "create", "unlink", "rename"):
        assert sesearch(policy, "-s", "msmilter_spooler_t", "-t",
                        "msmilter_spool_out_t", "-p", perm) == [], perm
    # The relay's progress records (relay/progress.c) get a type of their
    # own, the only files it creates or appends to in milterout: it may
    # not write MailScanner's files (but for the posix-locks tunable).
    need("sesearch")
    tt = run(["sesearch", "-T", "-s", "msmilter_relay_t", "-t",
              "msmilter_spool_out_t", "-c", "file", policy]).stdout
    assert "msmilter_relay_progress_t" in tt, tt
    for perm in ("create", "append", "unlink"):
        assert sesearch(policy, "-s", "msmilter_relay_t", "-t",
                        "msmilter_relay_progress_t", "-c", "file", "-p",
                        perm), perm
    for perm in ("create", "append"):
        assert sesearch(policy, "-s", "msmilter_relay_t", "-t",
                        "msmilter_spool_out_t", "-c", "file", "-p",
                        perm) == [], perm


def test_spooler_connects_nowhere(policy):
    assert sesearch(policy, "-s", "msmilter_spooler_t", "-c", "tcp_socket",
                    "-p", "name_connect") == []
    # Full Milter Scanner mode: clamd's local socket, and nothing else.
    for rule in sesearch(policy, "-s", "msmilter_spooler_t", "-p",
                         "connectto"):
        assert " clamd_t:" in rule, rule
    for cls in ("tcp_socket", "udp_socket", "rawip_socket"):
        assert sesearch(policy, "-s", "msmilter_spooler_t", "-t",
                        "msmilter_spooler_t", "-c", cls) == [], cls
    # The relay does connect, to smtp_port_t (label 10026 or 628 so).
    assert sesearch(policy, "-s", "msmilter_relay_t", "-t", "smtp_port_t",
                    "-c", "tcp_socket", "-p", "name_connect")
    assert sesearch(policy, "-s", "msmilter_capture_t", "-c", "tcp_socket",
                    "-p", "name_connect") == []


def test_only_the_parent_appends_to_the_audit_log(policy):
    appenders = rule_sources(policy, sesearch(
        policy, "-t", "msmilter_audit_log_t", "-c", "file", "-p", "append"))
    assert appenders == {"msmilter_t"}, appenders
    # Nobody rewrites it, the parent included; only the parent holds the key.
    assert rule_sources(policy, sesearch(
        policy, "-t", "msmilter_audit_log_t", "-c", "file", "-p",
        "write")) == set()
    assert rule_sources(policy, sesearch(
        policy, "-t", "msmilter_audit_key_t", "-c", "file", "-p",
        "read")) == {"msmilter_t"}


def test_postfix_reaches_capture(policy):
    # smtpd: by the milter_domains / milter_data_type rules of postfix.te.
    assert sesearch(policy, "-s", "postfix_smtpd_t", "-t",
                    "msmilter_capture_t", "-c", "unix_stream_socket",
                    "-p", "connectto")
    assert sesearch(policy, "-s", "postfix_smtpd_t", "-t",
                    "msmilter_runtime_t", "-c", "sock_file", "-p", "write")
    # cleanup (non_smtpd_milters): by our module.
    assert sesearch(policy, "-s", "postfix_cleanup_t", "-t",
                    "msmilter_capture_t", "-c", "unix_stream_socket",
                    "-p", "connectto")
    # TCP: Postfix's own name_connect to milter_port_t, capture's bind.
    assert sesearch(policy, "-s", "postfix_smtpd_t", "-t", "milter_port_t",
                    "-c", "tcp_socket", "-p", "name_connect")
    assert sesearch(policy, "-s", "msmilter_capture_t", "-t",
                    "milter_port_t", "-c", "tcp_socket", "-p", "name_bind")
    # ... but not to the parent's control socket.
    assert sesearch(policy, "-s", "postfix_smtpd_t", "-t", "msmilter_t",
                    "-c", "unix_stream_socket", "-p", "connectto") == []


def sedta(pol, source, reverse=False):
    need("sedta")
    r = run(["sedta", "-p", pol, "-s", source] + (["-r"] if reverse else []))
    return re.findall(r"^Transition \d+: (\S+) -> (\S+)$", r.stdout, re.M)


def test_transitions(policy):
    assert {t for _, t in sedta(policy, "msmilter_t")} == CHILD_DOMAINS
    for child in CHILD_DOMAINS:
        assert sedta(policy, child) == [], child
        assert {s for s, _ in sedta(policy, child, reverse=True)} == \
            {"msmilter_t"}, child
    # Also under no_new_privs (systemd hardening can set it on the parent).
    nnp = sesearch(policy, "-s", "msmilter_t", "-c", "process2", "-p",
                   "nnp_transition")
    assert {m for r in nnp for m in members(policy, r.split()[2]
                                           .split(":")[0])} == CHILD_DOMAINS


def test_mailscanner_gets_the_queues_where_mscan_t_exists(refpolicy,
                                                          module_pp,
                                                          tmp_path):
    stub = tmp_path / "stub"
    stub.mkdir()
    # Also a user of every interface of msmilter.if.
    (stub / "mscanstub.te").write_text(
        "policy_module(mscanstub, 1.0.0)\n"
        "gen_require(`\n\trole system_r;\n')\n"
        "type mscan_t;\ndomain_type(mscan_t)\n"
        "type msmtest_admin_t;\ndomain_type(msmtest_admin_t)\n"
        "msmilter_admin(msmtest_admin_t, system_r)\n"
        "msmilter_stream_connect(msmtest_admin_t)\n")
    (stub / "mscanstub.fc").write_text("")
    (stub / "mscanstub.if").write_text("")
    # (the devel Makefile reads the .if of each .te beside it)
    for ext in ("te", "fc", "if"):
        shutil.copy(os.path.join(SELINUX, "msmilter." + ext), str(stub))
    r = run(["make", "-s", "-f", DEVEL_MAKEFILE, "mscanstub.pp"],
            cwd=str(stub))
    r, pol = link_expand(refpolicy, [module_pp, str(stub / "mscanstub.pp")],
                         str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert sesearch(pol, "-s", "mscan_t", "-t", "msmilter_spool_in_t",
                    "-c", "file", "-p", "unlink")
    assert sesearch(pol, "-s", "mscan_t", "-t", "msmilter_spool_out_t",
                    "-c", "file", "-p", "create")
    assert sesearch(pol, "-s", "mscan_t", "-t", "msmilter_spool_in_t",
                    "-c", "file", "-p", "write") == []
    assert sesearch(pol, "-s", "msmtest_admin_t", "-t", "msmilter_t",
                    "-c", "process", "-p", "transition")
    assert sesearch(pol, "-s", "msmtest_admin_t", "-t",
                    "msmilter_audit_log_t", "-c", "file", "-p", "read")
    assert sesearch(pol, "-s", "msmtest_admin_t", "-t",
                    "msmilter_audit_log_t", "-c", "file", "-p", "write") == []
    assert sesearch(pol, "-s", "msmtest_admin_t", "-t",
                    "msmilter_capture_t", "-c", "unix_stream_socket",
                    "-p", "connectto")


@pytest.mark.parametrize("rule", [
    "allow msmilter_capture_t msmilter_spool_in_t:file read;",
    "allow msmilter_relay_t msmilter_spool_in_t:file write;",
    "allow msmilter_spooler_t smtp_port_t:tcp_socket name_connect;",
    "allow msmilter_relay_t msmilter_audit_log_t:file append;",
    "allow msmilter_capture_t msmilter_quarantine_t:dir search;",
])
def test_wrong_rule_fails_on_neverallow(refpolicy, tmp_path, rule):
    src = tmp_path / "src"
    src.mkdir()
    for ext in ("te", "fc", "if"):
        shutil.copy(os.path.join(SELINUX, "msmilter." + ext), str(src))
    with open(str(src / "msmilter.te"), "a") as f:
        f.write("\ngen_require(`\n\ttype smtp_port_t;\n')\n%s\n" % rule)
    r, pp = build_module(str(src), str(src))
    assert r.returncode == 0, r.stdout + r.stderr   # fails at expand
    r, _ = link_expand(refpolicy, [pp], str(tmp_path))
    assert r.returncode != 0, rule
    assert "neverallow violated by %s:" % rule.split(":")[0] in r.stderr, \
        r.stderr


# ---------------------------------------------------------------------------
# SELinux file contexts and AppArmor attachments name the same paths

def fc_entries():
    out = []
    with open(os.path.join(SELINUX, "msmilter.fc")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            ctype = re.search(r"object_r:(\w+)[,:]", parts[-1]).group(1)
            out.append((parts[0], parts[1] if len(parts) == 3 else None,
                        ctype))
    return out


def fc_type(path):
    """The type restorecon gives path: as libselinux's matchpathcon, an
    entry without regex characters before any with them, else the last
    entry of the file that matches."""
    hits = [(regex, t) for regex, _, t in fc_entries()
            if re.fullmatch(regex, path)]
    exact = [t for regex, t in hits if not re.search(r"[.^$?*+|\[({]",
                                                     regex.replace("\\.", ""))]
    if exact:
        return exact[-1]
    return hits[-1][1] if hits else None


@pytest.mark.parametrize("path,want", [
    ("/usr/sbin/msmilter", "msmilter_exec_t"),
    ("/usr/bin/msmilter", "msmilter_exec_t"),
    ("/usr/local/sbin/msmilter", "msmilter_exec_t"),
    ("/usr/libexec/msmilter/msmilter-capture", "msmilter_capture_exec_t"),
    ("/usr/local/libexec/msmilter/msmilter-spooler",
     "msmilter_spooler_exec_t"),
    ("/usr/lib/msmilter/msmilter-relay", "msmilter_relay_exec_t"),
    ("/var/spool/MailScanner/milterin", "msmilter_spool_in_t"),
    ("/var/spool/MailScanner/milterin/4Xk2Lm5pQzJ3F9", "msmilter_spool_in_t"),
    ("/var/spool/MailScanner/milterout/40269A720F2.AAEE6",
     "msmilter_spool_out_t"),
    ("/var/spool/MailScanner/milterout/.progress.40269A720F2.AAEE6",
     "msmilter_relay_progress_t"),
    ("/var/spool/MailScanner/milterout-invalid/x", "msmilter_quarantine_t"),
    ("/var/spool/MailScanner/milteroutx", None),
    ("/var/lib/msmilter/empty", "msmilter_chroot_t"),
    ("/run/msmilter", "msmilter_runtime_t"),
    ("/run/msmilter/control", "msmilter_runtime_t"),
    ("/run/MSMilter.pid", "msmilter_runtime_t"),
    ("/var/spool/postfix/msmilter/msmilter.sock", "msmilter_runtime_t"),
    ("/var/log/msmilter/audit.log", "msmilter_audit_log_t"),
    ("/etc/msmilter/audit/key", "msmilter_audit_key_t"),
    ("/etc/msmilter/msmilter.conf", None),
])
def test_file_contexts(path, want):
    assert fc_type(path) == want


# ---------------------------------------------------------------------------
# AppArmor

def aa_glob_regex(g):
    """An AppArmor path glob as a Python regex (the subset we use)."""
    variables = {"@{run}": "{/run,/var/run}", "@{PROC}": "/proc",
                 "@{pid}": "[0-9]*", "@{multiarch}": "*-linux-gnu*"}
    for k, v in variables.items():
        g = g.replace(k, v)
    out, i, depth = "", 0, 0
    while i < len(g):
        c = g[i]
        if g.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "{":
            out += "(?:"
            depth += 1
        elif c == "}":
            out += ")"
            depth -= 1
        elif c == "," and depth:
            out += "|"
        elif c == "[":
            j = g.index("]", i)
            out += g[i:j + 1]
            i = j + 1
            continue
        else:
            out += re.escape(c)
        i += 1
    return out


RULE = re.compile(r"^\s*(?:audit\s+)?(deny\s+)?(?:owner\s+)?"
                  r"(/\S+|@\{\w+\}\S*)\s+([rwaklmixPpUuC]+)"
                  r"(?:\s*->\s*(\S+))?\s*,\s*$")


def aa_rules(name):
    """(deny, glob, perms, target) of the file rules in a profile."""
    out = []
    with open(os.path.join(APPARMOR, PROFILES[name])) as f:
        for line in f:
            line = line.split("#", 1)[0]
            m = RULE.match(line)
            if m:
                out.append((bool(m.group(1)), m.group(2), m.group(3),
                            m.group(4)))
    return out


def aa_text(name):
    with open(os.path.join(APPARMOR, PROFILES[name])) as f:
        return "\n".join(l.split("#", 1)[0] for l in f)


def allowed(name, path, perm):
    """Some allow rule gives perm on path, and no deny rule takes it."""
    hit = any(perm in p and re.fullmatch(aa_glob_regex(g), path)
              for d, g, p, _ in aa_rules(name) if not d)
    denied = any(perm in p and re.fullmatch(aa_glob_regex(g), path)
                 for d, g, p, _ in aa_rules(name) if d)
    return hit and not denied


def aa_parse(args):
    need("apparmor_parser")
    if not os.path.exists(FEATURES):
        pytest.fail("%s missing: install apparmor" % FEATURES)
    r = run(AA_PARSE + args, check=False)
    others = [l for l in r.stderr.splitlines()
              if l.strip() and AA_DOWNGRADED not in l]
    return r, others


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_parses_warning_clean(name):
    path = os.path.join(APPARMOR, PROFILES[name])
    r, others = aa_parse([path])
    assert r.returncode == 0, r.stderr
    assert others == [], others
    names = run(["apparmor_parser", "-N", path]).stdout.split()
    assert names == [PROFILE_NAMES[name]]
    text = aa_text(name)
    assert re.search(r"^abi <abi/3\.0>,$", text, re.M)
    assert re.search(r"^include <tunables/global>$", text, re.M)
    assert re.search(r"^\s*include if exists <local/%s>$"
                     % re.escape(PROFILES[name]), text, re.M)


@pytest.mark.parametrize("child", ["capture", "spooler", "relay"])
def test_parent_moves_into_each_child_profile(child):
    binary = "/usr/libexec/msmilter/msmilter-" + child
    rules = [(g, p, t) for d, g, p, t in aa_rules("parent")
             if not d and re.fullmatch(aa_glob_regex(g), binary)]
    assert [(p, t) for _, p, t in rules] == [("Px", PROFILE_NAMES[child])]
    # The child's own profile attaches to that path.
    attach = re.search(r"^profile %s (\S+) \{" % PROFILE_NAMES[child],
                       aa_text(child), re.M).group(1)
    assert re.fullmatch(aa_glob_regex(attach), binary)
    assert re.fullmatch(aa_glob_regex(attach),
                        "/usr/local/libexec/msmilter/msmilter-" + child)
    # SELinux labels the same file with the child's entry point type.
    assert fc_type(binary) == "msmilter_%s_exec_t" % child


def test_parent_reads_no_mail():
    assert not re.search(r"\b[Uu]x\b|\bix\b|\bCx\b", aa_text("parent"))
    for q in ("milterin", "milterout", "milterout-invalid"):
        for perm in "rwa":
            assert not allowed("parent", "%s/%s/40269A720F2.AAEE6"
                               % (SPOOL, q), perm), (q, perm)


def test_capture_profile_has_no_file_system():
    text = aa_text("capture")
    assert "abstractions/" not in text
    for q in ("milterin", "milterout", "milterout-invalid"):
        for perm in "rwalk":
            assert not allowed("capture", "%s/%s/x" % (SPOOL, q), perm)
    # Writes only its listening socket.
    for d, g, p, _ in aa_rules("capture"):
        if not d and set(p) & set("wal"):
            assert g in ("@{run}/msmilter/*.sock",
                         "/var/spool/postfix/msmilter/*.sock",
                         "/dev/null"), g
    for d, g, p, _ in aa_rules("capture"):
        if not d and g.startswith("/var/spool"):
            assert g == "/var/spool/postfix/msmilter/*.sock", g
    assert re.search(r"^\s*deny /var/spool/MailScanner/\*\* rw", text, re.M)
    assert not allowed("capture", "/etc/shadow", "r")
    assert allowed("capture", "/var/lib/msmilter/empty/", "r")


def test_spooler_profile_milterin_only_and_no_network():
    text = aa_text("spooler")
    assert "abstractions/" not in text
    assert not re.search(r"^\s*network\s+(inet6?\b|,)", text, re.M)
    assert not re.search(r"^\s*network\s*,", text, re.M)
    assert re.search(r"^\s*deny network inet,$", text, re.M)
    assert re.search(r"^\s*deny network inet6,$", text, re.M)
    for d, g, p, _ in aa_rules("spooler"):
        if not d and set(p) & set("walk"):
            # clamd's socket: Full Milter Scanner mode.
            assert g.startswith(SPOOL + "/milterin/") or \
                g in ("/dev/null", "/{,var/}run/clamav/clamd.ctl"), g
    assert allowed("spooler", SPOOL + "/milterin/temp-msm-x", "w")
    assert allowed("spooler", SPOOL + "/milterout/40269A720F2.AAEE6", "r")
    assert not allowed("spooler", SPOOL + "/milterout/40269A720F2.AAEE6",
                       "w")


def test_relay_profile_cannot_write_milterin():
    text = aa_text("relay")
    assert "abstractions/" not in text
    for perm in "rwal":
        assert not allowed("relay", SPOOL + "/milterin/4Xk2Lm5pQzJ3F9",
                           perm), perm
    for d, g, p, _ in aa_rules("relay"):
        if not d and set(p) & set("wal"):
            assert g.startswith((SPOOL + "/milterout/",
                                 SPOOL + "/milterout-invalid/",
                                 "/var/spool/postfix/public/qmqp",
                                 "/dev/null")), g
    assert allowed("relay", SPOOL + "/milterout/40269A720F2.AAEE6", "r")
    assert allowed("relay", SPOOL + "/milterout-invalid/40269A720F2.AAEE6",
                   "w")
    assert allowed("relay", "/var/spool/postfix/public/qmqp", "w")
    assert re.search(r"^\s*network inet stream,$", text, re.M)


def test_postfix_snippet_parses_in_postfix_common(tmp_path):
    inc = tmp_path / "inc" / "abstractions" / "postfix-common.d"
    inc.mkdir(parents=True)
    shutil.copy(os.path.join(APPARMOR, "postfix-common.d", "msmilter"),
                str(inc))
    prof = tmp_path / "smtpd"
    prof.write_text("abi <abi/3.0>,\ninclude <tunables/global>\n"
                    "profile smtpd-test /usr/lib/postfix/sbin/smtpd {\n"
                    "  include <abstractions/postfix-common>\n}\n")
    extra = ["-I", str(tmp_path / "inc")]
    r, others = aa_parse(extra + [str(prof)])
    assert r.returncode == 0, r.stderr
    assert others == [], others
    pre = run(["apparmor_parser", "-p"] + extra + ["-I", "/etc/apparmor.d",
                                                     str(prof)]).stdout
    assert "/var/spool/postfix/msmilter/*.sock rw," in pre


# ---------------------------------------------------------------------------
# The flow, confined, where a kernel enforces a policy

def selinux_enforcing():
    try:
        with open("/sys/fs/selinux/enforce") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def apparmor_enabled():
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip() == "Y" and \
                os.path.isdir("/sys/kernel/security/apparmor")
    except OSError:
        return False


def attr_current(pid):
    with open("/proc/%d/attr/current" % pid) as f:
        return f.read().strip("\0\n ")


def aa_local_profiles(m, dest):
    """The profiles with the build directory and this test's queues in
    place of the installed paths; (paths, profile names)."""
    b = build_dir()
    subst = [("/usr/{,local/}sbin/msmilter", os.path.join(b, "msmilter")),
             ("/usr/{,local/}libexec/msmilter/", b + "/"),
             (SPOOL + "/milterin", m.milterin),
             (SPOOL + "/milterout", m.milterout),
             ("/var/lib/msmilter/empty", m.chroot),
             ("@{run}/MSMilter.pid", m.pidfile),
             ("/etc/MailScanner/", m.base + "/")]
    out = []
    for name, fn in PROFILES.items():
        with open(os.path.join(APPARMOR, fn)) as f:
            text = f.read()
        for a, b_ in subst:
            text = text.replace(a, b_)
        text = text.replace("profile %s " % PROFILE_NAMES[name],
                            "profile msmtest-%s " % PROFILE_NAMES[name])
        text = re.sub(r"(-> |peer=)msmilter", r"\1msmtest-msmilter", text)
        # The test's log file, inherited by every process.
        text = text.replace("  include if exists",
                            "  %s w,\n  include if exists" % m.stderr_path)
        path = os.path.join(dest, fn)
        with open(path, "w") as f:
            f.write(text)
        out.append(path)
    return out


def test_confined_flow(msmilter_factory, postfix_factory, test_base):
    from test_confinement import running_children, send_ok
    if selinux_enforcing():
        pytest.skip("SELinux is enforcing: loading msmilter.pp and "
                    "relabelling the build tree is left to a test host "
                    "set up for it (semodule -X 200 -i msmilter.pp, "
                    "restorecon on an installed tree)")
    if not apparmor_enabled():
        pytest.skip("neither SELinux nor AppArmor is enforced by this "
                    "kernel (/sys/fs/selinux/enforce, "
                    "/sys/module/apparmor/parameters/enabled): the "
                    "policies are analysed above, not run")
    m = msmilter_factory(start=False)
    m.write_config()
    paths = aa_local_profiles(m, test_base)
    run(["apparmor_parser", "-r", "-I", "/etc/apparmor.d"] + paths)
    try:
        m.start()
        pf = postfix_factory(milter=m)
        pids = running_children(m)
        assert attr_current(m.pid).startswith("msmtest-msmilter ")
        for child, pid in pids.items():
            assert attr_current(pid).startswith(
                "msmtest-msmilter-%s " % child), (child, attr_current(pid))
        qid = send_ok(pf, "confined by apparmor")
        assert real_files(m.milterin) == [qid]
        assert child_pids(m.pid) == pids
    finally:
        m.stop()
        run(["apparmor_parser", "-R"] + paths, check=False)
