/* zstd / lz4 page compression (see ram_codec.h). */
#include "migration/ram_codec.h"

#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "common/log.h"
#include "migration/ram.h"

#define CODEC_BUF (MIG_MAX_RECORD + 65536)

/*
 * Compression must never make a move slower than sending raw (what
 * Hyper-V promises): a small run of compressed sends and one of raw sends
 * are timed against each other — wall time per guest byte, so CPU
 * contention, the link and a bandwidth cap all count — and the faster
 * way is used for a longer stretch, then measured again; a way that keeps
 * winning gets longer stretches (up to 8x), so a clear case costs few
 * probes. Compression must win by 5%: noise alone never picks the slower
 * way for long. Separately, a
 * streak of runs that do not shrink (incompressible memory) stops the
 * attempts for a while at once, twice as long each time it happens again
 * without a run that shrank in between (32 up to 1024 runs): each attempt
 * costs a copy, a sum of the copy and the compressor's pass, so on
 * incompressible memory steady probing alone cost ~10% against `tcp`.
 */
enum codec_phase { PH_PROBE_COMP, PH_PROBE_RAW, PH_USE_COMP, PH_USE_RAW };
#define PROBE_RUNS 8
#define USE_RUNS 64
#define PROBE_MIN_BYTES (4u << 20) /* per way, before a decision */
#define IDLE_GAP_NS 250000000ULL /* a longer gap between runs is idling, not sending */
#define MISS_RUNS 4          /* runs in a row that do not shrink: incompressible */
#define MISS_BACKOFF_MAX 5   /* raw stretches after misses: (USE_RUNS / 2) << 0..5 */

struct ram_codec {
	enum ram_codec_kind kind;
	int level;
	bool adaptive;                  /* time it against raw (else: always try) */
	uint64_t (*now)(void);
	unsigned misses;
	unsigned miss_backoff;          /* raw stretches after misses in a row (0..MISS_BACKOFF_MAX) */
	enum codec_phase phase;
	unsigned left;                  /* runs left in this phase */
	enum codec_phase last_use;      /* the previous decision ... */
	unsigned streak;                /* ... and how many times in a row (0..3) */
	uint64_t last_ns, last_raw;     /* the previous run: when it started, its size */
	bool last_comp, last_valid;     /* ... and whether it went through the compressor */
	double comp_ns, comp_bytes;     /* this round's timings */
	double raw_ns, raw_bytes;
	ZSTD_CCtx *zc;
	uint8_t *buf;
};

static uint64_t codec_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Charge the time since the previous run started to the way it was sent,
 * then say whether this run should be compressed. */
static bool codec_choose(struct ram_codec *c, size_t raw)
{
	uint64_t now = c->now();
	if (!c->adaptive)
		return true;
	if (c->last_valid && now - c->last_ns < IDLE_GAP_NS) {
		if (c->last_comp) {
			c->comp_ns += (double)(now - c->last_ns);
			c->comp_bytes += (double)c->last_raw;
		} else {
			c->raw_ns += (double)(now - c->last_ns);
			c->raw_bytes += (double)c->last_raw;
		}
	}
	c->last_valid = true;
	c->last_ns = now;
	c->last_raw = raw;
	if (c->left == 0) {
		switch (c->phase) {
		case PH_PROBE_COMP:
			c->phase = PH_PROBE_RAW;
			c->left = PROBE_RUNS;
			break;
		case PH_PROBE_RAW: {
			/* bytes per ns of each way */
			double gc = c->comp_ns > 0 ? c->comp_bytes / c->comp_ns : 0;
			double gr = c->raw_ns > 0 ? c->raw_bytes / c->raw_ns : 0;
			if (c->comp_bytes < PROBE_MIN_BYTES || c->raw_bytes < PROBE_MIN_BYTES) {
				/* too little to judge (small runs): keep alternating */
				c->phase = PH_PROBE_COMP;
				c->left = PROBE_RUNS;
				break;
			}
			c->phase = gc > gr * 1.05 && gr > 0 ? PH_USE_COMP : PH_USE_RAW;
			c->streak = c->phase == c->last_use && c->streak < 3 ? c->streak + 1 : 0;
			c->last_use = c->phase;
			log_debug("compression: %.0f MiB/s of guest memory compressed, %.0f MiB/s raw: %s",
				  gc * 1e9 / 1048576.0, gr * 1e9 / 1048576.0,
				  c->phase == PH_USE_COMP ? "compressing" : "sending raw");
			c->left = USE_RUNS << c->streak;
			break;
		}
		default:
			c->phase = PH_PROBE_COMP;
			c->left = PROBE_RUNS;
			c->comp_ns = c->comp_bytes = c->raw_ns = c->raw_bytes = 0;
			break;
		}
	}
	c->left--;
	c->last_comp = c->phase == PH_PROBE_COMP || c->phase == PH_USE_COMP;
	return c->last_comp;
}

struct codec_dctx {
	ZSTD_DCtx *zd;
	uint8_t *out;   /* decompression target when some pages are stale */
};

