/*
 * Dirty tracking (see dirty.h). With MANUAL_DIRTY_LOG_PROTECT2 and
 * INITIALLY_SET, switching logging on costs nothing (no mass
 * write-protection): pages are protected chunk by chunk by
 * KVM_CLEAR_DIRTY_LOG right before they are sent, which also avoids
 * re-sending pages dirtied between reading the log and sending them.
 * With the dirty ring, the work is in dirty_ring.c; this file only routes
 * the calls and merges in the VMM's own writes.
 */
#include "migration/dirty.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/log.h"

static int dirty_manual_flags(struct vm *vm)
{
	int caps = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (caps <= 0)
		return 0;
	return caps & (KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET);
}

int dirty_vm_setup(struct vm *vm, bool ring, struct err *e)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 };
	int flags;
	/* The ring never gets MANUAL_PROTECT2: with INITIALLY_SET KVM would
	 * not write-protect memory when logging starts, and the ring would
	 * miss every first write. */
	if (ring)
		return dirty_ring_enable(&vm->ring, vm->vm_fd, DIRTY_RING_DEFAULT_ENTRIES, e);
	flags = dirty_manual_flags(vm);
	if (!flags)
		return 0;
	cap.args[0] = (uint64_t)flags;
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
		return err_sys(e, "enabling KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
	vm->dirty_manual_flags = flags;
	return 0;
}

int dirty_vm_layout(struct vm *vm, struct err *e)
{
	return vm->ring ? dirty_ring_set_layout(vm->ring, &vm->mem, e) : 0;
}

int dirty_start(struct dirty *d, struct vm *vm, struct err *e)
{
	size_t words;
	memset(d, 0, sizeof(*d));
	d->vm = vm;
	d->ring = vm->ring;
	d->npages = gmem_npages(&vm->mem);
	d->manual = vm->dirty_manual_flags & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
	d->initially_set = vm->dirty_manual_flags & KVM_DIRTY_LOG_INITIALLY_SET;
	words = (size_t)((d->npages + 63) / 64);
	d->bitmap = calloc(words, 8);
	d->slotbuf = calloc(words, 8);
	d->ones = malloc(words * 8);
	if (d->ones)
		memset(d->ones, 0xff, words * 8);
	if (!d->bitmap || !d->slotbuf || !d->ones) {
		dirty_stop(d);
		return err_set(e, "out of memory for dirty bitmaps");
	}
	/* Forget VMM writes from before: pass 1 sends everything anyway. */
	memset(vm->mem.vmm_dirty, 0, words * 8);
	/* Same for what an earlier, abandoned migration left in the rings
	 * (logging is off now, so nothing new arrives until it is on). */
	if (d->ring && dirty_ring_discard(d->ring, e) < 0) {
		dirty_stop(d);
		return -1;
	}
	if (d->ring) {
		pthread_mutex_lock(&d->ring->lock);
		d->ring_full0 = d->ring->full_exits;
		pthread_mutex_unlock(&d->ring->lock);
	}
	if (vm_set_dirty_logging(vm, true, e) < 0) {
		dirty_stop(d);
		return -1;
	}
	return 0;
}

