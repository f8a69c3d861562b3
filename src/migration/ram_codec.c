/* zstd / lz4 page compression (see ram_codec.h). */
#include "migration/ram_codec.h"

#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "migration/ram.h"

#define CODEC_BUF (MIG_MAX_RECORD + 65536)

struct ram_codec {
	enum ram_codec_kind kind;
	int level;
	/* Adaptive fallback (what Hyper-V does): after a streak of runs that
	 * did not shrink, stop trying for a while and send raw; probe again
	 * later in case the guest's memory became compressible. */
	unsigned misses;
	unsigned skip;
	ZSTD_CCtx *zc;
	uint8_t *buf;
};

struct codec_dctx {
	ZSTD_DCtx *zd;
	uint8_t *out;   /* decompression target when some pages are stale */
};

struct ram_codec *ram_codec_new(enum ram_codec_kind kind, int level, struct err *e)
{
	struct ram_codec *c = calloc(1, sizeof(*c));
	if (!c || !(c->buf = malloc(CODEC_BUF))) {
		free(c);
		err_set(e, "out of memory for the compressor");
		return NULL;
	}
	c->kind = kind;
	c->level = level;
	if (kind == RAM_CODEC_ZSTD) {
		c->zc = ZSTD_createCCtx();
		if (!c->zc) {
			ram_codec_free(c);
			err_set(e, "zstd: cannot create a compression context");
			return NULL;
		}
		ZSTD_CCtx_setParameter(c->zc, ZSTD_c_compressionLevel, level);
	}
	return c;
}

void ram_codec_free(struct ram_codec *c)
{
	if (!c)
		return;
	ZSTD_freeCCtx(c->zc);
	free(c->buf);
	free(c);
}

int ram_codec_put(struct ram_codec *c, struct stream *w, struct mig_mem_hdr *h,
		  const uint8_t *src, struct ram_stats *st)
{
	size_t raw = (size_t)h->npages * 4096, n;
	if (c->skip) {
		c->skip--;
		return -1;
	}
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
		if (++c->misses >= 4) {
			c->misses = 0;
			c->skip = 64;
		}
		return -1; /* did not pay: caller sends raw */
	}
	c->misses = 0;
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
	if (!rr->scratch && !(rr->scratch = malloc(CODEC_BUF)))
		return err_set(e, "out of memory for the decompressor");
	if (clen > CODEC_BUF)
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
	for (uint32_t i = 0; i < h->npages; i++) {
		if (rr->gens[first + i] > h->gen)
			continue;
		memcpy(dst + (size_t)i * 4096, d->out + (size_t)i * 4096, 4096);
		rr->gens[first + i] = h->gen ? h->gen : 1;
	}
	rr->st.bytes_compressed += clen;
	return 0;
}
