/*
 * Stream checker: walks a ferry stream (state file or recorded migration)
 * with no VM and validates everything a receiver would — header, record
 * framing, the configuration, every memory record against the RAM layout
 * the configuration implies (compressed runs are decompressed in full),
 * every section through its real decoder, and the record order rules.
 * It produces a report (counts, pages, sections, first error and its byte
 * offset) and optionally a one-line-per-record dump. Memory use is bounded
 * by the format limits, never by a value read from the stream.
 */
#ifndef FERRY_CHECK_H
#define FERRY_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"
#include "common/stream.h"
#include "migration/format.h"
#include "vmm/config.h"

/* Bounds for the report tables; they cap what an input can make us keep. */
#define STREAMCHECK_MAX_TYPES 32        /* record types counted (index = type) */
#define STREAMCHECK_MAX_SECTIONS 64     /* sections listed in the report */
#define STREAMCHECK_MAX_GENS 16         /* distinct generations listed */

struct streamcheck_opts {
	bool strict;        /* unknown section names and record types are errors */
	FILE *dump;         /* non-NULL: print one line per record here */
	uint64_t limit;     /* dump: print at most this many records (0 = all) */
};

struct streamcheck_section {
	char name[MIG_MAX_NAME + 1];
	uint32_t version;
	uint32_t size;      /* payload bytes */
	uint64_t offset;    /* byte offset of the record header */
	bool known;         /* decoded by a known decoder */
};

struct streamcheck_gen {
	uint16_t gen;
	uint64_t pages;
};

struct streamcheck_report {
	bool valid;
	uint32_t version;                            /* the header's stream version */
	uint64_t bytes;                              /* bytes read from the stream */
	uint64_t records;                            /* records seen */
	uint64_t by_type[STREAMCHECK_MAX_TYPES];     /* records per type */
	uint64_t bytes_by_type[STREAMCHECK_MAX_TYPES];/* record payload bytes per type */
	uint64_t pages[MIG_ENC_MAX + 1];             /* pages per encoding */
	uint64_t compressed_bytes;                   /* wire bytes of compressed runs */
	uint64_t pages_torn;                         /* raw-sums pages that failed their sum */
	struct streamcheck_gen gens[STREAMCHECK_MAX_GENS];
	int ngens;
	uint64_t pages_other_gens;                   /* pages whose gen did not fit the table */
	bool have_config;
	struct vm_config cfg;
	int nsections;
	struct streamcheck_section sections[STREAMCHECK_MAX_SECTIONS];
	int unknown_sections;
	uint64_t syncs;                              /* memory passes ended */
	/* First error. */
	uint64_t err_offset;                         /* byte offset of the failing record */
	char error[ERR_MSG_MAX];
};

/* Walk r to its end record. Returns 0 if the stream is valid, -1 if not
 * (e and rep->error say why, rep->err_offset where). The report is filled
 * either way with what was seen up to the error. */
int streamcheck_run(struct stream *r, const struct streamcheck_opts *o,
		    struct streamcheck_report *rep, struct err *e);

/* Human-readable summary of a report. */
void streamcheck_print(FILE *f, const struct streamcheck_report *rep);

const char *streamcheck_enc_name(uint8_t enc);

#endif
