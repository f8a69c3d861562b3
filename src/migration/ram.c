/* Page send/receive (see ram.h). */
#include "migration/ram.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migration/ram_codec.h"

uint64_t ram_page_gpa(const struct guest_mem *gm, uint64_t page)
{
	uint64_t off = page << GMEM_PAGE_SHIFT;
	for (int i = 0; i < gm->nregions; i++) {
		const struct gmem_region *r = &gm->regions[i];
		if (off >= r->offset && off - r->offset < r->size)
			return r->gpa + (off - r->offset);
	}
	return UINT64_MAX;
}

/* A raw run read straight from the running guest's memory: one sum per
 * page, so a page the guest writes meanwhile fails alone (see
 * MIG_ENC_RAW_SUMS). The sums are taken after KVM re-armed the pages'
 * dirty logging, so such a write is always logged and the page sent again.
 * `sums` are the run's page sums, taken by the caller. */
static void ram_put_summed(struct stream *w, struct mig_mem_hdr *h, const uint8_t *src,
			   uint32_t n, const uint64_t *sums, struct ram_stats *st)
{
	uint8_t le[MIG_MAX_RUN_PAGES * 8];
	for (uint32_t i = 0; i < n; i++)
		le_put_u64(le + (size_t)i * 8, sums[i]);
	h->enc = MIG_ENC_RAW_SUMS;
	h->sum = mig_sum(le, (size_t)n * 8);
	mig_put_rec(w, MIG_REC_MEM, MIG_MEM_HDR + n * (4096u + 8u));
	mig_put_mem_hdr(w, h);
	stream_put(w, le, (size_t)n * 8);
	stream_put(w, src, (size_t)n * 4096);
	st->pages_raw += n;
}

static void ram_put_zero(struct stream *w, struct mig_mem_hdr *h, struct ram_stats *st)
{
	h->enc = MIG_ENC_ZERO;
	mig_put_rec(w, MIG_REC_MEM, MIG_MEM_HDR);
	mig_put_mem_hdr(w, h);
	st->pages_zero += h->npages;
}

/* One record for a run of pages that are all zero or all non-zero and do
 * not cross a region boundary. `comp`: the codec already chose to
 * compress the stretch this run is in; else it is asked for this run. */
static void ram_put_run(struct stream *w, struct guest_mem *gm, uint64_t first, uint32_t n,
			bool zero, uint16_t gen, struct ram_codec *codec, bool comp,
			struct ram_stats *st)
{
	struct mig_mem_hdr h = { .gpa = ram_page_gpa(gm, first), .npages = n, .gen = gen };
	const uint8_t *src = gm->host + (first << GMEM_PAGE_SHIFT);
	st->records++;
	if (zero) {
		ram_put_zero(w, &h, st);
		return;
	}
	comp = codec && (comp || ram_codec_wants(codec, (size_t)n * 4096));
	if (st->bounce) {
		/* live: the compressor and the run's one sum must read one snapshot */
		memcpy(st->bounce, src, (size_t)n * 4096);
		src = st->bounce;
	}
	h.sum = mig_sum(src, (size_t)n * 4096);
	if (comp && ram_codec_put(codec, w, &h, src, true, st) == 0)
		return;
	h.enc = MIG_ENC_RAW;
	mig_put_rec(w, MIG_REC_MEM, MIG_MEM_HDR + n * 4096u);
	mig_put_mem_hdr(w, &h);
	stream_put(w, src, (size_t)n * 4096);
	st->pages_raw += n;
}

/* Region boundary at or after page `p` (pages never straddle regions in a run). */
static uint64_t ram_region_end(const struct guest_mem *gm, uint64_t p)
{
	uint64_t off = p << GMEM_PAGE_SHIFT;
	for (int i = 0; i < gm->nregions; i++) {
		const struct gmem_region *r = &gm->regions[i];
		if (off >= r->offset && off - r->offset < r->size)
			return (r->offset + r->size) >> GMEM_PAGE_SHIFT;
	}
	return p + 1;
}

/* Pages [p, end) of one region, split into all-zero and all-non-zero
 * runs (each scanned for zeros first), one record per run. */
