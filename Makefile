# msmilter: plain GNU make.  Outputs under build/.
# `make` builds; `make check` runs every test; `make demo` shows it working;
# `make chaos` injects a thousand faults under load (minutes).

# Where `make install` puts things (DESTDIR is prepended to each).  The
# programs compile in LIBEXECDIR (where the parent finds its children) and
# SYSCONFDIR (the default MailScanner.conf); the unit, the init script and
# the AppArmor profiles get the same paths at install.  MailScanner keeps
# its configuration in /etc whatever our PREFIX.
PREFIX		?= /usr/local
SBINDIR		?= $(PREFIX)/sbin
LIBEXECDIR	?= $(PREFIX)/libexec
SYSCONFDIR	?= /etc
MANDIR		?= $(PREFIX)/share/man
DOCDIR		?= $(PREFIX)/share/doc/msmilter
SYSTEMDUNITDIR	?= $(PREFIX)/lib/systemd/system
INITDIR		?= $(SYSCONFDIR)/init.d
SELINUXDIR	?= $(PREFIX)/share/selinux/packages
APPARMORDIR	?= $(SYSCONFDIR)/apparmor.d
BUILD		?= build
SAN		?=

PKGS		:= milter libseccomp libcap-ng libsodium libpcre2-8
PKG_CFLAGS	= $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS	= $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CC		?= cc
CFLAGS		?= -O2 -g
WARN		:= -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wstrict-prototypes \
		   -Wmissing-prototypes -Wno-unused-parameter
HARDEN		:= -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
ifneq ($(SAN),)
HARDEN		:= -fPIE
SANFLAGS	:= -fsanitize=address,undefined -fno-omit-frame-pointer \
		   -fno-sanitize-recover=undefined
endif
# Test-only triggers in the children (common/testhook.h); never installed.
ifneq ($(TESTHOOKS),)
HOOKFLAGS	:= -DMSM_TESTHOOKS
endif
# -iquote: our "seccomp.h" must not hide libseccomp's <seccomp.h>.
ALL_CFLAGS	= -std=c11 -D_GNU_SOURCE $(WARN) $(HARDEN) $(SANFLAGS) \
		   -DLIBEXECDIR='"$(LIBEXECDIR)/msmilter"' \
		   -DMSM_SYSCONFDIR='"$(SYSCONFDIR)"' $(HOOKFLAGS) \
		   -iquote common $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS	:= -pie -Wl,-z,relro,-z,now $(SANFLAGS) $(LDFLAGS)
LIBS		= $(PKG_LIBS) -lpthread

