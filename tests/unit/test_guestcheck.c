/*
 * Unit tests for the test-guest memory checker: builds a fake guest RAM
 * with the control block and pages stamped by guest/protocol.h's own
 * functions, then damages it in each way migration bugs would (a flipped
 * byte, swapped pages, a stale page, torn pages) and checks each is caught
 * or, for the in-flight page's legal states, accepted. Every such case runs
 * twice, once per page fill (data=random and data=text), since the checker
 * must apply the same rules to both. Also feeds hostile control blocks,
 * which must be rejected without reading out of bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/guestcheck.h"

#define RAM_SIZE (2u << 20)
#define TABLE_GPA 0x10000u
#define WS_BASE 0x100000u
#define WS_PAGES 64u

struct fake {
	uint8_t *ram;
	struct fg_ctl *ctl;
	uint32_t *table;
	uint32_t data; /* FG_DATA_*: the fill this fake guest uses */
	struct guestcheck_report rep;
	char err[256];
};

static uint64_t gpa_of(uint64_t p)
{
	return WS_BASE + p * FG_PAGE_SIZE;
}

static uint64_t *page(struct fake *f, uint64_t p)
{
	return (uint64_t *)(f->ram + gpa_of(p));
}

/* What the guest does, minus the in-flight marker. */
static void stamp(struct fake *f, uint64_t p, uint32_t gen)
{
	fg_page_fill(page(f, p), gpa_of(p), gen, f->data);
	f->table[p] = gen;
}

static int setup_fill(void **state, uint32_t data)
{
	struct fake *f = calloc(1, sizeof(*f));
	f->data = data;
	f->ram = calloc(1, RAM_SIZE);
	f->ctl = (struct fg_ctl *)(f->ram + FG_CTL_GPA);
	f->table = (uint32_t *)(f->ram + TABLE_GPA);
	struct fg_ctl *c = f->ctl;
	c->magic = FG_CTL_MAGIC;
	c->version = FG_VERSION;
	c->ncpus = 2;
	c->ws_base = WS_BASE;
	c->ws_pages = WS_PAGES;
	c->gen_table = TABLE_GPA;
	c->hb = 42;
	c->data = data;
	for (unsigned i = 0; i < 2; i++) {
		c->vcpu[i].first_page = i * WS_PAGES / 2;
		c->vcpu[i].npages = WS_PAGES / 2;
		c->vcpu[i].inflight = FG_INFLIGHT_NONE;
		c->vcpu[i].heartbeat = 40 + i;
	}
	/* pages 0..47 written with varied generations, 48..63 never */
	for (uint64_t p = 0; p < 48; p++)
		stamp(f, p, (uint32_t)(p % 5 + 1));
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_fill(state, FG_DATA_RANDOM);
}

static int setup_text(void **state)
{
	return setup_fill(state, FG_DATA_TEXT);
}

static int teardown(void **state)
{
	struct fake *f = *state;
	free(f->ram);
	free(f);
	return 0;
}

static int verify(struct fake *f)
{
	return guestcheck_verify(f->ram, RAM_SIZE, &f->rep, f->err, sizeof(f->err));
}

static void expect_one(struct fake *f, uint64_t p, enum guestcheck_reason r)
{
	assert_int_equal(verify(f), 1);
	assert_int_equal(f->rep.nfailures, 1);
	assert_int_equal(f->rep.failures[0].gpa, gpa_of(p));
	assert_int_equal(f->rep.failures[0].page, p);
	assert_string_equal(guestcheck_reason_str(f->rep.failures[0].reason),
			    guestcheck_reason_str(r));
	assert_non_null(strstr(f->err, guestcheck_reason_str(r)));
}

static void test_clean(void **state)
{
	struct fake *f = *state;
	assert_int_equal(verify(f), 0);
	assert_int_equal(f->rep.pages_checked, WS_PAGES);
	assert_int_equal(f->rep.pages_never_written, 16);
	assert_int_equal(f->rep.max_gen, 5);
	assert_int_equal(f->rep.ncpus, 2);
	assert_int_equal(f->rep.hb, 42);
	assert_int_equal(f->rep.vcpu_heartbeat[1], 41);
	assert_int_equal(f->rep.nfailures, 0);
	assert_int_equal(f->rep.data, f->data);
	assert_string_equal(f->err, "");
}

