#!/bin/sh
# tests/deps.sh [install|check] MODE... -- the Debian packages msmilter needs.
#   MODE=build  packages needed to compile msmilter and its unit tests
#   MODE=all    plus what the tests need (a real Postfix, miltertest, the
#               tools that build and check the Debian package, and policy)
#   MODE=fuzz   plus clang and its libFuzzer runtime
#   MODE=policy what `make policy` needs: the SELinux module build and
#               analysis tools, the AppArmor parser
# Silent when everything is installed.
#   check    never installs: names the missing packages and the apt-get
#            command, exits 1 (what `make` and `make install` run)
#   install  as root, installs what is missing with apt-get; otherwise
#            behaves as check (what `make deps` runs)
# "tests/deps.sh MODE" alone means install, as it always did.
set -u

action=install
case ${1:-} in
install|check) action=$1; shift ;;
esac
[ $# -eq 0 ] && set -- build

BUILD_PKGS="pkg-config gcc make libc6-dev libmilter-dev libseccomp-dev libcap-ng-dev \
libsodium-dev libpcre2-dev libcmocka-dev"
# clamav-daemon: tests/integration/test_fullscan.py and make bench run
# their own clamd (private config, socket and test database); the
# packaged services are disabled below and never needed.
# prometheus: its promtool checks the metrics file and the alert rules
# (test_metrics.py, test_contrib.py); its server is disabled below.
TEST_PKGS="postfix swaks miltertest python3-pytest openssl clamav-daemon \
prometheus"
# tests/integration/test_package.py: dpkg-buildpackage with debian/'s
# Build-Depends, systemd-analyze for the unit, man for its Documentation=.
PACKAGE_PKGS="dpkg-dev debhelper dh-apparmor fakeroot selinux-policy-dev \
systemd man-db"

FUZZ_PKGS="clang libclang-rt-14-dev"

# selinux-policy-default itself is not installed: its maintainer scripts
# would try to set the machine up for SELinux.  tests/integration/
# test_policy.py fetches it with `apt-get download` and unpacks its modules
# under build/ instead.
POLICY_PKGS="make selinux-policy-dev checkpolicy semodule-utils setools \
apparmor apparmor-utils"

pkgs=
for mode in "$@"; do
	case $mode in
	build) pkgs="$pkgs $BUILD_PKGS" ;;
	fuzz)  pkgs="$pkgs $BUILD_PKGS $FUZZ_PKGS" ;;
	all)   pkgs="$pkgs $BUILD_PKGS $TEST_PKGS $PACKAGE_PKGS $POLICY_PKGS" ;;
	policy) pkgs="$pkgs $POLICY_PKGS" ;;
	*)     echo "usage: $0 [install|check] build|all|fuzz|policy..." >&2
	       exit 2 ;;
	esac
done

# The packages of "$@" that are not installed, space-separated, once each.
not_installed() {
	out=
	for p in "$@"; do
		case " $out " in *" $p "*) continue ;; esac
		st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
		[ "$st" = "install ok installed" ] || out="$out $p"
	done
	echo "${out# }"
}

# shellcheck disable=SC2086
missing=$(not_installed $pkgs)

[ -z "$missing" ] && exit 0

if [ "$action" = check ] || [ "$(id -u)" -ne 0 ]; then
	echo "msmilter: missing Debian packages: $missing" >&2
	echo "install them as root with:" >&2
	echo "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing" >&2
	[ "$action" = check ] &&
		echo "(or run \`make deps\` as root, which does exactly that)" >&2
	exit 1
fi

echo "msmilter: installing missing Debian packages: $missing" >&2
case " $missing " in
*" postfix "*)
	# No debconf questions, no system mail configuration.
	echo "postfix postfix/main_mailer_type select No configuration" |
		debconf-set-selections
	;;
esac

export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
if ! apt-get update >&2 ||
   ! apt-get install -y --no-install-recommends $missing >&2; then
	echo "msmilter: apt-get install failed for: $missing" >&2
	exit 1
fi

case " $missing " in
*" postfix "*)
	# The tests run private Postfix instances on their own ports; do not
	# leave the system instance listening on port 25.
	postfix stop >/dev/null 2>&1 || true
	;;
esac

case " $missing " in
*" clamav-daemon "*|*" prometheus "*)
	# No system clamd or freshclam: the tests start their own clamd,
	# and freshclam would only try the network.  No Prometheus server:
	# the tests only run promtool.
	for svc in clamav-daemon clamav-freshclam prometheus; do
		if command -v systemctl >/dev/null 2>&1; then
			systemctl disable --now "$svc" >/dev/null 2>&1 || true
		fi
		if command -v update-rc.d >/dev/null 2>&1; then
			update-rc.d "$svc" disable >/dev/null 2>&1 || true
		fi
		invoke-rc.d "$svc" stop >/dev/null 2>&1 || true
	done
	;;
esac

# Check once more: a package apt-get could not install is an error.
# shellcheck disable=SC2086
still=$(not_installed $missing)
if [ -n "$still" ]; then
	echo "msmilter: still missing after apt-get:$still" >&2
	exit 1
fi
exit 0