static void ram_send_runs(struct stream *w, struct guest_mem *gm, uint64_t p, uint64_t end,
			  uint16_t gen, struct ram_codec *codec, bool comp, struct ram_stats *st)
{
	while (p < end && stream_ok(w)) {
		bool zero = ram_page_is_zero(gm->host + (p << GMEM_PAGE_SHIFT));
		uint64_t q = p + 1;
		while (q < end && q - p < MIG_MAX_RUN_PAGES &&
		       ram_page_is_zero(gm->host + (q << GMEM_PAGE_SHIFT)) == zero)
			q++;
		ram_put_run(w, gm, p, (uint32_t)(q - p), zero, gen, codec, comp, st);
		p = q;
	}
}

/* A window of the live pre-copy going raw, with page sums: each page is
 * read once, for its sum, and only a page whose sum is the zero page's is
 * scanned to confirm it. Testing every page for zeros first cost a cache
 * miss per page before the sum read it again: ~9% of the sender's time
 * on one stream here. */
static void ram_send_summed(struct stream *w, struct guest_mem *gm, uint64_t p, uint32_t n,
			    uint16_t gen, struct ram_stats *st)
{
	uint64_t sums[MIG_MAX_RUN_PAGES];
	bool zero[MIG_MAX_RUN_PAGES];
	uint32_t i, j;
	for (i = 0; i < n; i++) {
		const uint8_t *pg = gm->host + ((p + i) << GMEM_PAGE_SHIFT);
		sums[i] = mig_sum(pg, 4096);
		zero[i] = sums[i] == RAM_ZERO_PAGE_SUM && ram_page_is_zero(pg);
	}
	for (i = 0; i < n && stream_ok(w); i = j) {
		struct mig_mem_hdr h = { .gpa = ram_page_gpa(gm, p + i), .gen = gen };
		for (j = i + 1; j < n && zero[j] == zero[i]; j++)
			;
		h.npages = j - i;
		st->records++;
		if (zero[i])
			ram_put_zero(w, &h, st);
		else
			ram_put_summed(w, &h, gm->host + ((p + i) << GMEM_PAGE_SHIFT), h.npages,
				       sums + i, st);
	}
}

int ram_send_pages(struct stream *w, struct guest_mem *gm, uint64_t first, uint64_t n,
		   uint16_t gen, struct ram_codec *codec, struct ram_stats *st)
{
	uint64_t end = first + n, p = first;
	if (end > gmem_npages(gm))
		return stream_fail(w, "page range beyond guest RAM");
	while (p < end && stream_ok(w)) {
		uint64_t lim = ram_region_end(gm, p);
		if (lim > end)
			lim = end;
		if (!st->bounce || !st->live_sums) {
			/* paused, or a destination without page sums: runs as they come */
			ram_send_runs(w, gm, p, lim, gen, codec, false, st);
			p = lim;
			continue;
		}
		/* The live pre-copy goes a window (1 MiB at most) at a time: the
		 * codec chooses once per window, and a raw window takes the
		 * read-once path. */
		if (lim - p > MIG_MAX_RUN_PAGES)
			lim = p + MIG_MAX_RUN_PAGES;
		if (codec && ram_codec_wants(codec, (size_t)(lim - p) * 4096))
			ram_send_runs(w, gm, p, lim, gen, codec, true, st);
		else
			ram_send_summed(w, gm, p, (uint32_t)(lim - p), gen, st);
		p = lim;
	}
	return stream_ok(w) ? 0 : -1;
}

int ram_send_bitmap(struct stream *w, struct guest_mem *gm, const uint64_t *bitmap,
		    uint16_t gen, struct ram_codec *codec, struct ram_stats *st)
{
	return ram_send_bitmap_range(w, gm, bitmap, 0, gmem_npages(gm), gen, codec, st);
}