static void test_corrupt_byte(void **state)
{
	struct fake *f = *state;
	((uint8_t *)page(f, 7))[1234] ^= 0x40;
	expect_one(f, 7, GUESTCHECK_CORRUPT);
	assert_int_equal(f->rep.failures[0].first_bad_word, 1234 / 8);
}

static void test_corrupt_never_written(void **state)
{
	struct fake *f = *state;
	((uint8_t *)page(f, 60))[4095] = 1;
	expect_one(f, 60, GUESTCHECK_CORRUPT);
}

static void test_swapped_pages(void **state)
{
	struct fake *f = *state;
	uint64_t tmp[FG_PAGE_WORDS];
	memcpy(tmp, page(f, 3), FG_PAGE_SIZE);
	memcpy(page(f, 3), page(f, 10), FG_PAGE_SIZE);
	memcpy(page(f, 10), tmp, FG_PAGE_SIZE);
	assert_int_equal(verify(f), 1);
	assert_int_equal(f->rep.nfailures, 2);
	assert_int_equal(f->rep.failures[0].reason, GUESTCHECK_WRONG_ADDR);
	assert_int_equal(f->rep.failures[0].gpa, gpa_of(3));
	assert_int_equal(f->rep.failures[1].reason, GUESTCHECK_WRONG_ADDR);
	assert_int_equal(f->rep.failures[1].gpa, gpa_of(10));
}

static void test_same_gen_other_address(void **state)
{
	/* same generation, so only the GPA in the header/seed tells them apart */
	struct fake *f = *state;
	stamp(f, 20, 9);
	stamp(f, 21, 9);
	memcpy(page(f, 21), page(f, 20), FG_PAGE_SIZE);
	expect_one(f, 21, GUESTCHECK_WRONG_ADDR);
}

static void test_stale(void **state)
{
	struct fake *f = *state;
	stamp(f, 12, 7);
	f->table[12] = 8; /* the guest wrote gen 8; the copy kept gen 7 */
	expect_one(f, 12, GUESTCHECK_STALE);
	assert_int_equal(f->rep.failures[0].table_gen, 8);
	assert_int_equal(f->rep.failures[0].page_gen, 7);
}

static void test_stale_never_sent(void **state)
{
	/* the page's first write was never copied: still zero, table says 1 */
	struct fake *f = *state;
	f->table[50] = 1;
	assert_int_equal(verify(f), 1);
	assert_int_equal(f->rep.nfailures, 1);
	assert_int_equal(f->rep.failures[0].gpa, gpa_of(50));
	assert_int_not_equal(f->rep.failures[0].reason, GUESTCHECK_OK);
}

static void test_table_lost(void **state)
{
	/* page complete at gen 4 but the table still says 3 */
	struct fake *f = *state;
	stamp(f, 30, 4);
	f->table[30] = 3;
	expect_one(f, 30, GUESTCHECK_CORRUPT);
	assert_int_equal(f->rep.failures[0].page_gen, 4);
}

/* Page p, word i from gen a if mask says so, else from gen b. */
static void mix(struct fake *f, uint64_t p, uint32_t a, uint32_t b, unsigned every)
{
	uint64_t va[FG_PAGE_WORDS], vb[FG_PAGE_WORDS];
	fg_page_fill(va, gpa_of(p), a, f->data);
	fg_page_fill(vb, gpa_of(p), b, f->data);
	for (unsigned i = 0; i < FG_PAGE_WORDS; i++)
		page(f, p)[i] = i % every == 0 ? vb[i] : va[i];
}

static void test_inflight_legal(void **state)
{
	struct fake *f = *state;
	uint64_t p = 40; /* owned by vCPU 1 */
	stamp(f, p, 6);
	f->ctl->vcpu[1].inflight = p;
	/* not started yet */
	assert_int_equal(verify(f), 0);
	assert_int_equal(f->rep.pages_inflight, 1);
	/* half way: words of 6 and 7 interleaved, header already new */
	mix(f, p, 6, 7, 3);
	assert_int_equal(verify(f), 0);
	/* header still old, body partly new */
	mix(f, p, 7, 6, 2);
	page(f, p)[0] = fg_word0(6);
	assert_int_equal(verify(f), 0);
	/* fully written, table not yet updated */
	fg_page_fill(page(f, p), gpa_of(p), 7, f->data);
	assert_int_equal(verify(f), 0);
	/* table updated, in-flight not yet cleared */
	f->table[p] = 7;
	assert_int_equal(verify(f), 0);
}

