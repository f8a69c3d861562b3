/*
 * Page compression for the `compression` transport: zstd (dense, for slow
 * links) or lz4 (cheap, for fast links). A run that does not shrink by at
 * least 1/8 is sent raw, so incompressible memory costs no extra bytes.
 * Decompression is bounded: output must be exactly npages * 4096 bytes.
 */
#ifndef FERRY_RAM_CODEC_H
#define FERRY_RAM_CODEC_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/stream.h"
#include "migration/format.h"

struct ram_stats;
struct ram_recv;

enum ram_codec_kind { RAM_CODEC_ZSTD = MIG_ENC_ZSTD, RAM_CODEC_LZ4 = MIG_ENC_LZ4 };

/* adaptive: compress only while timing shows it is at least as fast as
 * sending raw (the default transport); else every run is tried (a codec
 * the operator chose explicitly). Either way a run that does not shrink by
 * 1/8 goes raw. */
struct ram_codec *ram_codec_new(enum ram_codec_kind kind, int level, bool adaptive, struct err *e);
/* Tests: replace the monotonic clock (nanoseconds). */
void ram_codec_set_clock(struct ram_codec *c, uint64_t (*now)(void));
void ram_codec_free(struct ram_codec *c);
/* Whether the next `raw` bytes (a run, or a window of up to 1 MiB of the
 * live pre-copy) will be compressed: the adaptive choice, made once per
 * stretch and timed until the next one. The sender asks first so that
 * only what is compressed pays for a copy, and raw windows for nothing. */
bool ram_codec_wants(struct ram_codec *c, size_t raw);
/* Compress and send one run; returns -1 (nothing written) if it did not
 * pay or, unless `chosen` (ram_codec_wants said so), the codec chooses
 * raw for it now. */
int ram_codec_put(struct ram_codec *c, struct stream *w, struct mig_mem_hdr *h,
		  const uint8_t *src, bool chosen, struct ram_stats *st);
/* Receive one compressed run of clen bytes into dst (pages first..), honouring generations. */
int ram_codec_get(struct ram_recv *rr, struct stream *r, const struct mig_mem_hdr *h,
		  uint32_t clen, uint8_t *dst, uint64_t first, struct err *e);
void ram_codec_free_dctx(void *dctx);

#endif
