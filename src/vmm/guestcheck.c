/*
 * Test-guest memory checker (see guestcheck.h and guest/protocol.h).
 *
 * The guest commits a page by writing it completely and then storing its
 * generation in the table, with the page marked in flight meanwhile. So a
 * page that is not in flight must equal the version for its table
 * generation exactly; an in-flight page may hold, word by word, either that
 * version or the next one. Anything else is classified to help whoever
 * debugs the migration: an older complete version (stale: a dirty page was
 * not re-sent), another GPA's page (wrong address: misplaced copy), a mix
 * of versions outside the in-flight rule (torn: copied while being written
 * without being re-sent), or none of these (corrupt).
 */
#include "vmm/guestcheck.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Sanity cap on the working-set size a control block may claim (1 TiB). */
#define MAX_WS_PAGES (1ULL << 28)

const char *guestcheck_reason_str(enum guestcheck_reason r)
{
	switch (r) {
	case GUESTCHECK_OK: return "ok";
	case GUESTCHECK_STALE: return "stale";
	case GUESTCHECK_WRONG_ADDR: return "wrong-address";
	case GUESTCHECK_TORN: return "torn";
	case GUESTCHECK_CORRUPT: return "corrupt";
	}
	return "?";
}

static uint32_t next_gen(uint32_t g)
{
	return g + 1 == 0 ? 1 : g + 1; /* the guest skips 0 when it wraps */
}

/* Index of the first word of pg that is in neither a nor b, or -1. */
static int first_outside(const uint64_t *pg, const uint64_t *a, const uint64_t *b)
{
	for (unsigned i = 0; i < FG_PAGE_WORDS; i++)
		if (pg[i] != a[i] && (!b || pg[i] != b[i]))
			return (int)i;
	return -1;
}

struct verdict {
	enum guestcheck_reason reason;
	uint32_t page_gen;
	uint32_t bad_word;
};

/* Every version the checker compares against is recomputed with the fill
 * the guest declared (fg_ctl.data), so the same rules hold for both fills. */
static struct verdict classify(const uint64_t *pg, uint64_t gpa, uint32_t gen, uint32_t data,
			       bool inflight)
{
	uint64_t want[FG_PAGE_WORDS], alt[FG_PAGE_WORDS];
	struct verdict v = { GUESTCHECK_OK, 0, 0 };
	bool has_hdr = (uint32_t)pg[0] == FG_PAGE_MAGIC;
	if (has_hdr)
		v.page_gen = (uint32_t)(pg[0] >> 32);

	fg_page_fill(want, gpa, gen, data);
	int bad = first_outside(pg, want, NULL);
	if (bad < 0)
		return v;
	v.bad_word = (uint32_t)bad;
	fg_page_fill(alt, gpa, next_gen(gen), data);
	if (inflight && first_outside(pg, want, alt) < 0)
		return v;

	/* Not acceptable: say why as precisely as the content allows. */
	if (has_hdr && pg[1] != gpa) {
		v.reason = GUESTCHECK_WRONG_ADDR;
		return v;
	}
	if (has_hdr && v.page_gen != gen && v.page_gen != 0) {
		fg_page_fill(alt, gpa, v.page_gen, data);
		if (first_outside(pg, alt, NULL) < 0)
			/* a complete page newer than its committed generation
			 * means the table, not the page, went missing */
			v.reason = v.page_gen < gen ? GUESTCHECK_STALE : GUESTCHECK_CORRUPT;
		else if (first_outside(pg, alt, want) < 0)
			v.reason = GUESTCHECK_TORN;
		else
			v.reason = GUESTCHECK_CORRUPT;
		return v;
	}
	/* Header absent or matching: a mix with the neighbouring versions? */
	if (!inflight && first_outside(pg, want, alt) < 0) {
		v.reason = GUESTCHECK_TORN;
		return v;
	}
	if (gen > 0) {
		fg_page_fill(alt, gpa, gen - 1, data);
		if (first_outside(pg, want, alt) < 0) {
			v.reason = GUESTCHECK_TORN;
			return v;
		}
	}
	v.reason = GUESTCHECK_CORRUPT;
	return v;
}

