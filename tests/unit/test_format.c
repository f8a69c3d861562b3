/*
 * Unit tests for stream framing (src/migration/format.c) and the page path
 * on top of it: every validation in mig_get_header / mig_get_rec /
 * mig_get_mem_hdr / mig_get_section_hdr / cpu_model_get is hit with a
 * minimal hostile input, then ram_send_pages -> ram_recv_record round-trips pages between
 * two fake guests (plain buffers, no KVM): raw, zero, zstd and lz4 runs,
 * the generation rule (an older copy never overwrites a newer page), and
 * corrupted raw and compressed payloads (a damaged sum included), which
 * must be rejected; a torn page in a partly stale summed run is held torn.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "migration/check.h"
#include "migration/format.h"
#include "migration/ram.h"
#include "migration/ram_codec.h"
#include "vmm/config.h"
#include "vmm/x86/cpustate.h"

/* ---------- framing ---------- */

static int parse_header(const void *p, size_t n, struct err *e)
{
	struct stream r;
	uint32_t version = 0;
	stream_init_mem_reader(&r, p, n);
	if (mig_get_header(&r, &version, e) < 0)
		return -1;
	return (int)version;
}

/* The AVX2 build of the checksum gives the library's result for every
 * length (a host without AVX2 must verify what one with it summed). */
static void test_sum_builds_agree(void **state)
{
	enum { N = (1 << 20) + 77 };
	uint8_t *b = malloc(N);
	uint32_t x = 12345;
	static const size_t lens[] = { 0, 1, 3, 16, 17, 128, 129, 240, 241, 1024, 4096, 65536, N };
	(void)state;
	assert_non_null(b);
	for (size_t i = 0; i < N; i++) {
		x ^= x << 13; x ^= x >> 17; x ^= x << 5;
		b[i] = (uint8_t)x;
	}
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		assert_true(mig_sum(b, lens[i]) == XXH3_64bits(b, lens[i]));
		if (__builtin_cpu_supports("avx2"))
			assert_true(mig_sum_avx2(b + 1, lens[i] - (lens[i] > 0)) ==
				    XXH3_64bits(b + 1, lens[i] - (lens[i] > 0)));
	}
	free(b);
}

static void test_header(void **state)
{
	struct stream w;
	struct err e = { 0 };
	uint8_t h[16];
	(void)state;
	stream_init_mem_writer(&w);
	mig_put_header(&w);
	assert_int_equal(stream_mem_len(&w), 16);
	memcpy(h, stream_mem_data(&w), 16);
	stream_destroy(&w);
	assert_memory_equal(h, "FERRYMIG\x07\0\0\0\0\0\0\0", 16);
	assert_int_equal(parse_header(h, 16, &e), 7);
	assert_int_equal(parse_header(h, 15, &e), -1);
	assert_non_null(strstr(e.msg, "truncated"));
	h[0] = 'X';
	assert_int_equal(parse_header(h, 16, &e), -1);
	assert_non_null(strstr(e.msg, "bad magic"));
	h[0] = 'F';
	/* versions 2 to 6 (state files of earlier ferrys) still read; 1 and 8 do not */
	for (uint8_t v = 2; v <= 7; v++) {
		h[8] = v;
		assert_int_equal(parse_header(h, 16, &e), v);
	}
	h[8] = 8;
	assert_int_equal(parse_header(h, 16, &e), -1);
	assert_non_null(strstr(e.msg, "version 8"));
	h[8] = 1;
	assert_int_equal(parse_header(h, 16, &e), -1);
	assert_non_null(strstr(e.msg, "versions 2 to 7"));
	h[8] = 6;
	h[12] = 1;
	assert_int_equal(parse_header(h, 16, &e), -1);
	assert_non_null(strstr(e.msg, "flags"));
}

/* CONFIG: its sum covers the JSON from version 3 on; every byte of it,
 * flipped, is caught; a version 2 record (no sum) reads as plain JSON. */
static void test_config_sum(void **state)
{
	static const char json[] = "{\"name\":\"t\",\"memory\":16777216,\"vcpus\":1,\"disk\":\"/d\"}";
	const uint32_t n = sizeof(json) - 1;
	struct stream w, r;
	struct mig_rec rec;
	struct err e = { 0 };
	const char *text;
	uint32_t tlen;
	uint8_t *p;
	(void)state;
	stream_init_mem_writer(&w);
	mig_put_config(&w, json);
	assert_int_equal(stream_mem_len(&w), MIG_REC_HDR + 8 + n);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(mig_get_rec(&r, &rec, &e), 0);
	assert_int_equal(rec.type, MIG_REC_CONFIG);
	assert_int_equal(rec.len, 8 + n);
	p = (uint8_t *)stream_mem_data(&w) + MIG_REC_HDR;
	assert_int_equal(mig_config_text(3, p, rec.len, &text, &tlen, &e), 0);
	assert_int_equal(tlen, n);
	assert_memory_equal(text, json, n);
	for (uint32_t i = 0; i < rec.len; i++) {
		p[i] ^= 0x04;
		assert_int_equal(mig_config_text(3, p, rec.len, &text, &tlen, &e), -1);
		assert_non_null(strstr(e.msg, "checksum does not match"));
		p[i] ^= 0x04;
	}
	assert_int_equal(mig_config_text(3, p, 7, &text, &tlen, &e), -1);
	assert_non_null(strstr(e.msg, "no room for its checksum"));
	assert_int_equal(mig_config_text(2, p + 8, n, &text, &tlen, &e), 0);
	assert_ptr_equal(text, p + 8);
	assert_int_equal(tlen, n);
	stream_destroy(&w);
}

/* The configuration's strings are paths and names: one with a NUL inside
 * (JSON \u0000) is refused, not cut at it. */
static void test_config_nul(void **state)
{
	static const char ok[] = "{\"name\":\"t\",\"memory\":16777216,\"vcpus\":1,\"disk\":\"/d\"}";
	static const char disk[] = "{\"name\":\"t\",\"memory\":16777216,\"vcpus\":1,\"disk\":\"/d\\u0000x\"}";
	static const char name[] = "{\"name\":\"t\\u0000x\",\"memory\":16777216,\"vcpus\":1}";
	struct vm_config c;
	struct err e = { 0 };
	(void)state;
	assert_int_equal(config_from_json(ok, sizeof(ok) - 1, &c, &e), 0);
	assert_string_equal(c.disk, "/d");
	assert_int_equal(config_from_json(disk, sizeof(disk) - 1, &c, &e), -1);
	assert_non_null(strstr(e.msg, "'disk' contains a NUL byte"));
	assert_int_equal(config_from_json(name, sizeof(name) - 1, &c, &e), -1);
	assert_non_null(strstr(e.msg, "'name' contains a NUL byte"));
}

/* Its booleans are booleans: json-c would read "false" (a non-empty
 * string) as true and give the VM a NIC, or a read-only disk. */
static void test_config_bools(void **state)
{
	static const char ok[] = "{\"name\":\"t\",\"memory\":16777216,\"vcpus\":1,\"net\":true,\"disk_readonly\":false}";
	static const char net[] = "{\"name\":\"t\",\"memory\":16777216,\"vcpus\":1,\"net\":\"false\"}";
	static const char ro[] = "{\"name\":\"t\",\"memory\":16777216,\"vcpus\":1,\"disk_readonly\":1}";
	struct vm_config c;
	struct err e = { 0 };
	(void)state;
	assert_int_equal(config_from_json(ok, sizeof(ok) - 1, &c, &e), 0);
	assert_true(c.net && !c.disk_readonly);
	assert_int_equal(config_from_json(net, sizeof(net) - 1, &c, &e), -1);
	assert_non_null(strstr(e.msg, "'net' must be true or false"));
	assert_int_equal(config_from_json(ro, sizeof(ro) - 1, &c, &e), -1);
	assert_non_null(strstr(e.msg, "'disk_readonly' must be true or false"));
}

static int parse_rec(uint32_t type, uint32_t len, struct mig_rec *rec, struct err *e)
{
	uint8_t b[8];
	struct stream r;
	le_put_u32(b, type);
	le_put_u32(b + 4, len);
	stream_init_mem_reader(&r, b, sizeof(b));
	return mig_get_rec(&r, rec, e);
}

static void test_rec(void **state)
{
	struct mig_rec rec;
	struct err e = { 0 };
	struct stream r;
	(void)state;
	assert_int_equal(parse_rec(MIG_REC_MEM, 16, &rec, &e), 0);
	assert_int_equal(rec.type, MIG_REC_MEM);
	assert_int_equal(rec.len, 16);
	assert_int_equal(parse_rec(MIG_REC_EOS, 0, &rec, &e), 0);
	assert_int_equal(parse_rec(0, 0, &rec, &e), -1);
	assert_non_null(strstr(e.msg, "unknown record type 0"));
	assert_int_equal(parse_rec(MIG_REC_MAX + 1, 0, &rec, &e), -1);
	assert_non_null(strstr(e.msg, "unknown record type"));
	assert_int_equal(parse_rec(MIG_REC_MEM, MIG_MAX_RECORD, &rec, &e), 0);
	assert_int_equal(parse_rec(MIG_REC_MEM, MIG_MAX_RECORD + 1, &rec, &e), -1);
	assert_non_null(strstr(e.msg, "limit"));
	assert_int_equal(parse_rec(MIG_REC_MEM, UINT32_MAX, &rec, &e), -1);
	assert_int_equal(parse_rec(MIG_REC_CONFIG, MIG_MAX_CONFIG, &rec, &e), 0);
	assert_int_equal(parse_rec(MIG_REC_CONFIG, MIG_MAX_CONFIG + 1, &rec, &e), -1);
	assert_non_null(strstr(e.msg, "configuration"));
	stream_init_mem_reader(&r, "\x02\0\0\0\x10", 5);
	assert_int_equal(mig_get_rec(&r, &rec, &e), -1);
	assert_non_null(strstr(e.msg, "truncated"));
	assert_string_equal(mig_rec_name(MIG_REC_SECTION), "section");
	assert_string_equal(mig_rec_name(1000), "?");
}

