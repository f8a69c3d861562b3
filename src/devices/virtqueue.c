/*
 * Legacy split-ring virtqueue (see virtqueue.h). Ring fields are read with
 * explicit little-endian loads from bounds-checked pointers; the guest may
 * change them under us at any moment, so each one is read once and checked
 * before it is used. Indirect descriptors are not offered (the transport
 * never advertises VIRTIO_RING_F_INDIRECT_DESC), so one met here is an error.
 */
#include "devices/virtqueue.h"

#include <string.h>

#include "common/stream.h"

#define DESC_SIZE 16

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

uint64_t virtq_ring_bytes(uint16_t size)
{
	/* desc[size], avail {flags, idx, ring[size], used_event}, pad, then
	 * used {flags, idx, ring[size] of {id, len}, avail_event}. */
	uint64_t used_off = align_up((uint64_t)DESC_SIZE * size + 6 + 2ULL * size,
				     VIRTQ_ALIGN);
	return used_off + 6 + 8ULL * size;
}

void virtq_reset(struct virtq *vq)
{
	uint16_t size = vq->size;

	memset(vq, 0, sizeof(*vq));
	vq->size = size;
}

int virtq_set_pfn(struct virtq *vq, const struct guest_mem *gm, uint32_t pfn,
		  struct err *e)
{
	uint64_t base = (uint64_t)pfn << VIRTQ_PFN_SHIFT;

	virtq_reset(vq);
	if (pfn == 0)
		return 0;
	if (vq->size == 0)
		return err_set(e, "queue address set on a queue that does not exist");
	/* All three rings must be plain RAM in one region so every later
	 * access can use offsets from these addresses. */
	if (!gmem_ptr(gm, base, virtq_ring_bytes(vq->size)))
		return err_set(e, "queue ring at 0x%llx (%llu bytes) is outside "
			       "guest RAM", (unsigned long long)base,
			       (unsigned long long)virtq_ring_bytes(vq->size));
	vq->pfn = pfn;
	vq->desc_gpa = base;
	vq->avail_gpa = base + (uint64_t)DESC_SIZE * vq->size;
	vq->used_gpa = align_up(vq->avail_gpa + 6 + 2ULL * vq->size, VIRTQ_ALIGN);
	vq->ready = true;
	return 0;
}

/* Pointer into a ring; the whole ring area was checked by virtq_set_pfn,
 * and guest memory never shrinks, so this cannot fail once ready. */
static uint8_t *ring_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	return gmem_ptr(gm, gpa, len);
}

static uint16_t load_u16_acquire(const uint8_t *p)
{
	uint16_t v;
	/* Ring indices are naturally aligned (the rings are), so one atomic
	 * load gives a consistent value and orders the entry reads after it. */
	v = __atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_ACQUIRE);
	return le_get_u16((const uint8_t *)&v);
}

static uint16_t avail_idx(const struct virtq *vq, const struct guest_mem *gm)
{
	return load_u16_acquire(ring_ptr(gm, vq->avail_gpa + 2, 2));
}

bool virtq_has_avail(const struct virtq *vq, const struct guest_mem *gm)
{
	if (!vq->ready)
		return false;
	return avail_idx(vq, gm) != vq->last_avail_idx;
}