int ram_send_bitmap_range(struct stream *w, struct guest_mem *gm, const uint64_t *bitmap,
			  uint64_t first, uint64_t n, uint16_t gen, struct ram_codec *codec,
			  struct ram_stats *st)
{
	uint64_t npages = first + n, p = first;
	if (npages > gmem_npages(gm))
		npages = gmem_npages(gm);
	while (p < npages && stream_ok(w)) {
		uint64_t word = bitmap[p / 64] >> (p % 64);
		uint64_t q;
		if (!word) {
			p = (p / 64 + 1) * 64;
			continue;
		}
		p += (uint64_t)__builtin_ctzll(word);
		if (p >= npages)
			break;
		q = p + 1;
		while (q < npages && q - p < MIG_MAX_RUN_PAGES && (bitmap[q / 64] >> (q % 64)) & 1)
			q++;
		if (ram_send_pages(w, gm, p, q - p, gen, codec, st) < 0)
			return -1;
		p = q;
	}
	return stream_ok(w) ? 0 : -1;
}

/* Walk the memfd's data extents: SEEK_DATA/SEEK_HOLE skip what the guest never touched. */

/* The populated extents of guest memory within bytes [pos, size). */
static int ram_for_each_extent_in(struct guest_mem *gm, off_t pos, off_t size, ram_extent_fn fn, void *opaque)
{
	while (pos < size) {
		off_t data = lseek(gm->memfd, pos, SEEK_DATA);
		off_t hole;
		if (data < 0) {
			if (errno == ENXIO)
				return 0; /* no data after pos */
			/* No SEEK_DATA support: treat everything as populated. */
			return fn(opaque, (uint64_t)pos >> GMEM_PAGE_SHIFT,
				  (uint64_t)(size - pos) >> GMEM_PAGE_SHIFT);
		}
		if (data >= size)
			return 0; /* the next data is past the range */
		hole = lseek(gm->memfd, data, SEEK_HOLE);
		if (hole < 0 || hole > size)
			hole = size;
		data &= ~(off_t)4095;
		if (fn(opaque, (uint64_t)data >> GMEM_PAGE_SHIFT,
		       (uint64_t)(hole - data + 4095) >> GMEM_PAGE_SHIFT) < 0)
			return -1;
		pos = hole;
	}
	return 0;
}

static int ram_for_each_extent(struct guest_mem *gm, ram_extent_fn fn, void *opaque)
{
	return ram_for_each_extent_in(gm, 0, (off_t)gm->ram_size, fn, opaque);
}

int ram_walk_populated(struct guest_mem *gm, uint64_t first, uint64_t npages, ram_extent_fn fn,
		       void *opaque)
{
	uint64_t end = first + npages > gmem_npages(gm) ? gmem_npages(gm) : first + npages;
	if (first >= end)
		return 0;
	return ram_for_each_extent_in(gm, (off_t)(first << GMEM_PAGE_SHIFT), (off_t)(end << GMEM_PAGE_SHIFT),
				      fn, opaque);
}

struct send_ctx { struct stream *w; struct guest_mem *gm; uint16_t gen; struct ram_codec *codec; struct ram_stats *st; };

static int send_extent(void *opaque, uint64_t first, uint64_t n)
{
	struct send_ctx *c = opaque;
	if (first + n > gmem_npages(c->gm))
		n = gmem_npages(c->gm) - first;
	return ram_send_pages(c->w, c->gm, first, n, c->gen, c->codec, c->st);
}

int ram_send_populated(struct stream *w, struct guest_mem *gm, uint16_t gen,
		       struct ram_codec *codec, struct ram_stats *st)
{
	struct send_ctx c = { w, gm, gen, codec, st };
	return ram_for_each_extent(gm, send_extent, &c);
}

static int count_extent(void *opaque, uint64_t first, uint64_t n)
{
	(void)first;
	*(uint64_t *)opaque += n;
	return 0;
}

struct ext_ctx { uint64_t (*ext)[2]; size_t max, n; uint64_t npages, gap; struct ram_census *census; };

static void census_add(struct ram_census *c, uint64_t first, uint64_t n)
{
	c->pages += n;
	if (!c->per_window)
		return;
	while (n) {
		uint64_t w = first / MIG_MAX_RUN_PAGES, k = (w + 1) * MIG_MAX_RUN_PAGES - first;
		if (k > n)
			k = n;
		c->per_window[w] = (uint16_t)(c->per_window[w] + k);
		first += k;
		n -= k;
	}
}

/* Extents closer than `gap` pages are merged: a bounded list that covers
 * every populated page and as few holes as it can. */
static int collect_extent(void *opaque, uint64_t first, uint64_t n)
{
	struct ext_ctx *c = opaque;
	if (first + n > c->npages)
		n = c->npages - first;
	if (c->census)
		census_add(c->census, first, n);
	if (c->n && first - (c->ext[c->n - 1][0] + c->ext[c->n - 1][1]) <= c->gap) {
		c->ext[c->n - 1][1] = first + n - c->ext[c->n - 1][0];
		return 0;
	}
	if (c->n == c->max)
		return -1; /* too many: the caller retries with a wider gap */
	c->ext[c->n][0] = first;
	c->ext[c->n][1] = n;
	c->n++;
	return 0;
}

static void census_reset(struct ram_census *c, uint64_t npages)
{
	c->pages = 0;
	if (c->per_window)
		memset(c->per_window, 0, sizeof(uint16_t) * ((npages + MIG_MAX_RUN_PAGES - 1) / MIG_MAX_RUN_PAGES));
}

size_t ram_populated_extents(struct guest_mem *gm, uint64_t (*ext)[2], size_t max,
			     struct ram_census *census)
{
	struct ext_ctx c = { ext, max, 0, gmem_npages(gm), 0, census };
	if (max == 0)
		return 0;
	if (census)
		census_reset(census, c.npages);
	while (ram_for_each_extent(gm, collect_extent, &c) < 0) {
		c.n = 0;
		c.gap = c.gap ? c.gap * 4 : 64;
		if (census)
			census_reset(census, c.npages);
	}
	return c.n;
}

uint64_t ram_populated_pages(struct guest_mem *gm)
{
	uint64_t n = 0;
	ram_for_each_extent(gm, count_extent, &n);
	return n;
}

uint64_t ram_populated_in(struct guest_mem *gm, uint64_t first, uint64_t npages)
{
	uint64_t n = 0, end = first + npages > gmem_npages(gm) ? gmem_npages(gm) : first + npages;
	if (first >= end)
		return 0;
	ram_walk_populated(gm, first, npages, count_extent, &n);
	return n > end - first ? end - first : n;
}

int ram_recv_init(struct ram_recv *rr, struct guest_mem *gm, struct err *e)
{
	memset(rr, 0, sizeof(*rr));
	rr->gm = gm;
	rr->gens = calloc(gmem_npages(gm), sizeof(uint16_t));
	rr->torn = calloc(gmem_npages(gm), 1);
	rr->torn_left = calloc(1, sizeof(*rr->torn_left));
	if (!rr->gens || !rr->torn || !rr->torn_left) {
		free(rr->gens);
		free(rr->torn);
		free(rr->torn_left);
		return err_set(e, "out of memory for the page generation table");
	}
	rr->owns_gens = true;
	return 0;
}

void ram_recv_account(struct ram_recv *rr, const struct stream *r)
{
	/* one thread per channel reads r: only the shared sum is atomic */
	if (rr->rx_bytes && r->bytes > rr->rx_counted) {
		__atomic_fetch_add(rr->rx_bytes, r->bytes - rr->rx_counted, __ATOMIC_RELAXED);
		rr->rx_counted = r->bytes;
	}
}

void ram_recv_init_shared(struct ram_recv *rr, const struct ram_recv *owner)
{
	memset(rr, 0, sizeof(*rr));
	rr->gm = owner->gm;
	rr->gens = owner->gens;
	rr->torn = owner->torn;
	rr->torn_left = owner->torn_left;
	rr->rx_bytes = owner->rx_bytes;
}

int ram_recv_scratch(struct ram_recv *rr, struct err *e)
{
	if (!rr->scratch && !(rr->scratch = malloc(RAM_RECV_SCRATCH)))
		return err_set(e, "out of memory for the receive buffer");
	return 0;
}

void ram_recv_set_channel(struct ram_recv *rr, uint32_t idx, uint32_t nch)
{
	rr->ch_idx = idx;
	rr->nch = nch;
}

