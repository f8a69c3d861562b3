/*
 * The live receiver's own records (src/migration/incoming.c, included here
 * for its static readers): EXTENTS and HELLO from a hostile source must
 * end with a "corrupt stream"/"protocol error" naming the record, never
 * read past the record's declared length (the next record's bytes, or a
 * wait for bytes the source never sends) and never accept a range outside
 * guest RAM. The channel count and each extra channel's hello are held to
 * the move (an index out of range or taken, a count past CHANNEL_MAX, a
 * channel sealed otherwise than the main one), and only an empty COMMIT
 * after READY lets the guest run here. No KVM: the readers only need a
 * stream.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "migration/incoming.c"

#define NPAGES 4096u /* a 16 MiB guest */

/* One EXTENTS record of len bytes (a count of n and the pairs of ext,
 * next of them, cut or padded to len), then a SYNC record, as a source
 * sends them. */
static size_t extents_stream(uint8_t *buf, uint32_t len, uint32_t n, const uint64_t (*ext)[2],
			     uint32_t next)
{
	struct stream w;
	size_t total;
	stream_init_mem_writer(&w);
	mig_put_rec(&w, MIG_REC_EXTENTS, len);
	{
		struct stream body;
		stream_init_mem_writer(&body);
		stream_put_u32(&body, n);
		for (uint32_t i = 0; i < next; i++) {
			stream_put_u64(&body, ext[i][0]);
			stream_put_u64(&body, ext[i][1]);
		}
		for (size_t i = stream_mem_len(&body); i < len; i++)
			stream_put_u8(&body, 0);
		stream_put(&w, stream_mem_data(&body), len);
		stream_destroy(&body);
	}
	mig_put_sync(&w, &(struct mig_sync){ .pass = 0, .value = 1 });
	total = stream_mem_len(&w);
	memcpy(buf, stream_mem_data(&w), total);
	stream_destroy(&w);
	return total;
}

static int extents_read(const uint8_t *buf, size_t n, struct rx *x, size_t *left, struct err *e)
{
	struct stream r;
	int rc;
	memset(x, 0, sizeof(*x));
	stream_init_mem_reader(&r, buf, n);
	rc = read_extents(x, &r, NPAGES, e);
	*left = stream_remaining(&r);
	return rc;
}

static void test_extents_ok(void **state)
{
	static const uint64_t ext[2][2] = { { 0, 16 }, { 100, NPAGES - 100 } };
	uint8_t buf[256];
	struct err e = { 0 };
	struct rx x;
	size_t left, n = extents_stream(buf, 4 + 2 * 16, 2, ext, 2);
	(void)state;
	assert_int_equal(extents_read(buf, n, &x, &left, &e), 0);
	assert_int_equal(x.next, 2);
	assert_true(x.ext[1][0] == 100 && x.ext[1][1] == NPAGES - 100);
	assert_int_equal(left, MIG_REC_HDR + 12); /* the SYNC is untouched */
	free(x.ext);
}

/* A record too short for its own count: refused as such, and the SYNC
 * after it is not taken for the count. */
static void test_extents_short(void **state)
{
	uint8_t buf[256];
	struct err e = { 0 };
	struct rx x;
	size_t left;
	(void)state;
	for (uint32_t len = 0; len < 4; len++) {
		size_t n = extents_stream(buf, len, 0, NULL, 0);
		assert_int_equal(extents_read(buf, n, &x, &left, &e), -1);
		assert_non_null(strstr(e.msg, "corrupt stream: an extents record of"));
		assert_int_equal(left, n - MIG_REC_HDR); /* not a byte past the header */
		free(x.ext);
	}
	/* ...and with nothing after it, no wait for bytes that never come:
	 * the same error, not a truncation (a socket would time out) */
	{
		size_t n = extents_stream(buf, 2, 0, NULL, 0) - MIG_REC_HDR - 12;
		assert_int_equal(extents_read(buf, n, &x, &left, &e), -1);
		assert_non_null(strstr(e.msg, "corrupt stream: an extents record of 2 bytes"));
		free(x.ext);
	}
}

