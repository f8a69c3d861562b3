/*
 * The contract between the ferry test guest and host-side checkers.
 *
 * The guest keeps a control block at a fixed guest-physical address and
 * stamps every working-set page with content derived only from (GPA,
 * generation). A checker that can read guest RAM (guestcheck.c in the VMM)
 * recomputes each page from the per-page generation table and so proves
 * that every byte is what the guest last wrote.
 *
 * This header is shared by freestanding guest code and hosted VMM code:
 * fixed-width types, static inline functions, no libc.
 */
#ifndef FERRY_GUEST_PROTOCOL_H
#define FERRY_GUEST_PROTOCOL_H

#include <stdint.h>

/* Control block: 0x6000..0x7fff. Below it sits BIOS data/the IVT (0..0x4ff)
 * and free low memory; above it the AP trampoline (0x8000, SIPI vector 8).
 * Multiboot loaders, SeaBIOS's runtime data and ferry's MP table
 * (0x9fc00..) never use this range, and the boot page tables live in the
 * guest image, not here. */
#define FG_CTL_GPA 0x6000ULL
#define FG_CTL_SIZE 0x2000ULL
#define FG_TRAMPOLINE_GPA 0x8000ULL

#define FG_CTL_MAGIC 0x4c54432d59525246ULL /* "FRRY-CTL" little-endian */
#define FG_VERSION 1u
#define FG_MAX_CPUS 64u

#define FG_PAGE_SIZE 4096u
#define FG_PAGE_WORDS 512u
#define FG_PAGE_MAGIC 0x47505946u /* "FYPG" */
#define FG_INFLIGHT_NONE UINT64_MAX

/* fg_ctl.state */
#define FG_STATE_BOOT 0u
#define FG_STATE_RUNNING 1u

/* fg_ctl.pattern */
#define FG_PATTERN_SEQ 0u
#define FG_PATTERN_RANDOM 1u

/* fg_ctl.data: what fills words 2..511 of a page. RANDOM is 0 so a control
 * block from a guest that predates the field (it was reserved, zeroed)
 * reads as the fill that guest used. */
#define FG_DATA_RANDOM 0u
#define FG_DATA_TEXT 1u

/* fg_ctl.rate_mib: MiB/s across all vCPUs; 0 = idle */
#define FG_RATE_MAX UINT32_MAX
/* Write every working-set page once at full speed, then idle: memory full
 * of incompressible data that no longer changes, what a transport's own
 * throughput is measured on. */
#define FG_RATE_ONCE (UINT32_MAX - 1)

/* One record per vCPU; 64 bytes so vCPUs never share a cache line. Page
 * indices are working-set indices (GPA = ws_base + index * 4096). */
struct fg_vcpu {
	uint64_t first_page;    /* first working-set page this vCPU owns */
	uint64_t npages;        /* how many, contiguous */
	uint64_t inflight;      /* page being written, or FG_INFLIGHT_NONE */
	uint64_t pages_written; /* total page writes since boot */
	uint64_t heartbeat;     /* this vCPU's seconds counter */
	uint64_t mib_dirtied;   /* pages_written / 256 */
	uint32_t max_gen;       /* highest generation this vCPU wrote */
	uint32_t apic_id;
	uint64_t reserved;
};

struct fg_ctl {
	uint64_t magic;     /* FG_CTL_MAGIC once the block is valid */
	uint32_t version;   /* FG_VERSION */
	uint32_t ncpus;     /* vCPU records in use, 1..FG_MAX_CPUS */
	uint64_t ws_base;   /* GPA of working-set page 0, 4 KiB aligned */
	uint64_t ws_pages;  /* working-set size in pages */
	uint64_t gen_table; /* GPA of uint32_t[ws_pages], committed generations */
	uint64_t hb;        /* global heartbeat counter, +1 per second (BSP) */
	uint64_t tsc_hz;    /* TSC frequency the guest paces with */
	uint32_t rate_mib;  /* requested rate, FG_RATE_MAX for "max" */
	uint32_t pattern;   /* FG_PATTERN_* */
	uint32_t state;     /* FG_STATE_* */
	uint32_t data;      /* FG_DATA_*: page fill (was reserved, 0) */
	uint64_t reserved[7];
	struct fg_vcpu vcpu[FG_MAX_CPUS];
};

_Static_assert(sizeof(struct fg_vcpu) == 64, "fg_vcpu is one cache line");
_Static_assert(sizeof(struct fg_ctl) == 128 + 64 * FG_MAX_CPUS, "fg_ctl layout");
_Static_assert(sizeof(struct fg_ctl) <= FG_CTL_SIZE, "fg_ctl fits its area");

/*
 * Page stamp. Word 0 = magic | gen << 32, word 1 = the page's own GPA, words
 * 2..511 = a stream derived from an xorshift64 seeded from (GPA, gen): the
 * raw stream (FG_DATA_RANDOM, incompressible) or that stream shaped into
 * compressible words (FG_DATA_TEXT, see fg_text_word). Generation 0 means
 * "never written" and is an all-zero page. Because the whole body depends
 * on both GPA and gen, a stale page, a page copied to the wrong address and
 * a page mixing two versions all differ from the expected content.
 */