/* KVM's log of one memory slot into d->slotbuf. */
static int dirty_get_slot(struct dirty *d, const struct gmem_region *r, struct err *e)
{
	struct kvm_dirty_log log = { .slot = r->slot, .dirty_bitmap = d->slotbuf };
	if (ioctl(d->vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return err_sys(e, "KVM_GET_DIRTY_LOG slot %u", r->slot);
	return 0;
}

int dirty_sync(struct dirty *d, struct err *e)
{
	struct guest_mem *gm = &d->vm->mem;
	size_t words = (size_t)((d->npages + 63) / 64);
	if (d->ring && dirty_ring_take(d->ring, d->bitmap, e) < 0)
		return -1;
	for (int i = 0; !d->ring && i < gm->nregions; i++) {
		const struct gmem_region *r = &gm->regions[i];
		uint64_t first = r->offset >> 12, n = r->size >> 12;
		if (dirty_get_slot(d, r, e) < 0)
			return -1;
		/* Regions start on 64-page boundaries (the 3 GiB split is aligned). */
		memcpy(d->bitmap + first / 64, d->slotbuf, (size_t)((n + 63) / 64) * 8);
	}
	for (size_t w = 0; w < words; w++)
		d->bitmap[w] |= __atomic_exchange_n(&gm->vmm_dirty[w], 0, __ATOMIC_RELAXED);
	if (d->npages % 64)
		d->bitmap[words - 1] &= (1ULL << (d->npages % 64)) - 1;
	return 0;
}

int dirty_peek(struct dirty *d, uint64_t upto, uint64_t *count, struct err *e)
{
	struct guest_mem *gm = &d->vm->mem;
	uint64_t n = 0;
	/* Only a manual-protect log can be read without side effects: the
	 * legacy GET_DIRTY_LOG re-protects (losing bits for the next sync),
	 * and the ring's harvest is its re-arm. */
	if (!d->manual || d->ring)
		return err_set(e, "the dirty tracker cannot be read without resetting it");
	for (int i = 0; i < gm->nregions; i++) {
		const struct gmem_region *r = &gm->regions[i];
		uint64_t first = r->offset >> 12, pages = r->size >> 12;
		if (first >= upto)
			break;
		if (pages > upto - first)
			pages = upto - first;
		if (dirty_get_slot(d, r, e) < 0)
			return -1;
		for (uint64_t w = 0; w < pages / 64; w++)
			n += (uint64_t)__builtin_popcountll(d->slotbuf[w]);
		if (pages % 64)
			n += (uint64_t)__builtin_popcountll(d->slotbuf[pages / 64] &
							    ((1ULL << (pages % 64)) - 1));
	}
	*count = n;
	return 0;
}

int dirty_clear(struct dirty *d, uint64_t first, uint64_t n, const uint64_t *mask, struct err *e)
{
	struct guest_mem *gm = &d->vm->mem;
	if (!d->manual || d->ring)
		return 0; /* legacy GET_DIRTY_LOG and the ring re-protected at sync time */
	if (!mask)
		mask = d->ones;
	for (int i = 0; i < gm->nregions; i++) {
		const struct gmem_region *r = &gm->regions[i];
		uint64_t rs = r->offset >> 12, re = rs + (r->size >> 12);
		uint64_t s = first < rs ? rs : first, t = first + n > re ? re : first + n;
		struct kvm_clear_dirty_log c = { .slot = r->slot };
		if (s >= t)
			continue;
		/* KVM wants first_page 64-aligned and num_pages a multiple of 64
		 * (or reaching the slot's end). */
		s = rs + (((s - rs) / 64) * 64);
		t = rs + (((t - rs) + 63) / 64) * 64;
		if (t > re)
			t = re;
		c.first_page = s - rs;
		c.num_pages = (uint32_t)(t - s);
		c.dirty_bitmap = (void *)(mask + s / 64);
		if (ioctl(d->vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
			return err_sys(e, "KVM_CLEAR_DIRTY_LOG slot %u pages %llu+%u", r->slot,
				       (unsigned long long)c.first_page, c.num_pages);
	}
	return 0;
}

void dirty_stop(struct dirty *d)
{
	struct err e;
	if (d->vm)
		(void)vm_set_dirty_logging(d->vm, false, &e);
	if (d->ring) {
		/* Under the lock: a full vCPU may be harvesting right now. */
		pthread_mutex_lock(&d->ring->lock);
		log_info("dirty ring: %llu entries harvested so far, %llu ring-full exits in this run, %llu stray",
			 (unsigned long long)d->ring->collected,
			 (unsigned long long)(d->ring->full_exits - d->ring_full0),
			 (unsigned long long)d->ring->stray);
		pthread_mutex_unlock(&d->ring->lock);
	}
	free(d->bitmap);
	free(d->slotbuf);
	free(d->ones);
	d->bitmap = d->slotbuf = d->ones = NULL;
}

uint64_t dirty_count(const struct dirty *d)
{
	uint64_t n = 0;
	for (uint64_t w = 0; w < (d->npages + 63) / 64; w++)
		n += (uint64_t)__builtin_popcountll(d->bitmap[w]);
	return n;
}
