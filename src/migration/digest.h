/*
 * Memory digests: an end-to-end check that the destination's RAM is the
 * source's, byte for byte, at the switch-over. Page runs carry their own
 * sums, which prove each copy arrived intact; only a digest of all RAM,
 * taken by the source with the guest stopped and checked by the
 * destination before it may run the guest, proves no page was left out
 * (a dirty-tracking fault loses pages without any corrupt byte).
 *
 * One sum per block of DIGEST_BLOCK_PAGES pages: XXH3 of the block's page
 * sums, a never-touched page summed as a zero page, so the memfd holes of
 * one side and zero-filled pages of the other agree and neither side
 * reads (or faults in) memory the guest never touched.
 */
#ifndef FERRY_DIGEST_H
#define FERRY_DIGEST_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/stream.h"
#include "migration/format.h"
#include "vmm/guestmem.h"

#define DIGEST_BLOCK_PAGES 64u                      /* 256 KiB per sum */
#define DIGEST_MAX_PER_REC 65536u                   /* sums per DIGEST record (512 KiB) */
#define DIGEST_THREADS_MAX 4                        /* digest_compute's walkers, at most one per core */
#define DIGEST_REC_HDR 32u                          /* first u64, count u32, block u32, npages u64, sum u64 */
_Static_assert(DIGEST_REC_HDR + DIGEST_MAX_PER_REC * 8u <= MIG_MAX_RECORD,
	       "a DIGEST record fits the record limit (the checker's buffer)");

struct mem_digest {
	uint64_t npages;      /* guest RAM pages it describes */
	uint64_t nblocks;
	uint64_t *sums;       /* nblocks */
	uint8_t *have;        /* receiver: 1 where a record delivered the block's sum */
	uint64_t received;    /* receiver: blocks delivered */
};

/* Sums of every block of gm as it is now: the caller keeps the guest and
 * every device that writes its memory stopped. */
int digest_compute(struct guest_mem *gm, struct mem_digest *d, struct err *e);
void digest_free(struct mem_digest *d);

/* The whole digest as DIGEST records. */
void digest_put(struct stream *w, const struct mem_digest *d);

/* One DIGEST record's header, checked against the record's length and a
 * guest of npages (the stream checker reads the sums itself). */
struct digest_rec {
	uint64_t first;       /* first block */
	uint32_t count;       /* sums that follow */
	uint64_t sum;         /* XXH3 of those sums' bytes */
};
int digest_get_hdr(struct stream *r, uint32_t rec_len, uint64_t npages, struct digest_rec *h,
		   struct err *e);
/* The h->count sums that follow it, into dst, checked against h->sum. */
int digest_get_sums(struct stream *r, const struct digest_rec *h, uint64_t *dst, struct err *e);

/* Receiver: one DIGEST record's body (after its header) into d, which is
 * created for a guest of npages on the first record. Every field is
 * checked against the guest and the record length before use. */
int digest_get(struct stream *r, uint32_t rec_len, uint64_t npages, struct mem_digest *d,
	       struct err *e);

/* After the last page: every block delivered, and gm's blocks equal to
 * them. The error names the blocks that differ by guest-physical address. */
int digest_verify(const struct mem_digest *want, struct guest_mem *gm, struct err *e);

#endif