void ram_recv_destroy(struct ram_recv *rr)
{
	if (rr->owns_gens) {
		free(rr->gens);
		free(rr->torn);
		free(rr->torn_left);
	}
	free(rr->scratch);
	ram_codec_free_dctx(rr->dctx);
	memset(rr, 0, sizeof(*rr));
}

/* Page p's last copy arrived torn or whole. Channels own disjoint pages
 * but share the count. */
static void ram_recv_set_torn(struct ram_recv *rr, uint64_t p, bool torn)
{
	if (rr->torn[p] == torn)
		return;
	rr->torn[p] = torn;
	__atomic_add_fetch(rr->torn_left, torn ? 1 : -1, __ATOMIC_RELAXED);
}

void ram_recv_apply(struct ram_recv *rr, uint8_t *dst, const uint8_t *src, uint64_t first,
		    const struct mig_mem_hdr *h, const uint8_t *sums)
{
	const uint16_t g = mig_gen_eff(h->gen);
	for (uint32_t i = 0; i < h->npages; i++) {
		bool torn;
		if (rr->gens[first + i] > g)
			continue;
		if (src != dst)
			memcpy(dst + (size_t)i * 4096, src + (size_t)i * 4096, 4096);
		rr->gens[first + i] = g;
		torn = sums && mig_sum(dst + (size_t)i * 4096, 4096) != le_get_u64(sums + (size_t)i * 8);
		ram_recv_set_torn(rr, first + i, torn);
		rr->st.pages_torn += torn;
	}
}

/* Pages read and checked at a time: 64 KiB, still read straight into guest
 * memory (stream_get bypasses its buffer from STREAM_BUF / 2). */
#define RAM_RECV_CHUNK_PAGES 32

/* A raw run (MIG_ENC_RAW, or MIG_ENC_RAW_SUMS with its page sums first):
 * straight into guest memory, or staged in scratch when some pages here
 * are newer. RAW is checked whole: on a mismatch the whole migration fails
 * and this copy of the VM is discarded. RAW_SUMS is checked page by page. */
static int ram_recv_raw(struct ram_recv *rr, struct stream *r, const struct mig_mem_hdr *h,
			uint8_t *dst, uint64_t first, bool stale, struct err *e)
{
	uint8_t sums[MIG_MAX_RUN_PAGES * 8];
	size_t len = (size_t)h->npages * 4096;
	bool summed = h->enc == MIG_ENC_RAW_SUMS;
	uint8_t *pages = dst;
	if (summed) {
		stream_get(r, sums, (size_t)h->npages * 8);
		if (stream_check(r, e) < 0)
			return -1;
		if (mig_sum(sums, (size_t)h->npages * 8) != h->sum)
			return err_set(e, "corrupt stream: page sums of the run at 0x%llx+%u do not match",
				       (unsigned long long)h->gpa, h->npages);
	}
	if (summed && !stale) {
		/* Read a few pages at a time and check each while it is still
		 * in cache: read whole, the run has left the cache before its
		 * sums are checked and every byte is fetched twice. */
		for (uint32_t i = 0; i < h->npages; i += RAM_RECV_CHUNK_PAGES) {
			struct mig_mem_hdr part = *h;
			part.npages = h->npages - i < RAM_RECV_CHUNK_PAGES ? h->npages - i
									: RAM_RECV_CHUNK_PAGES;
			stream_get(r, dst + (size_t)i * 4096, (size_t)part.npages * 4096);
			if (stream_check(r, e) < 0)
				return -1;
			ram_recv_apply(rr, dst + (size_t)i * 4096, dst + (size_t)i * 4096, first + i,
				       &part, sums + (size_t)i * 8);
		}
		rr->st.pages_raw += h->npages;
		return 0;
	}
	if (stale) {
		if (ram_recv_scratch(rr, e) < 0)
			return -1;
		pages = rr->scratch;
	}
	stream_get(r, pages, len);
	if (stream_check(r, e) < 0)
		return -1;
	if (!summed && mig_sum(pages, len) != h->sum)
		return err_set(e, "corrupt stream: checksum mismatch in pages at 0x%llx+%u",
			       (unsigned long long)h->gpa, h->npages);
	ram_recv_apply(rr, dst, pages, first, h, summed ? sums : NULL);
	rr->st.pages_raw += h->npages;
	return 0;
}

