/*
 * Post-copy's destination side without a VM (src/migration/postcopy.c):
 * the owed set survives its records and every way a hostile source could
 * point one outside guest RAM is refused; with a real userfaultfd on real
 * guest memory, a thread touching an owed page waits until the page is
 * placed (and the fault is asked for once), a page never written reads as
 * zeros, and pages that were not owed, come twice, or come compressed or
 * corrupt are refused. The whole move runs under KVM in
 * tests/e2e/worker_postcopy.sh.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "migration/postcopy.h"

/* A POSTCOPY record's body as a hostile source might send it. */
static int read_owed(struct postcopy_in *pc, uint32_t len, uint64_t first, const uint64_t *words,
		     size_t n, struct err *e)
{
	struct stream w, r;
	int rc;
	stream_init_mem_writer(&w);
	stream_put_u64(&w, first);
	for (size_t i = 0; i < n; i++)
		stream_put_u64(&w, words[i]);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	rc = postcopy_in_read_owed(pc, &r, len, e);
	stream_destroy(&w);
	return rc;
}

static void test_owed_records(void **state)
{
	(void)state;
	struct guest_mem gm = { .ram_size = 100 * 4096ULL }; /* 100 pages: a partial last word */
	struct postcopy_in pc;
	struct err e = { 0 };
	uint64_t ok[2] = { 0x8000000000000001ULL, 0xfULL }, bad_tail[2] = { 0, 1ULL << 36 };

	assert_int_equal(postcopy_in_init(&pc, &gm, &e), 0);
	assert_int_equal(read_owed(&pc, 24, 0, ok, 2, &e), 0);
	assert_int_equal(pc.owed_count, 6);
	assert_true(postcopy_in_owed(&pc, 0) && postcopy_in_owed(&pc, 63) && postcopy_in_owed(&pc, 67));
	assert_false(postcopy_in_owed(&pc, 1) || postcopy_in_owed(&pc, 68) || postcopy_in_owed(&pc, 5000));
	/* the same bits again count once */
	assert_int_equal(read_owed(&pc, 24, 0, ok, 2, &e), 0);
	assert_int_equal(pc.owed_count, 6);
	/* framing and bounds */
	assert_int_equal(read_owed(&pc, 8, 0, ok, 0, &e), -1);
	assert_non_null(strstr(e.msg, "post-copy record of 8 bytes"));
	assert_int_equal(read_owed(&pc, 20, 0, ok, 2, &e), -1);
	assert_int_equal(read_owed(&pc, 8 + 8 * (POSTCOPY_REC_WORDS + 1), 0, ok, 2, &e), -1);
	assert_int_equal(read_owed(&pc, 16, 32, ok, 1, &e), -1);
	assert_non_null(strstr(e.msg, "outside guest RAM"));
	assert_int_equal(read_owed(&pc, 16, 128, ok, 1, &e), -1);
	assert_int_equal(read_owed(&pc, 24, 64, ok, 2, &e), -1);
	assert_int_equal(read_owed(&pc, 24, 1ULL << 63, ok, 2, &e), -1);
	assert_int_equal(read_owed(&pc, 24, 0, bad_tail, 2, &e), -1);
	assert_non_null(strstr(e.msg, "beyond guest RAM"));
	postcopy_in_destroy(&pc);
}

/* The source's side writes what the destination reads back. */
static void test_owed_roundtrip(void **state)
{
	(void)state;
	uint64_t npages = (uint64_t)POSTCOPY_REC_WORDS * 64 * 2 + 70; /* three records' worth */
	struct guest_mem gm = { .ram_size = npages * 4096 };
	size_t words = (size_t)((npages + 63) / 64);
	uint64_t *bm = calloc(words, 8);
	struct postcopy_in pc;
	struct stream w, r;
	struct mig_rec rec;
	struct err e = { 0 };
	int recs = 0;

	assert_non_null(bm);
	bm[0] = 1;                            /* record 1 */
	bm[POSTCOPY_REC_WORDS * 2 + 1] = 0x3f; /* record 3, up to the last page; record 2 empty: not sent */
	stream_init_mem_writer(&w);
	postcopy_put_owed(&w, bm, npages);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(postcopy_in_init(&pc, &gm, &e), 0);
	while (stream_remaining(&r)) {
		assert_int_equal(mig_get_rec(&r, &rec, &e), 0);
		assert_int_equal(rec.type, MIG_REC_POSTCOPY);
		assert_int_equal(postcopy_in_read_owed(&pc, &r, rec.len, &e), 0);
		recs++;
	}
	assert_int_equal(recs, 2);
	assert_int_equal(pc.owed_count, 7);
	assert_true(postcopy_in_owed(&pc, 0) && postcopy_in_owed(&pc, npages - 1));
	postcopy_in_destroy(&pc);
	stream_destroy(&w);
	free(bm);
}

