/*
 * Memory digests (see digest.h): computed from the memfd's populated
 * extents, so neither side reads a page the guest never touched, and
 * carried in DIGEST records (docs/stream.md) of at most 65536 sums each.
 */
#include "migration/digest.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migration/format.h"
#include "migration/ram.h"

static const uint8_t zero_page[GMEM_PAGE_SIZE];

static uint64_t digest_block_len(uint64_t npages, uint64_t b)
{
	uint64_t first = b * DIGEST_BLOCK_PAGES;
	return npages - first < DIGEST_BLOCK_PAGES ? npages - first : DIGEST_BLOCK_PAGES;
}

static int digest_alloc(struct mem_digest *d, uint64_t npages, bool receiver, struct err *e)
{
	memset(d, 0, sizeof(*d));
	d->npages = npages;
	d->nblocks = (npages + DIGEST_BLOCK_PAGES - 1) / DIGEST_BLOCK_PAGES;
	d->sums = calloc(d->nblocks ? d->nblocks : 1, sizeof(*d->sums));
	if (receiver)
		d->have = calloc(d->nblocks ? d->nblocks : 1, 1);
	if (!d->sums || (receiver && !d->have)) {
		digest_free(d);
		return err_set(e, "out of memory for the memory digest (%llu blocks)",
			       (unsigned long long)d->nblocks);
	}
	return 0;
}

void digest_free(struct mem_digest *d)
{
	free(d->sums);
	free(d->have);
	memset(d, 0, sizeof(*d));
}

/* The walk keeps one block's page sums; a page no extent covers keeps
 * the zero page's sum, which is what the other side computes for it. */
struct digest_walk {
	struct guest_mem *gm;
	struct mem_digest *d;
	uint64_t cur;                          /* block being summed, UINT64_MAX = none */
	uint64_t zero_sum;
	uint64_t page_sums[DIGEST_BLOCK_PAGES];
};

static void digest_walk_reset(struct digest_walk *w)
{
	for (unsigned i = 0; i < DIGEST_BLOCK_PAGES; i++)
		w->page_sums[i] = w->zero_sum;
}

static void digest_walk_flush(struct digest_walk *w)
{
	if (w->cur == UINT64_MAX)
		return;
	w->d->sums[w->cur] = mig_sum(w->page_sums, digest_block_len(w->d->npages, w->cur) * 8);
	digest_walk_reset(w);
	w->cur = UINT64_MAX;
}

static int digest_walk_extent(void *opaque, uint64_t first, uint64_t n)
{
	struct digest_walk *w = opaque;
	uint64_t end = first + n > w->d->npages ? w->d->npages : first + n;
	for (uint64_t p = first; p < end; p++) {
		uint64_t b = p / DIGEST_BLOCK_PAGES;
		if (b != w->cur) {
			digest_walk_flush(w);
			w->cur = b;
		}
		/* memfd offset p * 4096 is where page p lives in the mapping */
		w->page_sums[p % DIGEST_BLOCK_PAGES] = mig_sum(w->gm->host + (p << GMEM_PAGE_SHIFT),
							       GMEM_PAGE_SIZE);
	}
	return 0;
}

/* One thread's share: whole blocks, so no block is split between walks. */
struct digest_part {
	struct digest_walk w;
	uint64_t first, npages;
	int rc;
	bool threaded;
	pthread_t thread;
};

static void *digest_part_run(void *arg)
{
	struct digest_part *p = arg;
	p->rc = ram_walk_populated(p->w.gm, p->first, p->npages, digest_walk_extent, &p->w);
	digest_walk_flush(&p->w);
	return NULL;
}

