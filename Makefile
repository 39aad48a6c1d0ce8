# msmilter: plain GNU make.  Outputs under build/.
# `make` builds; `make check` runs every test; `make demo` shows it working;
# `make chaos` injects a thousand faults under load (minutes).

PREFIX		?= /usr/local
SBINDIR		?= $(PREFIX)/sbin
LIBEXECDIR	?= $(PREFIX)/libexec
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
		   -DLIBEXECDIR='"$(LIBEXECDIR)/msmilter"' $(HOOKFLAGS) \
		   -iquote common $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS	:= -pie -Wl,-z,relro,-z,now $(SANFLAGS) $(LDFLAGS)
LIBS		= $(PKG_LIBS) -lpthread

COMMON_SRC	:= $(wildcard common/*.c)
# Readers of configuration and rules files: linked into the parent only,
# so that no sandboxed child carries code that opens them (issue 13;
# tests/check-child-symbols.sh checks the binaries).
READER_SRC	:= common/config_read.c common/ruleset_read.c
COMMON_OBJ	:= $(patsubst %.c,$(BUILD)/%.o,$(filter-out $(READER_SRC),$(COMMON_SRC)))
READER_OBJ	:= $(READER_SRC:%.c=$(BUILD)/%.o)
PARENT_OBJ	:= $(patsubst %.c,$(BUILD)/%.o,$(wildcard privsep/*.c))
CAPTURE_OBJ	:= $(patsubst %.c,$(BUILD)/%.o,$(wildcard capture/*.c))
SPOOLER_OBJ	:= $(patsubst %.c,$(BUILD)/%.o,$(wildcard spooler/*.c))
RELAY_OBJ	:= $(patsubst %.c,$(BUILD)/%.o,$(wildcard relay/*.c))

PROGS		:= $(BUILD)/msmilter $(BUILD)/msmilter-capture \
		   $(BUILD)/msmilter-spooler $(BUILD)/msmilter-relay

UNIT_SRC	:= $(wildcard tests/unit/test_*.c)
UNIT_BINS	:= $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

PYTEST		?= pytest-3

.PHONY: all check unit integration milter demo bench clean install deps \
	san-check fuzz testhooks chaos

all: deps-check $(PROGS)

# Order-only: with -j the packages must be there before pkg-config runs.
$(BUILD)/%.o: %.c $(wildcard common/*.h) $(wildcard */*.h) | deps-check
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libmsm.a: $(COMMON_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/libmsm-parent.a: $(READER_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/msmilter: $(PARENT_OBJ) $(BUILD)/libmsm-parent.a $(BUILD)/libmsm.a
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

# Unit tests also link the process files they test (no main() in them).
UNIT_EXTRA	:= $(BUILD)/capture/received.o $(BUILD)/spooler/spool.o

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmsm-parent.a $(BUILD)/libmsm.a \
    $(UNIT_EXTRA)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Icapture -Ispooler $(ALL_LDFLAGS) -o $@ $< \
		$(UNIT_EXTRA) $(BUILD)/libmsm-parent.a $(BUILD)/libmsm.a \
		$(LIBS) -lcmocka

# Missing Debian packages: installed when root, named otherwise.
deps-check:
	@sh tests/deps.sh build

deps:
	@sh tests/deps.sh all

unit: $(UNIT_BINS)
	@rc=0; for t in $(UNIT_BINS); do \
		(cd tests/unit && ../../$$t) || rc=1; done; exit $$rc

integration: all
	@sh tests/deps.sh all
	$(PYTEST) -ra tests/integration

# The same programs with test triggers, for tests/integration/
# test_confinement.py (a child told to make a forbidden call).
testhooks:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)-testhooks TESTHOOKS=1 \
		SAN=$(SAN) all

check: all $(UNIT_BINS) $(BUILD)/tests/no-landlock testhooks
	@sh tests/deps.sh all
	@sh tests/run-checks.sh "$(BUILD)" "$(PYTEST)" $(UNIT_BINS)

# A small quarantine keeps the memory-per-session test meaningful.
san-check:
	ASAN_OPTIONS=quarantine_size_mb=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(MAKE) BUILD=build-san SAN=1 check

# libFuzzer harnesses, one per parser; FUZZ_SECONDS each (needs clang).
# Inputs are at most 4 KB unless FUZZ_MAXLEN_<harness> says otherwise.
FUZZ_SECONDS	?= 30
FUZZ_MAXLEN	:= 4096
# A whole record of IPC_MAX_PAYLOAD and then some, plus the fd prefix.
FUZZ_MAXLEN_fuzz_ipc := 70000
FUZZ_TARGETS	:= $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))

# Parsers that live with their process, fuzzed on their own.
FUZZ_EXTRA	:= relay/reply.c capture/received.c

$(BUILD)/fuzz/%: tests/fuzz/%.c $(COMMON_SRC) $(FUZZ_EXTRA) $(wildcard common/*.h)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror -iquote common \
		-iquote relay $(PKG_CFLAGS) \
		-fsanitize=fuzzer,address,undefined -o $@ $< $(COMMON_SRC) \
		$(FUZZ_EXTRA) $(LIBS)

fuzz: $(FUZZ_TARGETS)
	@sh tests/deps.sh fuzz
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
	@sh tests/deps.sh all
	@MSMILTER_BUILD=$(abspath $(BUILD)) /usr/bin/python3 contrib/demo.py

# Minutes long, not in check (a short run of the same script is):
# CHAOS_FAULTS faults under load, then every accepted message accounted.
CHAOS_FAULTS	?= 1000
CHAOS_ARGS	?=
chaos: all
	@sh tests/deps.sh all
	@MSMILTER_BUILD=$(abspath $(BUILD)) /usr/bin/python3 tests/chaos/chaos.py \
		--faults $(CHAOS_FAULTS) $(CHAOS_ARGS)

bench: all $(BUILD)/nullmilter
	@sh tests/deps.sh all
	@MSMILTER_BUILD=$(abspath $(BUILD)) /usr/bin/python3 tests/bench/bench.py

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBEXECDIR)/msmilter
	install -m 0755 $(BUILD)/msmilter $(DESTDIR)$(SBINDIR)/msmilter
	install -m 0755 $(BUILD)/msmilter-capture $(BUILD)/msmilter-spooler \
		$(BUILD)/msmilter-relay \
		$(DESTDIR)$(LIBEXECDIR)/msmilter/

clean:
	rm -rf build build-san build-testhooks build-san-testhooks

.DELETE_ON_ERROR:
