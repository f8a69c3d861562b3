/*
 * Post-copy: the guest runs on the destination before all of its memory
 * is there. When pre-copy cannot converge (the guest dirties memory about
 * as fast as the link moves it), the source stops the guest, sends the
 * device state and the set of pages still owed instead of the pages
 * themselves, and the destination runs the guest at once. A page the
 * guest (or the VMM) touches before it arrived faults into a userfaultfd
 * here; the fault thread asks the source for it and the guest waits only
 * for that page, while the source sends the rest in the background.
 *
 * The price, which is why it is opt-in: from the switch-over until the
 * last page arrives the VM's memory is split between the two hosts, and a
 * broken connection then loses the VM (the source's copy is stale, this
 * one incomplete). Pages are placed whole (written through a second
 * mapping, then mapped in; or UFFDIO_COPY), so the guest never sees one
 * half written.
 */
#ifndef FERRY_POSTCOPY_H
#define FERRY_POSTCOPY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/stream.h"
#include "migration/format.h"
#include "vmm/guestmem.h"

/* Bitmap words per POSTCOPY record (64 KiB of bitmap, 2 GiB of guest memory). */
#define POSTCOPY_REC_WORDS 8192
/* Owed pages the source sends after a requested one: the guest's next
 * touches are mostly nearby. */
#define POSTCOPY_PREFETCH_PAGES 32
/* The background sweep's step (256 KiB): under a bandwidth limit a
 * request waits behind at most one. */
#define POSTCOPY_SWEEP_PAGES 64

/* Source: the owed set, as POSTCOPY records. */
void postcopy_put_owed(struct stream *w, const uint64_t *bitmap, uint64_t npages);

/* Can this host take a post-copy move (userfaultfd on shared memory)? */
bool postcopy_supported(void);

struct postcopy_in {
	struct guest_mem *gm;
	uint64_t npages;
	uint64_t *owed;       /* pages the source still sends */
	uint64_t *arrived;    /* ... of which these are in */
	uint64_t *asked;      /* ... and these the guest waited for */
	uint64_t owed_count, arrived_count;
	uint64_t faults;      /* faults on owed pages (each a request) */
	uint64_t zero_fills;  /* faults on pages the guest never wrote */
	int uffd;
	/* minor faults (kernel 5.13 on): owed pages are mapped out, not freed,
	 * and written through a second mapping (alias) before they are mapped
	 * in; else they are freed and copied in (UFFDIO_COPY) */
	bool minor;
	bool no_minor;        /* set before arming: the other way, as without them (tests) */
	uint8_t *alias;
	int wake_fd;          /* eventfd: asking may start, or stop */
	bool armed, thread_on;
	volatile bool stop;
	bool may_ask;         /* RESUMED is out: the source reads requests now */
	pthread_mutex_t lock; /* the bitmaps, the counts, may_ask */
	pthread_mutex_t *wlock;  /* the main connection's writer (shared with replies) */
	struct stream *w;
	pthread_t thread;
	uint8_t *buf;         /* one record's pages */
	char error[256];      /* the fault thread's failure, if any */
};

int postcopy_in_init(struct postcopy_in *pc, struct guest_mem *gm, struct err *e);
/* A POSTCOPY record's body (after its header). */
int postcopy_in_read_owed(struct postcopy_in *pc, struct stream *r, uint32_t rec_len, struct err *e);
static inline bool postcopy_in_owed(const struct postcopy_in *pc, uint64_t p)
{
	return pc->owed && p < pc->npages && (pc->owed[p / 64] >> (p % 64) & 1);
}
/* With the device state loaded, before any vCPU runs: map out the stale
 * copies of owed pages, catch the faults on guest memory, start the fault
 * thread (which asks for nothing until postcopy_in_may_ask). Requests go
 * on w, under wlock, which every other writer of w must take too. */
int postcopy_in_arm(struct postcopy_in *pc, struct stream *w, pthread_mutex_t *wlock, struct err *e);
/* RESUMED is out: pages the guest waits for may be asked for now. */
void postcopy_in_may_ask(struct postcopy_in *pc);
/* An owed run (MEM record, raw or zero) placed into guest memory whole. */
int postcopy_in_recv(struct postcopy_in *pc, struct stream *r, uint32_t rec_len, struct err *e);
/* POSTCOPY_END: every owed page must be in; faults are the kernel's again. */
int postcopy_in_finish(struct postcopy_in *pc, struct err *e);
/* Stops the fault thread and closes the userfaultfd: call it only once the
 * vCPUs can no longer run (after a failure, faults would be filled with
 * zeros), or after postcopy_in_finish. */
void postcopy_in_destroy(struct postcopy_in *pc);


#endif
