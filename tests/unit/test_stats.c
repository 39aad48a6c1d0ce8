/* The spooler's commit histograms (spooler/stats.c): bucket bounds. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "stats.h"

static void
empty_and_small(void **state)
{
	struct hist h;

	(void)state;
	memset(&h, 0, sizeof(h));
	assert_int_equal(hist_pct(&h, 50), 0);
	/* Below 16 every value has its own bucket: exact. */
	for (uint64_t v = 1; v <= 10; v++)
		hist_add(&h, v);
	assert_int_equal(hist_pct(&h, 50), 5);
	assert_int_equal(hist_pct(&h, 99), 10);
	assert_int_equal(hist_pct(&h, 100), 10);
	assert_int_equal(h.n, 10);
	assert_int_equal(h.sum, 55);
}

static void
within_an_eighth(void **state)
{
	(void)state;
	/* A percentile is the top of its bucket: >= the value, < 1/8 over. */
	for (uint64_t v = 16; v < (1ull << 27); v += v / 7 + 1) {
		struct hist h;
		uint64_t top;

		memset(&h, 0, sizeof(h));
		hist_add(&h, v);
		hist_add(&h, 1ull << 40);	/* so max does not clip */
		top = hist_pct(&h, 50);
		assert_true(top >= v);
		assert_true(top - v < v / 8 + 1);
	}
}

static void
percentiles_of_a_spread(void **state)
{
	struct hist h;

	(void)state;
	memset(&h, 0, sizeof(h));
	/* 98 fast commits, 2 slow ones: p50 fast, p99 slow. */
	for (int i = 0; i < 98; i++)
		hist_add(&h, 1000);
	hist_add(&h, 50000);
	hist_add(&h, 60000);
	assert_true(hist_pct(&h, 50) >= 1000 && hist_pct(&h, 50) < 1125);
	assert_true(hist_pct(&h, 99) >= 50000 && hist_pct(&h, 99) < 57344);
	assert_int_equal(hist_pct(&h, 100), 60000);
	/* Beyond the last bucket: the maximum seen. */
	hist_add(&h, 1ull << 33);
	assert_int_equal(hist_pct(&h, 100), 1ull << 33);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(empty_and_small),
		cmocka_unit_test(within_an_eighth),
		cmocka_unit_test(percentiles_of_a_spread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