bool virtq_want_interrupt(const struct virtq *vq, const struct guest_mem *gm)
{
	const uint8_t *flags;

	if (!vq->ready)
		return false;
	/* The used idx store must be visible before we sample the flag, or
	 * we could miss a guest that just re-enabled interrupts. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	flags = ring_ptr(gm, vq->avail_gpa, 2);
	return !(le_get_u16(flags) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

void virtq_unpop(struct virtq *vq)
{
	vq->last_avail_idx--;
}

int virtq_pop(struct virtq *vq, const struct guest_mem *gm,
	      struct virtq_chain *c, struct err *e)
{
	uint16_t aidx, pending, head, idx;
	const uint8_t *d;

	if (!vq->ready)
		return 0;
	aidx = avail_idx(vq, gm);
	pending = (uint16_t)(aidx - vq->last_avail_idx);
	if (pending == 0)
		return 0;
	if (pending > vq->size)
		return err_set(e, "avail index %u is %u ahead of %u, more than "
			       "the queue size %u", aidx, pending,
			       vq->last_avail_idx, vq->size);
	head = le_get_u16(ring_ptr(gm, vq->avail_gpa + 4 +
				   2ULL * (vq->last_avail_idx % vq->size), 2));
	if (head >= vq->size)
		return err_set(e, "avail ring head %u out of range (queue size %u)",
			       head, vq->size);

	c->head = head;
	c->nbufs = 0;
	c->out_len = 0;
	c->in_len = 0;
	idx = head;
	/* A chain can use each descriptor once at most; more links than the
	 * queue size means the guest made a loop. */
	for (unsigned n = 0;; n++) {
		uint64_t addr;
		uint32_t len;
		uint16_t flags, next;
		struct virtq_buf *b;

		if (n >= vq->size)
			return err_set(e, "descriptor chain from %u is longer than "
				       "the queue size %u (loop?)", head, vq->size);
		d = ring_ptr(gm, vq->desc_gpa + (uint64_t)DESC_SIZE * idx, DESC_SIZE);
		addr = le_get_u64(d);
		len = le_get_u32(d + 8);
		flags = le_get_u16(d + 12);
		next = le_get_u16(d + 14);
		if (flags & VIRTQ_DESC_F_INDIRECT)
			return err_set(e, "descriptor %u is indirect, which was not "
				       "offered", idx);
		if (len > 0) {
			b = &c->bufs[c->nbufs++];
			b->gpa = addr;
			b->len = len;
			b->write = flags & VIRTQ_DESC_F_WRITE;
			b->host = gmem_ptr(gm, addr, len);
			if (!b->host)
				return err_set(e, "descriptor %u buffer 0x%llx+%u is "
					       "outside guest RAM", idx,
					       (unsigned long long)addr, len);
			if (b->write)
				c->in_len += len;
			else
				c->out_len += len;
		}
		if (!(flags & VIRTQ_DESC_F_NEXT))
			break;
		if (next >= vq->size)
			return err_set(e, "descriptor %u: next %u out of range "
				       "(queue size %u)", idx, next, vq->size);
		idx = next;
	}
	vq->last_avail_idx++;
	return 1;
}

int virtq_push(struct virtq *vq, struct guest_mem *gm, uint16_t head,
	       uint32_t len, struct err *e)
{
	uint64_t ent_gpa, idx_gpa;
	uint8_t *ent, *idxp;
	uint16_t newidx;

	if (!vq->ready)
		return err_set(e, "push to a queue that is not set up");
	ent_gpa = vq->used_gpa + 4 + 8ULL * (vq->used_idx % vq->size);
	idx_gpa = vq->used_gpa + 2;
	ent = ring_ptr(gm, ent_gpa, 8);
	idxp = ring_ptr(gm, idx_gpa, 2);
	le_put_u32(ent, head);
	le_put_u32(ent + 4, len);
	gmem_mark_dirty(gm, ent_gpa, 8);
	newidx = (uint16_t)(vq->used_idx + 1);
	{
		uint16_t v;
		le_put_u16((uint8_t *)&v, newidx);
		/* Release: the entry must be visible before the new index. */
		__atomic_store_n((uint16_t *)(void *)idxp, v, __ATOMIC_RELEASE);
	}
	gmem_mark_dirty(gm, idx_gpa, 2);
	vq->used_idx = newidx;
	return 0;
}

size_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst,
			size_t len)
{
	uint8_t *out = dst;
	size_t done = 0;

	for (unsigned i = 0; i < c->nbufs && done < len; i++) {
		const struct virtq_buf *b = &c->bufs[i];
		size_t n;
		if (b->write)
			continue;
		if (off >= b->len) {
			off -= b->len;
			continue;
		}
		n = b->len - off;
		if (n > len - done)
			n = len - done;
		memcpy(out + done, b->host + off, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t virtq_chain_write(const struct virtq_chain *c, struct guest_mem *gm,
			 uint64_t off, const void *src, size_t len)
{
	const uint8_t *in = src;
	size_t done = 0;

	for (unsigned i = 0; i < c->nbufs && done < len; i++) {
		const struct virtq_buf *b = &c->bufs[i];
		size_t n;
		if (!b->write)
			continue;
		if (off >= b->len) {
			off -= b->len;
			continue;
		}
		n = b->len - off;
		if (n > len - done)
			n = len - done;
		memcpy(b->host + off, in + done, n);
		gmem_mark_dirty(gm, b->gpa + off, n);
		done += n;
		off = 0;
	}
	return done;
}