int digest_compute(struct guest_mem *gm, struct mem_digest *d, struct err *e)
{
	struct digest_part parts[DIGEST_THREADS_MAX];
	struct digest_walk w = { .gm = gm, .d = d, .cur = UINT64_MAX };
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int nt = cores < 1 ? 1 : cores > DIGEST_THREADS_MAX ? DIGEST_THREADS_MAX : (int)cores;
	uint64_t per;
	int rc = 0;
	if (digest_alloc(d, gmem_npages(gm), false, e) < 0)
		return -1;
	w.zero_sum = mig_sum(zero_page, sizeof(zero_page));
	digest_walk_reset(&w);
	/* Blocks no extent reaches are all zero pages: one sum serves all the
	 * full ones (an idle 16 GiB guest is 65536 of them). */
	uint64_t zero_block = mig_sum(w.page_sums, sizeof(w.page_sums));
	for (uint64_t b = 0; b < d->nblocks; b++) {
		uint64_t len = digest_block_len(d->npages, b);
		d->sums[b] = len == DIGEST_BLOCK_PAGES ? zero_block : mig_sum(w.page_sums, len * 8);
	}
	/* It runs in the downtime on both sides, with the guest stopped and
	 * the cores free: a share per core. On 900 MiB touched here, 107 ms on
	 * one thread, 76-90 ms on two (memory bandwidth bounds it). */
	if ((uint64_t)nt > d->nblocks)
		nt = d->nblocks ? (int)d->nblocks : 1;
	per = (d->nblocks + (uint64_t)nt - 1) / (uint64_t)nt * DIGEST_BLOCK_PAGES;
	for (int i = 0; i < nt; i++) {
		parts[i] = (struct digest_part){ .w = w, .first = (uint64_t)i * per, .npages = per };
		parts[i].threaded = i > 0 && pthread_create(&parts[i].thread, NULL, digest_part_run,
							    &parts[i]) == 0;
	}
	for (int i = 0; i < nt; i++) {
		if (parts[i].threaded)
			pthread_join(parts[i].thread, NULL);
		else
			digest_part_run(&parts[i]); /* the first share, or one no thread took */
		if (parts[i].rc < 0)
			rc = -1;
	}
	if (rc < 0) {
		digest_free(d);
		return err_set(e, "walking guest memory for its digest");
	}
	return 0;
}

void digest_put(struct stream *w, const struct mem_digest *d)
{
	for (uint64_t first = 0; first < d->nblocks; first += DIGEST_MAX_PER_REC) {
		uint32_t count = d->nblocks - first < DIGEST_MAX_PER_REC ? (uint32_t)(d->nblocks - first)
									 : DIGEST_MAX_PER_REC;
		/* x86 only: the sums' in-memory bytes are their little-endian form */
		mig_put_rec(w, MIG_REC_DIGEST, DIGEST_REC_HDR + count * 8u);
		stream_put_u64(w, first);
		stream_put_u32(w, count);
		stream_put_u32(w, DIGEST_BLOCK_PAGES);
		stream_put_u64(w, d->npages);
		stream_put_u64(w, mig_sum(d->sums + first, (size_t)count * 8));
		stream_put(w, d->sums + first, (size_t)count * 8);
	}
}

int digest_get_hdr(struct stream *r, uint32_t rec_len, uint64_t npages, struct digest_rec *h,
		   struct err *e)
{
	uint64_t src_pages, nblocks = (npages + DIGEST_BLOCK_PAGES - 1) / DIGEST_BLOCK_PAGES;
	uint32_t block;
	if (rec_len < DIGEST_REC_HDR)
		return err_set(e, "corrupt stream: digest record of %u bytes", rec_len);
	h->first = stream_get_u64(r);
	h->count = stream_get_u32(r);
	block = stream_get_u32(r);
	src_pages = stream_get_u64(r);
	h->sum = stream_get_u64(r);
	if (stream_check(r, e) < 0)
		return -1;
	if (block != DIGEST_BLOCK_PAGES)
		return err_set(e, "memory digest of %u-page blocks: this build checks %u-page blocks",
			       block, DIGEST_BLOCK_PAGES);
	if (src_pages != npages)
		return err_set(e, "corrupt stream: memory digest of %llu pages for a guest of %llu",
			       (unsigned long long)src_pages, (unsigned long long)npages);
	if (h->count == 0 || h->count > DIGEST_MAX_PER_REC || rec_len != DIGEST_REC_HDR + h->count * 8u)
		return err_set(e, "corrupt stream: digest record of %u bytes with %u sums", rec_len, h->count);
	if (h->first >= nblocks || h->count > nblocks - h->first)
		return err_set(e, "corrupt stream: digest blocks %llu+%u outside the guest's %llu",
			       (unsigned long long)h->first, h->count, (unsigned long long)nblocks);
	return 0;
}