/* SYNC: written and read back; every other length, and one cut short,
 * rejected. */
static void test_sync(void **state)
{
	struct stream w, r;
	struct mig_rec rec;
	struct mig_sync sy;
	struct err e = { 0 };
	uint8_t bad[20] = { 0 };
	(void)state;
	stream_init_mem_writer(&w);
	mig_put_sync(&w, &(struct mig_sync){ .pass = 3, .value = 1ULL << 40 });
	assert_int_equal(stream_mem_len(&w), MIG_REC_HDR + 12);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(mig_get_rec(&r, &rec, &e), 0);
	assert_int_equal(rec.type, MIG_REC_SYNC);
	assert_int_equal(mig_get_sync(&r, &rec, &sy, &e), 0);
	assert_true(sy.pass == 3 && sy.value == 1ULL << 40);
	stream_destroy(&w);
	for (uint32_t len = 0; len <= sizeof(bad); len++) {
		if (len == 12)
			continue;
		stream_init_mem_reader(&r, bad, sizeof(bad));
		rec = (struct mig_rec){ MIG_REC_SYNC, len };
		assert_int_equal(mig_get_sync(&r, &rec, &sy, &e), -1);
		assert_non_null(strstr(e.msg, "sync record of"));
	}
	stream_init_mem_reader(&r, bad, 10);
	rec = (struct mig_rec){ MIG_REC_SYNC, 12 };
	assert_int_equal(mig_get_sync(&r, &rec, &sy, &e), -1);
}

/* ABORT: the source's reason, capped, and marked as a move called off
 * (ECANCELED) so the destination tells it from a broken one. */
static void test_abort(void **state)
{
	char long_why[400];
	struct stream r;
	struct mig_rec rec;
	struct err e = { 0 };
	(void)state;
	stream_init_mem_reader(&r, "cancelled by request", 20);
	rec = (struct mig_rec){ MIG_REC_ABORT, 20 };
	assert_int_equal(mig_get_abort(&r, &rec, &e), -1);
	assert_string_equal(e.msg, MIG_ABORT_PHRASE "cancelled by request");
	assert_int_equal(e.code, ECANCELED);
	e = (struct err){ 0 };
	stream_init_mem_reader(&r, "", 0);
	rec = (struct mig_rec){ MIG_REC_ABORT, 0 };
	assert_int_equal(mig_get_abort(&r, &rec, &e), -1);
	assert_string_equal(e.msg, MIG_ABORT_PHRASE "(no reason given)");
	assert_int_equal(e.code, ECANCELED);
	/* a long reason is cut at 255 bytes; a truncated record gives none */
	memset(long_why, 'x', sizeof(long_why));
	stream_init_mem_reader(&r, long_why, sizeof(long_why));
	rec = (struct mig_rec){ MIG_REC_ABORT, sizeof(long_why) };
	assert_int_equal(mig_get_abort(&r, &rec, &e), -1);
	assert_int_equal(strlen(e.msg), strlen(MIG_ABORT_PHRASE) + 255);
	stream_init_mem_reader(&r, "short", 5);
	rec = (struct mig_rec){ MIG_REC_ABORT, 40 };
	assert_int_equal(mig_get_abort(&r, &rec, &e), -1);
	assert_string_equal(e.msg, MIG_ABORT_PHRASE "(no reason given)");
}

/* ---------- CPU_MODEL ---------- */

static struct cpu_model sample_model(void)
{
	struct cpu_model cm = { .tsc_khz = 2994374, .mcg_cap = 0x100010a, .nmsrs = 3 };
	cm.msrs[0] = (struct cpu_msr){ 0x10a, 0x20000c0ebull };
	cm.msrs[1] = (struct cpu_msr){ 0x345, 0x4f3 };
	cm.msrs[2] = (struct cpu_msr){ 0x480, 0xda040000000012ull };
	return cm;
}

/* Decodes b (n bytes) as a CPU_MODEL record of rec_len bytes. */
static int parse_model(const uint8_t *b, size_t n, uint32_t rec_len, struct cpu_model *cm,
		       struct err *e)
{
	struct stream r;
	stream_init_mem_reader(&r, b, n);
	return cpu_model_get(&r, rec_len, cm, e);
}

static void test_cpu_model(void **state)
{
	struct cpu_model cm = sample_model(), got;
	struct err e = { 0 };
	struct stream w;
	uint8_t b[CPU_MODEL_WIRE_MIN + (CPU_MODEL_MAX_MSRS + 1) * CPU_MODEL_WIRE_MSR];
	size_t n;
	(void)state;

	/* Round trip, and the layout docs/stream.md gives. */
	stream_init_mem_writer(&w);
	cpu_model_put(&w, &cm);
	n = stream_mem_len(&w);
	assert_int_equal(n, CPU_MODEL_WIRE_MIN + 3 * CPU_MODEL_WIRE_MSR);
	memcpy(b, stream_mem_data(&w), n);
	stream_destroy(&w);
	assert_int_equal(le_get_u32(b), CPU_MODEL_VERSION);
	assert_int_equal(le_get_u32(b + 4), 2994374);
	assert_true(le_get_u64(b + 8) == 0x100010aull);
	assert_int_equal(le_get_u32(b + 16), 3);
	assert_int_equal(le_get_u32(b + 20), 0x10a);
	assert_true(le_get_u64(b + 24) == 0x20000c0ebull);
	assert_int_equal(parse_model(b, n, (uint32_t)n, &got, &e), 0);
	assert_int_equal(got.tsc_khz, cm.tsc_khz);
	assert_true(got.mcg_cap == cm.mcg_cap);
	assert_int_equal(got.nmsrs, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(got.msrs[i].index, cm.msrs[i].index);
		assert_true(got.msrs[i].data == cm.msrs[i].data);
	}

	/* None of the optional parts: no rate, no machine checks, no MSRs. */
	memset(&cm, 0, sizeof(cm));
	stream_init_mem_writer(&w);
	cpu_model_put(&w, &cm);
	assert_int_equal(stream_mem_len(&w), CPU_MODEL_WIRE_MIN);
	assert_int_equal(parse_model(stream_mem_data(&w), CPU_MODEL_WIRE_MIN, CPU_MODEL_WIRE_MIN, &got, &e), 0);
	assert_int_equal(got.nmsrs, 0);
	stream_destroy(&w);

	/* The most MSRs the format holds, and one more. */
	cm = sample_model();
	cm.nmsrs = CPU_MODEL_MAX_MSRS;
	for (uint32_t i = 0; i < CPU_MODEL_MAX_MSRS; i++)
		cm.msrs[i] = (struct cpu_msr){ 0x480 + i, i };
	stream_init_mem_writer(&w);
	cpu_model_put(&w, &cm);
	n = stream_mem_len(&w);
	memcpy(b, stream_mem_data(&w), n);
	stream_destroy(&w);
	assert_int_equal(parse_model(b, n, (uint32_t)n, &got, &e), 0);
	assert_int_equal(got.nmsrs, CPU_MODEL_MAX_MSRS);
	le_put_u32(b + 16, CPU_MODEL_MAX_MSRS + 1);
	le_put_u32(b + n, 0x4ff);
	le_put_u64(b + n + 4, 0);
	assert_int_equal(parse_model(b, n + CPU_MODEL_WIRE_MSR, (uint32_t)n + CPU_MODEL_WIRE_MSR, &got, &e), -1);
	assert_non_null(strstr(e.msg, "33 feature MSRs exceeds 32"));
	le_put_u32(b + 16, CPU_MODEL_MAX_MSRS);

	/* Hostile lengths and fields, each refused by name. */
	cm = sample_model();
	stream_init_mem_writer(&w);
	cpu_model_put(&w, &cm);
	n = stream_mem_len(&w);
	memcpy(b, stream_mem_data(&w), n);
	stream_destroy(&w);
	assert_int_equal(parse_model(b, n, 19, &got, &e), -1);
	assert_non_null(strstr(e.msg, "a record of 19 bytes"));
	assert_int_equal(parse_model(b, n, (uint32_t)n - 1, &got, &e), -1);
	assert_non_null(strstr(e.msg, "3 MSRs in a record of 55 bytes (expected 56)"));
	assert_int_equal(parse_model(b, n, (uint32_t)n + 12, &got, &e), -1);
	assert_non_null(strstr(e.msg, "expected 56"));
	/* the record says more than the stream holds: refused, nothing read past it */
	assert_int_equal(parse_model(b, n - 5, (uint32_t)n, &got, &e), -1);
	le_put_u32(b, 2);
	assert_int_equal(parse_model(b, n, (uint32_t)n, &got, &e), -1);
	assert_non_null(strstr(e.msg, "vCPU model version 2 unsupported"));
	le_put_u32(b, CPU_MODEL_VERSION);
	le_put_u32(b + 16, 0xffffffffu); /* a count that would wrap the length sum */
	assert_int_equal(parse_model(b, n, (uint32_t)n, &got, &e), -1);
	assert_non_null(strstr(e.msg, "exceeds"));
	le_put_u32(b + 16, 3);
	le_put_u64(b + 8, 0x100); /* MCG_CTL_P but no banks */
	assert_int_equal(parse_model(b, n, (uint32_t)n, &got, &e), -1);
	assert_non_null(strstr(e.msg, "counts 0 machine-check banks"));
	le_put_u64(b + 8, 33);
	assert_int_equal(parse_model(b, n, (uint32_t)n, &got, &e), -1);
	assert_non_null(strstr(e.msg, "counts 33 machine-check banks"));
	le_put_u64(b + 8, 0x100010a);
	le_put_u32(b + 20 + 2 * CPU_MODEL_WIRE_MSR, 0x10a); /* the third MSR repeats the first */
	assert_int_equal(parse_model(b, n, (uint32_t)n, &got, &e), -1);
	assert_non_null(strstr(e.msg, "MSR 0x10a appears twice"));
}