static int fail(char *errbuf, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *errbuf, size_t errlen, const char *fmt, ...)
{
	if (errbuf && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(errbuf, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

typedef unsigned long long ull;

/* Validate the (copied) control block; everything in it is guest data. */
static int check_ctl(const struct fg_ctl *c, guestcheck_map_fn map, void *opaque,
		     char *errbuf, size_t errlen)
{
	if (c->magic != FG_CTL_MAGIC)
		return fail(errbuf, errlen, "control block magic 0x%llx not found (guest not running?)",
			    (ull)c->magic);
	if (c->version != FG_VERSION)
		return fail(errbuf, errlen, "control block version %u, expected %u",
			    c->version, FG_VERSION);
	if (c->data != FG_DATA_RANDOM && c->data != FG_DATA_TEXT)
		return fail(errbuf, errlen, "unknown page fill %u (data=random is %u, text %u)",
			    c->data, FG_DATA_RANDOM, FG_DATA_TEXT);
	if (c->ncpus == 0 || c->ncpus > FG_MAX_CPUS)
		return fail(errbuf, errlen, "bad vCPU count %u (max %u)", c->ncpus, FG_MAX_CPUS);
	if (c->ws_pages == 0 || c->ws_pages > MAX_WS_PAGES || (c->ws_base & (FG_PAGE_SIZE - 1)) ||
	    c->ws_base > UINT64_MAX - c->ws_pages * FG_PAGE_SIZE)
		return fail(errbuf, errlen, "bad working set base 0x%llx pages %llu",
			    (ull)c->ws_base, (ull)c->ws_pages);
	uint64_t ws_end = c->ws_base + c->ws_pages * FG_PAGE_SIZE;
	uint64_t tab_len = c->ws_pages * 4;
	if ((c->gen_table & 3) || c->gen_table > UINT64_MAX - tab_len ||
	    (c->gen_table < ws_end && c->gen_table + tab_len > c->ws_base) ||
	    !map(opaque, c->gen_table, tab_len))
		return fail(errbuf, errlen, "bad generation table at 0x%llx (%llu bytes)",
			    (ull)c->gen_table, (ull)tab_len);
	if (c->ws_base < FG_CTL_GPA + FG_CTL_SIZE && ws_end > FG_CTL_GPA)
		return fail(errbuf, errlen, "working set at 0x%llx overlaps the control block",
			    (ull)c->ws_base);
	for (uint32_t i = 0; i < c->ncpus; i++) {
		const struct fg_vcpu *v = &c->vcpu[i];
		if (v->first_page > c->ws_pages || v->npages > c->ws_pages - v->first_page)
			return fail(errbuf, errlen, "vCPU %u owns pages outside the working set (first %llu, %llu pages)",
				    i, (ull)v->first_page, (ull)v->npages);
		if (v->inflight != FG_INFLIGHT_NONE &&
		    (v->inflight < v->first_page || v->inflight - v->first_page >= v->npages))
			return fail(errbuf, errlen, "vCPU %u in-flight page %llu not its own",
				    i, (ull)v->inflight);
		for (uint32_t j = 0; j < i; j++) {
			const struct fg_vcpu *w = &c->vcpu[j];
			if (v->npages && w->npages && v->first_page < w->first_page + w->npages &&
			    w->first_page < v->first_page + v->npages)
				return fail(errbuf, errlen, "vCPUs %u and %u own overlapping pages", j, i);
		}
	}
	return 0;
}

int guestcheck_verify_map(guestcheck_map_fn map, void *opaque,
			  struct guestcheck_report *out, char *errbuf, size_t errlen)
{
	struct fg_ctl c;
	memset(out, 0, sizeof(*out));
	if (errbuf && errlen)
		errbuf[0] = '\0';
	const uint8_t *cp = map(opaque, FG_CTL_GPA, sizeof(c));
	if (!cp)
		return fail(errbuf, errlen, "control block at 0x%llx (%zu bytes) is not RAM",
			    (ull)FG_CTL_GPA, sizeof(c));
	/* one snapshot: the guest may still be running */
	memcpy(&c, cp, sizeof(c));
	if (check_ctl(&c, map, opaque, errbuf, errlen))
		return -1;

	out->ncpus = c.ncpus;
	out->ws_base = c.ws_base;
	out->ws_pages = c.ws_pages;
	out->hb = c.hb;
	out->data = c.data;
	for (uint32_t i = 0; i < c.ncpus; i++) {
		out->vcpu_heartbeat[i] = c.vcpu[i].heartbeat;
		out->vcpu_pages_written[i] = c.vcpu[i].pages_written;
	}

	const uint8_t *table = map(opaque, c.gen_table, c.ws_pages * 4);
	uint64_t pg[FG_PAGE_WORDS];
	for (uint64_t p = 0; p < c.ws_pages; p++) {
		uint64_t gpa = c.ws_base + p * FG_PAGE_SIZE;
		const uint8_t *hp = map(opaque, gpa, FG_PAGE_SIZE);
		if (!hp)
			return fail(errbuf, errlen, "working-set page 0x%llx is not RAM (page %llu)",
				    (ull)gpa, (ull)p);
		uint32_t gen;
		memcpy(&gen, table + p * 4, sizeof(gen));
		memcpy(pg, hp, FG_PAGE_SIZE);
		bool inflight = false;
		for (uint32_t i = 0; i < c.ncpus; i++)
			inflight |= c.vcpu[i].inflight == p;

		struct verdict v = classify(pg, gpa, gen, c.data, inflight);
		out->pages_checked++;
		out->pages_inflight += inflight;
		if (gen > out->max_gen)
			out->max_gen = gen;
		if (v.reason == GUESTCHECK_OK) {
			out->pages_never_written += gen == 0;
			continue;
		}
		if (out->nfailures < GUESTCHECK_MAX_FAILURES)
			out->failures[out->nfailures] = (struct guestcheck_failure){
				.gpa = gpa, .page = p, .reason = v.reason, .table_gen = gen,
				.page_gen = v.page_gen, .first_bad_word = v.bad_word,
			};
		out->nfailures++;
	}
	if (out->nfailures == 0)
		return 0;
	if (errbuf && errlen) {
		const struct guestcheck_failure *f = &out->failures[0];
		snprintf(errbuf, errlen,
			 "%llu of %llu pages failed; first at gpa 0x%llx: %s (table gen %u, page gen %u, word %u)",
			 (ull)out->nfailures, (ull)out->pages_checked, (ull)f->gpa, guestcheck_reason_str(f->reason), f->table_gen,
			 f->page_gen, f->first_bad_word);
	}
	return 1;
}

struct flat {
	const uint8_t *ram;
	uint64_t size;
};

static const uint8_t *flat_map(void *opaque, uint64_t gpa, uint64_t len)
{
	const struct flat *f = opaque;
	if (gpa > f->size || len > f->size - gpa)
		return NULL;
	return f->ram + gpa;
}

int guestcheck_verify(const uint8_t *ram, uint64_t ram_size,
		      struct guestcheck_report *out, char *errbuf, size_t errlen)
{
	struct flat f = { ram, ram_size };
	return guestcheck_verify_map(flat_map, &f, out, errbuf, errlen);
}
