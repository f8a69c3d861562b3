/*
 * Unit tests for guest memory (src/vmm/guestmem.c), no KVM: faulting in
 * ahead of a move (--prealloc) must cover every page asked for, however
 * the pages divide among the threads — a page left out is a first touch
 * during the transfer, and a host that cannot back it fails late. A VMM
 * write (a disk read, a virtio ring) marks every page it touches dirty,
 * and no other: a page it leaves out is never sent again by a move and
 * the destination runs with its old copy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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

static bool vmm_dirty(const struct guest_mem *gm, uint64_t page)
{
	return gm->vmm_dirty[page / 64] >> (page % 64) & 1;
}

static void test_write_marks_every_page(void **state)
{
	static uint8_t buf[3 * 4096];
	struct guest_mem gm;
	struct err e;
	uint64_t n;
	(void)state;
	assert_int_equal(gmem_init(&gm, 16ULL << 20, &e), 0);
	n = gmem_npages(&gm);
	/* 2 pages and a bit, from the middle of page 9: pages 9, 10 and 11 */
	assert_int_equal(gmem_write(&gm, 9 * 4096 + 100, buf, 2 * 4096 + 1), 0);
	/* ending on the last byte of page 20: 20 alone, not 21 */
	assert_int_equal(gmem_write(&gm, 20 * 4096 + 4000, buf, 96), 0);
	/* the last page of RAM, whole */
	assert_int_equal(gmem_write(&gm, (n - 1) * 4096, buf, 4096), 0);
	for (uint64_t p = 0; p < n; p++) {
		bool want = (p >= 9 && p <= 11) || p == 20 || p == n - 1;
		if (vmm_dirty(&gm, p) != want)
			fail_msg("page %llu: VMM-dirty %d, expected %d", (unsigned long long)p,
				 vmm_dirty(&gm, p), want);
	}
	/* beyond RAM: refused, nothing marked */
	assert_int_equal(gmem_write(&gm, (n - 1) * 4096 + 1, buf, 4096), -1);
	gmem_destroy(&gm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_populate_covers_all),
		cmocka_unit_test(test_write_marks_every_page),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