/* The checker decodes CPU_MODEL as the destination does and dumps it;
 * a bad one makes the stream invalid, with its offset. */
static void test_check_cpu_model(void **state)
{
	struct vm_config cfg = { .name = "t", .mem_size = 16 << 20, .vcpus = 1 };
	struct streamcheck_report *rep = calloc(1, sizeof(*rep));
	struct cpu_model cm = sample_model();
	struct stream w, r, m;
	struct err e = { 0 };
	char *json = config_to_json(&cfg), *dump = NULL;
	size_t dump_len = 0, at;
	FILE *f = open_memstream(&dump, &dump_len);
	struct streamcheck_opts o = { .dump = f };
	(void)state;

	assert_non_null(rep);
	assert_non_null(f);
	stream_init_mem_writer(&w);
	mig_put_header(&w);
	mig_put_config(&w, json);
	at = stream_mem_len(&w);
	stream_init_mem_writer(&m);
	cpu_model_put(&m, &cm);
	mig_put_rec(&w, MIG_REC_CPU_MODEL, (uint32_t)stream_mem_len(&m));
	stream_put(&w, stream_mem_data(&m), stream_mem_len(&m));
	stream_destroy(&m);
	mig_put_rec(&w, MIG_REC_STATE_END, 0);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(streamcheck_run(&r, &o, rep, &e), -1); /* no device state here */
	assert_non_null(strstr(rep->error, "lacks section")); /* past the model */
	assert_int_equal(rep->by_type[MIG_REC_CPU_MODEL], 1);
	fflush(f);
	assert_non_null(strstr(dump, "cpu-model"));
	assert_non_null(strstr(dump, "tsc_khz=2994374 mcg_cap=0x100010a msrs=3 0x10a=0x20000c0eb"));
	/* version 9: refused at the record */
	((uint8_t *)stream_mem_data(&w))[at + MIG_REC_HDR] = 9;
	o.dump = NULL;
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(streamcheck_run(&r, &o, rep, &e), -1);
	assert_non_null(strstr(rep->error, "cpu-model record at offset"));
	assert_non_null(strstr(rep->error, "version 9 unsupported"));
	assert_int_equal(rep->err_offset, at);
	fclose(f);
	free(dump);
	free(json);
	free(rep);
	stream_destroy(&w);
}

static int parse_mem(uint32_t rec_len, uint64_t gpa, uint32_t npages, uint16_t gen, uint8_t enc, uint8_t pad,
		     struct mig_mem_hdr *h, struct err *e)
{
	uint8_t b[MIG_MEM_HDR];
	struct stream r;
	le_put_u64(b, gpa);
	le_put_u32(b + 8, npages);
	le_put_u16(b + 12, gen);
	b[14] = enc;
	b[15] = pad;
	stream_init_mem_reader(&r, b, sizeof(b));
	return mig_get_mem_hdr(&r, rec_len, h, e);
}

static void test_mem_hdr(void **state)
{
	struct mig_mem_hdr h;
	struct err e = { 0 };
	struct stream w, r;
	(void)state;
	/* Valid: each encoding at its exact or limit payload size. */
	assert_int_equal(parse_mem(MIG_MEM_HDR + 2 * 4096, 0x1000, 2, 7, MIG_ENC_RAW, 0, &h, &e), 0);
	assert_true(h.gpa == 0x1000 && h.npages == 2 && h.gen == 7 && h.enc == MIG_ENC_RAW);
	assert_int_equal(parse_mem(MIG_MEM_HDR, 0, MIG_MAX_RUN_PAGES, 1, MIG_ENC_ZERO, 0, &h, &e), 0);
	assert_int_equal(parse_mem(MIG_MEM_HDR + 1, 0, 1, 1, MIG_ENC_ZSTD, 0, &h, &e), 0);
	assert_int_equal(parse_mem(MIG_MEM_HDR + 2 * 4096 + 4096, 0, 2, 1, MIG_ENC_LZ4, 0, &h, &e), 0);
	/* Shorter than its own header. */
	assert_int_equal(parse_mem(MIG_MEM_HDR - 1, 0, 1, 1, MIG_ENC_ZERO, 0, &h, &e), -1);
	assert_non_null(strstr(e.msg, "shorter than its header"));
	/* Unknown encoding, and a non-zero pad byte. */
	assert_int_equal(parse_mem(MIG_MEM_HDR, 0, 1, 1, MIG_ENC_MAX + 1, 0, &h, &e), -1);
	assert_non_null(strstr(e.msg, "encoding"));
	assert_int_equal(parse_mem(MIG_MEM_HDR, 0, 1, 1, MIG_ENC_ZERO, 1, &h, &e), -1);
	/* Page counts. */
	assert_int_equal(parse_mem(MIG_MEM_HDR, 0, 0, 1, MIG_ENC_ZERO, 0, &h, &e), -1);
	assert_non_null(strstr(e.msg, "0 pages"));
	assert_int_equal(parse_mem(MIG_MEM_HDR, 0, MIG_MAX_RUN_PAGES + 1, 1, MIG_ENC_ZERO, 0, &h, &e), -1);
	assert_int_equal(parse_mem(MIG_MEM_HDR, 0, UINT32_MAX, 1, MIG_ENC_ZERO, 0, &h, &e), -1);
	/* Alignment. */
	assert_int_equal(parse_mem(MIG_MEM_HDR, 0x1234, 1, 1, MIG_ENC_ZERO, 0, &h, &e), -1);
	assert_non_null(strstr(e.msg, "page aligned"));
	/* Payload sizes that disagree with the header. */
	assert_int_equal(parse_mem(MIG_MEM_HDR + 4095, 0, 1, 1, MIG_ENC_RAW, 0, &h, &e), -1);
	assert_non_null(strstr(e.msg, "raw memory record"));
	assert_int_equal(parse_mem(MIG_MEM_HDR + 4096, 0, 2, 1, MIG_ENC_RAW, 0, &h, &e), -1);
	assert_int_equal(parse_mem(MIG_MEM_HDR + 1, 0, 1, 1, MIG_ENC_ZERO, 0, &h, &e), -1);
	assert_non_null(strstr(e.msg, "zero-page"));
	assert_int_equal(parse_mem(MIG_MEM_HDR, 0, 1, 1, MIG_ENC_ZSTD, 0, &h, &e), -1);
	assert_non_null(strstr(e.msg, "compressed"));
	assert_int_equal(parse_mem(MIG_MEM_HDR + 2 * 4096 + 1, 0, 1, 1, MIG_ENC_LZ4, 0, &h, &e), -1);
	/* Truncated header. */
	stream_init_mem_reader(&r, "\0\0\0\0", 4);
	assert_int_equal(mig_get_mem_hdr(&r, MIG_MEM_HDR, &h, &e), -1);
	assert_non_null(strstr(e.msg, "truncated"));
	/* put/get symmetry. */
	stream_init_mem_writer(&w);
	mig_put_mem_hdr(&w, &(struct mig_mem_hdr){ .gpa = 0x100000000ULL, .npages = 3, .gen = 0xfffe,
						    .enc = MIG_ENC_ZERO });
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(mig_get_mem_hdr(&r, MIG_MEM_HDR, &h, &e), 0);
	assert_true(h.gpa == 0x100000000ULL && h.npages == 3 && h.gen == 0xfffe);
	stream_destroy(&w);
}

/* A section record body: u16 name length, name, u32 version, payload. */
static int parse_section(uint16_t nlen, const char *name, size_t name_bytes, uint32_t rec_len, char out[],
			 uint32_t *version, uint32_t *plen, struct err *e)
{
	struct stream w, r;
	uint64_t sum;
	int rc;
	stream_init_mem_writer(&w);
	stream_put_u16(&w, nlen);
	stream_put(&w, name, name_bytes);
	stream_put_u32(&w, 5);
	stream_put_u64(&w, 0);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	rc = mig_get_section_hdr(&r, rec_len, out, version, plen, &sum, e);
	stream_destroy(&w);
	return rc;
}

