#!/bin/sh
# tests/deps.sh MODE -- make sure the Debian packages msmilter needs are there.
#   MODE=build  packages needed to compile msmilter and its unit tests
#   MODE=all    plus what the integration tests need (a real Postfix etc.)
# Silent when everything is installed.  As root, missing packages are
# installed with apt-get; otherwise the missing packages and the command to
# install them are printed and the script exits 1.
set -u

mode=${1:-build}

BUILD_PKGS="pkg-config gcc make libc6-dev libmilter-dev libseccomp-dev libcap-ng-dev \
libsodium-dev libpcre2-dev libcmocka-dev"
TEST_PKGS="postfix swaks miltertest python3-pytest openssl"

FUZZ_PKGS="clang libclang-rt-14-dev"

case $mode in
build) pkgs=$BUILD_PKGS ;;
fuzz)  pkgs="$BUILD_PKGS $FUZZ_PKGS" ;;
all)   pkgs="$BUILD_PKGS $TEST_PKGS" ;;
*)     echo "usage: $0 build|all|fuzz" >&2; exit 2 ;;
esac

# The packages of "$@" that are not installed, space-separated.
not_installed() {
	out=
	for p in "$@"; do
		st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
		[ "$st" = "install ok installed" ] || out="$out $p"
	done
	echo "${out# }"
}

# shellcheck disable=SC2086
missing=$(not_installed $pkgs)

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "msmilter: missing Debian packages: $missing" >&2
	echo "install them as root with:" >&2
	echo "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing" >&2
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

# Check once more: a package apt-get could not install is an error.
# shellcheck disable=SC2086
still=$(not_installed $missing)
if [ -n "$still" ]; then
	echo "msmilter: still missing after apt-get:$still" >&2
	exit 1
fi
exit 0
