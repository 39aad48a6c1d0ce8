#!/bin/sh
# The sandboxed children must not carry the parent's file readers (issue
# 13): no configuration or rules file reader of ours, and none of the libc
# calls only those readers make.  The parent must carry them, so that a
# stripped or missing binary cannot pass.  Usage: check-child-symbols.sh
# [BUILD_DIR]; prints every offending symbol and exits 1 on any.
build=${1:-build}

# Defined by common/config_read.c and common/ruleset_read.c; and the
# audit log's keys, records and tree (common/audit_*.c, parent only).
readers='config_load ruleset_load ruleset_parse_text audit_key_read
audit_key_evolve audit_key_sign_pair audit_line_parse audit_merkle_path'
# Imported only by those readers: include globs, stdio on config files.
imports='glob glob64 globfree globfree64 fopen fopen64 fdopen getline getdelim __getdelim opendir'

rc=0
syms() {
	nm "$1" >"$tmp" 2>&1 || { echo "nm $1 failed: $(cat "$tmp")"; exit 1; }
}
tmp=$(mktemp) || exit 1
trap 'rm -f "$tmp"' EXIT

syms "$build/msmilter"
for s in $readers; do
	grep -q " T $s\$" "$tmp" || { echo "msmilter: $s missing (stripped?)"; rc=1; }
done
for child in capture spooler relay; do
	syms "$build/msmilter-$child"
	for s in $readers; do
		if grep -q " [TtWw] $s\$" "$tmp"; then
			echo "msmilter-$child defines $s"; rc=1
		fi
	done
	for s in $imports; do
		if grep -Eq " U $s(@|\$)" "$tmp"; then
			echo "msmilter-$child imports $s"; rc=1
		fi
	done
done
exit $rc
