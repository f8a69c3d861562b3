/*
 * Unit tests for memory digests (src/migration/digest.c): two guest memories
 * (real memfds, as ferry-vm has) with the same bytes digest alike whether a
 * page is a never-touched hole on one side and written zeros on the other;
 * one changed byte is found and named by its guest-physical address; the
 * DIGEST records round-trip, and every hostile record is refused before use.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "migration/check.h"
#include "migration/digest.h"
#include "migration/format.h"
#include "vmm/config.h"

/* 16 MiB, the smallest guest: 64 blocks. */
#define PAGES 4096

static void mem_init(struct guest_mem *gm)
{
	struct err e = { 0 };
	assert_int_equal(gmem_init(gm, PAGES * GMEM_PAGE_SIZE, &e), 0);
}

/* Touch a few pages the way a guest would, the same on each memory. */
static void mem_fill(struct guest_mem *gm)
{
	static const uint64_t pages[] = { 0, 1, 63, 64, 700, 3000, PAGES - 1 };
	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		memset(gm->host + pages[i] * GMEM_PAGE_SIZE + 17, (int)(i + 1), 100);
}

/* Source and destination, alike. */
static void pair_init(struct guest_mem *a, struct guest_mem *b)
{
	mem_init(a);
	mem_init(b);
	mem_fill(a);
	mem_fill(b);
}

/* The receiver's view: the digest of src written as records and read back. */
static int roundtrip(struct guest_mem *src, struct guest_mem *dst, struct err *e)
{
	struct mem_digest want = { 0 }, got = { 0 };
	struct stream w, r;
	struct mig_rec rec;
	int rc = 0;
	assert_int_equal(digest_compute(src, &want, e), 0);
	stream_init_mem_writer(&w);
	digest_put(&w, &want);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	while (rc == 0 && stream_remaining(&r) > 0) {
		assert_int_equal(mig_get_rec(&r, &rec, e), 0);
		assert_int_equal(rec.type, MIG_REC_DIGEST);
		rc = digest_get(&r, rec.len, gmem_npages(dst), &got, e);
	}
	if (rc == 0)
		rc = digest_verify(&got, dst, e);
	digest_free(&want);
	digest_free(&got);
	stream_destroy(&w);
	return rc;
}

static void test_same_memory_verifies(void **state)
{
	struct guest_mem a, b;
	struct err e = { 0 };
	(void)state;
	pair_init(&a, &b);
	/* b also has zero pages a never touched (a destination that faulted
	 * memory in ahead of the data): they must digest as a's holes. */
	memset(b.host + 2000 * GMEM_PAGE_SIZE, 0, 3 * GMEM_PAGE_SIZE);
	memset(b.host + 1 * GMEM_PAGE_SIZE + 4000, 0, 10);
	assert_int_equal(roundtrip(&a, &b, &e), 0);
	gmem_destroy(&a);
	gmem_destroy(&b);
}

static void test_difference_is_named(void **state)
{
	struct guest_mem a, b;
	struct err e = { 0 };
	(void)state;
	pair_init(&a, &b);
	b.host[700 * GMEM_PAGE_SIZE + 50] ^= 1;         /* a changed byte */
	b.host[(PAGES - 1) * GMEM_PAGE_SIZE + 4095] = 9; /* the last block */
	assert_int_equal(roundtrip(&a, &b, &e), -1);
	assert_non_null(strstr(e.msg, "2 of 64 blocks"));
	/* block 10 starts at page 640 */
	assert_non_null(strstr(e.msg, "0x280000"));
	assert_non_null(strstr(e.msg, "0xfc0000"));
	/* a page the source has and the destination never got (a hole) */
	memset(&e, 0, sizeof(e));
	b.host[700 * GMEM_PAGE_SIZE + 50] ^= 1;
	b.host[(PAGES - 1) * GMEM_PAGE_SIZE + 4095] = 0;
	assert_int_equal(roundtrip(&a, &b, &e), 0);
	a.host[2500 * GMEM_PAGE_SIZE] = 1;
	assert_int_equal(roundtrip(&a, &b, &e), -1);
	assert_non_null(strstr(e.msg, "1 of 64 blocks"));
	gmem_destroy(&a);
	gmem_destroy(&b);
}

/* One DIGEST record with header fields as given and `count` sums. */
static void put_rec(struct stream *w, uint32_t len, uint64_t first, uint32_t count, uint32_t block,
		    uint64_t npages, const uint64_t *sums, uint32_t nsums, uint64_t sum)
{
	mig_put_rec(w, MIG_REC_DIGEST, len);
	stream_put_u64(w, first);
	stream_put_u32(w, count);
	stream_put_u32(w, block);
	stream_put_u64(w, npages);
	stream_put_u64(w, sum);
	stream_put(w, sums, (size_t)nsums * 8);
}

static int get_one(struct stream *w, struct mem_digest *d, struct err *e)
{
	struct stream r;
	struct mig_rec rec;
	stream_init_mem_reader(&r, stream_mem_data(w), stream_mem_len(w));
	if (mig_get_rec(&r, &rec, e) < 0)
		return -1;
	return digest_get(&r, rec.len, PAGES, d, e);
}