int digest_get_sums(struct stream *r, const struct digest_rec *h, uint64_t *dst, struct err *e)
{
	stream_get(r, dst, (size_t)h->count * 8);
	if (stream_check(r, e) < 0)
		return -1;
	if (mig_sum(dst, (size_t)h->count * 8) != h->sum)
		return err_set(e, "corrupt stream: checksum mismatch in the memory digest (blocks %llu+%u)",
			       (unsigned long long)h->first, h->count);
	return 0;
}

int digest_get(struct stream *r, uint32_t rec_len, uint64_t npages, struct mem_digest *d,
	       struct err *e)
{
	struct digest_rec h;
	if (digest_get_hdr(r, rec_len, npages, &h, e) < 0)
		return -1;
	if (!d->sums && digest_alloc(d, npages, true, e) < 0)
		return -1;
	for (uint32_t i = 0; i < h.count; i++)
		if (d->have[h.first + i])
			return err_set(e, "corrupt stream: digest block %llu sent twice",
				       (unsigned long long)(h.first + i));
	if (digest_get_sums(r, &h, d->sums + h.first, e) < 0)
		return -1;
	memset(d->have + h.first, 1, h.count);
	d->received += h.count;
	return 0;
}

int digest_verify(const struct mem_digest *want, struct guest_mem *gm, struct err *e)
{
	struct mem_digest have;
	uint64_t bad = 0, at[3] = { 0 };
	if (want->received != want->nblocks)
		return err_set(e, "the source's memory digest is incomplete: %llu of %llu blocks",
			       (unsigned long long)want->received, (unsigned long long)want->nblocks);
	if (digest_compute(gm, &have, e) < 0)
		return err_prefix(e, "checking memory against the source's digest");
	if (have.nblocks != want->nblocks) {
		digest_free(&have);
		return err_set(e, "memory digest of %llu blocks for a guest of %llu",
			       (unsigned long long)want->nblocks, (unsigned long long)have.nblocks);
	}
	for (uint64_t b = 0; b < have.nblocks; b++)
		if (have.sums[b] != want->sums[b]) {
			if (bad < 3)
				at[bad] = ram_page_gpa(gm, b * DIGEST_BLOCK_PAGES);
			bad++;
		}
	digest_free(&have);
	if (!bad)
		return 0;
	/* The blocks that differ tell a developer where to look: a virtio
	 * ring, a disk buffer, a stretch of the guest's working set. */
	char list[96];
	int n = snprintf(list, sizeof(list), "0x%llx", (unsigned long long)at[0]);
	for (uint64_t i = 1; i < bad && i < 3 && n > 0 && (size_t)n < sizeof(list); i++)
		n += snprintf(list + n, sizeof(list) - (size_t)n, ", 0x%llx", (unsigned long long)at[i]);
	return err_set(e, "memory differs from the source's after the last pages: %llu of %llu "
		       "blocks of %u KiB, at GPA %s%s",
		       (unsigned long long)bad, (unsigned long long)want->nblocks,
		       (unsigned)(DIGEST_BLOCK_PAGES * GMEM_PAGE_SIZE / 1024), list, bad > 3 ? ", ..." : "");
}
