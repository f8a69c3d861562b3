/*
 * Guest RAM backed by a memfd (so it can later be shared or use huge pages),
 * mapped once. Layout: RAM up to LAYOUT_MMIO_HOLE_START at GPA 0; anything
 * beyond continues at 4 GiB, leaving the 32-bit hole for the IOAPIC, LAPIC
 * and KVM's TSS. The VMM-write bitmap lives here because every VMM write
 * into the guest goes through this module.
 */
#include "vmm/guestmem.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/x86/layout.h"

int gmem_init(struct guest_mem *gm, uint64_t size, struct err *e)
{
	uint64_t low;
	size_t words;

	memset(gm, 0, sizeof(*gm));
	gm->memfd = -1;
	if (size < (16ULL << 20) || size % (2ULL << 20))
		return err_set(e, "memory size %llu is invalid: need at least 16 MiB, in whole MiB multiples of 2",
			       (unsigned long long)size);
	gm->memfd = memfd_create("ferry-guest-ram", MFD_CLOEXEC);
	if (gm->memfd < 0)
		return err_sys(e, "memfd_create");
	if (ftruncate(gm->memfd, (off_t)size) < 0) {
		err_sys(e, "sizing guest memory to %llu MiB", (unsigned long long)(size >> 20));
		goto fail;
	}
	gm->host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			gm->memfd, 0);
	if (gm->host == MAP_FAILED) {
		gm->host = NULL;
		err_sys(e, "mapping %llu MiB of guest memory", (unsigned long long)(size >> 20));
		goto fail;
	}
	/* Transparent huge pages cut first-touch faults 512x where the host allows it. */
	(void)madvise(gm->host, size, MADV_HUGEPAGE);
	gm->ram_size = size;
	low = size < LAYOUT_MMIO_HOLE_START ? size : LAYOUT_MMIO_HOLE_START;
	gm->regions[0] = (struct gmem_region){ .gpa = 0, .size = low, .offset = 0, .slot = 0 };
	gm->nregions = 1;
	if (size > low) {
		gm->regions[1] = (struct gmem_region){ .gpa = LAYOUT_HIGH_RAM_START,
			.size = size - low, .offset = low, .slot = 1 };
		gm->nregions = 2;
	}
	words = (size_t)((gmem_npages(gm) + 63) / 64);
	gm->vmm_dirty = calloc(words, sizeof(uint64_t));
	if (!gm->vmm_dirty) {
		err_set(e, "out of memory for the dirty bitmap");
		goto fail;
	}
	return 0;
fail:
	gmem_destroy(gm);
	return -1;
}

void gmem_destroy(struct guest_mem *gm)
{
	if (gm->host)
		munmap(gm->host, gm->ram_size);
	if (gm->memfd >= 0)
		close(gm->memfd);
	free(gm->vmm_dirty);
	gm->host = NULL;
	gm->memfd = -1;
	gm->vmm_dirty = NULL;
}

int gmem_populate(struct guest_mem *gm, uint64_t first, uint64_t n, const volatile bool *stop)
{
	if (first >= gmem_npages(gm))
		return 0;
	if (n > gmem_npages(gm) - first)
		n = gmem_npages(gm) - first;
	/* 2 MiB at a time: a short page-table lock hold, and a stop request
	 * is seen soon. */
	for (uint64_t p = 0; p < n && !(stop && *stop); p += 512) {
		uint64_t k = n - p < 512 ? n - p : 512;
		if (madvise(gm->host + ((first + p) << GMEM_PAGE_SHIFT), k << GMEM_PAGE_SHIFT,
			    MADV_POPULATE_WRITE) < 0)
			return errno;
	}
	return 0;
}

/* One thread's share: pages [skip, skip+n) of the ranges laid end to end. */
struct populate_part {
	struct guest_mem *gm;
	const uint64_t (*ranges)[2];
	size_t nranges;
	uint64_t skip, n;
	int err;
};