static void test_section_hdr(void **state)
{
	char name[MIG_MAX_NAME + 1], longname[MIG_MAX_NAME + 2];
	uint32_t version, plen;
	uint64_t sum;
	struct err e = { 0 };
	struct stream w, r;
	uint8_t payload[3] = { 1, 2, 3 };
	(void)state;
	/* Round trip through mig_put_section. */
	stream_init_mem_writer(&w);
	mig_put_section(&w, "uart", 9, payload, sizeof(payload));
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	struct mig_rec rec;
	assert_int_equal(mig_get_rec(&r, &rec, &e), 0);
	assert_int_equal(rec.type, MIG_REC_SECTION);
	assert_int_equal(mig_get_section_hdr(&r, rec.len, name, &version, &plen, &sum, &e), 0);
	assert_string_equal(name, "uart");
	assert_int_equal(version, 9);
	assert_int_equal(plen, 3);
	assert_true(sum == mig_sum(payload, sizeof(payload)));
	stream_destroy(&w);
	/* Name length zero, over the limit, or longer than the record. */
	assert_int_equal(parse_section(0, "", 0, 14, name, &version, &plen, &e), -1);
	assert_non_null(strstr(e.msg, "section name"));
	memset(longname, 'a', sizeof(longname));
	assert_int_equal(parse_section(MIG_MAX_NAME + 1, longname, MIG_MAX_NAME + 1, 1000, name, &version, &plen, &e),
			 -1);
	assert_int_equal(parse_section(MIG_MAX_NAME, longname, MIG_MAX_NAME, 2 + MIG_MAX_NAME + 4 + 8, name, &version,
				       &plen, &e), 0);
	assert_int_equal(plen, 0);
	assert_int_equal(parse_section(4, "uart", 4, 17, name, &version, &plen, &e), -1);
	/* Non-printable bytes (space and control) in the name. */
	assert_int_equal(parse_section(4, "ua t", 4, 18, name, &version, &plen, &e), -1);
	assert_non_null(strstr(e.msg, "non-printable"));
	assert_int_equal(parse_section(4, "ua\x01t", 4, 18, name, &version, &plen, &e), -1);
	/* Payload beyond the section limit. */
	assert_int_equal(parse_section(3, "kvm", 3, 2 + 3 + 4 + 8 + MIG_MAX_SECTION, name, &version, &plen, &e), 0);
	assert_int_equal(parse_section(3, "kvm", 3, 2 + 3 + 4 + 8 + MIG_MAX_SECTION + 1, name, &version, &plen, &e), -1);
	assert_non_null(strstr(e.msg, "exceeds"));
	/* Truncated inside the name. */
	stream_init_mem_reader(&r, "\x04\0ua", 4);
	assert_int_equal(mig_get_section_hdr(&r, 10, name, &version, &plen, &sum, &e), -1);
	/* A record too short for the name's length (1 byte, then the next
	 * record's header): refused as such, nothing read past it. Reading on
	 * took 0x0505 from the next record as the length, or waited out the
	 * peer's timeout when nothing followed. */
	{
		static const uint8_t next[] = { 0x05, 0x05, 0, 0, 0, 0, 0, 0, 0 };
		stream_init_mem_reader(&r, next, sizeof(next));
		assert_int_equal(mig_get_section_hdr(&r, 1, name, &version, &plen, &sum, &e), -1);
		assert_non_null(strstr(e.msg, "corrupt stream: section record of 1 bytes"));
		assert_int_equal(stream_remaining(&r), sizeof(next));
		stream_init_mem_reader(&r, next, 0);
		assert_int_equal(mig_get_section_hdr(&r, 0, name, &version, &plen, &sum, &e), -1);
		assert_non_null(strstr(e.msg, "corrupt stream: section record of 0 bytes"));
	}
}

/* ---------- pages ---------- */

#define NPAGES 1024u   /* 4 MiB fake guests */

static void fake_init(struct guest_mem *gm)
{
	memset(gm, 0, sizeof(*gm));
	gm->memfd = -1;
	gm->host = calloc(NPAGES, 4096);
	assert_non_null(gm->host);
	gm->ram_size = (uint64_t)NPAGES * 4096;
	gm->nregions = 1;
	gm->regions[0] = (struct gmem_region){ .gpa = 0, .size = gm->ram_size, .offset = 0 };
	gm->vmm_dirty = calloc(NPAGES / 64, sizeof(uint64_t));
}

static void fake_free(struct guest_mem *gm)
{
	free(gm->host);
	free(gm->vmm_dirty);
}

/* Page p: compressible text, or incompressible noise, or zero. */
static void fill(struct guest_mem *gm, uint32_t p, uint32_t seed, bool noisy)
{
	uint8_t *d = gm->host + (size_t)p * 4096;
	uint32_t x = seed * 2654435761u + p;
	for (int i = 0; i < 4096; i++) {
		if (noisy) {
			x ^= x << 13; x ^= x >> 17; x ^= x << 5;
			d[i] = (uint8_t)x;
		} else {
			d[i] = (uint8_t)("ferry page "[i % 11] + seed + (i / 512));
		}
	}
}

/* Apply every record in a memory stream to rr; returns the first failure. */
static int apply(struct ram_recv *rr, const struct stream *w, struct err *e)
{
	struct stream r;
	struct mig_rec rec;
	stream_init_mem_reader(&r, stream_mem_data(w), stream_mem_len(w));
	while (stream_remaining(&r)) {
		if (mig_get_rec(&r, &rec, e) < 0)
			return -1;
		assert_int_equal(rec.type, MIG_REC_MEM);
		if (ram_recv_record(rr, &r, rec.len, e) < 0)
			return -1;
	}
	return 0;
}

static void round_trip(struct ram_codec *codec, struct ram_stats *st)
{
	struct guest_mem src, dst;
	struct ram_recv rr;
	struct stream w;
	struct err e = { 0 };
	fake_init(&src);
	fake_init(&dst);
	/* Text pages, a zero hole, noise, more text; then junk in the destination
	 * so that zero runs over previously written pages must really clear. */
	for (uint32_t p = 0; p < 300; p++)
		fill(&src, p, 1, false);
	for (uint32_t p = 400; p < 420; p++)
		fill(&src, p, 2, true);
	for (uint32_t p = 500; p < NPAGES; p++)
		fill(&src, p, 3, false);
	assert_int_equal(ram_recv_init(&rr, &dst, &e), 0);
	stream_init_mem_writer(&w);
	memset(st, 0, sizeof(*st));
	assert_int_equal(ram_send_pages(&w, &src, 0, NPAGES, 1, codec, st), 0);
	assert_int_equal(apply(&rr, &w, &e), 0);
	assert_memory_equal(src.host, dst.host, (size_t)NPAGES * 4096);
	assert_int_equal(st->pages_raw + st->pages_zero + st->pages_compressed, NPAGES);
	assert_true(st->pages_zero >= 180);
	stream_destroy(&w);
	ram_recv_destroy(&rr);
	fake_free(&src);
	fake_free(&dst);
}

static void test_ram_raw(void **state)
{
	struct ram_stats st;
	(void)state;
	round_trip(NULL, &st);
	assert_int_equal(st.pages_compressed, 0);
}

static void test_ram_zstd(void **state)
{
	struct ram_stats st;
	struct err e = { 0 };
	struct ram_codec *c = ram_codec_new(RAM_CODEC_ZSTD, 3, false, &e);
	(void)state;
	assert_non_null(c);
	round_trip(c, &st);
	/* Text compresses; noise does not pay and goes raw. */
	assert_true(st.pages_compressed >= 800);
	assert_true(st.pages_raw >= 20);
	ram_codec_free(c);
}

static void test_ram_lz4(void **state)
{
	struct ram_stats st;
	struct err e = { 0 };
	struct ram_codec *c = ram_codec_new(RAM_CODEC_LZ4, 1, false, &e);
	(void)state;
	assert_non_null(c);
	round_trip(c, &st);
	assert_true(st.pages_compressed >= 800);
	ram_codec_free(c);
}

/* The adaptive codec: fake time makes one way cost 10x the other. */
static uint64_t fake_ns;
static uint64_t fake_now(void) { return fake_ns; }

/* Runs 1 MiB compressible runs through codec; each compressed run costs
 * comp_ms, each raw one raw_ms. Returns how many of runs [from, to) went
 * compressed. */
static int adaptive_runs(struct ram_codec *c, uint64_t comp_ms, uint64_t raw_ms, int from, int to)
{
	static uint8_t run[MIG_MAX_RUN_PAGES * 4096];
	struct ram_stats st = { 0 };
	struct stream w;
	int compressed = 0;
	for (size_t i = 0; i < sizeof(run); i++)
		run[i] = (uint8_t)("memory page text "[i % 17]);
	ram_codec_set_clock(c, fake_now);
	stream_init_mem_writer(&w);
	for (int i = 0; i < to; i++) {
		struct mig_mem_hdr h = { .gpa = 0, .npages = MIG_MAX_RUN_PAGES, .gen = 1 };
		int rc = ram_codec_put(c, &w, &h, run, false, &st);
		fake_ns += (rc == 0 ? comp_ms : raw_ms) * 1000000ULL;
		if (rc == 0 && i >= from)
			compressed++;
	}
	stream_destroy(&w);
	return compressed;
}