struct ram_codec *ram_codec_new(enum ram_codec_kind kind, int level, bool adaptive, struct err *e)
{
	struct ram_codec *c = calloc(1, sizeof(*c));
	if (!c || !(c->buf = malloc(CODEC_BUF))) {
		free(c);
		err_set(e, "out of memory for the compressor");
		return NULL;
	}
	c->kind = kind;
	c->level = level;
	c->adaptive = adaptive;
	c->now = codec_now_ns;
	c->phase = PH_PROBE_COMP;
	c->left = PROBE_RUNS;
	c->last_use = PH_PROBE_COMP; /* no decision yet */
	if (kind == RAM_CODEC_ZSTD) {
		c->zc = ZSTD_createCCtx();
		if (!c->zc) {
			ram_codec_free(c);
			err_set(e, "zstd: cannot create a compression context");
			return NULL;
		}
		ZSTD_CCtx_setParameter(c->zc, ZSTD_c_compressionLevel, level);
	}
	/* Warm up now (the buffer's first touch, zstd's workspace), so the
	 * first timed run measures compression, not setup. */
	memset(c->buf, 0, CODEC_BUF);
	if (kind == RAM_CODEC_ZSTD)
		(void)ZSTD_compress2(c->zc, c->buf + 65536, CODEC_BUF - 65536, c->buf, 65536);
	else
		(void)LZ4_compress_fast((const char *)c->buf, (char *)c->buf + 65536, 65536,
					(int)(CODEC_BUF - 65536), 1);
	return c;
}

void ram_codec_set_clock(struct ram_codec *c, uint64_t (*now)(void))
{
	c->now = now;
}

void ram_codec_free(struct ram_codec *c)
{
	if (!c)
		return;
	ZSTD_freeCCtx(c->zc);
	free(c->buf);
	free(c);
}

bool ram_codec_wants(struct ram_codec *c, size_t raw)
{
	return codec_choose(c, raw);
}

int ram_codec_put(struct ram_codec *c, struct stream *w, struct mig_mem_hdr *h,
		  const uint8_t *src, bool chosen, struct ram_stats *st)
{
	size_t raw = (size_t)h->npages * 4096, n;
	if (!chosen && !codec_choose(c, raw))
		return -1;
	if (c->kind == RAM_CODEC_ZSTD) {
		n = ZSTD_compress2(c->zc, c->buf, CODEC_BUF, src, raw);
		if (ZSTD_isError(n))
			return -1;
	} else {
		int r = LZ4_compress_fast((const char *)src, (char *)c->buf, (int)raw, CODEC_BUF,
					  c->level > 0 ? c->level : 1);
		if (r <= 0)
			return -1;
		n = (size_t)r;
	}
	if (n > raw - raw / 8) {
		if (++c->misses >= MISS_RUNS) {
			/* Incompressible: no point timing it, send raw for a while. */
			c->misses = 0;
			c->phase = PH_USE_RAW;
			c->left = (USE_RUNS / 2) << c->miss_backoff;
			if (c->miss_backoff < MISS_BACKOFF_MAX)
				c->miss_backoff++;
		}
		return -1; /* did not pay: caller sends raw */
	}
	c->misses = 0;
	c->miss_backoff = 0;
	h->enc = (uint8_t)c->kind;
	mig_put_rec(w, MIG_REC_MEM, (uint32_t)(MIG_MEM_HDR + n));
	mig_put_mem_hdr(w, h);
	stream_put(w, c->buf, n);
	st->pages_compressed += h->npages;
	st->bytes_compressed += n;
	return 0;
}

void ram_codec_free_dctx(void *p)
{
	struct codec_dctx *d = p;
	if (!d)
		return;
	ZSTD_freeDCtx(d->zd);
	free(d->out);
	free(d);
}

int ram_codec_get(struct ram_recv *rr, struct stream *r, const struct mig_mem_hdr *h,
		  uint32_t clen, uint8_t *dst, uint64_t first, struct err *e)
{
	struct codec_dctx *d = rr->dctx;
	size_t raw = (size_t)h->npages * 4096;
	size_t got;

	if (!d) {
		d = calloc(1, sizeof(*d));
		if (!d || !(d->out = malloc(MIG_MAX_RUN_PAGES * 4096))) {
			free(d);
			return err_set(e, "out of memory for the decompressor");
		}
		rr->dctx = d;
	}
	if (ram_recv_scratch(rr, e) < 0)
		return -1;
	if (clen > RAM_RECV_SCRATCH)
		return err_set(e, "corrupt stream: compressed run of %u bytes is too large", clen);
	stream_get(r, rr->scratch, clen);
	if (stream_check(r, e) < 0)
		return -1;
	if (h->enc == MIG_ENC_ZSTD) {
		if (!d->zd && !(d->zd = ZSTD_createDCtx()))
			return err_set(e, "zstd: cannot create a decompression context");
		got = ZSTD_decompressDCtx(d->zd, d->out, raw, rr->scratch, clen);
		if (ZSTD_isError(got))
			return err_set(e, "corrupt stream: zstd run at 0x%llx: %s",
				       (unsigned long long)h->gpa, ZSTD_getErrorName(got));
	} else {
		int n = LZ4_decompress_safe((const char *)rr->scratch, (char *)d->out, (int)clen, (int)raw);
		if (n < 0)
			return err_set(e, "corrupt stream: lz4 run at 0x%llx does not decode",
				       (unsigned long long)h->gpa);
		got = (size_t)n;
	}
	if (got != raw)
		return err_set(e, "corrupt stream: compressed run at 0x%llx decodes to %zu bytes, expected %zu",
			       (unsigned long long)h->gpa, got, raw);
	if (mig_sum(d->out, raw) != h->sum)
		return err_set(e, "corrupt stream: checksum mismatch in compressed pages at 0x%llx+%u",
			       (unsigned long long)h->gpa, h->npages);
	ram_recv_apply(rr, dst, d->out, first, h, NULL);
	rr->st.bytes_compressed += clen;
	return 0;
}
