/*
 * Virtqueue walking against a malloc'd fake guest RAM: good chains, and each
 * way a guest can lie (indices, loops, addresses, counts) must come back as
 * an error rather than a crash; every device write must mark pages dirty.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/stream.h"
#include "devices/virtqueue.h"
#include "vmm/guestmem.h"

#define RAM_SIZE (1u << 20)
#define RING_PFN 0x10          /* rings at 0x10000 */
#define BUF_BASE 0x40000ULL
#define QSIZE    256

struct fixture {
	struct guest_mem gm;
	struct virtq vq;
	struct virtq_chain chain;
	uint16_t avail_idx;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct err e;

	assert_non_null(f);
	f->gm.memfd = -1;
	f->gm.host = calloc(1, RAM_SIZE);
	f->gm.ram_size = RAM_SIZE;
	f->gm.nregions = 1;
	f->gm.regions[0] = (struct gmem_region){ .gpa = 0, .size = RAM_SIZE };
	f->gm.vmm_dirty = calloc(RAM_SIZE / GMEM_PAGE_SIZE / 64 + 1, 8);
	assert_non_null(f->gm.host);
	assert_non_null(f->gm.vmm_dirty);
	f->vq.size = QSIZE;
	assert_int_equal(virtq_set_pfn(&f->vq, &f->gm, RING_PFN, &e), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	free(f->gm.host);
	free(f->gm.vmm_dirty);
	free(f);
	return 0;
}

static void set_desc(struct fixture *f, uint16_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint8_t *d = f->gm.host + f->vq.desc_gpa + 16ULL * i;
	le_put_u64(d, addr);
	le_put_u32(d + 8, len);
	le_put_u16(d + 12, flags);
	le_put_u16(d + 14, next);
}

static void make_avail(struct fixture *f, uint16_t head)
{
	uint8_t *a = f->gm.host + f->vq.avail_gpa;
	le_put_u16(a + 4 + 2 * (f->avail_idx % QSIZE), head);
	f->avail_idx++;
	le_put_u16(a + 2, f->avail_idx);
}

static bool page_dirty(struct fixture *f, uint64_t gpa)
{
	uint64_t p = gpa >> GMEM_PAGE_SHIFT;
	return f->gm.vmm_dirty[p / 64] & (1ULL << (p % 64));
}

static void test_layout(void **state)
{
	struct fixture *f = *state;
	/* Legacy layout: used ring at the first 4 KiB boundary after avail. */
	assert_int_equal(f->vq.desc_gpa, 0x10000);
	assert_int_equal(f->vq.avail_gpa, 0x10000 + 16 * QSIZE);
	assert_int_equal(f->vq.used_gpa, 0x10000 + 0x2000);
}

static void test_good_chain(void **state)
{
	struct fixture *f = *state;
	struct err e;
	uint8_t out[16], in[600];

	memcpy(f->gm.host + BUF_BASE, "0123456789abcdef", 16);
	set_desc(f, 5, BUF_BASE, 16, VIRTQ_DESC_F_NEXT, 9);
	set_desc(f, 9, BUF_BASE + 0x1000, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(f, 2, BUF_BASE + 0x2000, 1, VIRTQ_DESC_F_WRITE, 0);
	assert_false(virtq_has_avail(&f->vq, &f->gm));
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), 0);
	make_avail(f, 5);
	assert_true(virtq_has_avail(&f->vq, &f->gm));
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), 1);
	assert_int_equal(f->chain.head, 5);
	assert_int_equal(f->chain.nbufs, 3);
	assert_int_equal(f->chain.out_len, 16);
	assert_int_equal(f->chain.in_len, 513);
	assert_int_equal(virtq_chain_read(&f->chain, 0, out, sizeof(out)), 16);
	assert_memory_equal(out, "0123456789abcdef", 16);

	/* A write spanning both in-buffers lands in both, marked dirty. */
	memset(in, 0xab, sizeof(in));
	assert_int_equal(virtq_chain_write(&f->chain, &f->gm, 0, in, sizeof(in)), 513);
	assert_int_equal(f->gm.host[BUF_BASE + 0x1000 + 511], 0xab);
	assert_int_equal(f->gm.host[BUF_BASE + 0x2000], 0xab);
	assert_true(page_dirty(f, BUF_BASE + 0x1000));
	assert_true(page_dirty(f, BUF_BASE + 0x2000));
	assert_false(page_dirty(f, BUF_BASE)); /* out-buffer untouched */

	assert_int_equal(virtq_push(&f->vq, &f->gm, f->chain.head, 513, &e), 0);
	{
		const uint8_t *u = f->gm.host + f->vq.used_gpa;
		assert_int_equal(le_get_u16(u + 2), 1);
		assert_int_equal(le_get_u32(u + 4), 5);
		assert_int_equal(le_get_u32(u + 8), 513);
	}
	assert_false(virtq_has_avail(&f->vq, &f->gm));
}