static void test_codec_adaptive(void **state)
{
	struct err e = { 0 };
	struct ram_codec *c;
	(void)state;
	/* After one probe of each way (8 + 8 runs), the faster way holds for
	 * the next 64 runs. */
	c = ram_codec_new(RAM_CODEC_LZ4, 1, true, &e);
	assert_non_null(c);
	assert_int_equal(adaptive_runs(c, 10, 1, 16, 80), 0);   /* compressing is slower: raw */
	ram_codec_free(c);
	/* The same answer twice: the next stretch doubles (128 runs, no probe
	 * after 64). */
	c = ram_codec_new(RAM_CODEC_LZ4, 1, true, &e);
	assert_non_null(c);
	assert_int_equal(adaptive_runs(c, 10, 1, 96, 224), 0);
	ram_codec_free(c);
	/* Within 5% is noise: raw stays. */
	c = ram_codec_new(RAM_CODEC_LZ4, 1, true, &e);
	assert_non_null(c);
	assert_int_equal(adaptive_runs(c, 100, 103, 16, 80), 0);
	ram_codec_free(c);
	c = ram_codec_new(RAM_CODEC_LZ4, 1, true, &e);
	assert_non_null(c);
	assert_int_equal(adaptive_runs(c, 1, 10, 16, 80), 64);  /* compressing is faster */
	ram_codec_free(c);
	/* Over many stretches, slow compression is only the probes' share. */
	c = ram_codec_new(RAM_CODEC_ZSTD, 1, true, &e);
	assert_non_null(c);
	assert_true(adaptive_runs(c, 10, 1, 0, 800) <= 800 * 8 / 80 + 8);
	ram_codec_free(c);
	/* An explicit codec is always tried, however slow. */
	c = ram_codec_new(RAM_CODEC_LZ4, 1, false, &e);
	assert_non_null(c);
	assert_int_equal(adaptive_runs(c, 10, 1, 0, 100), 100);
	ram_codec_free(c);
}

/* Counts the runs of incompressible noise [0, to) the adaptive codec
 * tries to compress (each try that does not shrink sends nothing). */
static int noise_tries(struct ram_codec *c, int to)
{
	uint8_t *run = malloc((size_t)MIG_MAX_RUN_PAGES * 4096);
	struct ram_stats st = { 0 };
	struct stream w;
	uint32_t x = 12345;
	int tries = 0;
	assert_non_null(run);
	for (size_t i = 0; i < (size_t)MIG_MAX_RUN_PAGES * 4096; i++) {
		x ^= x << 13; x ^= x >> 17; x ^= x << 5;
		run[i] = (uint8_t)x;
	}
	stream_init_mem_writer(&w);
	for (int i = 0; i < to; i++) {
		struct mig_mem_hdr h = { .gpa = 0, .npages = MIG_MAX_RUN_PAGES, .gen = 1 };
		if (ram_codec_wants(c, (size_t)MIG_MAX_RUN_PAGES * 4096)) {
			tries++;
			assert_int_equal(ram_codec_put(c, &w, &h, run, true, &st), -1);
		}
	}
	assert_int_equal(stream_mem_len(&w), 0);
	stream_destroy(&w);
	free(run);
	return tries;
}

/* Incompressible memory: 4 tries, then raw for 32 runs, 64, 128 ... up to
 * 1024 between tries; compressible memory resets the back-off. */
static void test_codec_incompressible_backoff(void **state)
{
	struct err e = { 0 };
	struct ram_codec *c = ram_codec_new(RAM_CODEC_LZ4, 1, true, &e);
	(void)state;
	assert_non_null(c);
	/* 4 + 32 + 4 + 64 + 4 + 128 + 4 + 256 + 4 + 512 + 4 + 1024 + 4 = 2044 */
	assert_int_equal(noise_tries(c, 2044), 7 * 4);
	/* the next stretch is 1024 again: the back-off stops growing */
	assert_int_equal(noise_tries(c, 1024), 0);
	assert_int_equal(noise_tries(c, 4), 4);
	/* a run that shrinks resets it: after this stretch, the probe
	 * compresses one, and the next misses buy 32 raw runs again, then 64 */
	assert_int_equal(noise_tries(c, 1024), 0);
	assert_int_equal(adaptive_runs(c, 1, 1, 0, 1), 1);
	assert_int_equal(noise_tries(c, 4 + 32), 4);
	assert_int_equal(noise_tries(c, 4 + 64), 4);
	assert_int_equal(noise_tries(c, 4), 4);
	ram_codec_free(c);
}

/* Send pages [first, first+n) of src at gen into dst. */
static int send_into(struct ram_recv *rr, struct guest_mem *src, uint32_t first, uint32_t n, uint16_t gen,
		     struct ram_codec *codec, struct err *e)
{
	struct stream w;
	struct ram_stats st = { 0 };
	int rc;
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_pages(&w, src, first, n, gen, codec, &st), 0);
	rc = apply(rr, &w, e);
	stream_destroy(&w);
	return rc;
}

static void generations(struct ram_codec *codec)
{
	struct guest_mem a, b, dst;
	struct ram_recv rr;
	struct err e = { 0 };
	fake_init(&a);
	fake_init(&b);
	fake_init(&dst);
	for (uint32_t p = 0; p < 16; p++) {
		fill(&a, p, 10, false);
		fill(&b, p, 20, false);
	}
	assert_int_equal(ram_recv_init(&rr, &dst, &e), 0);
	/* Page 5 arrives at gen 5 (from b), then the whole run 0..15 at gen 3
	 * (from a, e.g. a slower channel): page 5 must keep b's copy. */
	assert_int_equal(send_into(&rr, &b, 5, 1, 5, codec, &e), 0);
	assert_int_equal(send_into(&rr, &a, 0, 16, 3, codec, &e), 0);
	assert_memory_equal(dst.host + 5 * 4096, b.host + 5 * 4096, 4096);
	assert_memory_equal(dst.host, a.host, 5 * 4096);
	assert_memory_equal(dst.host + 6 * 4096, a.host + 6 * 4096, 10 * 4096);
	/* An older zero run loses too; a newer one wins. */
	memset(a.host + 5 * 4096, 0, 4096);
	assert_int_equal(send_into(&rr, &a, 5, 1, 4, codec, &e), 0);
	assert_memory_equal(dst.host + 5 * 4096, b.host + 5 * 4096, 4096);
	assert_int_equal(send_into(&rr, &a, 5, 1, 6, codec, &e), 0);
	assert_true(ram_page_is_zero(dst.host + 5 * 4096));
	/* Equal generation: the later copy wins (a resend within one pass). */
	assert_int_equal(send_into(&rr, &b, 7, 1, 3, codec, &e), 0);
	assert_memory_equal(dst.host + 7 * 4096, b.host + 7 * 4096, 4096);
	ram_recv_destroy(&rr);
	fake_free(&a);
	fake_free(&b);
	fake_free(&dst);
}

/* Each receiving channel takes only its own chunks, whole (MIG_CHUNK_PAGES,
 * dealt by mig_chunk_channel): a page on another channel could race the
 * owner's copy of it. */
static void test_channel_ownership(void **state)
{
	struct guest_mem src, dst;
	struct ram_recv rr;
	struct err e = { 0 };
	(void)state;
	fake_init(&src);
	fake_init(&dst);
	for (uint32_t p = 0; p < NPAGES; p++)
		fill(&src, p, 7, false);
	assert_int_equal(mig_chunk_channel(MIG_CHUNK_PAGES * 5 + 3, 4), 1);
	assert_int_equal(ram_recv_init(&rr, &dst, &e), 0);
	ram_recv_set_channel(&rr, 1, 2);
	assert_int_equal(send_into(&rr, &src, MIG_CHUNK_PAGES, MIG_CHUNK_PAGES, 1, NULL, &e), 0);
	assert_memory_equal(dst.host + MIG_CHUNK_PAGES * 4096, src.host + MIG_CHUNK_PAGES * 4096,
			    MIG_CHUNK_PAGES * 4096);
	assert_int_equal(send_into(&rr, &src, 3, 1, 1, NULL, &e), -1);
	assert_non_null(strstr(e.msg, "arrived on channel 1 of 2; they travel on channel 0"));
	assert_true(ram_page_is_zero(dst.host + 3 * 4096));
	/* channel 0's, but one run across two chunks */
	ram_recv_set_channel(&rr, 0, 2);
	assert_int_equal(send_into(&rr, &src, MIG_CHUNK_PAGES - 6, 11, 1, NULL, &e), -1);
	assert_int_equal(send_into(&rr, &src, MIG_CHUNK_PAGES - 6, 6, 1, NULL, &e), 0);
	/* one channel: every run is its own */
	ram_recv_set_channel(&rr, 0, 1);
	assert_int_equal(send_into(&rr, &src, MIG_CHUNK_PAGES - 6, 11, 2, NULL, &e), 0);
	ram_recv_destroy(&rr);
	fake_free(&src);
	fake_free(&dst);
}

