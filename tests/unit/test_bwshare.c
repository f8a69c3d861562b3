/*
 * The host's bandwidth limit divided among its outgoing moves
 * (bwshare_compute): equal shares, lower own limits kept with their
 * leftover shared by the others, no host limit, and the edges (no moves,
 * a limit smaller than the number of moves, remainders).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "daemon/bwshare.h"

#define MAXN 8

/* shares for (host, caps...) compared with the expected ones. */
static void check(int host, int n, const int *caps, const int *want)
{
	int got[MAXN];
	for (int i = 0; i < n; i++)
		got[i] = -7; /* every share must be written */
	bwshare_compute(host, caps, n, got);
	for (int i = 0; i < n; i++) {
		if (got[i] != want[i])
			print_error("host %d, move %d of %d: share %d, expected %d\n", host, i, n,
				    got[i], want[i]);
		assert_int_equal(got[i], want[i]);
	}
}

static int sum(const int *v, int n)
{
	int s = 0;
	for (int i = 0; i < n; i++)
		s += v[i];
	return s;
}

static void test_no_host_limit(void **state)
{
	(void)state;
	/* Each move at its own limit; 0 stays "unlimited". */
	check(0, 3, (int[]){ 0, 5, 300 }, (int[]){ 0, 5, 300 });
	check(0, 1, (int[]){ 0 }, (int[]){ 0 });
}

static void test_equal_shares(void **state)
{
	(void)state;
	check(16, 1, (int[]){ 0 }, (int[]){ 16 });
	check(16, 2, (int[]){ 0, 0 }, (int[]){ 8, 8 });
	check(16, 4, (int[]){ 0, 0, 0, 0 }, (int[]){ 4, 4, 4, 4 });
	/* Own limits above the share do not matter. */
	check(16, 2, (int[]){ 20, 0 }, (int[]){ 8, 8 });
	check(16, 2, (int[]){ 8, 9 }, (int[]){ 8, 8 });
	/* An own limit above the host's whole limit: the host's wins. */
	check(16, 1, (int[]){ 100 }, (int[]){ 16 });
}

static void test_lower_caps_redistributed(void **state)
{
	(void)state;
	/* The capped move keeps 2; the other takes the rest. */
	check(16, 2, (int[]){ 2, 0 }, (int[]){ 2, 14 });
	check(16, 3, (int[]){ 0, 2, 0 }, (int[]){ 7, 2, 7 });
	/* Fixing one raises the fair share enough to fix the next:
	 * 100/4 = 25 fixes 10; 90/3 = 30 fixes 30; 60/2 = 30 each. */
	check(100, 4, (int[]){ 10, 30, 0, 0 }, (int[]){ 10, 30, 30, 30 });
	/* Everyone capped below the share: the rest stays unused. */
	check(100, 2, (int[]){ 3, 4 }, (int[]){ 3, 4 });
	/* Caps just above the share are not binding. */
	check(12, 3, (int[]){ 5, 5, 0 }, (int[]){ 4, 4, 4 });
}

static void test_remainders_add_up(void **state)
{
	int caps[3] = { 0, 0, 0 }, got[3];
	(void)state;
	check(10, 3, caps, (int[]){ 4, 3, 3 });
	bwshare_compute(1000, caps, 3, got);
	assert_int_equal(sum(got, 3), 1000);
	/* 9 left after the capped 1, over two: 5 and 4, never above a cap. */
	check(10, 3, (int[]){ 1, 5, 0 }, (int[]){ 1, 5, 4 });
}

static void test_edges(void **state)
{
	int none = 0;
	(void)state;
	/* No moves: nothing written, nothing read. */
	bwshare_compute(16, &none, 0, &none);
	assert_int_equal(none, 0);
	/* A limit below one MiB/s per move: at least 1 each, never 0 (which
	 * would mean unlimited). */
	check(1, 3, (int[]){ 0, 0, 0 }, (int[]){ 1, 1, 1 });
	check(2, 3, (int[]){ 0, 0, 0 }, (int[]){ 1, 1, 1 });
	check(1, 2, (int[]){ 1, 0 }, (int[]){ 1, 1 });
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_host_limit),
		cmocka_unit_test(test_equal_shares),
		cmocka_unit_test(test_lower_caps_redistributed),
		cmocka_unit_test(test_remainders_add_up),
		cmocka_unit_test(test_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
