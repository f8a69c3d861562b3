/*
 * The ferry stream format, shared by state files (save/restore) and live
 * migration. Little-endian, versioned, framed: a header, then typed records
 * each with a 32-bit length, so a reader can check and skip any record
 * without understanding it, and a checker tool can walk a stream with no VM.
 * The full specification is docs/stream.md; limits below are enforced by
 * every reader before it uses a value.
 */
#ifndef FERRY_FORMAT_H
#define FERRY_FORMAT_H

#include <stdint.h>

#include "common/err.h"
#include "common/stream.h"

#define MIG_MAGIC "FERRYMIG"
/* Written: 7. Read: 2 to 6 as well, so a state file an earlier ferry
 * saved still restores; 1 had no checksums at all. 3 to 7 share their
 * framing: 4 says the vCPU sections may be of their version 2 (machine
 * checks) and 6 of their version 3 (PDPTRs), which an earlier destination
 * would refuse only when it applied the state, after all memory had
 * moved; 5 that CONFIG may put the NIC on a bridge, which an earlier
 * destination would ignore, running the VM with its NIC on nothing; 7
 * that CONFIG may ask for a copy of the disk (DISK records), which an
 * earlier destination would ignore, running the VM on a disk that is not
 * there. With the header's version such a destination refuses at
 * migration.prepare, before anything moves. */
#define MIG_VERSION 7
#define MIG_VERSION_MIN 2
#define MIG_VERSION_CONFIG_SUM 3 /* first version whose CONFIG opens with its sum */
#define MIG_VERSION_CPU_MODEL 4  /* first version whose live streams carry CPU_MODEL */
#define MIG_VERSION_BRIDGE 5     /* first version whose CONFIG may name a bridge */
#define MIG_VERSION_PDPTRS 6     /* first version whose vCPU sections may be of version 3 */
#define MIG_VERSION_DISK_COPY 7  /* first version whose CONFIG may ask for a disk copy */

enum mig_rec_type {
	MIG_REC_CONFIG = 1,   /* JSON: the VM's configuration */
	MIG_REC_MEM = 2,      /* a run of guest pages */
	MIG_REC_SECTION = 3,  /* one component's state */
	MIG_REC_SYNC = 4,     /* end of a memory pass */
	MIG_REC_STATE_END = 5,/* all device state sent: the destination may commit */
	MIG_REC_EOS = 6,      /* end of stream */
	MIG_REC_DIGEST = 7,   /* digests of all RAM, checked by the receiver (digest.h) */
	MIG_REC_CPUID = 8,    /* the guest's CPUID (vCPU 0), checked by the destination at setup */
	MIG_REC_EXTENTS = 9,  /* populated RAM ranges, so the destination can fault them in early */
	MIG_REC_COMMIT = 10,  /* the commit point: the destination now owns the VM */
	MIG_REC_ABORT = 11,   /* the source gave up: the destination discards everything */
	MIG_REC_HELLO = 12,   /* first record of an extra memory channel */
	/* vCPU 0's model beyond CPUID (TSC rate, machine checks, feature MSRs;
	 * cpustate.h): right after CPUID in a live stream of version 4 on,
	 * checked by the destination at setup */
	MIG_REC_CPU_MODEL = 13,
	/* a run of the disk image, when CONFIG asks for a copy (diskcopy.h) */
	MIG_REC_DISK = 14,
	/* Post-copy (postcopy.h), only to a destination whose SETUP reply
	 * offered it: before the device state, the pages the guest will find
	 * here only after it runs (u64 first page, a multiple of 64, then
	 * bitmap words from it on, one record per 64 KiB of bitmap); after
	 * RESUMED those pages as MEM records; then POSTCOPY_END. */
	MIG_REC_POSTCOPY = 15,
	MIG_REC_POSTCOPY_END = 16,
	MIG_REC_MAX = 16,
};

/*
 * Replies, destination to source, on the main connection; framed like
 * records (u32 type, u32 length) with a JSON payload.
 */
enum mig_reply_type {
	MIG_REPLY_SETUP = 101,   /* {"ok":bool,"error":str}: can this host take the VM? */
	MIG_REPLY_READY = 102,   /* {"ok":bool,"error":str,"load_ms":n}: all state loaded (load_ms: since STATE_END) */
	MIG_REPLY_RESUMED = 103, /* {"ok":bool,"error":str,"resumed_ns":n}: running here */
	/* post-copy, after RESUMED: the guest waits for this page (binary:
	 * u64 page index into RAM); the source sends it and owed pages after it */
	MIG_REPLY_PAGE_REQ = 104,
	/* post-copy: every owed page is in and the guest needs nothing more
	 * from the source ({"ok":bool,"error":str,"faults":n}) */
	MIG_REPLY_POSTCOPY_DONE = 105,
};
#define MIG_MAX_REPLY 4096
#define MIG_MAX_EXTENTS 65536

enum mig_mem_enc {
	MIG_ENC_RAW = 0,      /* npages * 4096 bytes follow */
	MIG_ENC_ZERO = 1,     /* all pages are zero: no payload */
	MIG_ENC_ZSTD = 2,     /* zstd frame that decompresses to npages * 4096 */
	MIG_ENC_LZ4 = 3,      /* lz4 block that decompresses to npages * 4096 */
	/* npages u64 page sums, then npages * 4096 bytes read straight from
	 * the running guest's memory (no copy first); the header's sum covers
	 * the page sums. A page whose own sum fails was written by the guest
	 * while it was being sent: KVM logged that write, so a later pass
	 * sends the page again. The receiver holds it as unverified until then
	 * and fails the load if one is left at the end. */
	MIG_ENC_RAW_SUMS = 4,
	MIG_ENC_MAX = 4,
};

#define MIG_REC_HDR 8
#define MIG_MEM_HDR 24          /* gpa u64, npages u32, gen u16, enc u8, pad u8, sum u64 */
#define MIG_MAX_RUN_PAGES 256   /* at most 1 MiB of pages per record */
#define MIG_MAX_RECORD (MIG_MEM_HDR + MIG_MAX_RUN_PAGES * 4096 + 4096)
/* Memory is dealt to the channels in chunks of 1 MiB of guest memory (page
 * index into the memory file): chunk k travels on channel k % channels, in
 * every pass, and no run crosses a chunk. So each page has one path, a
 * later copy never races an older one, and one receiving thread owns each
 * page's bookkeeping; a receiver refuses a run on another channel. */
#define MIG_CHUNK_PAGES MIG_MAX_RUN_PAGES
static inline uint32_t mig_chunk_channel(uint64_t page, uint32_t nch)
{
	return (uint32_t)((page / MIG_CHUNK_PAGES) % nch);
}
/* A run's generation as a page keeps it: 0 counts as 1 (docs/stream.md,
 * "Generations"), so a run of generation 0 sent again still applies. */
static inline uint16_t mig_gen_eff(uint16_t gen)
{
	return gen ? gen : 1;
}
#define MIG_MAX_CONFIG 65536 /* the whole CONFIG payload, sum included */
#define MIG_MAX_SECTION (1u << 20)
#define MIG_MAX_NAME 64

struct mig_rec {
	uint32_t type;
	uint32_t len;
};

struct mig_mem_hdr {
	uint64_t gpa;
	uint32_t npages;
	uint16_t gen;
	uint8_t enc;
	uint64_t sum;    /* XXH3-64 of the run's uncompressed pages (0 for zero runs) */
};

/* SYNC: the end of a memory pass. value: for pass 0 the number of
 * connections, later the pages the next pass sends; 0 in a state file. */
struct mig_sync {
	uint32_t pass;
	uint64_t value;
};

/* The checksum every page run and section carries: TCP's checksum is weak
 * and a file can rot, and a flipped byte in a page would otherwise reach
 * the guest silently. XXH3 costs a fraction of a memcpy. */
uint64_t mig_sum(const void *p, size_t n);
/* The same, built for AVX2 (sum_avx2.c): only where the CPU has it. */
uint64_t mig_sum_avx2(const void *p, size_t n);

void mig_put_header(struct stream *w);
/* Reads and checks the header; *version is the stream's (MIG_VERSION_MIN
 * to MIG_VERSION), which decides how its CONFIG record reads. */
int mig_get_header(struct stream *r, uint32_t *version, struct err *e);

/* A whole CONFIG record: the sum of the JSON text, then the text. */
void mig_put_config(struct stream *w, const char *json);
/* A CONFIG payload of a stream of this version, read into memory (len
 * bytes at p): checks its sum (version 3 on) and gives the JSON text. */
int mig_config_text(uint32_t version, const uint8_t *p, uint32_t len, const char **json,
		    uint32_t *jlen, struct err *e);

void mig_put_rec(struct stream *w, uint32_t type, uint32_t len);
/* Reads and validates a record header (type known, length within limits). */
int mig_get_rec(struct stream *r, struct mig_rec *rec, struct err *e);

void mig_put_mem_hdr(struct stream *w, const struct mig_mem_hdr *h);
/* Reads a memory-record header inside a record of rec_len bytes and checks
 * encoding, page count and payload length against each other. It does not
 * know guest RAM: the caller bounds-checks gpa. */
int mig_get_mem_hdr(struct stream *r, uint32_t rec_len, struct mig_mem_hdr *h, struct err *e);

/* A section: name, version, payload (already encoded in a memory stream). */
void mig_put_section(struct stream *w, const char *name, uint32_t version,
		     const void *payload, uint32_t len);
/* Reads a section record's name, version and payload checksum; *payload_len
 * is what follows. The caller verifies *sum with mig_sum over the payload. */
int mig_get_section_hdr(struct stream *r, uint32_t rec_len, char name[MIG_MAX_NAME + 1],
			uint32_t *version, uint32_t *payload_len, uint64_t *sum, struct err *e);

/* A whole SYNC record (12 bytes). */
void mig_put_sync(struct stream *w, const struct mig_sync *sy);
/* Its payload, in a SYNC record just read (any length but 12 is corrupt). */
int mig_get_sync(struct stream *r, const struct mig_rec *rec, struct mig_sync *sy, struct err *e);

/* An ABORT record just read: its reason (at most 255 bytes kept) into e,
 * as "the source abandoned the migration: REASON", with e->code ECANCELED;
 * always returns -1. */
int mig_get_abort(struct stream *r, const struct mig_rec *rec, struct err *e);
#define MIG_ABORT_PHRASE "the source abandoned the migration: "

const char *mig_rec_name(uint32_t type);

/* Send a reply: type and a JSON text. */
int mig_put_reply(struct stream *w, uint32_t type, const char *json, struct err *e);
/* Receive a reply of the expected type into buf (NUL ended). */
int mig_get_reply(struct stream *r, uint32_t type, char *buf, size_t cap, struct err *e);
/* A reply's JSON text of len bytes, its header already read. */
int mig_get_reply_text(struct stream *r, uint32_t len, char *buf, size_t cap, struct err *e);

#endif