static void test_extents_bounds(void **state)
{
	static const uint64_t past[1][2] = { { NPAGES - 1, 2 } };
	static const uint64_t wrap[1][2] = { { UINT64_MAX, 2 } };
	uint8_t buf[256];
	struct err e = { 0 };
	struct rx x;
	size_t left, n;
	(void)state;
	n = extents_stream(buf, 4 + 16, 1, past, 1);
	assert_int_equal(extents_read(buf, n, &x, &left, &e), -1);
	assert_non_null(strstr(e.msg, "outside guest RAM"));
	free(x.ext);
	n = extents_stream(buf, 4 + 16, 1, wrap, 1);
	assert_int_equal(extents_read(buf, n, &x, &left, &e), -1);
	assert_non_null(strstr(e.msg, "outside guest RAM"));
	free(x.ext);
	/* a count the length does not carry, and one over the limit */
	n = extents_stream(buf, 4 + 16, 2, past, 1);
	assert_int_equal(extents_read(buf, n, &x, &left, &e), -1);
	assert_non_null(strstr(e.msg, "corrupt stream"));
	free(x.ext);
	n = extents_stream(buf, 4, MIG_MAX_EXTENTS + 1, NULL, 0);
	assert_int_equal(extents_read(buf, n, &x, &left, &e), -1);
	assert_non_null(strstr(e.msg, "corrupt stream"));
	free(x.ext);
}

static void test_hello(void **state)
{
	struct stream w, r;
	struct mig_rec rec;
	struct err e = { 0 };
	uint32_t idx = 0, n = 0;
	(void)state;
	stream_init_mem_writer(&w);
	mig_put_rec(&w, MIG_REC_HELLO, 8);
	stream_put_u32(&w, 2);
	stream_put_u32(&w, 3);
	mig_put_rec(&w, MIG_REC_HELLO, 4);
	stream_put_u32(&w, 1);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(mig_get_rec(&r, &rec, &e), 0);
	assert_int_equal(hello_read(&r, &rec, &idx, &n, &e), 0);
	assert_int_equal(idx, 2);
	assert_int_equal(n, 3);
	assert_int_equal(mig_get_rec(&r, &rec, &e), 0);
	assert_int_equal(hello_read(&r, &rec, &idx, &n, &e), -1);
	assert_int_equal(stream_remaining(&r), 4);
	stream_destroy(&w);
}

/* The channel count (pass-0 SYNC) sizes the receiver's channel table: a
 * count past CHANNEL_MAX, zero, a wrapping one or a SYNC of another pass
 * is refused. */
static int count_read(uint32_t pass, uint64_t value, int *nch, struct err *e)
{
	struct stream w, r;
	int rc;
	stream_init_mem_writer(&w);
	mig_put_sync(&w, &(struct mig_sync){ .pass = pass, .value = value });
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	rc = read_channel_count(&r, nch, e);
	stream_destroy(&w);
	return rc;
}

static void test_channel_count(void **state)
{
	struct err e = { 0 };
	int nch = 0;
	(void)state;
	assert_int_equal(count_read(0, 1, &nch, &e), 0);
	assert_int_equal(nch, 1);
	assert_int_equal(count_read(0, CHANNEL_MAX, &nch, &e), 0);
	assert_int_equal(nch, CHANNEL_MAX);
	nch = 0;
	assert_int_equal(count_read(0, CHANNEL_MAX + 1, &nch, &e), -1);
	assert_non_null(strstr(e.msg, "channels announced"));
	assert_int_equal(count_read(0, 0, &nch, &e), -1);
	assert_int_equal(count_read(0, (1ULL << 32) + 2, &nch, &e), -1);
	assert_int_equal(count_read(1, 2, &nch, &e), -1);
	assert_int_equal(nch, 0);
	{
		/* another record where the count belongs */
		struct stream w, r;
		stream_init_mem_writer(&w);
		mig_put_rec(&w, MIG_REC_EOS, 0);
		stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
		assert_int_equal(read_channel_count(&r, &nch, &e), -1);
		assert_non_null(strstr(e.msg, "expected the channel count"));
		stream_destroy(&w);
	}
}