/* A MEM record for pages from `first`, raw (data) or zero (data NULL). */
static int recv_run(struct postcopy_in *pc, uint64_t first, uint32_t n, const uint8_t *data, uint8_t enc,
		    bool corrupt, struct err *e)
{
	struct stream w, r;
	struct mig_mem_hdr h = { .gpa = first * 4096, .npages = n, .gen = 9, .enc = enc };
	uint32_t payload = enc == MIG_ENC_ZERO ? 0 : n * 4096;
	int rc;
	if (data)
		h.sum = mig_sum(data, (size_t)n * 4096) ^ (corrupt ? 1 : 0);
	stream_init_mem_writer(&w);
	mig_put_mem_hdr(&w, &h);
	if (payload)
		stream_put(&w, data, payload);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	rc = postcopy_in_recv(pc, &r, MIG_MEM_HDR + payload, e);
	stream_destroy(&w);
	return rc;
}

struct toucher { volatile uint8_t *p; uint8_t seen; volatile bool done; };

static void *touch(void *arg)
{
	struct toucher *t = arg;
	t->seen = *t->p;
	t->done = true;
	return NULL;
}

static void faults_wait_for_pages(bool no_minor)
{
	struct guest_mem gm;
	struct postcopy_in pc;
	struct stream w, rq;
	pthread_mutex_t wlock = PTHREAD_MUTEX_INITIALIZER;
	struct err e = { 0 };
	uint8_t page[2 * 4096];
	uint64_t owed[1] = { 0x6 }; /* pages 1 and 2 */
	struct toucher t;
	pthread_t th;

	if (!postcopy_supported())
		skip(); /* no userfaultfd here: the e2e test says so loudly */
	assert_int_equal(gmem_init(&gm, 16ULL << 20, &e), 0);
	memset(gm.host, 0x11, 16 * 4096); /* a stale copy of every page */
	assert_int_equal(postcopy_in_init(&pc, &gm, &e), 0);
	assert_int_equal(read_owed(&pc, 16, 0, owed, 1, &e), 0);
	pc.no_minor = no_minor;
	stream_init_mem_writer(&w);
	if (postcopy_in_arm(&pc, &w, &wlock, &e) < 0)
		fail_msg("%s", e.msg);
	if (!no_minor && !pc.minor)
		print_message("this kernel has no minor faults on shared memory: the other way only\n");
	assert_true(!no_minor || !pc.minor);
	/* not owed: as it was; owed: its stale copy is gone, a touch waits */
	assert_int_equal(gm.host[0], 0x11);
	t = (struct toucher){ .p = gm.host + 4096 };
	assert_int_equal(pthread_create(&th, NULL, touch, &t), 0);
	nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
	assert_false(t.done);
	postcopy_in_may_ask(&pc);
	for (int i = 0; i < 100 && !stream_mem_len(&w); i++)
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	pthread_mutex_lock(&wlock);
	stream_init_mem_reader(&rq, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(stream_get_u32(&rq), MIG_REPLY_PAGE_REQ);
	assert_int_equal(stream_get_u32(&rq), 8);
	assert_int_equal(stream_get_u64(&rq), 1); /* the page it waits for */
	pthread_mutex_unlock(&wlock);
	assert_false(t.done);
	/* refused: not owed, compressed, corrupt */
	memset(page, 0x5a, sizeof(page));
	assert_int_equal(recv_run(&pc, 3, 1, page, MIG_ENC_RAW, false, &e), -1);
	assert_non_null(strstr(e.msg, "was not owed"));
	assert_int_equal(recv_run(&pc, 1, 1, page, MIG_ENC_LZ4, false, &e), -1);
	assert_int_equal(recv_run(&pc, 1, 1, page, MIG_ENC_RAW, true, &e), -1);
	assert_non_null(strstr(e.msg, "checksum"));
	assert_int_equal(recv_run(&pc, 64, 1, page, MIG_ENC_RAW, false, &e), -1);
	assert_false(t.done);
	/* page 1 comes: the toucher sees it whole */
	assert_int_equal(recv_run(&pc, 1, 1, page, MIG_ENC_RAW, false, &e), 0);
	pthread_join(th, NULL);
	assert_int_equal(t.seen, 0x5a);
	assert_int_equal(recv_run(&pc, 1, 1, page, MIG_ENC_RAW, false, &e), -1);
	assert_non_null(strstr(e.msg, "came twice"));
	/* the end with page 2 missing is refused; once it came (as zeros), done */
	assert_int_equal(postcopy_in_finish(&pc, &e), -1);
	assert_non_null(strstr(e.msg, "1 of 2 owed pages never sent"));
	assert_int_equal(recv_run(&pc, 2, 1, NULL, MIG_ENC_ZERO, false, &e), 0);
	assert_int_equal(postcopy_in_finish(&pc, &e), 0);
	assert_int_equal(gm.host[2 * 4096 + 7], 0);
	assert_int_equal(gm.host[5 * 4096], 0x11);
	assert_int_equal(pc.faults, 1);
	postcopy_in_destroy(&pc);
	stream_destroy(&w);
	gmem_destroy(&gm);
}

/* Stale copies mapped out, pages written aside and mapped in (minor
 * faults), and the way for kernels without: freed, copied in. */
static void test_faults_wait_for_pages(void **state)
{
	(void)state;
	faults_wait_for_pages(false);
	faults_wait_for_pages(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_owed_records),
		cmocka_unit_test(test_owed_roundtrip),
		cmocka_unit_test(test_faults_wait_for_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
