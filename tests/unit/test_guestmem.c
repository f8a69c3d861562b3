/*
 * Unit tests for guest memory (src/vmm/guestmem.c), no KVM: faulting in
 * ahead of a move (--prealloc) must cover every page asked for, however
 * the pages divide among the threads — a page left out is a first touch
 * during the transfer, and a host that cannot back it fails late.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "vmm/guestmem.h"

static void populate(uint64_t first, uint64_t npages, int threads)
{
	const uint64_t ranges[1][2] = { { first, npages } };
	unsigned char vec[4096];
	struct guest_mem gm;
	struct err e;
	assert_true(npages <= sizeof(vec));
	assert_int_equal(gmem_init(&gm, 16ULL << 20, &e), 0);
	assert_int_equal(gmem_populate_ranges(&gm, ranges, 1, threads, &e), 0);
	assert_int_equal(mincore(gm.host + first * 4096, npages * 4096, vec), 0);
	for (uint64_t p = 0; p < npages; p++)
		if (!(vec[p] & 1))
			fail_msg("%d threads, %llu pages: page %llu not faulted in", threads,
				 (unsigned long long)npages, (unsigned long long)(first + p));
	gmem_destroy(&gm);
}

static void test_populate_covers_all(void **state)
{
	(void)state;
	populate(0, 1025, 2);  /* 512 pages each, and one more */
	populate(0, 1024, 2);
	populate(3, 1537, 3);
	populate(0, 7, 8);
	populate(0, 4096, 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_populate_covers_all),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
