/*
 * Guest pages on the wire. The sender walks a page set (every populated page,
 * or a dirty bitmap), folds zero pages into ZERO records and sends the rest
 * straight from guest memory (no bounce buffer; with per-page sums while
 * the guest runs, see MIG_ENC_RAW_SUMS). The receiver writes pages
 * straight from the stream into guest memory after checking the address,
 * and keeps a per-page generation so an older copy of a page (e.g. from a
 * slower channel) never overwrites a newer one.
 */
#ifndef FERRY_RAM_H
#define FERRY_RAM_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/stream.h"
#include "migration/format.h"
#include "vmm/guestmem.h"

struct ram_stats {
	uint64_t pages_raw;
	uint64_t pages_zero;
	uint64_t pages_compressed;
	uint64_t bytes_compressed;  /* wire bytes of compressed page payloads */
	uint64_t records;
	uint64_t pages_torn;        /* receiver: pages that arrived mid-write (sent again later) */
	/* While the guest runs, a run is copied here before it is summed and
	 * sent, so the checksum and the bytes on the wire describe the same
	 * snapshot (MIG_MAX_RUN_PAGES pages). NULL: send straight from guest
	 * memory, right only when the vCPUs are paused. */
	uint8_t *bounce;
	/* The receiver reads MIG_ENC_RAW_SUMS: raw runs go straight from the
	 * running guest's memory with a sum per page, and the bounce copy is
	 * only for runs that are compressed. */
	bool live_sums;
};

struct ram_codec;  /* compression context (ram_codec.c); NULL = raw */

/* Send pages [first, first+n) (indices into RAM, i.e. memfd offset / 4096). */
int ram_send_pages(struct stream *w, struct guest_mem *gm, uint64_t first, uint64_t n,
		   uint16_t gen, struct ram_codec *codec, struct ram_stats *st);
/* Send the pages set in bitmap among [first, first+n). */
int ram_send_bitmap_range(struct stream *w, struct guest_mem *gm, const uint64_t *bitmap,
			  uint64_t first, uint64_t n, uint16_t gen, struct ram_codec *codec,
			  struct ram_stats *st);
/* Send every page set in bitmap (one bit per RAM page); clears nothing. */
int ram_send_bitmap(struct stream *w, struct guest_mem *gm, const uint64_t *bitmap,
		    uint16_t gen, struct ram_codec *codec, struct ram_stats *st);
/* Send every page the guest has ever touched (memfd data extents); pages
 * never touched are skipped entirely: they read as zero on both sides. */
int ram_send_populated(struct stream *w, struct guest_mem *gm, uint16_t gen,
		       struct ram_codec *codec, struct ram_stats *st);
/* What a walk of the populated pages found: how many, and (if per_window
 * is set: one entry per MIG_MAX_RUN_PAGES pages of guest memory, zeroed
 * here) how many in each window; holes not counted. */
struct ram_census {
	uint64_t pages;
	uint16_t *per_window;
};
/* Up to max populated extents as (first page, pages) pairs covering every
 * populated page; when there are more, nearby ones are merged. `census`
 * may be NULL. */
size_t ram_populated_extents(struct guest_mem *gm, uint64_t (*ext)[2], size_t max,
			     struct ram_census *census);
/* Count populated pages (for progress and for the destination's prefault). */
uint64_t ram_populated_pages(struct guest_mem *gm);
/* Calls fn for each populated extent of RAM pages [first, first+npages)
 * (first page, pages), in ascending order, cut to the range. fn returning
 * -1 stops the walk, which then returns -1. */
typedef int (*ram_extent_fn)(void *opaque, uint64_t first, uint64_t n);
int ram_walk_populated(struct guest_mem *gm, uint64_t first, uint64_t npages, ram_extent_fn fn,
		       void *opaque);
/* The same, within pages [first, first + npages). */
uint64_t ram_populated_in(struct guest_mem *gm, uint64_t first, uint64_t npages);

