/* clamd's answers (common/clamd_reply.c): strict, never CLEAN by doubt. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "clamd_reply.h"

/* Parse a C string, its terminating NUL included (clamd's z-form). */
static int
parse(const char *s, struct clamd_reply *r)
{
	return clamd_reply_parse(s, strlen(s) + 1, r);
}

static void
clean(void **state)
{
	struct clamd_reply r;

	(void)state;
	assert_int_equal(parse("stream: OK", &r), 0);
	assert_int_equal(r.result, SCAN_CLEAN);
	assert_int_equal(parse("fd[10]: OK", &r), 0);
	assert_int_equal(r.result, SCAN_CLEAN);
	/* newline-terminated (n-commands) is accepted too */
	assert_int_equal(clamd_reply_parse("stream: OK\n", 11, &r), 0);
	assert_int_equal(r.result, SCAN_CLEAN);
}

static void
virus(void **state)
{
	struct clamd_reply r;

	(void)state;
	assert_int_equal(parse("stream: Eicar-Signature FOUND", &r), 0);
	assert_int_equal(r.result, SCAN_VIRUS);
	assert_string_equal(r.detail, "Eicar-Signature");
	assert_int_equal(parse("fd[7]: Win.Test.EICAR_HDB-1 FOUND", &r), 0);
	assert_int_equal(r.result, SCAN_VIRUS);
	assert_string_equal(r.detail, "Win.Test.EICAR_HDB-1");
	/* AllMatchScanning: several records, the first names it */
#define RAW(lit)	lit, sizeof(lit)	/* its final NUL included */
	assert_int_equal(clamd_reply_parse(RAW("stream: A.B FOUND\0stream: C.D "
	    "FOUND"), &r), 0);
	assert_int_equal(r.result, SCAN_VIRUS);
	assert_string_equal(r.detail, "A.B");
	/* a limit alert beside a real find is still a virus */
	assert_int_equal(clamd_reply_parse(RAW("stream: Heuristics.Limits."
	    "Exceeded.MaxFileSize FOUND\0stream: X.Y FOUND"), &r), 0);
	assert_int_equal(r.result, SCAN_VIRUS);
	assert_string_equal(r.detail, "X.Y");
}

static void
oversize(void **state)
{
	struct clamd_reply r;

	(void)state;
	assert_int_equal(parse("INSTREAM size limit exceeded. ERROR", &r), 0);
	assert_int_equal(r.result, SCAN_OVERSIZE);
	assert_int_equal(parse("stream: Heuristics.Limits.Exceeded.MaxFileSize "
	    "FOUND", &r), 0);
	assert_int_equal(r.result, SCAN_OVERSIZE);
	assert_string_equal(r.detail, "Heuristics.Limits.Exceeded.MaxFileSize");
}

static void
errors(void **state)
{
	struct clamd_reply r;

	(void)state;
	assert_int_equal(parse("stream: Can't allocate memory ERROR", &r), 0);
	assert_int_equal(r.result, SCAN_TEMPFAIL);
	assert_string_equal(r.detail, "Can't allocate memory");
	assert_int_equal(parse("fd[3]: lstat() failed: No such file. ERROR",
	    &r), 0);
	assert_int_equal(r.result, SCAN_TEMPFAIL);
}

/* Anything short of a clear answer is TEMPFAIL, and -1. */
static void
unparseable(void **state)
{
	static const char *const bad[] = {
		"", "OK", "stream:OK", "stream: ok", "stream: OK trailing",
		"UNKNOWN COMMAND", "COMMAND READ TIMED OUT", "stream: FOUND",
		"stream:  FOUND", "fd[]: OK", "fd[12345678901]: OK",
		"stream: Bad\tName FOUND", "PONG",
	};
	struct clamd_reply r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i], &r), -1);
		assert_int_equal(r.result, SCAN_TEMPFAIL);
	}
	/* records split by NUL inside one string */
	assert_int_equal(clamd_reply_parse(RAW("stream: OK\0stream: OK"), &r),
	    -1);
	assert_int_equal(clamd_reply_parse(RAW("stream: A FOUND\0stream: OK"),
	    &r), -1);
	assert_int_equal(clamd_reply_parse(RAW("stream: x ERROR\0stream: OK"),
	    &r), -1);
	assert_int_equal(r.result, SCAN_TEMPFAIL);
	/* not terminated: cut off mid-answer */
	assert_int_equal(clamd_reply_parse("stream: OK", 10, &r), -1);
	assert_int_equal(r.result, SCAN_TEMPFAIL);
	/* nothing at all: clamd hung up */
	assert_int_equal(clamd_reply_parse("", 0, &r), -1);
	assert_int_equal(r.result, SCAN_TEMPFAIL);
}

static void
bounds(void **state)
{
	char		 big[CLAMD_REPLY_MAX + 2];
	char		 name[IPC_SIGNATURE_MAX + 32];
	struct clamd_reply r;

	(void)state;
	memset(big, 'A', sizeof(big));
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(clamd_reply_parse(big, sizeof(big), &r), -1);
	assert_int_equal(r.result, SCAN_TEMPFAIL);
	/* a signature longer than we carry is refused, not cut */
	memset(name, 'B', sizeof(name));
	memcpy(name, "stream: ", 8);
	memcpy(name + sizeof(name) - 7, " FOUND", 7);
	assert_int_equal(parse(name, &r), -1);
	assert_int_equal(r.result, SCAN_TEMPFAIL);
	/* too many records */
	{
		char many[40 * (CLAMD_REPLY_RECORDS + 1)];
		size_t n = 0;

		for (int i = 0; i <= CLAMD_REPLY_RECORDS; i++) {
			memcpy(many + n, "stream: V.X FOUND", 18);
			n += 18;
		}
		assert_int_equal(clamd_reply_parse(many, n, &r), -1);
	}
}

static void
pong(void **state)
{
	(void)state;
	assert_true(clamd_reply_pong("PONG", 5));
	assert_true(clamd_reply_pong("PONG\n", 5));
	assert_false(clamd_reply_pong("PONG", 4));
	assert_false(clamd_reply_pong("PING", 5));
	assert_false(clamd_reply_pong("", 0));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(clean),
		cmocka_unit_test(virus),
		cmocka_unit_test(oversize),
		cmocka_unit_test(errors),
		cmocka_unit_test(unparseable),
		cmocka_unit_test(bounds),
		cmocka_unit_test(pong),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