static void test_inflight_first_write(void **state)
{
	/* first write of a never-written page: zero words and gen-1 words */
	struct fake *f = *state;
	f->ctl->vcpu[1].inflight = 55;
	mix(f, 55, 0, 1, 4);
	assert_int_equal(verify(f), 0);
}

static void test_inflight_illegal(void **state)
{
	struct fake *f = *state;
	uint64_t p = 41;
	stamp(f, p, 6);
	f->ctl->vcpu[1].inflight = p;
	/* a word from gen 8 cannot appear while 6 -> 7 is being written */
	mix(f, p, 6, 8, 5);
	assert_int_equal(verify(f), 1);
	assert_int_equal(f->rep.nfailures, 1);
	assert_int_equal(f->rep.failures[0].gpa, gpa_of(p));
	/* nor can a flipped byte */
	mix(f, p, 6, 7, 5);
	((uint8_t *)page(f, p))[2000] ^= 1;
	expect_one(f, p, GUESTCHECK_CORRUPT);
	/* and the in-flight marker of another vCPU does not cover this page */
	f->ctl->vcpu[1].inflight = FG_INFLIGHT_NONE;
	f->ctl->vcpu[0].inflight = 2;
	mix(f, p, 6, 7, 5);
	expect_one(f, p, GUESTCHECK_TORN);
}

static void test_torn_not_inflight(void **state)
{
	struct fake *f = *state;
	stamp(f, 5, 3);
	mix(f, 5, 3, 2, 7); /* some words still from gen 2 */
	expect_one(f, 5, GUESTCHECK_TORN);
}

static void test_many_failures_capped(void **state)
{
	struct fake *f = *state;
	for (uint64_t p = 0; p < 20; p++)
		page(f, p)[100] ^= 1;
	assert_int_equal(verify(f), 1);
	assert_int_equal(f->rep.nfailures, 20);
	assert_int_equal(f->rep.failures[GUESTCHECK_MAX_FAILURES - 1].page,
			 GUESTCHECK_MAX_FAILURES - 1);
}