static void test_used_ring_marks_dirty(void **state)
{
	struct fixture *f = *state;
	struct err e;

	memset(f->gm.vmm_dirty, 0, (RAM_SIZE / GMEM_PAGE_SIZE / 64 + 1) * 8);
	set_desc(f, 0, BUF_BASE, 64, 0, 0);
	make_avail(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), 1);
	assert_false(page_dirty(f, f->vq.used_gpa));
	assert_int_equal(virtq_push(&f->vq, &f->gm, 0, 0, &e), 0);
	assert_true(page_dirty(f, f->vq.used_gpa));
	/* Reading a descriptor must not count as a write. */
	assert_false(page_dirty(f, f->vq.desc_gpa));
	assert_false(page_dirty(f, BUF_BASE));
}

static void test_head_out_of_range(void **state)
{
	struct fixture *f = *state;
	struct err e;

	make_avail(f, QSIZE);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), -1);
	assert_non_null(strstr(e.msg, "out of range"));
}

static void test_next_out_of_range(void **state)
{
	struct fixture *f = *state;
	struct err e;

	set_desc(f, 1, BUF_BASE, 16, VIRTQ_DESC_F_NEXT, 0xffff);
	make_avail(f, 1);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), -1);
	assert_non_null(strstr(e.msg, "next 65535 out of range"));
	/* The first index past the table, not only a wild one. */
	set_desc(f, 1, BUF_BASE, 16, VIRTQ_DESC_F_NEXT, QSIZE);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), -1);
	assert_non_null(strstr(e.msg, "out of range"));
}

static void test_loop(void **state)
{
	struct fixture *f = *state;
	struct err e;

	set_desc(f, 0, BUF_BASE, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_BASE, 16, VIRTQ_DESC_F_NEXT, 0);
	make_avail(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), -1);
	assert_non_null(strstr(e.msg, "loop"));

	/* A descriptor pointing at itself, too. */
	f->vq.last_avail_idx = f->avail_idx;
	set_desc(f, 7, BUF_BASE, 16, VIRTQ_DESC_F_NEXT, 7);
	make_avail(f, 7);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), -1);
}

static void test_longest_chain_ok(void **state)
{
	struct fixture *f = *state;
	struct err e;

	/* Using every descriptor once is legal and must not look like a loop. */
	for (uint16_t i = 0; i < QSIZE; i++)
		set_desc(f, i, BUF_BASE + i, 1,
			 i + 1 < QSIZE ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	make_avail(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), 1);
	assert_int_equal(f->chain.nbufs, QSIZE);
}

static void test_buffer_outside_ram(void **state)
{
	struct fixture *f = *state;
	struct err e;

	/* Straddles the end of RAM. */
	set_desc(f, 0, RAM_SIZE - 8, 16, 0, 0);
	make_avail(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), -1);
	assert_non_null(strstr(e.msg, "outside guest RAM"));

	/* Address + length wrapping around 2^64. */
	f->vq.last_avail_idx = f->avail_idx;
	set_desc(f, 0, 0xfffffffffffff000ULL, 0x2000, VIRTQ_DESC_F_WRITE, 0);
	make_avail(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), -1);
}

static void test_avail_idx_too_far(void **state)
{
	struct fixture *f = *state;
	struct err e;

	le_put_u16(f->gm.host + f->vq.avail_gpa + 2, QSIZE + 1);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), -1);
	assert_non_null(strstr(e.msg, "more than the queue size"));
}

static void test_indirect_refused(void **state)
{
	struct fixture *f = *state;
	struct err e;

	set_desc(f, 0, BUF_BASE, 32, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), -1);
	assert_non_null(strstr(e.msg, "indirect"));
}

static void test_ring_outside_ram(void **state)
{
	struct fixture *f = *state;
	struct virtq q = { .size = QSIZE };
	struct err e;

	/* The used ring would run past the end of RAM. */
	assert_int_equal(virtq_set_pfn(&q, &f->gm, RAM_SIZE / 4096 - 1, &e), -1);
	assert_false(q.ready);
	assert_int_equal(virtq_set_pfn(&q, &f->gm, 0xffffffff, &e), -1);
	/* PFN 0 tears down cleanly. */
	assert_int_equal(virtq_set_pfn(&q, &f->gm, 0, &e), 0);
	assert_false(virtq_has_avail(&q, &f->gm));
}

static void test_interrupt_suppression(void **state)
{
	struct fixture *f = *state;

	assert_true(virtq_want_interrupt(&f->vq, &f->gm));
	le_put_u16(f->gm.host + f->vq.avail_gpa, VIRTQ_AVAIL_F_NO_INTERRUPT);
	assert_false(virtq_want_interrupt(&f->vq, &f->gm));
}

static void test_unpop(void **state)
{
	struct fixture *f = *state;
	struct err e;

	set_desc(f, 3, BUF_BASE, 16, VIRTQ_DESC_F_WRITE, 0);
	make_avail(f, 3);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), 1);
	virtq_unpop(&f->vq);
	assert_true(virtq_has_avail(&f->vq, &f->gm));
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain, &e), 1);
	assert_int_equal(f->chain.head, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_good_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_used_ring_marks_dirty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_next_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_longest_chain_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_buffer_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_avail_idx_too_far, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ring_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt_suppression, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unpop, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
