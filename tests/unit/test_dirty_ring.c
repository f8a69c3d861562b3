/*
 * Unit tests for the dirty-ring harvest (src/migration/dirty_ring.c) on fake
 * rings, no KVM: a fake "KVM" pushes entries the way kvm_dirty_ring_push
 * does and resets them the way KVM_RESET_DIRTY_RINGS does (in order, from
 * its own reset index, only entries marked harvested). Checks: entries land
 * in the RAM-wide bitmap at the right page across two slots; collection
 * stops at the first entry not yet published and picks up there later;
 * the fetch index wraps with the ring; every harvested entry is reset
 * before take() returns, also when KVM resets them in several calls; take()
 * empties the pending set; stray entries are counted, never written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "migration/dirty_ring.h"

#define ENTRIES 8u
#define NPAGES 256u

struct fake_kvm {
	struct kvm_dirty_gfn gfns[2][ENTRIES];
	uint32_t dirty_index[2];
	uint32_t reset_index[2];
	int max_per_call;         /* >0: reset at most this many per call (a signal came) */
	uint64_t reset_calls;
};

static struct fake_kvm fk;

/* Two slots: slot 0 holds RAM pages 0..127, slot 1 (as_id 0) pages 128..255. */
static const struct dirty_ring_slot slots[2] = {
	{ .slot = 0, .first_page = 0, .npages = 128 },
	{ .slot = 1, .first_page = 128, .npages = 128 },
};