struct ram_recv {
	struct guest_mem *gm;
	uint16_t *gens;        /* per page: generation last written, 0 = never */
	uint8_t *torn;         /* per page: 1 = its last copy arrived mid-write */
	int64_t *torn_left;    /* how many are 1 now (shared by the channels) */
	void *dctx;            /* decompression contexts, lazily created */
	uint8_t *scratch;      /* RAM_RECV_SCRATCH bytes: a compressed payload, or a stale raw run */
	struct ram_stats st;
	bool owns_gens;
	uint32_t ch_idx, nch;  /* this receiver's channel of nch (mig_chunk_channel) */
	/* every byte the channels' streams carried (records of all kinds,
	 * their headers, the handshake), added up across the channels as
	 * they come, for the destination's progress (NULL: not counted) */
	uint64_t *rx_bytes;
	uint64_t rx_counted;   /* this channel's stream bytes already added */
	/* post-copy's pages still owed (postcopy.h), NULL unless this
	 * destination offered post-copy: where a POSTCOPY record goes */
	struct postcopy_in *postcopy;
};

int ram_recv_init(struct ram_recv *rr, struct guest_mem *gm, struct err *e);
/* Adds what r (this receiver's channel) carried since the last call to
 * rx_bytes: after each record, so the figure follows the move as it goes. */
void ram_recv_account(struct ram_recv *rr, const struct stream *r);
/* The receiver's one staging buffer, for both of its users (ram_recv_scratch). */
#define RAM_RECV_SCRATCH (MIG_MAX_RECORD + 65536)
int ram_recv_scratch(struct ram_recv *rr, struct err *e);
/* A receiver for another channel sharing rr's generation table. */
void ram_recv_init_shared(struct ram_recv *rr, const struct ram_recv *owner);
/* Which channel of how many rr reads (default 0 of 1): it then takes only
 * the chunks mig_chunk_channel deals to it, so no two threads share a page. */
void ram_recv_set_channel(struct ram_recv *rr, uint32_t idx, uint32_t nch);
void ram_recv_destroy(struct ram_recv *rr);
/* Consume one MEM record's body (after its record header). */
int ram_recv_record(struct ram_recv *rr, struct stream *r, uint32_t rec_len, struct err *e);
/* A checked run, at src (dst itself when it was received in place), now
 * holds the pages whose generation here is not newer than the run's; with
 * sums (MIG_ENC_RAW_SUMS) a page failing its own is held as torn. A run's
 * pages always travel on one channel (chunks are dealt by index), so no
 * other thread writes these entries. */
void ram_recv_apply(struct ram_recv *rr, uint8_t *dst, const uint8_t *src, uint64_t first,
		    const struct mig_mem_hdr *h, const uint8_t *sums);
/* At the end of a load: fails if a page's last copy arrived torn (the
 * sender must have sent it again). Every channel must be done. It runs
 * while the guest is paused, so it reads a count, and scans the table
 * only to name the first page when the count is not zero. */
/* Pages that come again after the guest runs (post-copy's owed set, one
 * bit per page): a torn last copy of one is no fault, it is replaced. */
void ram_recv_drop_torn(struct ram_recv *rr, const uint64_t *bitmap);
int ram_recv_check_torn(const struct ram_recv *rr, struct err *e);

/* Page index <-> GPA. */
uint64_t ram_page_gpa(const struct guest_mem *gm, uint64_t page);
/* XXH3-64 of a 4 KiB page of zeros (test_format checks it against mig_sum). */
#define RAM_ZERO_PAGE_SUM 0x93d76fe148c689baULL

static inline bool ram_page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;
	uint64_t acc = q[0] | q[1] | q[2] | q[3] | q[4] | q[5] | q[6] | q[7];
	/* A page in use nearly always shows it in its first cache line: only
	 * zero-looking pages pay for the full (vectorized) scan. */
	if (acc)
		return false;
	for (int i = 8; i < 512; i += 8)
		acc |= q[i] | q[i + 1] | q[i + 2] | q[i + 3] | q[i + 4] | q[i + 5] | q[i + 6] | q[i + 7];
	return acc == 0;
}

#endif