COMMON_SRC	:= $(wildcard common/*.c)
# Readers of configuration and rules files: linked into the parent only,
# so that no sandboxed child carries code that opens them (issue 13;
# tests/check-child-symbols.sh checks the binaries).
READER_SRC	:= common/config_read.c common/ruleset_read.c
# The audit log's records, keys and Merkle tree: the parent and
# msmilter-audit only (a child reports events with common/audit_ipc.c).
AUDIT_SRC	:= common/audit_json.c common/audit_key.c common/audit_merkle.c
COMMON_OBJ	:= $(patsubst %.c,$(BUILD)/%.o,$(filter-out $(READER_SRC) \
		   $(AUDIT_SRC),$(COMMON_SRC)))
READER_OBJ	:= $(READER_SRC:%.c=$(BUILD)/%.o)
AUDIT_OBJ	:= $(AUDIT_SRC:%.c=$(BUILD)/%.o)
TOOL_OBJ	:= $(patsubst %.c,$(BUILD)/%.o,$(wildcard audit/*.c))
PARENT_OBJ	:= $(patsubst %.c,$(BUILD)/%.o,$(wildcard privsep/*.c))
CAPTURE_OBJ	:= $(patsubst %.c,$(BUILD)/%.o,$(wildcard capture/*.c))
SPOOLER_OBJ	:= $(patsubst %.c,$(BUILD)/%.o,$(wildcard spooler/*.c))
RELAY_OBJ	:= $(patsubst %.c,$(BUILD)/%.o,$(wildcard relay/*.c))

PROGS		:= $(BUILD)/msmilter $(BUILD)/msmilter-capture \
		   $(BUILD)/msmilter-spooler $(BUILD)/msmilter-relay \
		   $(BUILD)/msmilter-audit

UNIT_SRC	:= $(wildcard tests/unit/test_*.c)
UNIT_BINS	:= $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

PYTEST		?= pytest-3

.PHONY: all check unit integration milter demo bench clean install deps \
	deps-check san-check fuzz testhooks install-policy policy chaos FORCE

all: $(PROGS)

# Goals that install missing Debian packages first (`make deps`, apt-get
# as root).  Every other goal, `make` and `make install` included, only
# checks and names what is missing: installing software is never a side
# effect of building it.
DEPS_GOALS	:= deps check demo bench fuzz san-check integration chaos
DEPS_WANTED	:= $(filter $(DEPS_GOALS),$(MAKECMDGOALS))
DEPS_MODES	:= $(strip $(if $(filter fuzz,$(DEPS_WANTED)),fuzz) \
		   $(if $(filter-out deps fuzz,$(DEPS_WANTED)),all))

deps:
	@sh tests/deps.sh install $(or $(DEPS_MODES),all)

# Everything that compiles waits for this (order-only, so also under -j):
# after `make deps` when a goal above asked for it, alone otherwise.
deps-check: $(if $(DEPS_WANTED),deps)
	@sh tests/deps.sh check build $(filter fuzz,$(DEPS_MODES))

# The install paths compiled in: objects rebuild when they change, so
# `make` then `make PREFIX=/usr install` cannot install stale paths.
PATHS_STAMP	:= $(BUILD)/paths.stamp
PATHS_NOW	:= LIBEXECDIR=$(LIBEXECDIR) SYSCONFDIR=$(SYSCONFDIR)
$(PATHS_STAMP): FORCE
	@mkdir -p $(dir $@)
	@[ "$$(cat $@ 2>/dev/null)" = "$(PATHS_NOW)" ] || \
		echo "$(PATHS_NOW)" >$@

# Order-only: with -j the packages must be there before pkg-config runs.
$(BUILD)/%.o: %.c $(wildcard common/*.h) $(wildcard */*.h) $(PATHS_STAMP) \
    | deps-check
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libmsm.a: $(COMMON_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/libmsm-parent.a: $(READER_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/libmsm-audit.a: $(AUDIT_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/msmilter: $(PARENT_OBJ) $(BUILD)/libmsm-parent.a \
    $(BUILD)/libmsm-audit.a $(BUILD)/libmsm.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# The audit log's verifier and key maker (audit/); needs no privilege.
$(BUILD)/msmilter-audit: $(TOOL_OBJ) $(BUILD)/libmsm-audit.a $(BUILD)/libmsm.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/msmilter-capture: $(CAPTURE_OBJ) $(BUILD)/libmsm.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/msmilter-spooler: $(SPOOLER_OBJ) $(BUILD)/libmsm.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/msmilter-relay: $(RELAY_OBJ) $(BUILD)/libmsm.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# A kernel without Landlock, for tests/integration/test_landlock.py.
$(BUILD)/tests/no-landlock: tests/helpers/no-landlock.c | deps-check
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIBS)

$(BUILD)/nullmilter: tests/bench/nullmilter.c | deps-check
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIBS)

# The commit path's system calls alone (fsync, fdatasync, sync_file_range
# and thread counts), for whoever tunes the spooler; bench does not run it.
$(BUILD)/fsyncbench: tests/bench/fsyncbench.c | deps-check
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< -lpthread

# Unit tests also link the process files they test (no main() in them).
UNIT_EXTRA	:= $(BUILD)/capture/received.o $(BUILD)/spooler/spool.o \
		   $(BUILD)/spooler/audit.o \
		   $(BUILD)/spooler/stats.o

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmsm-parent.a \
    $(BUILD)/libmsm-audit.a $(BUILD)/libmsm.a $(UNIT_EXTRA)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Icapture -Ispooler $(ALL_LDFLAGS) -o $@ $< \
		$(UNIT_EXTRA) $(BUILD)/libmsm-parent.a $(BUILD)/libmsm-audit.a \
		$(BUILD)/libmsm.a $(LIBS) -lcmocka

unit: $(UNIT_BINS)
	@rc=0; for t in $(UNIT_BINS); do \
		(cd tests/unit && ../../$$t) || rc=1; done; exit $$rc

integration: all
	$(PYTEST) -ra tests/integration

# The same programs with test triggers, for tests/integration/
# test_confinement.py (a child told to make a forbidden call).
testhooks: deps-check
	@$(MAKE) --no-print-directory BUILD=$(BUILD)-testhooks TESTHOOKS=1 \
		SAN=$(SAN) all

check: all $(UNIT_BINS) $(BUILD)/tests/no-landlock testhooks
	@sh tests/run-checks.sh "$(BUILD)" "$(PYTEST)" $(UNIT_BINS)

# The SELinux module (selinux/msmilter.pp, Debian's selinux-policy-dev)
# and a parse of every AppArmor profile against the kernel features
# Debian 12 pins (nothing is loaded).  tests/integration/test_policy.py
# analyses both; see selinux/README.md and apparmor/README.md.
AA_PROFILES	:= apparmor/usr.sbin.msmilter \
		   apparmor/usr.libexec.msmilter.msmilter-capture \
		   apparmor/usr.libexec.msmilter.msmilter-spooler \
		   apparmor/usr.libexec.msmilter.msmilter-relay
AA_PARSE	:= apparmor_parser -Q -K --warn=all \
		   --kernel-features /usr/share/apparmor-features/features \
		   -I /etc/apparmor.d
# The one warning expected: Debian 12's pinned features have no unix
# socket mediation, so `network unix` rules fall back to the generic
# network rule (still enforced).  Any other warning fails.
AA_DOWNGRADED	:= downgrading extended network unix socket rule to generic network rule

policy:
	@sh tests/deps.sh policy
	$(MAKE) -C selinux
	@for p in $(AA_PROFILES); do \
		out=$$($(AA_PARSE) $$p 2>&1) || \
			{ echo "$$out"; echo "$$p: does not parse"; exit 1; }; \
		other=$$(printf '%s\n' "$$out" | grep -v '^$$' | \
			grep -v "$(AA_DOWNGRADED)"); \
		[ -z "$$other" ] || { echo "$$other"; exit 1; }; \
	done; echo "apparmor: $(words $(AA_PROFILES)) profiles parse"

# A small quarantine keeps the memory-per-session test meaningful.  The
# package and policy tests run none of the sanitized binaries (they build
# and install the Debian package, analyse the policies): make check has
# run them, CI's time is better spent elsewhere.
SAN_SKIP	:= --ignore=tests/integration/test_package.py \
		   --ignore=tests/integration/test_policy.py
san-check: deps
	ASAN_OPTIONS=quarantine_size_mb=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(MAKE) BUILD=build-san SAN=1 PYTEST="$(PYTEST) $(SAN_SKIP)" check

# libFuzzer harnesses, one per parser; FUZZ_SECONDS each (needs clang).
# Inputs are at most 4 KB unless FUZZ_MAXLEN_<harness> says otherwise.
FUZZ_SECONDS	?= 30
FUZZ_MAXLEN	:= 4096
# A whole record of IPC_MAX_PAYLOAD and then some, plus the fd prefix.
FUZZ_MAXLEN_fuzz_ipc := 70000
# Just past CLAMD_REPLY_MAX, so the too-long path is reached.
FUZZ_MAXLEN_fuzz_clamd := 4200
FUZZ_TARGETS	:= $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))