static void test_generations_raw(void **state)
{
	(void)state;
	generations(NULL);
}

static void test_generations_zstd(void **state)
{
	struct err e = { 0 };
	struct ram_codec *c = ram_codec_new(RAM_CODEC_ZSTD, 1, false, &e);
	(void)state;
	generations(c);
	ram_codec_free(c);
}

/* Raw runs read from a running guest: one sum per page. A page that fails
 * its sum (the guest wrote it while it was sent) is held as torn, not an
 * error, until a later copy replaces it; one left torn at the end fails
 * the load. Damage to the sums themselves is an error at once. */
static void test_ram_summed_torn(void **state)
{
	struct guest_mem src, dst;
	struct ram_recv rr;
	struct ram_stats st = { .live_sums = true };
	struct err e = { 0 };
	struct stream w;
	uint8_t *d;
	(void)state;
	fake_init(&src);
	fake_init(&dst);
	st.bounce = malloc((size_t)MIG_MAX_RUN_PAGES * 4096);
	for (uint32_t p = 0; p < 16; p++)
		fill(&src, p, 4, true);
	assert_int_equal(ram_recv_init(&rr, &dst, &e), 0);

	/* 1: intact, every page lands and nothing is torn. */
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_pages(&w, &src, 0, 16, 1, NULL, &st), 0);
	d = (uint8_t *)stream_mem_data(&w);
	assert_int_equal(d[MIG_REC_HDR + 14], MIG_ENC_RAW_SUMS);
	assert_int_equal(stream_mem_len(&w), MIG_REC_HDR + MIG_MEM_HDR + 16 * (4096 + 8));
	assert_int_equal(apply(&rr, &w, &e), 0);
	assert_memory_equal(src.host, dst.host, 16 * 4096);
	assert_int_equal(ram_recv_check_torn(&rr, &e), 0);

	/* 2: page 3 changed under the sender after its sum was taken. */
	d[MIG_REC_HDR + MIG_MEM_HDR + 16 * 8 + 3 * 4096 + 100] ^= 0x5a;
	assert_int_equal(apply(&rr, &w, &e), 0);
	assert_int_equal(rr.st.pages_torn, 1);
	assert_int_equal(*rr.torn_left, 1);
	assert_int_equal(ram_recv_check_torn(&rr, &e), -1);
	assert_non_null(strstr(e.msg, "torn"));
	assert_non_null(strstr(e.msg, "0x3000"));
	/* ... the next pass sends it again (newer generation): clean. */
	stream_destroy(&w);
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_pages(&w, &src, 3, 1, 2, NULL, &st), 0);
	assert_int_equal(apply(&rr, &w, &e), 0);
	assert_int_equal(*rr.torn_left, 0);
	assert_int_equal(ram_recv_check_torn(&rr, &e), 0);
	assert_memory_equal(src.host, dst.host, 16 * 4096);

	/* 3: a torn copy older than what is held changes nothing. */
	stream_destroy(&w);
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_pages(&w, &src, 0, 16, 1, NULL, &st), 0);
	d = (uint8_t *)stream_mem_data(&w);
	d[MIG_REC_HDR + MIG_MEM_HDR + 16 * 8 + 3 * 4096 + 100] ^= 0x5a;
	assert_int_equal(apply(&rr, &w, &e), 0);
	assert_int_equal(ram_recv_check_torn(&rr, &e), 0);
	assert_memory_equal(src.host, dst.host, 16 * 4096);

	/* 4: damaged sums are corruption, not a torn page. */
	d[MIG_REC_HDR + MIG_MEM_HDR + 8] ^= 1;
	assert_int_equal(apply(&rr, &w, &e), -1);
	assert_non_null(strstr(e.msg, "page sums"));

	/* 5: a zero run over a torn page makes it whole too. */
	stream_destroy(&w);
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_pages(&w, &src, 8, 1, 3, NULL, &st), 0);
	d = (uint8_t *)stream_mem_data(&w);
	d[MIG_REC_HDR + MIG_MEM_HDR + 8 + 7] ^= 0x80;
	assert_int_equal(apply(&rr, &w, &e), 0);
	assert_int_equal(ram_recv_check_torn(&rr, &e), -1);
	memset(src.host + 8 * 4096, 0, 4096);
	stream_destroy(&w);
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_pages(&w, &src, 8, 1, 4, NULL, &st), 0);
	assert_int_equal(apply(&rr, &w, &e), 0);
	assert_int_equal(ram_recv_check_torn(&rr, &e), 0);
	assert_true(ram_page_is_zero(dst.host + 8 * 4096));

	/* 6: with the vCPUs paused (no bounce) runs go as plain raw. */
	free(st.bounce);
	st.bounce = NULL;
	stream_destroy(&w);
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_pages(&w, &src, 0, 4, 5, NULL, &st), 0);
	assert_int_equal(((uint8_t *)stream_mem_data(&w))[MIG_REC_HDR + 14], MIG_ENC_RAW);

	stream_destroy(&w);
	ram_recv_destroy(&rr);
	fake_free(&src);
	fake_free(&dst);
}

/* Live pages are summed first and only pages with the zero page's sum are
 * scanned: zero and non-zero stretches still become their own records,
 * split at the run limit, and land exactly. */
static void test_ram_summed_zero_runs(void **state)
{
	static const uint8_t zeros[4096];
	struct guest_mem src, dst;
	struct ram_recv rr;
	struct ram_stats st = { .live_sums = true };
	struct err e = { 0 };
	struct stream w, r;
	struct mig_rec rec;
	const uint32_t n = MIG_MAX_RUN_PAGES + 8;
	uint8_t enc[8];
	uint32_t npages[8], k = 0;
	(void)state;
	assert_int_equal(mig_sum(zeros, sizeof(zeros)), RAM_ZERO_PAGE_SUM);
	fake_init(&src);
	fake_init(&dst);
	assert_true(n <= NPAGES);
	st.bounce = malloc((size_t)MIG_MAX_RUN_PAGES * 4096);
	for (uint32_t p = 0; p < n; p++)
		if (p < 4 || p >= 6)
			fill(&src, p, 7, true);
	/* a page zero but for its last byte: its sum is not the zero page's */
	src.host[10 * 4096 + 4095] = 1;
	memset(src.host + 10 * 4096, 0, 4095);
	assert_int_equal(ram_recv_init(&rr, &dst, &e), 0);
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_pages(&w, &src, 0, n, 1, NULL, &st), 0);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	while (stream_remaining(&r) && k < 8) {
		struct mig_mem_hdr h;
		assert_int_equal(mig_get_rec(&r, &rec, &e), 0);
		assert_int_equal(mig_get_mem_hdr(&r, rec.len, &h, &e), 0);
		enc[k] = h.enc;
		npages[k++] = h.npages;
		stream_skip(&r, rec.len - MIG_MEM_HDR);
	}
	assert_int_equal(k, 4);
	assert_int_equal(enc[0], MIG_ENC_RAW_SUMS);
	assert_int_equal(npages[0], 4);
	assert_int_equal(enc[1], MIG_ENC_ZERO);
	assert_int_equal(npages[1], 2);
	assert_int_equal(enc[2], MIG_ENC_RAW_SUMS);
	assert_int_equal(npages[2], MIG_MAX_RUN_PAGES - 6);
	assert_int_equal(enc[3], MIG_ENC_RAW_SUMS);
	assert_int_equal(npages[3], 8);
	assert_int_equal(st.pages_zero, 2);
	assert_int_equal(st.pages_raw, n - 2);
	assert_int_equal(apply(&rr, &w, &e), 0);
	assert_int_equal(ram_recv_check_torn(&rr, &e), 0);
	assert_memory_equal(src.host, dst.host, (size_t)n * 4096);
	stream_destroy(&w);
	ram_recv_destroy(&rr);
	free(st.bounce);
	fake_free(&src);
	fake_free(&dst);
}

/* The populated-page census of a real memfd: exact counts per 1 MiB
 * window however the extent list is merged (and however often the walk
 * is retried with a wider gap). */
