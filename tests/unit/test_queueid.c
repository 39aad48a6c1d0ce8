/* Queue ids: Postfix's short and long formats, and the file-name check. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "config.h"
#include "ipc.h"
#include "queueid.h"

static void
short_format(void **state)
{
	char buf[QUEUEID_MAX];

	(void)state;
	assert_int_equal(queueid_format(MSM_QUEUE_SHORT, 0, 123456, 0x7A720F2,
	    buf, sizeof(buf)), 0);
	assert_string_equal(buf, "1E2407A720F2");
	/* Microseconds are padded to five hex digits. */
	assert_int_equal(queueid_format(MSM_QUEUE_SHORT, 0, 1, 0xAB, buf,
	    sizeof(buf)), 0);
	assert_string_equal(buf, "00001AB");
}

static void
long_format(void **state)
{
	char buf[QUEUEID_MAX];

	(void)state;
	/* 52^6 > 2^32: six base-52 digits of seconds, four of usec, 'z'. */
	assert_int_equal(queueid_format(MSM_QUEUE_LONG, 0, 0, 1, buf,
	    sizeof(buf)), 0);
	assert_string_equal(buf, "0000000000z1");
	assert_int_equal(queueid_format(MSM_QUEUE_LONG, 1795000000ULL, 999999,
	    51, buf, sizeof(buf)), 0);
	assert_int_equal(strlen(buf), 13);
	assert_int_equal(buf[10], 'z');
	assert_string_equal(buf + 11, "10");	/* 51 in base 51 */
	/* 52 -> "10" in base 52 for the seconds field. */
	assert_int_equal(queueid_format(MSM_QUEUE_LONG, 52, 0, 1, buf,
	    sizeof(buf)), 0);
	assert_memory_equal(buf, "000010", 6);
	/* No 'z' and no vowels anywhere but the separator. */
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(queueid_new(MSM_QUEUE_LONG, buf, sizeof(buf)), 0);
		assert_null(strpbrk(buf, "AEIOUaeiou"));
		assert_int_equal(buf[10], 'z');
		assert_null(strchr(buf + 11, 'z'));
		assert_true(queueid_valid(buf));
	}
}

static void
too_small_buffer(void **state)
{
	char buf[8];

	(void)state;
	assert_int_equal(queueid_format(MSM_QUEUE_LONG, 5, 5, 5, buf,
	    sizeof(buf)), -1);
	assert_int_equal(queueid_format(MSM_QUEUE_SHORT, 5, 5, 0xFFFFFF, buf,
	    sizeof(buf)), -1);
}

static void
new_ids_differ(void **state)
{
	char a[QUEUEID_MAX], b[QUEUEID_MAX];

	(void)state;
	assert_int_equal(queueid_new(MSM_QUEUE_SHORT, a, sizeof(a)), 0);
	assert_int_equal(queueid_new(MSM_QUEUE_SHORT, b, sizeof(b)), 0);
	assert_string_not_equal(a, b);
	assert_true(queueid_valid(a));
}

static void
validity(void **state)
{
	char longest[QUEUEID_MAX + 1];

	(void)state;
	assert_true(queueid_valid("40269A720F2"));
	assert_true(queueid_valid("4Xk2Lm5pQzJ3F9"));
	assert_false(queueid_valid(""));
	assert_false(queueid_valid("../etc"));
	assert_false(queueid_valid("temp-1"));
	assert_false(queueid_valid("a.b"));
	assert_false(queueid_valid("a b"));
	assert_false(queueid_valid("\xc3\xa4"));
	memset(longest, 'A', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	assert_false(queueid_valid(longest));
	longest[sizeof(longest) - 2] = '\0';
	assert_true(queueid_valid(longest));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(short_format),
		cmocka_unit_test(long_format),
		cmocka_unit_test(too_small_buffer),
		cmocka_unit_test(new_ids_differ),
		cmocka_unit_test(validity),
	};

	if (sodium_init() == -1)
		return 1;
	return cmocka_run_group_tests_name("queueid", tests, NULL, NULL);
}