# Parsers that live with their process, fuzzed on their own.
FUZZ_EXTRA	:= relay/reply.c capture/received.c

$(BUILD)/fuzz/%: tests/fuzz/%.c $(COMMON_SRC) $(FUZZ_EXTRA) $(wildcard common/*.h) \
    | deps-check
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror -iquote common \
		-iquote relay $(PKG_CFLAGS) \
		-fsanitize=fuzzer,address,undefined -o $@ $< $(COMMON_SRC) \
		$(FUZZ_EXTRA) $(LIBS)

fuzz: $(FUZZ_TARGETS)
	@for tm in $(foreach t,$(FUZZ_TARGETS),$(t):$(or \
	    $(FUZZ_MAXLEN_$(notdir $(t))),$(FUZZ_MAXLEN))); do \
		t=$${tm%:*}; maxlen=$${tm##*:}; \
		name=$$(basename $$t); corpus=$(BUILD)/fuzz/corpus-$$name; \
		mkdir -p $$corpus; \
		cp tests/fuzz/corpus/$${name#fuzz_}/* $$corpus/ 2>/dev/null; \
		echo "== $$name for $(FUZZ_SECONDS) s"; \
		$$t -max_total_time=$(FUZZ_SECONDS) -max_len=$$maxlen \
			-print_final_stats=1 $$corpus >$(BUILD)/fuzz/$$name.log 2>&1; \
		rc=$$?; tail -n 6 $(BUILD)/fuzz/$$name.log; \
		[ $$rc -eq 0 ] || { echo "$$name: FAILED (see $(BUILD)/fuzz/$$name.log)"; exit 1; }; \
	done

demo: all
	@MSMILTER_BUILD=$(abspath $(BUILD)) /usr/bin/python3 contrib/demo.py

# Minutes long, not in check (a short run of the same script is):
# CHAOS_FAULTS faults under load, then every accepted message accounted.
CHAOS_FAULTS	?= 1000
CHAOS_ARGS	?=
chaos: all
	@MSMILTER_BUILD=$(abspath $(BUILD)) /usr/bin/python3 tests/chaos/chaos.py \
		--faults $(CHAOS_FAULTS) $(CHAOS_ARGS)

bench: all $(BUILD)/nullmilter
	@MSMILTER_BUILD=$(abspath $(BUILD)) /usr/bin/python3 tests/bench/bench.py

# contrib/ and man/ are written with the Debian package's paths; an
# install elsewhere gets its own in the unit, the init script, the man
# pages and the AppArmor profiles.
SUBST_PATHS	= sed -e 's|/usr/sbin/msmilter|$(SBINDIR)/msmilter|g' \
		      -e 's|/usr/libexec/msmilter|$(LIBEXECDIR)/msmilter|g' \
		      -e 's|/etc/MailScanner|$(SYSCONFDIR)/MailScanner|g' \
		      -e 's|/usr/share/doc/msmilter|$(DOCDIR)|g'
# What `make install` creates on the machine (never under DESTDIR): the
# account capture runs as (Milter User) and its chroot (Milter Chroot).
ACCOUNT_CMD	:= useradd --system --user-group --no-create-home \
		   --home-dir /nonexistent --shell /usr/sbin/nologin msmilter
CHROOT_CMD	:= install -d -o root -g root -m 0755 /var/lib/msmilter/empty

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBEXECDIR)/msmilter \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(INITDIR) \
		$(DESTDIR)$(DOCDIR)/examples \
		$(DESTDIR)$(SYSCONFDIR)/MailScanner/conf.d
	install -m 0755 $(BUILD)/msmilter $(DESTDIR)$(SBINDIR)/msmilter
	install -m 0755 $(BUILD)/msmilter-audit \
		$(DESTDIR)$(SBINDIR)/msmilter-audit
	install -d $(DESTDIR)$(MANDIR)/man8
	install -m 0644 audit/msmilter-audit.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0755 $(BUILD)/msmilter-capture $(BUILD)/msmilter-spooler \
		$(BUILD)/msmilter-relay \
		$(DESTDIR)$(LIBEXECDIR)/msmilter/
	$(SUBST_PATHS) contrib/msmilter.service >$(BUILD)/msmilter.service
	install -m 0644 $(BUILD)/msmilter.service $(DESTDIR)$(SYSTEMDUNITDIR)/
	$(SUBST_PATHS) contrib/msmilter.init >$(BUILD)/msmilter.init
	install -m 0755 $(BUILD)/msmilter.init $(DESTDIR)$(INITDIR)/msmilter
	$(SUBST_PATHS) man/msmilter.8 >$(BUILD)/msmilter.8
	$(SUBST_PATHS) man/msmilter.conf.5 >$(BUILD)/msmilter.conf.5
	install -m 0644 $(BUILD)/msmilter.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 $(BUILD)/msmilter.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 README.md SECURITY.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 contrib/MailScanner.conf.example contrib/postfix-main.cf \
		$(DESTDIR)$(DOCDIR)/examples/
	@# An administrator's edited snippet stays as it is.
	@f=$(DESTDIR)$(SYSCONFDIR)/MailScanner/conf.d/msmilter.conf; \
	if [ -e "$$f" ]; then echo "keeping $$f (new one: contrib/conf.d/msmilter.conf)"; \
	else echo "install -m 0644 contrib/conf.d/msmilter.conf $$f"; \
		install -m 0644 contrib/conf.d/msmilter.conf "$$f"; fi
	@$(MAKE) --no-print-directory install-policy
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" -eq 0 ]; then \
		if ! getent passwd msmilter >/dev/null; then \
			echo "$(ACCOUNT_CMD)"; $(ACCOUNT_CMD) || exit 1; fi; \
		if [ ! -d /var/lib/msmilter/empty ]; then \
			echo "$(CHROOT_CMD)"; $(CHROOT_CMD) || exit 1; fi; \
	else \
		echo "msmilter: DESTDIR is set or not root: create capture's" \
		    "account and chroot on the target machine:"; \
		echo "  getent passwd msmilter || $(ACCOUNT_CMD)"; \
		echo "  $(CHROOT_CMD)"; \
	fi

# The SELinux module and the AppArmor profiles, whichever are in the tree:
# selinux/msmilter.pp (built here with `make -C selinux` when its sources
# and Debian's selinux-policy-dev are there) and apparmor/usr.* (one
# profile per executable; apparmor/abstractions/ as it is).
install-policy:
	@mkdir -p $(BUILD)
	@if [ -f selinux/msmilter.te ] && [ -f selinux/Makefile ]; then \
		if [ -f /usr/share/selinux/devel/Makefile ]; then \
			$(MAKE) -C selinux || exit 1; \
		else echo "install-policy: selinux-policy-dev is not" \
		    "installed: SELinux module not built"; fi; \
	fi
	@if [ -f selinux/msmilter.pp ]; then \
		echo "install -m 0644 selinux/msmilter.pp $(DESTDIR)$(SELINUXDIR)/"; \
		install -d $(DESTDIR)$(SELINUXDIR) && \
		install -m 0644 selinux/msmilter.pp $(DESTDIR)$(SELINUXDIR)/ || \
		exit 1; \
	fi
	@for p in apparmor/usr.*; do \
		[ -f "$$p" ] || continue; \
		echo "install $$p $(DESTDIR)$(APPARMORDIR)/"; \
		install -d $(DESTDIR)$(APPARMORDIR) && \
		$(SUBST_PATHS) "$$p" >$(BUILD)/aa.tmp && \
		install -m 0644 $(BUILD)/aa.tmp \
		    "$(DESTDIR)$(APPARMORDIR)/$${p#apparmor/}" || exit 1; \
	done; rm -f $(BUILD)/aa.tmp
	@if [ -d apparmor/abstractions ]; then \
		echo "install apparmor/abstractions $(DESTDIR)$(APPARMORDIR)/"; \
		install -d $(DESTDIR)$(APPARMORDIR) && \
		cp -R apparmor/abstractions $(DESTDIR)$(APPARMORDIR)/ || exit 1; \
	fi

clean:
	rm -rf build build-san build-testhooks build-san-testhooks
	rm -rf selinux/msmilter.pp selinux/tmp

.DELETE_ON_ERROR:
