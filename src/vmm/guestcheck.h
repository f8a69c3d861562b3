/*
 * Host-side verification of the test guest's memory (guest/protocol.h):
 * reads the control block, then recomputes every working-set page from its
 * committed generation and reports pages that are stale, at the wrong
 * address, torn or otherwise corrupt. Run it on a paused guest (e.g. on the
 * destination after migration, before resuming) for a consistent view.
 *
 * Everything read from guest memory is treated as hostile input: counts,
 * indices and GPAs are bounds-checked before use.
 */
#ifndef FERRY_GUESTCHECK_H
#define FERRY_GUESTCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

enum guestcheck_reason {
	GUESTCHECK_OK = 0,
	GUESTCHECK_STALE,      /* a complete older version of the page */
	GUESTCHECK_WRONG_ADDR, /* a page stamped for another GPA */
	GUESTCHECK_TORN,       /* words of two versions mixed, not allowed here */
	GUESTCHECK_CORRUPT,    /* content that no version explains */
};

#define GUESTCHECK_MAX_FAILURES 8

struct guestcheck_failure {
	uint64_t gpa;
	uint64_t page;          /* working-set index */
	enum guestcheck_reason reason;
	uint32_t table_gen;     /* committed generation */
	uint32_t page_gen;      /* generation in the page header (if any) */
	uint32_t first_bad_word;
};

struct guestcheck_report {
	uint32_t ncpus;
	uint64_t ws_base, ws_pages;
	uint64_t hb;                    /* global heartbeat counter */
	uint32_t data;                  /* FG_DATA_*: the page fill checked against */
	uint64_t pages_checked;
	uint64_t pages_never_written;   /* table gen 0 and all-zero */
	uint64_t pages_inflight;        /* checked with the in-flight rule */
	uint32_t max_gen;
	uint64_t vcpu_heartbeat[FG_MAX_CPUS];
	uint64_t vcpu_pages_written[FG_MAX_CPUS];
	uint64_t nfailures;             /* all failures; details for the first few */
	struct guestcheck_failure failures[GUESTCHECK_MAX_FAILURES];
};

/* Host pointer for guest-physical [gpa, gpa+len), or NULL if that range is
 * not (contiguous) guest RAM. */
typedef const uint8_t *(*guestcheck_map_fn)(void *opaque, uint64_t gpa, uint64_t len);

/* Returns 0 if every page checks out, 1 if some failed (see out->failures,
 * and errbuf for a one-line summary), -1 if the control block is missing or
 * invalid (errbuf says why). */
int guestcheck_verify_map(guestcheck_map_fn map, void *opaque,
			  struct guestcheck_report *out, char *errbuf, size_t errlen);

/* Convenience form for RAM mapped flat from GPA 0 (ram_size bytes). */
int guestcheck_verify(const uint8_t *ram, uint64_t ram_size,
		      struct guestcheck_report *out, char *errbuf, size_t errlen);

const char *guestcheck_reason_str(enum guestcheck_reason r);

#endif