/* An extra channel's hello: an index of an extra channel not yet taken,
 * the announced count, and the main connection's sealing. */
static void test_hello_fits(void **state)
{
	static struct rx x;
	struct err e = { 0 };
	(void)state;
	x.nch = 3;
	assert_int_equal(hello_fits(&x, false, false, 1, 3, &e), 0);
	assert_int_equal(hello_fits(&x, true, true, 2, 3, &e), 0);
	assert_int_equal(hello_fits(&x, false, false, 0, 3, &e), -1); /* the main one's */
	assert_non_null(strstr(e.msg, "bad hello"));
	assert_int_equal(hello_fits(&x, false, false, 3, 3, &e), -1);
	assert_int_equal(hello_fits(&x, false, false, CHANNEL_MAX, CHANNEL_MAX, &e), -1);
	assert_int_equal(hello_fits(&x, false, false, 1, 4, &e), -1);
	assert_int_equal(hello_fits(&x, false, false, 1, 2, &e), -1);
	x.ch[1].fd = 7; /* channel 1 is in */
	assert_int_equal(hello_fits(&x, false, false, 1, 3, &e), -1);
	assert_int_equal(hello_fits(&x, false, false, 2, 3, &e), 0);
	assert_int_equal(hello_fits(&x, false, true, 2, 3, &e), -1);
	assert_non_null(strstr(e.msg, "lacks encryption"));
	assert_int_equal(hello_fits(&x, true, false, 2, 3, &e), -1);
	assert_non_null(strstr(e.msg, "uses encryption"));
}

/* The verdict after READY, read from a stream holding what the writer put. */
static int verdict(void (*put)(struct stream *w), struct err *e)
{
	struct stream w, r;
	int rc;
	stream_init_mem_writer(&w);
	put(&w);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	memset(e, 0, sizeof(*e));
	rc = read_verdict(&r, e);
	stream_destroy(&w);
	return rc;
}

static void put_commit(struct stream *w) { mig_put_rec(w, MIG_REC_COMMIT, 0); }
static void put_commit_payload(struct stream *w)
{
	mig_put_rec(w, MIG_REC_COMMIT, 4);
	stream_put_u32(w, 0);
}
static void put_sync(struct stream *w) { mig_put_sync(w, &(struct mig_sync){ .pass = 9 }); }
static void put_eos(struct stream *w) { mig_put_rec(w, MIG_REC_EOS, 0); }
static void put_abort(struct stream *w)
{
	mig_put_rec(w, MIG_REC_ABORT, 9);
	stream_put(w, "cancelled", 9);
}
static void put_nothing(struct stream *w) { (void)w; }

/* Only an empty COMMIT lets the destination run the guest: any other
 * record (the source may be running it) is refused, ABORT says the move
 * was called off, and a stream that ends is no COMMIT either. */
static void test_verdict(void **state)
{
	struct err e;
	(void)state;
	assert_int_equal(verdict(put_commit, &e), 0);
	assert_int_equal(verdict(put_commit_payload, &e), -1);
	assert_non_null(strstr(e.msg, "expected COMMIT"));
	assert_int_equal(verdict(put_sync, &e), -1);
	assert_non_null(strstr(e.msg, "expected COMMIT, got sync"));
	assert_int_equal(verdict(put_eos, &e), -1);
	assert_int_equal(verdict(put_abort, &e), -1);
	assert_int_equal(e.code, ECANCELED);
	assert_non_null(strstr(e.msg, MIG_ABORT_PHRASE "cancelled"));
	assert_int_equal(verdict(put_nothing, &e), -1);
	assert_non_null(strstr(e.msg, "waiting for COMMIT"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_extents_ok),
		cmocka_unit_test(test_extents_short),
		cmocka_unit_test(test_extents_bounds),
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_channel_count),
		cmocka_unit_test(test_hello_fits),
		cmocka_unit_test(test_verdict),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