static void *populate_part(void *arg)
{
	struct populate_part *p = arg;
	uint64_t skip = p->skip, left = p->n;
	for (size_t i = 0; i < p->nranges && left && !p->err; i++) {
		uint64_t first = p->ranges[i][0], n = p->ranges[i][1], k;
		if (skip >= n) {
			skip -= n;
			continue;
		}
		k = n - skip < left ? n - skip : left;
		p->err = gmem_populate(p->gm, first + skip, k, NULL);
		left -= k;
		skip = 0;
	}
	return NULL;
}

int gmem_populate_ranges(struct guest_mem *gm, const uint64_t (*ranges)[2], size_t nranges,
			 int threads, struct err *e)
{
	struct populate_part parts[8];
	pthread_t tids[8];
	bool started[8] = { false };
	uint64_t chunk, total = 0;
	int err = 0;
	for (size_t i = 0; i < nranges; i++)
		total += ranges[i][1];
	if (threads < 1)
		threads = 1;
	if (threads > 8)
		threads = 8;
	/* whole 2 MiB steps, rounded up so the parts cover every page */
	chunk = ((total + (uint64_t)threads - 1) / (uint64_t)threads + 511) & ~511ULL;
	for (int i = 0; i < threads; i++) {
		parts[i] = (struct populate_part){ gm, ranges, nranges, chunk * (uint64_t)i, chunk, 0 };
		/* The last part runs here; a thread that cannot start leaves its part to us. */
		if (i + 1 < threads && pthread_create(&tids[i], NULL, populate_part, &parts[i]) == 0)
			started[i] = true;
		else
			populate_part(&parts[i]);
	}
	for (int i = 0; i < threads; i++) {
		if (started[i])
			pthread_join(tids[i], NULL);
		if (parts[i].err && !err)
			err = parts[i].err;
	}
	if (err) {
		errno = err;
		return err_sys(e, "faulting in %llu MiB of guest memory", (unsigned long long)(total >> 8));
	}
	gm->prepopulated = true;
	return 0;
}

int gmem_punch(struct guest_mem *gm, uint64_t first, uint64_t n, struct err *e)
{
	if (first >= gmem_npages(gm) || n == 0)
		return 0;
	if (n > gmem_npages(gm) - first)
		n = gmem_npages(gm) - first;
	if (fallocate(gm->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(first << GMEM_PAGE_SHIFT), (off_t)(n << GMEM_PAGE_SHIFT)) < 0)
		return err_sys(e, "releasing guest pages %llu+%llu", (unsigned long long)first,
			       (unsigned long long)n);
	return 0;
}

int64_t gmem_offset(const struct guest_mem *gm, uint64_t gpa)
{
	for (int i = 0; i < gm->nregions; i++) {
		const struct gmem_region *r = &gm->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return (int64_t)(r->offset + (gpa - r->gpa));
	}
	return -1;
}

void *gmem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	for (int i = 0; i < gm->nregions; i++) {
		const struct gmem_region *r = &gm->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size &&
		    len <= r->size - (gpa - r->gpa))
			return gm->host + r->offset + (gpa - r->gpa);
	}
	return NULL;
}

void gmem_mark_dirty(struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	int64_t off;
	uint64_t first, last;
	if (len == 0 || !gm->vmm_dirty)
		return;
	off = gmem_offset(gm, gpa);
	if (off < 0)
		return;
	first = (uint64_t)off >> GMEM_PAGE_SHIFT;
	last = ((uint64_t)off + len - 1) >> GMEM_PAGE_SHIFT;
	if (last >= gmem_npages(gm))
		last = gmem_npages(gm) - 1;
	for (uint64_t p = first; p <= last; p++)
		__atomic_fetch_or(&gm->vmm_dirty[p / 64], 1ULL << (p % 64), __ATOMIC_RELAXED);
}

int gmem_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len)
{
	void *p = gmem_ptr(gm, gpa, len);
	if (!p)
		return -1;
	memcpy(dst, p, len);
	return 0;
}

int gmem_write(struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gmem_ptr(gm, gpa, len);
	if (!p)
		return -1;
	memcpy(p, src, len);
	gmem_mark_dirty(gm, gpa, len);
	return 0;
}