static void test_ram_census(void **state)
{
	struct guest_mem gm;
	struct ram_census c = { 0 };
	uint64_t ext[4][2];
	uint16_t win[NPAGES / MIG_MAX_RUN_PAGES];
	(void)state;
	memset(&gm, 0, sizeof(gm));
	gm.memfd = memfd_create("census", 0);
	assert_true(gm.memfd >= 0);
	gm.ram_size = (uint64_t)NPAGES * 4096;
	assert_int_equal(ftruncate(gm.memfd, (off_t)gm.ram_size), 0);
	gm.host = mmap(NULL, gm.ram_size, PROT_READ | PROT_WRITE, MAP_SHARED, gm.memfd, 0);
	assert_true(gm.host != MAP_FAILED);
	gm.nregions = 1;
	gm.regions[0] = (struct gmem_region){ .gpa = 0, .size = gm.ram_size, .offset = 0 };
	gm.host[3 * 4096] = 1;
	memset(gm.host + 300 * 4096, 2, 300 * 4096);
	gm.host[1000 * 4096] = 3;
	c.per_window = win;
	memset(win, 0xff, sizeof(win));
	assert_int_equal(ram_populated_extents(&gm, ext, 4, &c), 3);
	assert_int_equal(c.pages, 302);
	assert_int_equal(win[0], 1);
	assert_int_equal(win[1], 512 - 300);
	assert_int_equal(win[2], 600 - 512);
	assert_int_equal(win[3], 1);
	/* two extents at most: three retries with wider gaps end in one
	 * extent over the holes; the census still counts without them */
	assert_int_equal(ram_populated_extents(&gm, ext, 2, &c), 1);
	assert_int_equal(ext[0][0], 3);
	assert_int_equal(ext[0][1], 1001 - 3);
	assert_int_equal(c.pages, 302);
	assert_int_equal(win[1], 512 - 300);
	assert_int_equal(win[3], 1);
	/* counted within a range, as pass 1 does for a chunk first touched
	 * after the walk: extents cut at both ends, the end past RAM clamped */
	assert_int_equal(ram_populated_in(&gm, 0, 256), 1);
	assert_int_equal(ram_populated_in(&gm, 256, 256), 512 - 300);
	assert_int_equal(ram_populated_in(&gm, 350, 100), 100);
	assert_int_equal(ram_populated_in(&gm, 4, 296), 0);
	assert_int_equal(ram_populated_in(&gm, 768, 1 << 20), 1);
	assert_int_equal(ram_populated_in(&gm, NPAGES, 10), 0);
	gm.host[700 * 4096] = 4; /* touched after the census */
	assert_int_equal(ram_populated_in(&gm, 512, 256), 600 - 512 + 1);
	assert_int_equal(munmap(gm.host, gm.ram_size), 0);
	close(gm.memfd);
}

/* The stream checker follows torn pages as a receiver does: one still
 * torn when the state ends makes the stream invalid. */
static void check_torn_stream(uint16_t torn_gen, uint16_t resend_gen, char *msg, size_t cap)
{
	struct vm_config cfg = { .name = "t", .mem_size = 16 << 20, .vcpus = 1 };
	struct streamcheck_opts o = { 0 };
	struct streamcheck_report *rep = calloc(1, sizeof(*rep));
	struct ram_stats st = { .live_sums = true };
	struct guest_mem src;
	struct stream w, r;
	struct err e = { 0 };
	char *json = config_to_json(&cfg);
	size_t at;
	fake_init(&src);
	st.bounce = malloc((size_t)MIG_MAX_RUN_PAGES * 4096);
	for (uint32_t p = 0; p < 4; p++)
		fill(&src, p, 9, true);
	stream_init_mem_writer(&w);
	mig_put_header(&w);
	mig_put_config(&w, json);
	at = stream_mem_len(&w);
	assert_int_equal(ram_send_pages(&w, &src, 0, 4, torn_gen, NULL, &st), 0);
	((uint8_t *)stream_mem_data(&w))[at + MIG_REC_HDR + MIG_MEM_HDR + 4 * 8 + 2 * 4096] ^= 1;
	if (resend_gen)
		assert_int_equal(ram_send_pages(&w, &src, 2, 1, resend_gen, NULL, &st), 0);
	mig_put_rec(&w, MIG_REC_STATE_END, 0);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(streamcheck_run(&r, &o, rep, &e), -1); /* no device state here */
	assert_int_equal(rep->pages_torn, 1);
	snprintf(msg, cap, "%s", rep->error);
	free(json);
	free(rep);
	free(st.bounce);
	stream_destroy(&w);
	fake_free(&src);
}

static void test_check_torn(void **state)
{
	char msg[ERR_MSG_MAX];
	(void)state;
	check_torn_stream(1, 0, msg, sizeof(msg));
	assert_non_null(strstr(msg, "1 page(s) arrived torn"));
	/* sent again: the torn page passes; what fails is the missing state */
	check_torn_stream(1, 2, msg, sizeof(msg));
	assert_null(strstr(msg, "torn"));
	assert_non_null(strstr(msg, "lacks section"));
	/* ...but not by an older copy, which a receiver drops (gen 2, then 1) */
	check_torn_stream(2, 1, msg, sizeof(msg));
	assert_non_null(strstr(msg, "1 page(s) arrived torn"));
	/* a copy of the same generation replaces it, generation 0 (kept as 1) too */
	check_torn_stream(0, 1, msg, sizeof(msg));
	assert_null(strstr(msg, "torn"));
	check_torn_stream(1, 1, msg, sizeof(msg));
	assert_null(strstr(msg, "torn"));
}

static void test_out_of_ram(void **state)
{
	struct guest_mem dst;
	struct ram_recv rr;
	struct err e = { 0 };
	struct stream w, r;
	struct mig_rec rec;
	(void)state;
	fake_init(&dst);
	assert_int_equal(ram_recv_init(&rr, &dst, &e), 0);
	/* Last page plus one beyond: the whole run must lie inside RAM. */
	stream_init_mem_writer(&w);
	mig_put_rec(&w, MIG_REC_MEM, MIG_MEM_HDR);
	mig_put_mem_hdr(&w, &(struct mig_mem_hdr){ .gpa = (NPAGES - 1) * 4096ULL, .npages = 2, .gen = 1,
						    .enc = MIG_ENC_ZERO });
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(mig_get_rec(&r, &rec, &e), 0);
	assert_int_equal(ram_recv_record(&rr, &r, rec.len, &e), -1);
	assert_non_null(strstr(e.msg, "outside guest RAM"));
	stream_destroy(&w);
	ram_recv_destroy(&rr);
	fake_free(&dst);
}

/* Above 3 GiB of RAM the memfd goes on where the low region ends but the
 * guest's addresses jump to 4 GiB: a run never spans the two regions (the
 * receiver takes a run as one address range and refuses such a one). A
 * state file's extent may well span it. Here a fake guest of two 1 MiB
 * regions (the second at 4 GiB) stands in. */
static void two_regions(struct guest_mem *gm)
{
	fake_init(gm);
	gm->nregions = 2;
	gm->regions[0] = (struct gmem_region){ .gpa = 0, .size = 256 * 4096, .offset = 0 };
	gm->regions[1] = (struct gmem_region){ .gpa = 4ULL << 30, .size = (NPAGES - 256) * 4096ULL,
					       .offset = 256 * 4096, .slot = 1 };
}

static void test_runs_split_at_regions(void **state)
{
	struct guest_mem src, dst;
	struct ram_recv rr;
	struct err e = { 0 };
	(void)state;
	two_regions(&src);
	two_regions(&dst);
	for (uint32_t p = 200; p < 300; p++)
		fill(&src, p, 9, true);
	assert_int_equal(ram_recv_init(&rr, &dst, &e), 0);
	assert_int_equal(send_into(&rr, &src, 200, 100, 1, NULL, &e), 0);
	assert_memory_equal(dst.host + 200 * 4096, src.host + 200 * 4096, 100 * 4096);
	assert_int_equal(ram_page_gpa(&src, 256), 4ULL << 30);
	ram_recv_destroy(&rr);
	fake_free(&src);
	fake_free(&dst);
}

/* A later pass sends exactly the pages its bitmap names: runs that end
 * inside a 64-page word, a word whose rest is clear followed by bits at the
 * low end of the next, a run at the limit, a range that starts and ends
 * inside words. A page left out keeps the destination's old copy. */
static void test_send_bitmap(void **state)
{
	/* ... 192 ends a run at page 193 with the rest of its word clear, and
	 * the next word's first page, 256, is dirty */
	static const uint32_t dirty[] = { 3, 4, 5, 40, 63, 64, 65, 127, 128, 130, 190, 191, 192, 256, 700 };
	uint64_t bm[NPAGES / 64] = { 0 };
	struct guest_mem src, dst;
	struct ram_recv rr;
	struct ram_stats st = { 0 };
	struct err e = { 0 };
	struct stream w;
	bool want[NPAGES] = { false };
	(void)state;
	fake_init(&src);
	fake_init(&dst);
	for (uint32_t p = 0; p < NPAGES; p++)
		fill(&src, p, 11, true);
	for (size_t i = 0; i < sizeof(dirty) / sizeof(dirty[0]); i++) {
		bm[dirty[i] / 64] |= 1ULL << (dirty[i] % 64);
		want[dirty[i]] = true;
	}
	for (uint32_t p = 300; p < 300 + MIG_MAX_RUN_PAGES + 5; p++) { /* past the run limit */
		bm[p / 64] |= 1ULL << (p % 64);
		want[p] = true;
	}
	assert_int_equal(ram_recv_init(&rr, &dst, &e), 0);
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_bitmap(&w, &src, bm, 1, NULL, &st), 0);
	assert_int_equal(apply(&rr, &w, &e), 0);
	for (uint32_t p = 0; p < NPAGES; p++) {
		bool same = memcmp(dst.host + (size_t)p * 4096, src.host + (size_t)p * 4096, 4096) == 0;
		if (same != want[p])
			fail_msg("page %u: %s", p, want[p] ? "dirty, not sent" : "clean, sent");
	}
	stream_destroy(&w);
	/* a range inside the bitmap, pages 4..62: only its own dirty pages (4, 5 and 40) */
	ram_recv_destroy(&rr);
	memset(dst.host, 0, (size_t)NPAGES * 4096);
	assert_int_equal(ram_recv_init(&rr, &dst, &e), 0);
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_bitmap_range(&w, &src, bm, 4, 59, 2, NULL, &st), 0);
	assert_int_equal(apply(&rr, &w, &e), 0);
	for (uint32_t p = 0; p < 200; p++) {
		bool sent = !ram_page_is_zero(dst.host + (size_t)p * 4096);
		if (sent != (p == 4 || p == 5 || p == 40))
			fail_msg("range 4+59: page %u %s", p, sent ? "sent" : "not sent");
	}
	stream_destroy(&w);
	ram_recv_destroy(&rr);
	fake_free(&src);
	fake_free(&dst);
}