static void expect_invalid(struct fake *f, const char *needle)
{
	assert_int_equal(verify(f), -1);
	if (!strstr(f->err, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", f->err, needle);
}

static void test_bad_ctl(void **state)
{
	struct fake *f = *state;
	struct fg_ctl saved = *f->ctl;
#define RESET() (*f->ctl = saved)
	f->ctl->magic = 0;
	expect_invalid(f, "magic");
	RESET();
	f->ctl->version = 99;
	expect_invalid(f, "version");
	RESET();
	f->ctl->data = 2;
	expect_invalid(f, "page fill");
	RESET();
	f->ctl->ncpus = 0;
	expect_invalid(f, "vCPU count");
	f->ctl->ncpus = FG_MAX_CPUS + 1;
	expect_invalid(f, "vCPU count");
	RESET();
	f->ctl->ws_pages = UINT64_MAX / 2;
	expect_invalid(f, "working set");
	RESET();
	f->ctl->ws_base = WS_BASE + 1;
	expect_invalid(f, "working set");
	RESET();
	f->ctl->ws_base = UINT64_MAX - 4095;
	expect_invalid(f, "working set");
	RESET();
	f->ctl->ws_base = RAM_SIZE - FG_PAGE_SIZE; /* runs off the end of RAM */
	f->ctl->gen_table = TABLE_GPA;
	expect_invalid(f, "not RAM");
	RESET();
	f->ctl->gen_table = RAM_SIZE - 8;
	expect_invalid(f, "generation table");
	RESET();
	f->ctl->gen_table = WS_BASE + 4096; /* inside the working set */
	expect_invalid(f, "generation table");
	RESET();
	f->ctl->gen_table = UINT64_MAX - 3;
	expect_invalid(f, "generation table");
	RESET();
	f->ctl->ws_base = 0x4000; /* would cover the control block */
	f->ctl->ws_pages = 4;
	expect_invalid(f, "control block");
	RESET();
	f->ctl->vcpu[1].npages = WS_PAGES;
	expect_invalid(f, "outside");
	RESET();
	f->ctl->vcpu[1].first_page = UINT64_MAX;
	expect_invalid(f, "outside");
	RESET();
	f->ctl->vcpu[1].inflight = 3; /* vCPU 0's page */
	expect_invalid(f, "in-flight");
	RESET();
	f->ctl->vcpu[1].first_page = 10;
	f->ctl->vcpu[1].npages = 10;
	expect_invalid(f, "overlapping");
	RESET();
#undef RESET
	assert_int_equal(verify(f), 0);
}

static void test_ram_too_small(void **state)
{
	struct fake *f = *state;
	assert_int_equal(guestcheck_verify(f->ram, FG_CTL_GPA + 100, &f->rep, f->err, sizeof(f->err)), -1);
	assert_non_null(strstr(f->err, "not RAM"));
	/* no error buffer at all is allowed */
	assert_int_equal(guestcheck_verify(f->ram, 0, &f->rep, NULL, 0), -1);
}

/* Callback form: RAM split in two host buffers with a hole in between, as
 * a VMM with memory above 4 GiB would present it. */
struct split {
	const uint8_t *lo;
	uint64_t lo_size;
	const uint8_t *hi;
	uint64_t hi_gpa, hi_size;
};

static const uint8_t *split_map(void *opaque, uint64_t gpa, uint64_t len)
{
	const struct split *s = opaque;
	if (gpa <= s->lo_size && len <= s->lo_size - gpa)
		return s->lo + gpa;
	if (gpa >= s->hi_gpa && gpa - s->hi_gpa <= s->hi_size && len <= s->hi_size - (gpa - s->hi_gpa))
		return s->hi + (gpa - s->hi_gpa);
	return NULL;
}

static void test_callback_split(void **state)
{
	struct fake *f = *state;
	struct split s = { f->ram, WS_BASE, f->ram + WS_BASE, WS_BASE, RAM_SIZE - WS_BASE };
	assert_int_equal(guestcheck_verify_map(split_map, &s, &f->rep, f->err, sizeof(f->err)), 0);
	assert_int_equal(f->rep.pages_checked, WS_PAGES);
	/* a hole in the middle of the working set */
	s.hi_gpa = WS_BASE + 8 * FG_PAGE_SIZE;
	s.hi = f->ram + s.hi_gpa;
	s.hi_size = RAM_SIZE - s.hi_gpa;
	assert_int_equal(guestcheck_verify_map(split_map, &s, &f->rep, f->err, sizeof(f->err)), -1);
	assert_non_null(strstr(f->err, "not RAM"));
}

/* Words of a page body (2..511) equal in a and b. */
static unsigned same_words(const uint64_t *a, const uint64_t *b)
{
	unsigned n = 0;
	for (unsigned i = 2; i < FG_PAGE_WORDS; i++)
		n += a[i] == b[i];
	return n;
}

/* Page 0x200000 generation 1 in a and b: deterministic, with the
 * generation marker and the address in words 0 and 1. */
static void stamp_basics(uint64_t *a, uint64_t *b, uint32_t data)
{
	fg_page_fill(a, 0x200000, 1, data);
	fg_page_fill(b, 0x200000, 1, data);
	assert_memory_equal(a, b, FG_PAGE_SIZE);
	assert_int_equal(a[0], fg_word0(1));
	assert_int_equal(a[1], 0x200000);
}

static void test_stamp_properties(void **state)
{
	(void)state;
	uint64_t a[FG_PAGE_WORDS], b[FG_PAGE_WORDS];
	stamp_basics(a, b, FG_DATA_RANDOM);
	/* data=random is the fill guests had before the mode existed: the raw
	 * xorshift stream, so old and new guests and checkers agree */
	uint64_t s = fg_seed(0x200000, 1);
	for (unsigned i = 2; i < FG_PAGE_WORDS; i++)
		assert_int_equal(a[i], fg_xorshift64(&s));
	fg_page_fill(b, 0x200000, 2, FG_DATA_RANDOM);
	assert_true(same_words(a, b) < 2); /* every word depends on the generation */
	fg_page_fill(b, 0x201000, 1, FG_DATA_RANDOM);
	assert_true(same_words(a, b) < 2); /* ... and on the address */
	fg_page_fill(a, 0x200000, 0, FG_DATA_RANDOM);
	for (unsigned i = 0; i < FG_PAGE_WORDS; i++)
		assert_int_equal(a[i], 0);
	fg_page_fill(a, 0x200000, 0, FG_DATA_TEXT);
	for (unsigned i = 0; i < FG_PAGE_WORDS; i++)
		assert_int_equal(a[i], 0);
	struct fg_blk_record r;
	fg_blk_fill(&r, 77);
	assert_int_equal(r.sum, fg_blk_sum(&r));
	r.fill[60] ^= 1;
	assert_int_not_equal(r.sum, fg_blk_sum(&r));
}

static void test_text_stamp_properties(void **state)
{
	(void)state;
	uint64_t a[FG_PAGE_WORDS], b[FG_PAGE_WORDS];
	stamp_basics(a, b, FG_DATA_TEXT);
	/* same seed, other fill: the body has nothing in common */
	fg_page_fill(b, 0x200000, 1, FG_DATA_RANDOM);
	assert_int_equal(memcmp(a, b, 16), 0);
	assert_true(same_words(a, b) < 2);
	/* a text word has few bits of its own, so some words coincide between
	 * versions by chance; the page as a whole still tells them apart */
	fg_page_fill(b, 0x200000, 2, FG_DATA_TEXT);
	assert_true(same_words(a, b) < FG_PAGE_WORDS / 8);
	fg_page_fill(b, 0x201000, 1, FG_DATA_TEXT);
	assert_true(same_words(a, b) < FG_PAGE_WORDS / 8);
	/* compressible: most words repeat an earlier word of the same page,
	 * which is what gives an LZ compressor its matches */
	unsigned repeats = 0;
	for (unsigned i = 3; i < FG_PAGE_WORDS; i++)
		for (unsigned j = 2; j < i; j++)
			if (a[j] == a[i]) {
				repeats++;
				break;
			}
	assert_true(repeats > FG_PAGE_WORDS / 2);
}

static void test_fill_mismatch(void **state)
{
	/* text pages under a control block that says random (or the reverse)
	 * fail: the checker really compares against the declared fill */
	struct fake *f = *state;
	f->ctl->data = f->data == FG_DATA_TEXT ? FG_DATA_RANDOM : FG_DATA_TEXT;
	assert_int_equal(verify(f), 1);
	assert_int_equal(f->rep.nfailures, 48); /* every written page, no zero page */
	assert_int_equal(f->rep.failures[0].reason, GUESTCHECK_CORRUPT);
	assert_int_equal(f->rep.failures[0].first_bad_word, 2);
	f->ctl->data = f->data;
	assert_int_equal(verify(f), 0);
}

/* The page cases, registered once per fill; the name says which. */
#define PAGE_TEST(fill, fn, setup_fn) { fill "/" #fn, fn, setup_fn, teardown, NULL }
#define PAGE_TESTS(fill, setup_fn)                          \
	PAGE_TEST(fill, test_clean, setup_fn),                  \
	PAGE_TEST(fill, test_corrupt_byte, setup_fn),           \
	PAGE_TEST(fill, test_corrupt_never_written, setup_fn),  \
	PAGE_TEST(fill, test_swapped_pages, setup_fn),          \
	PAGE_TEST(fill, test_same_gen_other_address, setup_fn), \
	PAGE_TEST(fill, test_stale, setup_fn),                  \
	PAGE_TEST(fill, test_stale_never_sent, setup_fn),       \
	PAGE_TEST(fill, test_table_lost, setup_fn),             \
	PAGE_TEST(fill, test_inflight_legal, setup_fn),         \
	PAGE_TEST(fill, test_inflight_first_write, setup_fn),   \
	PAGE_TEST(fill, test_inflight_illegal, setup_fn),       \
	PAGE_TEST(fill, test_torn_not_inflight, setup_fn),      \
	PAGE_TEST(fill, test_many_failures_capped, setup_fn),   \
	PAGE_TEST(fill, test_fill_mismatch, setup_fn)

int main(void)
{
	const struct CMUnitTest tests[] = {
		PAGE_TESTS("random", setup),
		PAGE_TESTS("text", setup_text),
		cmocka_unit_test_setup_teardown(test_bad_ctl, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ram_too_small, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callback_split, setup, teardown),
		cmocka_unit_test(test_stamp_properties),
		cmocka_unit_test(test_text_stamp_properties),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