static void push(int cpu, uint32_t slot, uint64_t offset)
{
	struct kvm_dirty_gfn *g = &fk.gfns[cpu][fk.dirty_index[cpu] % ENTRIES];
	assert_true(fk.dirty_index[cpu] - fk.reset_index[cpu] < ENTRIES); /* KVM never overfills */
	assert_int_equal(g->flags, 0);
	g->slot = slot;
	g->offset = offset;
	__atomic_store_n(&g->flags, KVM_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
	fk.dirty_index[cpu]++;
}

static int fake_reset(struct dirty_ring *dr)
{
	int n = 0;
	(void)dr;
	fk.reset_calls++;
	for (int c = 0; c < 2; c++) {
		while (fk.reset_index[c] != fk.dirty_index[c]) {
			struct kvm_dirty_gfn *g = &fk.gfns[c][fk.reset_index[c] % ENTRIES];
			if (!(g->flags & KVM_DIRTY_GFN_F_RESET))
				break;
			if (fk.max_per_call && n >= fk.max_per_call)
				return n;
			g->flags = 0;
			fk.reset_index[c]++;
			n++;
		}
	}
	return n;
}

static void setup_ring(struct dirty_ring *dr)
{
	struct err e = { .code = 0 };
	memset(&fk, 0, sizeof(fk));
	assert_int_equal(dirty_ring_init(dr, -1, ENTRIES, NPAGES, slots, 2, &e), 0);
	dr->reset = fake_reset;
	dr->cpu[0].gfns = fk.gfns[0];
	dr->cpu[1].gfns = fk.gfns[1];
}

static void teardown_ring(struct dirty_ring *dr)
{
	free(dr->pending);
	pthread_mutex_destroy(&dr->lock);
}

static bool bit(const uint64_t *bm, uint64_t p)
{
	return (bm[p / 64] >> (p % 64)) & 1;
}

static uint64_t popcount(const uint64_t *bm)
{
	uint64_t n = 0;
	for (unsigned w = 0; w < NPAGES / 64; w++)
		n += (uint64_t)__builtin_popcountll(bm[w]);
	return n;
}

static void test_pages_across_slots(void **state)
{
	struct dirty_ring dr;
	struct err e = { .code = 0 };
	uint64_t out[NPAGES / 64];
	(void)state;
	setup_ring(&dr);
	push(0, 0, 5);
	push(0, 1, 0);     /* slot 1 page 0 = RAM page 128 */
	push(1, 1, 127);   /* last page of RAM */
	push(1, 0, 5);     /* the same page from another vCPU: one bit */
	assert_int_equal(dirty_ring_take(&dr, out, &e), 0);
	assert_int_equal(popcount(out), 3);
	assert_true(bit(out, 5) && bit(out, 128) && bit(out, 255));
	/* Every entry went back to KVM, in one reset. */
	assert_int_equal(fk.reset_index[0], 2);
	assert_int_equal(fk.reset_index[1], 2);
	assert_int_equal(dr.unreset, 0);
	assert_int_equal(dr.collected, 4);
	/* take() emptied the pending set. */
	assert_int_equal(dirty_ring_take(&dr, out, &e), 0);
	assert_int_equal(popcount(out), 0);
	teardown_ring(&dr);
}

static void test_stops_at_unpublished_entry(void **state)
{
	struct dirty_ring dr;
	struct err e = { .code = 0 };
	uint64_t out[NPAGES / 64];
	(void)state;
	setup_ring(&dr);
	push(0, 0, 1);
	/* KVM wrote slot/offset of the next entry but has not set DIRTY yet. */
	fk.gfns[0][1].slot = 0;
	fk.gfns[0][1].offset = 2;
	assert_int_equal(dirty_ring_take(&dr, out, &e), 0);
	assert_true(bit(out, 1));
	assert_false(bit(out, 2));
	assert_int_equal(dr.cpu[0].fetch, 1);
	/* Now it is published, along with one more. */
	__atomic_store_n(&fk.gfns[0][1].flags, KVM_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
	fk.dirty_index[0]++;
	push(0, 0, 3);
	assert_int_equal(dirty_ring_take(&dr, out, &e), 0);
	assert_int_equal(popcount(out), 2);
	assert_true(bit(out, 2) && bit(out, 3));
	assert_int_equal(fk.reset_index[0], 3);
	teardown_ring(&dr);
}

static void test_wraps_around(void **state)
{
	struct dirty_ring dr;
	struct err e = { .code = 0 };
	uint64_t out[NPAGES / 64];
	(void)state;
	setup_ring(&dr);
	/* Five rounds of a full ring: the indexes run far past the size. */
	for (int round = 0; round < 5; round++) {
		for (uint32_t i = 0; i < ENTRIES; i++)
			push(1, 0, (uint64_t)(round * ENTRIES + i) % 128);
		assert_int_equal(dirty_ring_take(&dr, out, &e), 0);
		assert_int_equal(popcount(out), ENTRIES);
		for (uint32_t i = 0; i < ENTRIES; i++)
			assert_true(bit(out, (round * ENTRIES + i) % 128));
	}
	assert_int_equal(dr.cpu[1].fetch, 5 * ENTRIES);
	assert_int_equal(fk.reset_index[1], 5 * ENTRIES);
	teardown_ring(&dr);
}

static void test_partial_resets_are_finished(void **state)
{
	struct dirty_ring dr;
	struct err e = { .code = 0 };
	uint64_t out[NPAGES / 64];
	(void)state;
	setup_ring(&dr);
	fk.max_per_call = 2;   /* KVM stops early, as with a signal pending */
	for (uint32_t i = 0; i < 7; i++)
		push(0, 1, i);
	assert_int_equal(dirty_ring_take(&dr, out, &e), 0);
	/* take() may return only once KVM re-protected every page it hands out. */
	assert_int_equal(fk.reset_index[0], 7);
	assert_true(fk.reset_calls >= 4);
	assert_int_equal(popcount(out), 7);
	teardown_ring(&dr);
}

static void test_stray_entries_ignored(void **state)
{
	struct dirty_ring dr;
	struct err e = { .code = 0 };
	uint64_t out[NPAGES / 64];
	(void)state;
	setup_ring(&dr);
	push(0, 7, 0);                 /* no such slot */
	push(0, 1, 128);               /* past the end of slot 1 */
	push(0, (1u << 16) | 0, 4);    /* another address space */
	push(0, 0, 9);
	assert_int_equal(dirty_ring_take(&dr, out, &e), 0);
	assert_int_equal(popcount(out), 1);
	assert_true(bit(out, 9));
	assert_int_equal(dr.stray, 3);
	/* Stray entries are still handed back, or the ring would fill up. */
	assert_int_equal(fk.reset_index[0], 4);
	teardown_ring(&dr);
}

static void test_harvest_keeps_pending_for_take(void **state)
{
	struct dirty_ring dr;
	struct err e = { .code = 0 };
	uint64_t out[NPAGES / 64];
	(void)state;
	setup_ring(&dr);
	/* A vCPU whose ring is full harvests; the pages wait for the next sync. */
	push(1, 0, 42);
	assert_int_equal(dirty_ring_harvest(&dr, true, &e), 0);
	assert_int_equal(dr.full_exits, 1);
	assert_int_equal(fk.reset_index[1], 1);
	push(1, 0, 43);
	assert_int_equal(dirty_ring_take(&dr, out, &e), 0);
	assert_int_equal(popcount(out), 2);
	assert_true(bit(out, 42) && bit(out, 43));
	/* Discard forgets without handing out. */
	push(0, 0, 44);
	assert_int_equal(dirty_ring_discard(&dr, &e), 0);
	assert_int_equal(dirty_ring_take(&dr, out, &e), 0);
	assert_int_equal(popcount(out), 0);
	teardown_ring(&dr);
}

static void test_init_refuses_bad_sizes(void **state)
{
	struct dirty_ring dr;
	struct err e = { .code = 0 };
	(void)state;
	assert_int_equal(dirty_ring_init(&dr, -1, 0, NPAGES, slots, 2, &e), -1);
	assert_int_equal(dirty_ring_init(&dr, -1, 12, NPAGES, slots, 2, &e), -1);
	assert_non_null(strstr(e.msg, "power of two"));
	assert_int_equal(dirty_ring_init(&dr, -1, 8, NPAGES, slots, GMEM_MAX_REGIONS + 1, &e), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pages_across_slots),
		cmocka_unit_test(test_stops_at_unpublished_entry),
		cmocka_unit_test(test_wraps_around),
		cmocka_unit_test(test_partial_resets_are_finished),
		cmocka_unit_test(test_stray_entries_ignored),
		cmocka_unit_test(test_harvest_keeps_pending_for_take),
		cmocka_unit_test(test_init_refuses_bad_sizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