static void test_hostile_records(void **state)
{
	uint64_t sums[4] = { 1, 2, 3, 4 };
	uint64_t good = mig_sum(sums, sizeof(sums));
	const uint64_t nb = (PAGES + DIGEST_BLOCK_PAGES - 1) / DIGEST_BLOCK_PAGES;
	static const struct { uint32_t len; uint64_t first; uint32_t count, block; uint64_t npages;
			      int sum_ok; const char *why; } cases[] = {
		{ 16, 0, 4, DIGEST_BLOCK_PAGES, PAGES, 1, "digest record of 16 bytes" },
		{ 64, 0, 4, 128, PAGES, 1, "128-page blocks" },
		{ 64, 0, 4, DIGEST_BLOCK_PAGES, PAGES + 1, 1, "for a guest of" },
		{ 64, 0, 5, DIGEST_BLOCK_PAGES, PAGES, 1, "with 5 sums" },
		{ 64, 0, 0, DIGEST_BLOCK_PAGES, PAGES, 1, "with 0 sums" },
		{ 64, 61, 4, DIGEST_BLOCK_PAGES, PAGES, 1, "outside the guest" },
		{ 64, UINT64_MAX - 1, 4, DIGEST_BLOCK_PAGES, PAGES, 1, "outside the guest" },
		{ 64, 0, 4, DIGEST_BLOCK_PAGES, PAGES, 0, "checksum mismatch" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct stream w;
		struct mem_digest d = { 0 };
		struct err e = { 0 };
		stream_init_mem_writer(&w);
		put_rec(&w, cases[i].len, cases[i].first, cases[i].count, cases[i].block, cases[i].npages,
			sums, cases[i].len >= 32 ? (cases[i].len - 32) / 8 : 0, cases[i].sum_ok ? good : good + 1);
		assert_int_equal(get_one(&w, &d, &e), -1);
		if (!strstr(e.msg, cases[i].why))
			fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, cases[i].why);
		digest_free(&d);
		stream_destroy(&w);
	}
	/* the same blocks twice, and a digest that never covers every block */
	{
		struct stream w, r;
		struct mem_digest d = { 0 };
		struct mig_rec rec;
		struct err e = { 0 };
		struct guest_mem gm;
		stream_init_mem_writer(&w);
		put_rec(&w, 64, nb - 4, 4, DIGEST_BLOCK_PAGES, PAGES, sums, 4, good);
		put_rec(&w, 64, nb - 5, 4, DIGEST_BLOCK_PAGES, PAGES, sums, 4, good);
		stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
		assert_int_equal(mig_get_rec(&r, &rec, &e), 0);
		assert_int_equal(digest_get(&r, rec.len, PAGES, &d, &e), 0);
		mem_init(&gm);
		assert_int_equal(digest_verify(&d, &gm, &e), -1);
		assert_non_null(strstr(e.msg, "incomplete: 4 of 64"));
		assert_int_equal(mig_get_rec(&r, &rec, &e), 0);
		assert_int_equal(digest_get(&r, rec.len, PAGES, &d, &e), -1);
		assert_non_null(strstr(e.msg, "sent twice"));
		gmem_destroy(&gm);
		digest_free(&d);
		stream_destroy(&w);
	}
}

/* The stream checker reads a digest's bounds and checksum (it has no
 * memory to compare) and holds it to a receiver's rules: a flipped sum
 * byte is found, a block sent twice or one missing too; a good digest
 * passes. */
enum digest_damage { DG_NONE, DG_FLIP, DG_TWICE, DG_SHORT };

static void checker_error(enum digest_damage how, char *msg, size_t cap)
{
	struct vm_config cfg = { .name = "t", .mem_size = PAGES * GMEM_PAGE_SIZE, .vcpus = 1 };
	struct streamcheck_opts o = { 0 };
	struct streamcheck_report *rep = calloc(1, sizeof(*rep));
	struct mem_digest d = { 0 };
	struct guest_mem gm;
	struct stream w, r;
	struct err e = { 0 };
	char *json = config_to_json(&cfg);
	assert_non_null(rep);
	mem_init(&gm);
	mem_fill(&gm);
	assert_int_equal(digest_compute(&gm, &d, &e), 0);
	stream_init_mem_writer(&w);
	mig_put_header(&w);
	mig_put_config(&w, json);
	if (how == DG_SHORT)
		d.nblocks--; /* the record covers all but the last block */
	digest_put(&w, &d);
	if (how == DG_TWICE)
		digest_put(&w, &d);
	if (how == DG_SHORT)
		d.nblocks++;
	if (how == DG_FLIP)
		((uint8_t *)stream_mem_data(&w))[stream_mem_len(&w) - 5] ^= 1;
	mig_put_rec(&w, MIG_REC_STATE_END, 0);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(streamcheck_run(&r, &o, rep, &e), -1); /* no device state here */
	snprintf(msg, cap, "%s", rep->error);
	free(json);
	free(rep);
	digest_free(&d);
	gmem_destroy(&gm);
	stream_destroy(&w);
}

static void test_checker(void **state)
{
	char msg[ERR_MSG_MAX];
	(void)state;
	checker_error(DG_FLIP, msg, sizeof(msg));
	assert_non_null(strstr(msg, "checksum mismatch in the memory digest"));
	checker_error(DG_TWICE, msg, sizeof(msg));
	assert_non_null(strstr(msg, "digest block 0 sent twice"));
	checker_error(DG_SHORT, msg, sizeof(msg));
	assert_non_null(strstr(msg, "digest is incomplete"));
	checker_error(DG_NONE, msg, sizeof(msg));
	assert_null(strstr(msg, "digest"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_memory_verifies),
		cmocka_unit_test(test_difference_is_named),
		cmocka_unit_test(test_hostile_records),
		cmocka_unit_test(test_checker),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