int ram_recv_record(struct ram_recv *rr, struct stream *r, uint32_t rec_len, struct err *e)
{
	struct mig_mem_hdr h;
	struct guest_mem *gm = rr->gm;
	uint8_t *dst;
	int64_t off;
	uint64_t first;
	bool stale = false;

	if (mig_get_mem_hdr(r, rec_len, &h, e) < 0)
		return -1;
	/* The whole run must be guest RAM inside one region. */
	dst = gmem_ptr(gm, h.gpa, (uint64_t)h.npages * 4096);
	off = gmem_offset(gm, h.gpa);
	if (!dst || off < 0)
		return err_set(e, "corrupt stream: pages at 0x%llx+%u are outside guest RAM",
			       (unsigned long long)h.gpa, h.npages);
	first = (uint64_t)off >> GMEM_PAGE_SHIFT;
	/* A run on the wrong channel, or across two chunks, could race the
	 * channel that owns its pages (the generation check and the copy are
	 * not one step): refused, whoever sent it. */
	if (rr->nch > 1 && (mig_chunk_channel(first, rr->nch) != rr->ch_idx ||
			    first / MIG_CHUNK_PAGES != (first + h.npages - 1) / MIG_CHUNK_PAGES))
		return err_set(e, "corrupt stream: pages at 0x%llx+%u arrived on channel %u of %u; they travel on channel %u",
			       (unsigned long long)h.gpa, h.npages, rr->ch_idx, rr->nch,
			       mig_chunk_channel(first, rr->nch));
	/* Generation rule: a page older than what we hold is dropped. Runs are
	 * sent whole in one pass, so one check for the run suffices; mixed
	 * runs (some pages newer) are applied page by page below. */
	for (uint32_t i = 0; i < h.npages; i++)
		if (rr->gens[first + i] > mig_gen_eff(h.gen))
			stale = true;
	switch (h.enc) {
	case MIG_ENC_ZERO:
		/* A fresh destination page is already zero: don't touch it (a first touch is costly). */
		for (uint32_t i = 0; i < h.npages; i++)
			if (rr->gens[first + i] && rr->gens[first + i] <= mig_gen_eff(h.gen))
				memset(dst + (size_t)i * 4096, 0, 4096);
		ram_recv_apply(rr, dst, dst, first, &h, NULL);
		rr->st.pages_zero += h.npages;
		break;
	case MIG_ENC_RAW:
	case MIG_ENC_RAW_SUMS:
		if (ram_recv_raw(rr, r, &h, dst, first, stale, e) < 0)
			return -1;
		break;
	default:
		if (ram_codec_get(rr, r, &h, rec_len - MIG_MEM_HDR, dst, first, e) < 0)
			return -1;
		rr->st.pages_compressed += h.npages;
		break;
	}
	rr->st.records++;
	return 0;
}

void ram_recv_drop_torn(struct ram_recv *rr, const uint64_t *bitmap)
{
	uint64_t n = gmem_npages(rr->gm);
	for (uint64_t p = 0; p < n; p++)
		if (bitmap[p / 64] >> (p % 64) & 1)
			ram_recv_set_torn(rr, p, false);
}

int ram_recv_check_torn(const struct ram_recv *rr, struct err *e)
{
	uint64_t n = gmem_npages(rr->gm), bad = 0, at = 0;
	if (__atomic_load_n(rr->torn_left, __ATOMIC_RELAXED) == 0)
		return 0;
	for (uint64_t p = 0; p < n; p++)
		if (rr->torn[p] && !bad++)
			at = p;
	if (bad)
		return err_set(e, "corrupt stream: %llu page(s) arrived torn and were never sent again "
			       "(the first at 0x%llx)", (unsigned long long)bad,
			       (unsigned long long)ram_page_gpa(rr->gm, at));
	return 0;
}
