/*
 * When more pre-copy passes stop paying (throttle_watch_pass): only at the
 * deepest throttle step, only after THROTTLE_FUTILE_PASSES passes without
 * the rest shrinking by a tenth, and any real headway starts the count
 * again — so a guest the throttle does slow is never cut short.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "migration/throttle.h"

/* Passes at pct leaving dirty[i]: the index of the first that says
 * futile, or -1. */
static int first_futile(struct throttle_watch *w, int pct, const uint64_t *dirty, int n)
{
	for (int i = 0; i < n; i++)
		if (throttle_watch_pass(w, pct, dirty[i]))
			return i;
	return -1;
}

static void test_not_below_the_deepest_step(void **state)
{
	struct throttle_watch w;
	uint64_t flat[20];

	(void)state;
	for (int i = 0; i < 20; i++)
		flat[i] = 4000;
	throttle_watch_init(&w);
	assert_int_equal(first_futile(&w, 0, flat, 20), -1);
	assert_int_equal(first_futile(&w, 95, flat, 20), -1);
}

static void test_flat_at_the_deepest_step(void **state)
{
	struct throttle_watch w;
	/* what tests/e2e/move_commit.sh's paced guest did at 4 MiB/s */
	const uint64_t seen[] = { 3852, 4108, 4108, 3852, 3852, 3596, 4108, 4108 };

	(void)state;
	throttle_watch_init(&w);
	/* the first pass at 99% sets the mark; the next four make no headway */
	assert_int_equal(first_futile(&w, THROTTLE_MAX_PCT, seen, 8), THROTTLE_FUTILE_PASSES);
}

static void test_headway_restarts_the_count(void **state)
{
	struct throttle_watch w;
	/* 3 flat, then 20% less, then flat again: counted from the better pass */
	const uint64_t seen[] = { 1000, 1000, 990, 1000, 800, 800, 790, 800, 800 };

	(void)state;
	throttle_watch_init(&w);
	assert_int_equal(first_futile(&w, THROTTLE_MAX_PCT, seen, 9), 8);
}

static void test_shrinking_guest_never_cut(void **state)
{
	/* a guest the throttle slows: a fifth less each pass; or 5% less,
	 * no pass beating the one before by a tenth but every two or three
	 * together (after 30 passes a fifth is left, the downtime max_passes
	 * ends with) */
	static const uint64_t keep_pct[] = { 80, 95 };

	(void)state;
	for (size_t k = 0; k < sizeof(keep_pct) / sizeof(keep_pct[0]); k++) {
		struct throttle_watch w;
		uint64_t dirty = 100000;

		throttle_watch_init(&w);
		for (int i = 0; i < 30; i++, dirty = dirty * keep_pct[k] / 100)
			assert_false(throttle_watch_pass(&w, THROTTLE_MAX_PCT, dirty));
	}
}

static void test_climbing_resets(void **state)
{
	struct throttle_watch w;

	(void)state;
	throttle_watch_init(&w);
	for (int i = 0; i < THROTTLE_FUTILE_PASSES; i++)
		assert_false(throttle_watch_pass(&w, THROTTLE_MAX_PCT, 500));
	/* (the throttle never drops during a move; a watch reused for another
	 * starts from the first step) */
	assert_false(throttle_watch_pass(&w, 40, 500));
	for (int i = 0; i < THROTTLE_FUTILE_PASSES; i++)
		assert_false(throttle_watch_pass(&w, THROTTLE_MAX_PCT, 500));
	assert_true(throttle_watch_pass(&w, THROTTLE_MAX_PCT, 500));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_not_below_the_deepest_step),
		cmocka_unit_test(test_flat_at_the_deepest_step),
		cmocka_unit_test(test_headway_restarts_the_count),
		cmocka_unit_test(test_shrinking_guest_never_cut),
		cmocka_unit_test(test_climbing_resets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
