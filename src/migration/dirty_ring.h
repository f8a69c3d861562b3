/*
 * KVM's dirty ring (KVM_CAP_DIRTY_LOG_RING[_ACQ_REL]): the other dirty
 * tracker behind dirty.h. Each vCPU publishes the pages it dirties as
 * (slot, offset) entries in a ring shared with us; a harvest collects them
 * into one RAM-wide bitmap of pending pages (indexed by memfd offset / 4096,
 * like every bitmap in dirty.h) and KVM_RESET_DIRTY_RINGS then write-protects
 * those pages again. The cost is per dirty page, not per page of RAM.
 *
 * Concurrency: harvests come from two places — the migration thread (every
 * sync) and a vCPU whose ring is full (KVM_EXIT_DIRTY_RING_FULL). Both take
 * one VM-wide lock for the whole "collect every ring, reset, hand out the
 * pending bitmap" sequence. That is what keeps the tracker exact: a bit that
 * a sync hands to the sender always belongs to a page that KVM has already
 * re-protected, so a write after the sender reads the page is logged again.
 * A full vCPU harvests itself (instead of waiting for the migration thread,
 * which may be busy sending a whole pass) and re-enters at once.
 *
 * The ring must be enabled before any vCPU exists and excludes
 * MANUAL_DIRTY_LOG_PROTECT2's INITIALLY_SET (KVM would assume nothing is
 * write-protected, and pages would be lost); vm_create chooses one or the
 * other.
 */
#ifndef FERRY_DIRTY_RING_H
#define FERRY_DIRTY_RING_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "vmm/guestmem.h"
#include "vmm/x86/layout.h"

/* 64 Ki entries x 16 B = 1 MiB per vCPU: at full speed a vCPU dirties a
 * ring's worth between two syncs only rarely, and each ring-full exit
 * costs a harvest. Clamped to what KVM allows. */
#define DIRTY_RING_DEFAULT_ENTRIES 65536u

/* Where a memslot's pages sit in RAM. */
struct dirty_ring_slot {
	uint32_t slot;        /* as_id << 16 | slot id, as in kvm_dirty_gfn */
	uint64_t first_page;  /* RAM page index of the slot's page 0 */
	uint64_t npages;
};

/* One vCPU's ring. */
struct dirty_ring_cpu {
	struct kvm_dirty_gfn *gfns;   /* NULL: no ring mapped for this index */
	size_t map_len;               /* bytes mapped (0 for a caller-owned array) */
	uint32_t fetch;               /* next entry to look at; only grows */
};

struct dirty_ring {
	pthread_mutex_t lock;         /* see the file comment */
	int vm_fd;
	uint32_t entries;             /* per ring, a power of two */
	uint64_t npages;
	uint64_t *pending;            /* harvested, not yet taken by a sync */
	int nslots;
	struct dirty_ring_slot slots[GMEM_MAX_REGIONS];
	struct dirty_ring_cpu cpu[LAYOUT_MAX_VCPUS];
	uint64_t unreset;             /* entries collected since the last reset */
	/* Re-protect the collected entries. KVM_RESET_DIRTY_RINGS normally;
	 * unit tests put a fake ring's reset here. Returns entries reset or -1. */
	int (*reset)(struct dirty_ring *dr);
	/* Statistics. */
	uint64_t collected;           /* entries harvested */
	uint64_t full_exits;          /* harvests done by a vCPU whose ring was full */
	uint64_t stray;               /* entries naming no RAM slot (ignored) */
};

/* Largest ring KVM allows on this VM, in bytes; 0 if it has no dirty ring. */
uint32_t dirty_ring_max_bytes(int vm_fd);
/* Enable the ring on a new VM: right after KVM_CREATE_VM, before any vCPU
 * and before dirty logging is switched on for any slot. */
int dirty_ring_enable(struct dirty_ring **out, int vm_fd, uint32_t entries, struct err *e);
/* Record the RAM layout (after the memory slots exist). */
int dirty_ring_set_layout(struct dirty_ring *dr, const struct guest_mem *gm, struct err *e);
/* Map vCPU `index`'s ring from its fd (at vCPU creation). */
int dirty_ring_map_vcpu(struct dirty_ring *dr, int index, int vcpu_fd, struct err *e);
void dirty_ring_unmap_vcpu(struct dirty_ring *dr, int index);
void dirty_ring_destroy(struct dirty_ring *dr);

/* Collect every ring into the pending bitmap and re-protect the pages.
 * full: called by a vCPU on KVM_EXIT_DIRTY_RING_FULL (counted). */
int dirty_ring_harvest(struct dirty_ring *dr, bool full, struct err *e);
/* Harvest, then move the pending bitmap into out (overwritten) and empty
 * it. Every page set in out has been re-protected: its content may be read. */
int dirty_ring_take(struct dirty_ring *dr, uint64_t *out, struct err *e);
/* Harvest and forget: what the rings hold from before is not wanted. */
int dirty_ring_discard(struct dirty_ring *dr, struct err *e);

/* The harvest protocol on one ring, without KVM (exposed for tests; the
 * caller holds the lock): collect dirty entries in order from the fetch
 * index into the pending bitmap and mark them for reset. Returns the number
 * of entries collected. */
uint32_t dirty_ring_collect(struct dirty_ring *dr, struct dirty_ring_cpu *c);
/* Set up a ring state over a caller-described layout, with no KVM (tests). */
int dirty_ring_init(struct dirty_ring *dr, int vm_fd, uint32_t entries, uint64_t npages,
		    const struct dirty_ring_slot *slots, int nslots, struct err *e);

#endif
