/*
 * Guest RAM: one memfd mapped once into the VMM, exposed to KVM as one or two
 * memslots (below the 32-bit PCI hole, and above 4 GiB for large guests).
 * Every access the VMM makes to guest memory goes through gmem_ptr(), which
 * bounds-checks the guest-physical range; every VMM *write* is recorded with
 * gmem_mark_dirty() because KVM's dirty log cannot see it.
 */
#ifndef FERRY_GUESTMEM_H
#define FERRY_GUESTMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define GMEM_PAGE_SIZE 4096ULL
#define GMEM_PAGE_SHIFT 12
#define GMEM_MAX_REGIONS 2

struct gmem_region {
	uint64_t gpa;      /* guest-physical start */
	uint64_t size;     /* bytes, page aligned */
	uint64_t offset;   /* offset into the memfd / host mapping */
	uint32_t slot;     /* KVM memslot id */
};

struct guest_mem {
	int memfd;
	uint8_t *host;      /* mapping of the whole memfd */
	uint64_t ram_size;  /* total RAM bytes */
	int nregions;
	struct gmem_region regions[GMEM_MAX_REGIONS];
	/* Pages written by the VMM itself, one bit per page of ram_size
	 * (indexed by memfd offset / 4096). Set atomically. */
	uint64_t *vmm_dirty;
	/* Pages were faulted in up front (gmem_populate_ranges): the memfd's
	 * data extents no longer tell what the guest touched until the pages
	 * it never did are punched out again (gmem_punch). */
	bool prepopulated;
};

/* Lay out and map `size` bytes of RAM. Below 3 GiB it is one region at 0;
 * above, the rest goes to 4 GiB upwards. */
int gmem_init(struct guest_mem *gm, uint64_t size, struct err *e);
void gmem_destroy(struct guest_mem *gm);
/* Fault in these page ranges, (first page, pages) pairs each inside RAM
 * (the caller checks), now, with `threads` threads: a destination
 * reserving its memory before a move (as QEMU's -mem-prealloc; all of it,
 * or the part the source uses) fails early, before any migration, when
 * the host cannot back the guest. */
int gmem_populate_ranges(struct guest_mem *gm, const uint64_t (*ranges)[2], size_t nranges,
			 int threads, struct err *e);
/* Fault in RAM pages [first, first+n) now, stopping early once *stop
 * (may be NULL) is set; 0 or the errno of the failed madvise. */
int gmem_populate(struct guest_mem *gm, uint64_t first, uint64_t n, const volatile bool *stop);
/* Give RAM pages [first, first+n) back to the host: they read as zero and
 * count as never touched again. */
int gmem_punch(struct guest_mem *gm, uint64_t first, uint64_t n, struct err *e);

/* Host pointer for [gpa, gpa+len) if it lies inside one region, else NULL. */
void *gmem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
/* memfd offset of gpa, or -1 if not RAM. */
int64_t gmem_offset(const struct guest_mem *gm, uint64_t gpa);
/* Record a VMM write to [gpa, gpa+len). */
void gmem_mark_dirty(struct guest_mem *gm, uint64_t gpa, uint64_t len);
/* Copy helpers with bounds checks; the write variant marks dirty. */
int gmem_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len);
int gmem_write(struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len);

static inline uint64_t gmem_npages(const struct guest_mem *gm)
{
	return gm->ram_size >> GMEM_PAGE_SHIFT;
}

#endif
