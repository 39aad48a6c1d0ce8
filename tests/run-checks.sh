#!/bin/sh
# tests/run-checks.sh BUILD PYTEST UNITBIN...
# Runs every cmocka unit test binary (cwd tests/unit), then the pytest suites
# (tests/integration, tests/milter: whichever exist), and ends with exactly
# one line "N passed, M failed".  Exits non-zero if anything failed.
set -u

if [ $# -lt 2 ]; then
	echo "usage: $0 BUILD PYTEST [UNITBIN...]" >&2
	exit 2
fi
build=$1
pytest=$2
shift 2

root=$(cd "$(dirname "$0")/.." && pwd) || exit 2
cd "$root" || exit 2

case $build in
/*) ;;
*) build=$root/$build ;;
esac
# The pytest fixtures find the binaries here.
MSMILTER_BUILD=$build
export MSMILTER_BUILD

tmp=$(mktemp -d "${TMPDIR:-/tmp}/msmilter-checks.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
bad=0			# something failed (also failures not counted as tests)

# --- unit tests -------------------------------------------------------------
for bin in "$@"; do
	case $bin in
	/*) path=$bin ;;
	*) path=$root/$bin ;;
	esac
	name=$(basename "$bin")
	echo "=== unit: $name"
	if [ ! -x "$path" ]; then
		echo "*** $name: not found or not executable: $path"
		failed=$((failed + 1)); bad=1
		continue
	fi
	( cd "$root/tests/unit" && CMOCKA_MESSAGE_OUTPUT=STDOUT "$path" ) \
		>"$tmp/unit.out" 2>&1
	rc=$?
	cat "$tmp/unit.out"
	# Sum every group's "[  PASSED  ] N test(s)." and
	# "[  FAILED  ] N test(s), listed below:" lines.
	p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test(s).*/\1/p' \
		"$tmp/unit.out" | awk '{s += $1} END {print s + 0}')
	f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test(s).*/\1/p' \
		"$tmp/unit.out" | awk '{s += $1} END {print s + 0}')
	passed=$((passed + p))
	failed=$((failed + f))
	if [ "$rc" -ne 0 ]; then
		bad=1
		if [ "$f" -eq 0 ]; then
			# Crashed, or failed outside a counted test.
			echo "*** $name: exit status $rc"
			failed=$((failed + 1))
		fi
	elif [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
		echo "*** $name: no cmocka result lines found"
		failed=$((failed + 1)); bad=1
	fi
done

# --- pytest -----------------------------------------------------------------
dirs=
for d in tests/integration tests/milter; do
	[ -d "$d" ] && dirs="$dirs $d"
done
if [ -z "$dirs" ]; then
	echo "*** no pytest test directories found"
	failed=$((failed + 1)); bad=1
else
	echo "=== pytest:$dirs"
	# shellcheck disable=SC2086
	{ $pytest -ra -p no:cacheprovider $dirs 2>&1; echo $? >"$tmp/py.rc"; } |
		tee "$tmp/py.out"
	rc=$(cat "$tmp/py.rc" 2>/dev/null || echo 1)
	# Final summary line, e.g. "==== 12 passed, 1 failed, 2 skipped in 3.2s ===="
	summary=$(grep -E '(passed|failed|error|errors|skipped|deselected|xfailed|xpassed|no tests ran).* in [0-9.]+s' \
		"$tmp/py.out" | tail -n 1)
	count() {	# count WORD...: sum "N WORD" in $summary
		n=0
		for w in "$@"; do
			v=$(printf '%s\n' "$summary" |
				sed -n "s/.*[^0-9]\([0-9][0-9]*\) $w\([^a-z].*\)\{0,1\}\$/\1/p")
			n=$((n + ${v:-0}))
		done
		echo "$n"
	}
	p=$(count passed)
	f=$(count failed error errors)
	passed=$((passed + p))
	failed=$((failed + f))
	if [ "$rc" -eq 5 ]; then
		echo "*** pytest collected no tests (exit 5): counted as a failure"
		failed=$((failed + 1)); bad=1
	elif [ "$rc" -ne 0 ]; then
		bad=1
		if [ "$f" -eq 0 ]; then
			echo "*** pytest: exit status $rc"
			failed=$((failed + 1))
		fi
	fi
fi

[ "$failed" -gt 0 ] && bad=1
echo "$passed passed, $failed failed"
[ "$bad" -eq 0 ]
