/*
 * The dirty-ring tracker (see dirty_ring.h): enabling the capability,
 * mapping each vCPU's ring, and the harvest protocol from KVM's api.rst —
 * entries are collected strictly in order from a private fetch index, the
 * flags word is read with acquire and written with release, and
 * KVM_RESET_DIRTY_RINGS runs before anyone may read the harvested pages.
 */
#include "migration/dirty_ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"

static int dirty_ring_kvm_reset(struct dirty_ring *dr)
{
	return ioctl(dr->vm_fd, KVM_RESET_DIRTY_RINGS, 0);
}

uint32_t dirty_ring_max_bytes(int vm_fd)
{
	/* Both capabilities answer with the largest ring in bytes. ACQ_REL is
	 * the one that promises the acquire/release protocol we follow. */
	int r = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
	if (r <= 0)
		r = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING);
	return r > 0 ? (uint32_t)r : 0;
}

int dirty_ring_init(struct dirty_ring *dr, int vm_fd, uint32_t entries, uint64_t npages,
		    const struct dirty_ring_slot *slots, int nslots, struct err *e)
{
	memset(dr, 0, sizeof(*dr));
	if (entries == 0 || (entries & (entries - 1)))
		return err_set(e, "dirty ring size %u is not a power of two", entries);
	if (nslots < 0 || nslots > GMEM_MAX_REGIONS)
		return err_set(e, "dirty ring: %d memory slots (max %d)", nslots, GMEM_MAX_REGIONS);
	pthread_mutex_init(&dr->lock, NULL);
	dr->vm_fd = vm_fd;
	dr->entries = entries;
	dr->reset = dirty_ring_kvm_reset;
	dr->npages = npages;
	dr->nslots = nslots;
	if (nslots)
		memcpy(dr->slots, slots, (size_t)nslots * sizeof(*slots));
	if (npages) {
		dr->pending = calloc((size_t)((npages + 63) / 64), 8);
		if (!dr->pending) {
			pthread_mutex_destroy(&dr->lock);
			return err_set(e, "out of memory for the dirty-ring bitmap");
		}
	}
	return 0;
}

int dirty_ring_enable(struct dirty_ring **out, int vm_fd, uint32_t entries, struct err *e)
{
	struct kvm_enable_cap cap = { 0 };
	uint32_t max = dirty_ring_max_bytes(vm_fd);
	struct dirty_ring *dr;

	*out = NULL;
	if (max == 0)
		return err_set(e, "this host's KVM has no dirty ring (KVM_CAP_DIRTY_LOG_RING): "
			       "use the bitmap tracker (--dirty-tracker bitmap)");
	/* Shrink to what KVM allows; sizes stay powers of two. */
	while (entries > 1 && (uint64_t)entries * sizeof(struct kvm_dirty_gfn) > max)
		entries /= 2;
	dr = malloc(sizeof(*dr));
	if (!dr)
		return err_set(e, "out of memory");
	if (dirty_ring_init(dr, vm_fd, entries, 0, NULL, 0, e) < 0) {
		free(dr);
		return -1;
	}
	cap.cap = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING_ACQ_REL) > 0 ?
		  KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KVM_CAP_DIRTY_LOG_RING;
	cap.args[0] = (uint64_t)entries * sizeof(struct kvm_dirty_gfn);
	if (ioctl(vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
		err_sys(e, "enabling the KVM dirty ring (%u entries)", entries);
		dirty_ring_destroy(dr);
		return -1;
	}
	log_debug("dirty ring: %u entries per vCPU (%s)", entries,
		  cap.cap == KVM_CAP_DIRTY_LOG_RING_ACQ_REL ? "acquire/release" : "x86 ordering");
	*out = dr;
	return 0;
}

int dirty_ring_set_layout(struct dirty_ring *dr, const struct guest_mem *gm, struct err *e)
{
	uint64_t npages = gmem_npages(gm);
	uint64_t *bm = calloc((size_t)((npages + 63) / 64), 8);
	if (!bm)
		return err_set(e, "out of memory for the dirty-ring bitmap");
	pthread_mutex_lock(&dr->lock);
	free(dr->pending);
	dr->pending = bm;
	dr->npages = npages;
	dr->nslots = gm->nregions;
	for (int i = 0; i < gm->nregions; i++) {
		const struct gmem_region *r = &gm->regions[i];
		/* Address space 0: we use no SMM, so no other exists. */
		dr->slots[i] = (struct dirty_ring_slot){ .slot = r->slot,
			.first_page = r->offset >> GMEM_PAGE_SHIFT, .npages = r->size >> GMEM_PAGE_SHIFT };
	}
	pthread_mutex_unlock(&dr->lock);
	return 0;
}

