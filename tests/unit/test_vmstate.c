/*
 * Unit tests for collecting a move's state sections (src/vmm/vmstate.c,
 * vmstate_read_section), which runs on bytes from the network before any
 * VM exists: a stream with more sections than the table holds is refused
 * at the first one too many (one past would be written beyond the table),
 * a repeated section and a payload whose checksum does not match are
 * refused, and every section read is kept by name and version.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/stream.h"
#include "migration/format.h"
#include "vmm/vmstate.h"

/* Reads one section record from r into ld, as the incoming side does. */
static int read_one(struct vmstate_loaded *ld, struct stream *r, struct err *e)
{
	struct mig_rec rec;

	if (mig_get_rec(r, &rec, e) < 0)
		return -1;
	assert_int_equal(rec.type, MIG_REC_SECTION);
	return vmstate_read_section(ld, r, rec.len, e);
}

static void test_section_limit(void **state)
{
	struct vmstate_loaded *ld = calloc(1, sizeof(*ld));
	const uint8_t payload[3] = { 1, 2, 3 };
	struct stream w, r;
	struct err e;
	char name[32];
	(void)state;

	assert_non_null(ld);
	stream_init_mem_writer(&w);
	for (int i = 0; i <= VMSTATE_MAX_SECTIONS; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		mig_put_section(&w, name, 7, payload, sizeof(payload));
	}
	assert_true(stream_ok(&w));
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	for (int i = 0; i < VMSTATE_MAX_SECTIONS; i++)
		if (read_one(ld, &r, &e) < 0)
			fail_msg("section %d: %s", i, e.msg);
	assert_int_equal(ld->n, VMSTATE_MAX_SECTIONS);
	assert_string_equal(ld->s[1].name, "s1");
	assert_int_equal(ld->s[1].version, 7);
	assert_memory_equal(ld->s[1].data, payload, sizeof(payload));
	assert_int_equal(read_one(ld, &r, &e), -1);
	assert_non_null(strstr(e.msg, "more than"));
	assert_int_equal(ld->n, VMSTATE_MAX_SECTIONS);
	vmstate_loaded_free(ld);
	stream_destroy(&w);
	free(ld);
}

static void test_section_repeat_and_sum(void **state)
{
	struct vmstate_loaded *ld = calloc(1, sizeof(*ld));
	uint8_t payload[4] = { 9, 8, 7, 6 };
	struct stream w, r;
	struct err e;
	uint8_t *p;
	(void)state;

	assert_non_null(ld);
	stream_init_mem_writer(&w);
	mig_put_section(&w, "uart", 1, payload, sizeof(payload));
	mig_put_section(&w, "uart", 1, payload, sizeof(payload));
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(read_one(ld, &r, &e), 0);
	assert_int_equal(read_one(ld, &r, &e), -1);
	assert_non_null(strstr(e.msg, "twice"));
	vmstate_loaded_free(ld);
	stream_destroy(&w);
	/* The last payload byte flipped: its sum no longer matches. */
	stream_init_mem_writer(&w);
	mig_put_section(&w, "pci", 1, payload, sizeof(payload));
	p = malloc(stream_mem_len(&w));
	assert_non_null(p);
	memcpy(p, stream_mem_data(&w), stream_mem_len(&w));
	p[stream_mem_len(&w) - 1] ^= 0xff;
	stream_init_mem_reader(&r, p, stream_mem_len(&w));
	assert_int_equal(read_one(ld, &r, &e), -1);
	assert_non_null(strstr(e.msg, "checksum"));
	assert_int_equal(ld->n, 0);
	free(p);
	stream_destroy(&w);
	free(ld);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_section_limit),
		cmocka_unit_test(test_section_repeat_and_sum),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
