/*
 * Split virtqueues in the legacy (virtio 0.9.5) layout: descriptor table,
 * available ring, then the used ring at the next 4 KiB boundary, all at
 * PFN << 12 in guest RAM. The guest writes every field the device reads
 * here, so every index, length and address is checked before use; a bad
 * value makes the pop fail and the caller marks the device broken.
 * Every device write to guest memory (used ring, in-buffers) is marked dirty
 * for live migration.
 */
#ifndef FERRY_VIRTQUEUE_H
#define FERRY_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "vmm/guestmem.h"

#define VIRTQ_MAX_SIZE     256
#define VIRTQ_ALIGN        4096
#define VIRTQ_PFN_SHIFT    12

#define VIRTQ_DESC_F_NEXT      1
#define VIRTQ_DESC_F_WRITE     2
#define VIRTQ_DESC_F_INDIRECT  4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

struct virtq {
	uint16_t size;            /* entries, a power of two; 0 = no queue */
	uint32_t pfn;             /* guest ring address >> 12; 0 = not set up */
	uint16_t last_avail_idx;  /* next avail entry the device will take */
	uint16_t used_idx;        /* next used entry the device will fill */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool ready;               /* pfn set and the rings lie in RAM */
};

/* One guest buffer of a chain, already bounds-checked. */
struct virtq_buf {
	uint64_t gpa;
	uint32_t len;
	bool write;               /* device-writable */
	uint8_t *host;            /* gmem_ptr(gpa, len) */
};

struct virtq_chain {
	uint16_t head;
	uint16_t nbufs;
	uint64_t out_len;         /* total device-readable bytes */
	uint64_t in_len;          /* total device-writable bytes */
	struct virtq_buf bufs[VIRTQ_MAX_SIZE];
};

/* Byte size of the legacy ring area for `size` entries. */
uint64_t virtq_ring_bytes(uint16_t size);
/* Set the queue's guest address (PFN register); pfn 0 tears it down.
 * Fails if the rings would not lie inside guest RAM. */
int virtq_set_pfn(struct virtq *vq, const struct guest_mem *gm, uint32_t pfn,
		  struct err *e);
/* Forget the guest rings and indices (device reset); size is kept. */
void virtq_reset(struct virtq *vq);

/* True if the guest has made a chain available that we have not taken.
 * A corrupt avail index counts as available so that pop reports it. */
bool virtq_has_avail(const struct virtq *vq, const struct guest_mem *gm);
/* Take the next chain: 1 = got one, 0 = none available, -1 = the guest
 * broke the ring protocol (message in e). */
int virtq_pop(struct virtq *vq, const struct guest_mem *gm,
	      struct virtq_chain *c, struct err *e);
/* Give back the last popped chain untaken (e.g. nothing to put in it). */
void virtq_unpop(struct virtq *vq);
/* Return a chain to the guest with `len` bytes written into it. */
int virtq_push(struct virtq *vq, struct guest_mem *gm, uint16_t head,
	       uint32_t len, struct err *e);
/* Whether the guest wants an interrupt for used buffers (legacy flag). */
bool virtq_want_interrupt(const struct virtq *vq, const struct guest_mem *gm);

/* Copy device-readable bytes [off, off+len) of the chain into dst;
 * returns bytes copied (short when the chain holds less). */
size_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst,
			size_t len);
/* Copy src into the device-writable bytes at [off, off+len), marking the
 * pages dirty; returns bytes copied. */
size_t virtq_chain_write(const struct virtq_chain *c, struct guest_mem *gm,
			 uint64_t off, const void *src, size_t len);

#endif