static inline uint64_t fg_mix64(uint64_t x)
{
	/* splitmix64 finaliser: cheap, and spreads nearby GPAs/gens apart */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static inline uint64_t fg_seed(uint64_t gpa, uint32_t gen)
{
	uint64_t s = fg_mix64(gpa ^ fg_mix64((uint64_t)gen + 0x9e3779b97f4a7c15ULL));
	return s ? s : 0x2545f4914f6cdd1dULL; /* xorshift must not start at 0 */
}

static inline uint64_t fg_xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static inline uint64_t fg_word0(uint32_t gen)
{
	return (uint64_t)FG_PAGE_MAGIC | (uint64_t)gen << 32;
}

/*
 * One FG_DATA_TEXT word from one xorshift output r, shaped like what real
 * guest memory holds so that compressors find both repeats (LZ matches,
 * which lz4 lives on) and a skewed byte distribution (entropy coding, which
 * zstd adds): bits 0..4 pick one of 32 typical 8-byte words (text, small
 * integers, kernel pointers, zeros, fill patterns), bits 5..7 pick how many
 * of its low-byte nibbles are then perturbed with r's upper bits (none for
 * five words in eight, else one, two or six). Two table loads, no division
 * or branch, so the guest's CPL3 hot loop stays as fast as the random fill.
 * The mix is tuned for ~3x with zstd -1 and ~2x with lz4 on 1 MiB runs
 * (guest/README.md has the measured ratios); changing either table changes
 * every text page and so must go with a protocol version bump.
 */
static inline uint64_t fg_text_word(uint64_t r)
{
	static const uint64_t base[32] = {
		0x2020206568742020ULL, 0x20646e6120202020ULL, 0x00000000000000ffULL,
		0xffffffff00000000ULL, 0x0000000000000001ULL, 0x7972726566202020ULL,
		0x0000000000001000ULL, 0xffff888000000000ULL, 0x2e2e2e2e2e2e2e2eULL,
		0x000000000000000aULL, 0x746e656d65676170ULL, 0x6b636f6c62202020ULL,
		0x0000000000000000ULL, 0x0000000000000000ULL, 0x0000000000000000ULL,
		0x0000000000000000ULL, 0x0000000000000002ULL, 0x0000000000000020ULL,
		0x0000000100000001ULL, 0xffffffffffffffffULL, 0x206f742020202020ULL,
		0x6f6e207369207469ULL, 0x0a0a0a0a0a0a0a0aULL, 0x0000000000000040ULL,
		0x3d3d3d3d3d3d3d3dULL, 0x00007f0000000000ULL, 0x2020202020202020ULL,
		0x0000000000000003ULL, 0xffffffff81000000ULL, 0x00000000deadbeefULL,
		0x0000000000000010ULL, 0x6f6972746f6e2020ULL,
	};
	static const uint64_t perturb[8] = {
		0, 0, 0, 0, 0, 0xfULL, 0xf0fULL, 0xf0f0f0f0f0fULL,
	};
	return base[r & 31] ^ ((r >> 8) & perturb[(r >> 5) & 7]);
}

/* Write the full expected content of the page at `gpa` for `gen` with fill
 * `data` (FG_DATA_*) into `page` (512 words). The guest calls it on the page
 * itself, checkers on a scratch buffer. The mode is tested once, outside
 * the loops, so each loop stays as tight as the original random one. */
static inline void fg_page_fill(uint64_t *page, uint64_t gpa, uint32_t gen, uint32_t data)
{
	if (gen == 0) {
		for (unsigned i = 0; i < FG_PAGE_WORDS; i++)
			page[i] = 0;
		return;
	}
	uint64_t s = fg_seed(gpa, gen);
	page[0] = fg_word0(gen);
	page[1] = gpa;
	if (data == FG_DATA_TEXT) {
		for (unsigned i = 2; i < FG_PAGE_WORDS; i++)
			page[i] = fg_text_word(fg_xorshift64(&s));
		return;
	}
	for (unsigned i = 2; i < FG_PAGE_WORDS; i++)
		page[i] = fg_xorshift64(&s);
}

static inline uint64_t fg_page_gpa(const struct fg_ctl *c, uint64_t idx)
{
	return c->ws_base + idx * FG_PAGE_SIZE;
}

/*
 * virtio-blk heartbeat record: with blk=1 the guest writes one per second to
 * sector (n % FG_BLK_SECTORS) + 1 and flushes. A host test reads the image
 * and checks magic, sum and that n is recent.
 */
#define FG_BLK_MAGIC 0x314b4c4259525246ULL /* "FRRYBLK1" */
#define FG_BLK_SECTORS 64u

struct fg_blk_record {
	uint64_t magic;
	uint64_t n;      /* heartbeat counter at the time of writing */
	uint64_t sum;    /* fg_blk_sum() */
	uint64_t fill[61];
};
_Static_assert(sizeof(struct fg_blk_record) == 512, "one sector");

static inline uint64_t fg_blk_sum(const struct fg_blk_record *r)
{
	uint64_t s = fg_mix64(r->magic ^ fg_mix64(r->n));
	for (unsigned i = 0; i < 61; i++)
		s = fg_mix64(s ^ r->fill[i]);
	return s;
}

static inline void fg_blk_fill(struct fg_blk_record *r, uint64_t n)
{
	r->magic = FG_BLK_MAGIC;
	r->n = n;
	for (unsigned i = 0; i < 61; i++)
		r->fill[i] = fg_mix64(n * 61 + i + 1);
	r->sum = fg_blk_sum(r);
}

/* virtio-net: frames the guest sends and echoes use this ethertype. */
#define FG_ETHERTYPE 0x88b5u

#endif
