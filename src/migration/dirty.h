/*
 * Dirty-page tracking for pre-copy, one API over two KVM mechanisms, chosen
 * when the VM is created (vm->ring set or not):
 *  - bitmap: KVM's dirty log (one bit per page, with manual re-protection so
 *    a chunk is re-armed just before it is sent, not when the log is read);
 *  - ring: KVM's per-vCPU dirty rings (dirty_ring.h); a sync costs per dirty
 *    page, pages are re-armed by the harvest itself, so dirty_clear has
 *    nothing to do.
 * Either is merged with the pages the VMM itself wrote, which KVM cannot
 * see. Bitmaps here are indexed by RAM page (memfd offset / 4096), across
 * all memory slots.
 */
#ifndef FERRY_DIRTY_H
#define FERRY_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "migration/dirty_ring.h"
#include "vmm/vm.h"

struct dirty {
	struct vm *vm;
	struct dirty_ring *ring;  /* the ring tracker is in use (else the bitmap) */
	uint64_t ring_full0;      /* ring->full_exits at start, for the log */
	bool manual;          /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 in use */
	bool initially_set;   /* log starts all ones: nothing protected until cleared */
	uint64_t npages;
	uint64_t *bitmap;     /* result of the last sync */
	uint64_t *slotbuf;    /* scratch for one slot's log */
	uint64_t *ones;       /* all ones: the mask for re-arming whole ranges */
};

/* Choose the tracker right after KVM_CREATE_VM, before any vCPU or dirty
 * logging: ring enables the dirty ring (vm->ring), else the manual-protect
 * capability of the bitmap tracker (harmless if the kernel lacks it). */
int dirty_vm_setup(struct vm *vm, bool ring, struct err *e);
/* After the memory slots exist: tell the ring tracker where RAM lies. */
int dirty_vm_layout(struct vm *vm, struct err *e);

/* Switch logging on. From here every guest write is tracked: with the
 * bitmap, pages are re-armed by dirty_clear as they are sent; with the
 * ring, switching on write-protects all RAM, so pass 1 sends everything
 * populated and each later write shows up in a sync. */
int dirty_start(struct dirty *d, struct vm *vm, struct err *e);
/* Collect pages dirtied since the last clear (KVM log | VMM writes) into d->bitmap. */
int dirty_sync(struct dirty *d, struct err *e);
/* Re-arm tracking for pages [first, first+n) that are about to be sent:
 * writes after this call show up in the next sync. first and n are rounded
 * out to 64 pages as KVM requires. mask is a RAM-wide bitmap (only the
 * pages set in it are re-armed), or NULL for all pages in the range.
 * A no-op with the ring: its sync already re-armed what it returned. */
int dirty_clear(struct dirty *d, uint64_t first, uint64_t n, const uint64_t *mask, struct err *e);
/* Count the pages KVM logged as written among RAM pages [0, upto) since
 * they were last re-armed, without disturbing the log or the VMM-write
 * bits (which the next dirty_sync still collects). Pages not yet re-armed
 * read as dirty (INITIALLY_SET), so callers ask only about re-armed ones.
 * Bitmap tracker with manual protection only; else fails. */
int dirty_peek(struct dirty *d, uint64_t upto, uint64_t *count, struct err *e);
void dirty_stop(struct dirty *d);
uint64_t dirty_count(const struct dirty *d);

#endif
