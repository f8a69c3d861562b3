/*
 * Dirty-page tracking for pre-copy: KVM's dirty log (one bit per page, with
 * manual re-protection so a chunk is re-armed just before it is sent, not
 * when the log is read) merged with the pages the VMM itself wrote, which
 * KVM cannot see. Bitmaps here are indexed by RAM page (memfd offset /
 * 4096), across all memory slots.
 */
#ifndef FERRY_DIRTY_H
#define FERRY_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "vmm/vm.h"

struct dirty {
	struct vm *vm;
	bool manual;          /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 in use */
	bool initially_set;   /* log starts all ones: nothing protected until cleared */
	uint64_t npages;
	uint64_t *bitmap;     /* result of the last sync */
	uint64_t *slotbuf;    /* scratch for one slot's log */
	uint64_t *ones;       /* all ones: the mask for re-arming whole ranges */
};

/* Enable the manual-protect capability; call once right after VM creation,
 * before dirty logging is switched on. Harmless if the kernel lacks it. */
int dirty_vm_setup(struct vm *vm, struct err *e);

int dirty_start(struct dirty *d, struct vm *vm, struct err *e);
/* Collect pages dirtied since the last clear (KVM log | VMM writes) into d->bitmap. */
int dirty_sync(struct dirty *d, struct err *e);
/* Re-arm tracking for pages [first, first+n) that are about to be sent:
 * writes after this call show up in the next sync. first and n are rounded
 * out to 64 pages as KVM requires. mask is a RAM-wide bitmap (only the
 * pages set in it are re-armed), or NULL for all pages in the range. */
int dirty_clear(struct dirty *d, uint64_t first, uint64_t n, const uint64_t *mask, struct err *e);
void dirty_stop(struct dirty *d);
uint64_t dirty_count(const struct dirty *d);

#endif