/* Compress pages 0..3 with codec, damage the payload, expect rejection. */
static void corrupt(enum ram_codec_kind kind)
{
	struct guest_mem src, dst;
	struct ram_recv rr;
	struct ram_codec *c;
	struct ram_stats st = { 0 };
	struct err e = { 0 };
	struct stream w;
	uint8_t *d;
	fake_init(&src);
	fake_init(&dst);
	for (uint32_t p = 0; p < 4; p++)
		fill(&src, p, 7, false);
	c = ram_codec_new(kind, 1, false, &e);
	assert_non_null(c);
	assert_int_equal(ram_recv_init(&rr, &dst, &e), 0);
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_pages(&w, &src, 0, 4, 1, c, &st), 0);
	assert_int_equal(st.pages_compressed, 4);
	d = (uint8_t *)stream_mem_data(&w);
	/* 1: garbage in the middle of the compressed payload. */
	size_t clen = stream_mem_len(&w) - MIG_REC_HDR - MIG_MEM_HDR;
	uint8_t *payload = d + MIG_REC_HDR + MIG_MEM_HDR;
	uint8_t *saved = malloc(clen);
	memcpy(saved, payload, clen);
	memset(payload, 0xff, clen < 24 ? clen : 24);
	assert_int_equal(apply(&rr, &w, &e), -1);
	assert_non_null(strstr(e.msg, "corrupt stream"));
	/* 2: a valid payload claimed for more pages than it holds. */
	memcpy(payload, saved, clen);
	le_put_u32(d + MIG_REC_HDR + 8, 5);
	assert_int_equal(apply(&rr, &w, &e), -1);
	assert_non_null(strstr(e.msg, "corrupt stream"));
	/* 3: ... and for fewer. */
	le_put_u32(d + MIG_REC_HDR + 8, 3);
	assert_int_equal(apply(&rr, &w, &e), -1);
	/* 4: the payload cut short (record length and stream agree). */
	le_put_u32(d + MIG_REC_HDR + 8, 4);
	le_put_u32(d + 4, (uint32_t)(MIG_MEM_HDR + clen / 2));
	{
		struct stream r;
		struct mig_rec rec;
		stream_init_mem_reader(&r, d, MIG_REC_HDR + MIG_MEM_HDR + clen / 2);
		assert_int_equal(mig_get_rec(&r, &rec, &e), 0);
		assert_int_equal(ram_recv_record(&rr, &r, rec.len, &e), -1);
	}
	/* 5: a payload that decodes whole, to other bytes than the sender
	 * summed (here: the sum changed instead): only the sum can tell. */
	le_put_u32(d + 4, (uint32_t)(MIG_MEM_HDR + clen));
	d[MIG_REC_HDR + 16] ^= 1;
	assert_int_equal(apply(&rr, &w, &e), -1);
	assert_non_null(strstr(e.msg, "checksum mismatch in compressed pages at 0x0+4"));
	d[MIG_REC_HDR + 16] ^= 1;
	/* Intact, it still decodes: the failures above were the damage. */
	assert_int_equal(apply(&rr, &w, &e), 0);
	assert_memory_equal(src.host, dst.host, 4 * 4096);
	free(saved);
	stream_destroy(&w);
	ram_recv_destroy(&rr);
	ram_codec_free(c);
	fake_free(&src);
	fake_free(&dst);
}

/* A plain raw run (a paused source's, or a state file's) is checked by
 * its one sum: a flipped byte anywhere in it fails the load, it does not
 * land in the guest as if it were the source's. */
static void test_corrupt_raw(void **state)
{
	struct guest_mem src, dst;
	struct ram_recv rr;
	struct ram_stats st = { 0 };
	struct err e = { 0 };
	struct stream w;
	uint8_t *d;
	(void)state;
	fake_init(&src);
	fake_init(&dst);
	for (uint32_t p = 0; p < 4; p++)
		fill(&src, p, 5, true);
	assert_int_equal(ram_recv_init(&rr, &dst, &e), 0);
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_pages(&w, &src, 0, 4, 1, NULL, &st), 0);
	d = (uint8_t *)stream_mem_data(&w);
	assert_int_equal(d[MIG_REC_HDR + 14], MIG_ENC_RAW);
	d[MIG_REC_HDR + MIG_MEM_HDR + 2 * 4096 + 77] ^= 0x10;
	assert_int_equal(apply(&rr, &w, &e), -1);
	assert_non_null(strstr(e.msg, "checksum mismatch in pages at 0x0+4"));
	/* ... a fresh receiver takes the intact run */
	d[MIG_REC_HDR + MIG_MEM_HDR + 2 * 4096 + 77] ^= 0x10;
	ram_recv_destroy(&rr);
	assert_int_equal(ram_recv_init(&rr, &dst, &e), 0);
	assert_int_equal(apply(&rr, &w, &e), 0);
	assert_memory_equal(src.host, dst.host, 4 * 4096);
	stream_destroy(&w);
	ram_recv_destroy(&rr);
	fake_free(&src);
	fake_free(&dst);
}

/* A summed run that is partly older than what the receiver holds goes
 * through scratch, page by page: its pages that do land are still held to
 * their own sums (a torn one among them must be sent again, not taken). */
static void test_ram_summed_stale_torn(void **state)
{
	struct guest_mem src, dst;
	struct ram_recv rr;
	struct ram_stats st = { .live_sums = true };
	struct err e = { 0 };
	struct stream w;
	uint8_t *d;
	(void)state;
	fake_init(&src);
	fake_init(&dst);
	st.bounce = malloc((size_t)MIG_MAX_RUN_PAGES * 4096);
	assert_non_null(st.bounce);
	for (uint32_t p = 0; p < 16; p++)
		fill(&src, p, 6, true);
	assert_int_equal(ram_recv_init(&rr, &dst, &e), 0);
	/* page 5 already holds generation 3 */
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_pages(&w, &src, 5, 1, 3, NULL, &st), 0);
	assert_int_equal(apply(&rr, &w, &e), 0);
	stream_destroy(&w);
	/* pages 0..15 at generation 2, page 9 changed after its sum */
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_pages(&w, &src, 0, 16, 2, NULL, &st), 0);
	d = (uint8_t *)stream_mem_data(&w);
	assert_int_equal(d[MIG_REC_HDR + 14], MIG_ENC_RAW_SUMS);
	d[MIG_REC_HDR + MIG_MEM_HDR + 16 * 8 + 9 * 4096 + 300] ^= 0x5a;
	assert_int_equal(apply(&rr, &w, &e), 0);
	assert_int_equal(rr.st.pages_torn, 1);
	assert_int_equal(ram_recv_check_torn(&rr, &e), -1);
	assert_non_null(strstr(e.msg, "0x9000"));
	stream_destroy(&w);
	free(st.bounce);
	ram_recv_destroy(&rr);
	fake_free(&src);
	fake_free(&dst);
}

static void test_corrupt_zstd(void **state)
{
	(void)state;
	corrupt(RAM_CODEC_ZSTD);
}

static void test_corrupt_lz4(void **state)
{
	(void)state;
	corrupt(RAM_CODEC_LZ4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sum_builds_agree),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_config_sum),
		cmocka_unit_test(test_config_nul),
		cmocka_unit_test(test_config_bools),
		cmocka_unit_test(test_rec),
		cmocka_unit_test(test_sync),
		cmocka_unit_test(test_abort),
		cmocka_unit_test(test_cpu_model),
		cmocka_unit_test(test_check_cpu_model),
		cmocka_unit_test(test_mem_hdr),
		cmocka_unit_test(test_section_hdr),
		cmocka_unit_test(test_ram_raw),
		cmocka_unit_test(test_ram_zstd),
		cmocka_unit_test(test_ram_lz4),
		cmocka_unit_test(test_codec_adaptive),
		cmocka_unit_test(test_generations_raw),
		cmocka_unit_test(test_channel_ownership),
		cmocka_unit_test(test_generations_zstd),
		cmocka_unit_test(test_ram_summed_torn),
		cmocka_unit_test(test_ram_summed_zero_runs),
		cmocka_unit_test(test_codec_incompressible_backoff),
		cmocka_unit_test(test_ram_census),
		cmocka_unit_test(test_check_torn),
		cmocka_unit_test(test_out_of_ram),
		cmocka_unit_test(test_corrupt_zstd),
		cmocka_unit_test(test_corrupt_lz4),
		cmocka_unit_test(test_corrupt_raw),
		cmocka_unit_test(test_ram_summed_stale_torn),
		cmocka_unit_test(test_runs_split_at_regions),
		cmocka_unit_test(test_send_bitmap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