int dirty_ring_map_vcpu(struct dirty_ring *dr, int index, int vcpu_fd, struct err *e)
{
	size_t len = (size_t)dr->entries * sizeof(struct kvm_dirty_gfn);
	long psz = sysconf(_SC_PAGESIZE);
	void *p;
	if (index < 0 || index >= LAYOUT_MAX_VCPUS)
		return err_set(e, "dirty ring: vCPU index %d out of range", index);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd,
		 (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * psz);
	if (p == MAP_FAILED)
		return err_sys(e, "mapping the dirty ring of vCPU %d", index);
	pthread_mutex_lock(&dr->lock);
	dr->cpu[index] = (struct dirty_ring_cpu){ .gfns = p, .map_len = len, .fetch = 0 };
	pthread_mutex_unlock(&dr->lock);
	return 0;
}

void dirty_ring_unmap_vcpu(struct dirty_ring *dr, int index)
{
	struct dirty_ring_cpu c;
	if (index < 0 || index >= LAYOUT_MAX_VCPUS)
		return;
	pthread_mutex_lock(&dr->lock);
	c = dr->cpu[index];
	memset(&dr->cpu[index], 0, sizeof(dr->cpu[index]));
	pthread_mutex_unlock(&dr->lock);
	if (c.gfns && c.map_len)
		munmap(c.gfns, c.map_len);
}

void dirty_ring_destroy(struct dirty_ring *dr)
{
	if (!dr)
		return;
	for (int i = 0; i < LAYOUT_MAX_VCPUS; i++)
		dirty_ring_unmap_vcpu(dr, i);
	free(dr->pending);
	pthread_mutex_destroy(&dr->lock);
	free(dr);
}

/* RAM page of (slot, offset), or UINT64_MAX if it is not RAM we know. */
static uint64_t dirty_ring_page(const struct dirty_ring *dr, uint32_t slot, uint64_t offset)
{
	for (int i = 0; i < dr->nslots; i++)
		if (dr->slots[i].slot == slot)
			return offset < dr->slots[i].npages ? dr->slots[i].first_page + offset : UINT64_MAX;
	return UINT64_MAX;
}

uint32_t dirty_ring_collect(struct dirty_ring *dr, struct dirty_ring_cpu *c)
{
	uint32_t n = 0;
	if (!c->gfns || !dr->pending)
		return 0;
	/* A ring holds at most `entries` unreset entries, so a pass never
	 * needs more; the bound also keeps a corrupt ring from spinning us. */
	while (n < dr->entries) {
		struct kvm_dirty_gfn *g = &c->gfns[c->fetch & (dr->entries - 1)];
		uint64_t page;
		/* Acquire: slot and offset are valid once we see DIRTY (KVM
		 * publishes them before it sets the flag with release). */
		if (__atomic_load_n(&g->flags, __ATOMIC_ACQUIRE) != KVM_DIRTY_GFN_F_DIRTY)
			break;
		page = dirty_ring_page(dr, g->slot, g->offset);
		if (page < dr->npages)
			dr->pending[page / 64] |= 1ULL << (page % 64);
		else
			dr->stray++;
		/* Release: our reads of the entry happen before KVM may reuse it. */
		__atomic_store_n(&g->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		c->fetch++;
		n++;
	}
	return n;
}

/* Caller holds the lock. */
static int dirty_ring_harvest_locked(struct dirty_ring *dr, struct err *e)
{
	int tries = 0;
	for (int i = 0; i < LAYOUT_MAX_VCPUS; i++) {
		uint32_t n = dirty_ring_collect(dr, &dr->cpu[i]);
		dr->unreset += n;
		dr->collected += n;
	}
	/* KVM may stop early (a signal — our vCPU kick — is pending); what it
	 * did reset counts, so go on until every collected entry is reset. Only
	 * then are all the pages in pending protected again. */
	while (dr->unreset) {
		int r = dr->reset(dr);
		if (r < 0 && errno != EINTR)
			return err_sys(e, "KVM_RESET_DIRTY_RINGS");
		if (r > 0)
			dr->unreset -= (uint64_t)r > dr->unreset ? dr->unreset : (uint64_t)r;
		else if (++tries > 100)
			return err_set(e, "KVM_RESET_DIRTY_RINGS left %llu harvested entries unreset",
				       (unsigned long long)dr->unreset);
	}
	return 0;
}

int dirty_ring_harvest(struct dirty_ring *dr, bool full, struct err *e)
{
	int rc;
	pthread_mutex_lock(&dr->lock);
	if (full)
		dr->full_exits++;
	rc = dirty_ring_harvest_locked(dr, e);
	pthread_mutex_unlock(&dr->lock);
	return rc;
}

int dirty_ring_take(struct dirty_ring *dr, uint64_t *out, struct err *e)
{
	size_t words = (size_t)((dr->npages + 63) / 64);
	int rc;
	pthread_mutex_lock(&dr->lock);
	rc = dirty_ring_harvest_locked(dr, e);
	if (rc == 0 && dr->pending) {
		if (out)
			memcpy(out, dr->pending, words * 8);
		memset(dr->pending, 0, words * 8);
	}
	pthread_mutex_unlock(&dr->lock);
	return rc;
}

int dirty_ring_discard(struct dirty_ring *dr, struct err *e)
{
	return dirty_ring_take(dr, NULL, e);
}
