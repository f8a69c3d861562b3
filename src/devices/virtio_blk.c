/*
 * virtio-blk request processing and image handling (see virtio_blk.h).
 * A request is a 16-byte header {type, reserved, sector} in device-readable
 * buffers, data, and a status byte as the last device-writable byte. Guest
 * buffers are read from / written to with pread/pwrite directly (no bounce
 * buffer); every byte read from disk into the guest is marked dirty.
 */
#include "devices/virtio_blk.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/vm.h"

#define BLK_HDR_SIZE 16
#define BLK_CFG_SIZE 24 /* capacity, size_max, seg_max, geometry, blk_size */

struct virtio_blk {
	struct virtio_dev vd;
	char name[32];
	char path[PATH_MAX];
	int fd;
	bool readonly;
	bool locked;
	uint64_t capacity;           /* sectors */
	uint8_t config[BLK_CFG_SIZE];
	char serial[VIRTIO_BLK_ID_BYTES];
	struct virtq_chain chain;    /* scratch; large, so not on the stack */
	/* While the disk is copied to another host (migration/diskcopy.c): a
	 * bit per VIRTIO_BLK_TRACK_BLOCK bytes the guest wrote. Set and
	 * replaced under dev_lock; the copier clears bits atomically. */
	uint64_t *dirty;
	uint64_t dirty_blocks;
};

static int blk_lock_op(struct virtio_blk *b, short type)
{
	struct flock fl = {
		.l_type = type,
		.l_whence = SEEK_SET,
		.l_start = 0,
		.l_len = 0, /* whole file, including growth */
	};
	return fcntl(b->fd, F_OFD_SETLK, &fl);
}

int virtio_blk_take_lock(struct virtio_blk *b, struct err *e)
{
	if (b->locked)
		return 0;
	/* Readers share; a writer excludes everyone. */
	if (blk_lock_op(b, b->readonly ? F_RDLCK : F_WRLCK) < 0) {
		if (errno == EAGAIN || errno == EACCES)
			return err_set(e, "disk image %s is in use by another VM "
				       "(locked)", b->path);
		return err_sys(e, "locking disk image %s", b->path);
	}
	b->locked = true;
	return 0;
}

int virtio_blk_release_lock(struct virtio_blk *b, struct err *e)
{
	if (!b->locked)
		return 0;
	if (blk_lock_op(b, F_UNLCK) < 0)
		return err_sys(e, "unlocking disk image %s", b->path);
	b->locked = false;
	return 0;
}

bool virtio_blk_locked(const struct virtio_blk *b) { return b->locked; }
const char *virtio_blk_path(const struct virtio_blk *b) { return b->path; }
bool virtio_blk_readonly(const struct virtio_blk *b) { return b->readonly; }
uint64_t virtio_blk_capacity(const struct virtio_blk *b) { return b->capacity; }
struct virtio_dev *virtio_blk_dev(struct virtio_blk *b) { return &b->vd; }

int virtio_blk_flush(struct virtio_blk *b, struct err *e)
{
	if (fdatasync(b->fd) < 0)
		return err_sys(e, "flushing disk image %s", b->path);
	return 0;
}

static int pread_full(int fd, uint8_t *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = ENODATA; /* the image shrank under us */
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int pwrite_full(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Is [sector*512, +len) inside the disk? Written to avoid overflow. */
static bool blk_in_range(const struct virtio_blk *b, uint64_t sector, uint64_t len)
{
	if (sector > b->capacity)
		return false;
	return len <= (b->capacity - sector) * VIRTIO_BLK_SECTOR;
}

/* Disk -> the first `len` device-writable bytes of the chain. */
static int blk_read_into(struct virtio_blk *b, const struct virtq_chain *c,
			 uint64_t pos, uint64_t len)
{
	for (unsigned i = 0; i < c->nbufs && len > 0; i++) {
		const struct virtq_buf *vb = &c->bufs[i];
		uint64_t n;
		if (!vb->write)
			continue;
		n = vb->len < len ? vb->len : len;
		/* dirty even when the read fails part-way: what it copied in
		 * changed guest memory, and a move must carry the page */
		int rc = pread_full(b->fd, vb->host, n, pos);
		gmem_mark_dirty(b->vd.gm, vb->gpa, n);
		if (rc < 0)
			return -1;
		pos += n;
		len -= n;
	}
	return 0;
}

/* [pos, pos+n) written: after the write, so a copier that cleared the
 * bit before it read the block sees the bit again (diskcopy.c). */
static void blk_mark_dirty(struct virtio_blk *b, uint64_t pos, uint64_t n)
{
	if (!b->dirty || !n)
		return;
	uint64_t first = pos / VIRTIO_BLK_TRACK_BLOCK, last = (pos + n - 1) / VIRTIO_BLK_TRACK_BLOCK;
	for (uint64_t k = first; k <= last && k < b->dirty_blocks; k++)
		__atomic_fetch_or(&b->dirty[k / 64], 1ULL << (k % 64), __ATOMIC_RELEASE);
}

/* Device-readable bytes after the header -> disk. */
static int blk_write_from(struct virtio_blk *b, const struct virtq_chain *c,
			  uint64_t pos)
{
	uint64_t skip = BLK_HDR_SIZE;

	for (unsigned i = 0; i < c->nbufs; i++) {
		const struct virtq_buf *vb = &c->bufs[i];
		uint64_t n;
		if (vb->write)
			continue;
		if (skip >= vb->len) {
			skip -= vb->len;
			continue;
		}
		n = vb->len - skip;
		/* dirty even when the write fails part-way: some of it may be on disk */
		int rc = pwrite_full(b->fd, vb->host + skip, n, pos);
		blk_mark_dirty(b, pos, n);
		if (rc < 0)
			return -1;
		pos += n;
		skip = 0;
	}
	return 0;
}

/* Carry out one request; returns the status byte, or -1 if the chain is
 * not a request at all (the guest broke the protocol). */
static int blk_request(struct virtio_blk *b, const struct virtq_chain *c)
{
	uint8_t hdr[BLK_HDR_SIZE];
	uint32_t type;
	uint64_t sector, len;

	if (c->out_len < BLK_HDR_SIZE || c->in_len < 1)
		return -1;
	virtq_chain_read(c, 0, hdr, sizeof(hdr));
	type = le_get_u32(hdr);
	sector = le_get_u64(hdr + 8);
	if (!b->locked) {
		/* Not ours (released for handoff): never touch the image. */
		log_warn("%s: request while the disk lock is not held", b->name);
		return VIRTIO_BLK_S_IOERR;
	}
	switch (type) {
	case VIRTIO_BLK_T_IN:
		len = c->in_len - 1;
		if (!blk_in_range(b, sector, len))
			return VIRTIO_BLK_S_IOERR;
		if (blk_read_into(b, c, sector * VIRTIO_BLK_SECTOR, len) < 0) {
			log_warn("%s: read at sector %llu: %s", b->name,
				 (unsigned long long)sector, strerror(errno));
			return VIRTIO_BLK_S_IOERR;
		}
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_OUT:
		len = c->out_len - BLK_HDR_SIZE;
		if (b->readonly || !blk_in_range(b, sector, len))
			return VIRTIO_BLK_S_IOERR;
		if (blk_write_from(b, c, sector * VIRTIO_BLK_SECTOR) < 0) {
			log_warn("%s: write at sector %llu: %s", b->name,
				 (unsigned long long)sector, strerror(errno));
			return VIRTIO_BLK_S_IOERR;
		}
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_FLUSH:
		if (fdatasync(b->fd) < 0) {
			log_warn("%s: flush: %s", b->name, strerror(errno));
			return VIRTIO_BLK_S_IOERR;
		}
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID: {
		uint8_t id[VIRTIO_BLK_ID_BYTES];
		len = c->in_len - 1;
		memcpy(id, b->serial, sizeof(id));
		virtq_chain_write(c, b->vd.gm, 0, id,
				  len < sizeof(id) ? (size_t)len : sizeof(id));
		return VIRTIO_BLK_S_OK;
	}
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

static void blk_notify(struct virtio_dev *vd, uint16_t q)
{
	struct virtio_blk *b = vd->opaque;
	struct virtq *vq = &vd->vq[q];
	struct err e;
	bool done_any = false;

	/* At most a queue's worth per kick: a request may write the rings
	 * themselves (a read from disk over the avail index), so "until the
	 * ring is empty" need never come. A driver kicks after every chain
	 * it adds, so what is left is taken at the next kick. */
	for (unsigned n = 0; n < vq->size; n++) {
		int rc = virtq_pop(vq, vd->gm, &b->chain, &e);
		int status;
		uint8_t sb;

		if (rc < 0) {
			virtio_set_broken(vd, "%s", e.msg);
			break;
		}
		if (rc == 0)
			break;
		status = blk_request(b, &b->chain);
		if (status < 0) {
			virtio_set_broken(vd, "malformed request (head %u: %llu "
					  "readable, %llu writable bytes)",
					  b->chain.head,
					  (unsigned long long)b->chain.out_len,
					  (unsigned long long)b->chain.in_len);
			break;
		}
		sb = (uint8_t)status;
		virtq_chain_write(&b->chain, vd->gm, b->chain.in_len - 1, &sb, 1);
		/* in_len fits: at most 256 buffers of < 4 GiB, but the used
		 * length field is 32 bits, so clamp rather than wrap. */
		if (virtq_push(vq, vd->gm, b->chain.head,
			       b->chain.in_len > UINT32_MAX ? UINT32_MAX :
			       (uint32_t)b->chain.in_len, &e) < 0) {
			virtio_set_broken(vd, "%s", e.msg);
			break;
		}
		done_any = true;
	}
	if (done_any)
		virtio_notify_queue(vd, q);
}

static const struct virtio_dev_ops blk_ops = {
	.notify = blk_notify,
};

void virtio_blk_save(const struct virtio_blk *b, struct virtio_blk_state *st)
{
	memset(st, 0, sizeof(*st));
	virtio_save(&b->vd, &st->transport);
	st->capacity = b->capacity;
}

int virtio_blk_restore(struct virtio_blk *b, const struct virtio_blk_state *st,
		       struct err *e)
{
	if (st->capacity != b->capacity)
		return err_set(e, "%s: saved disk has %llu sectors, %s has %llu",
			       b->name, (unsigned long long)st->capacity, b->path,
			       (unsigned long long)b->capacity);
	return virtio_restore(&b->vd, &st->transport, e);
}

void virtio_blk_state_encode(struct stream *w, const struct virtio_blk_state *st)
{
	virtio_state_encode(w, &st->transport);
	stream_put_u64(w, st->capacity);
}

int virtio_blk_state_decode(struct stream *r, uint32_t version,
			    struct virtio_blk_state *st, struct err *e)
{
	if (version != VIRTIO_BLK_STATE_VERSION)
		return err_set(e, "virtio-blk state version %u not supported "
			       "(want %u)", version, VIRTIO_BLK_STATE_VERSION);
	memset(st, 0, sizeof(*st));
	/* The transport layout is versioned together with ours. */
	if (virtio_state_decode(r, VIRTIO_STATE_VERSION, &st->transport, e) < 0)
		return -1;
	st->capacity = stream_get_u64(r);
	if (stream_check(r, e) < 0)
		return err_prefix(e, "virtio-blk state");
	return 0;
}

static int blk_vm_save(void *opaque, struct stream *w, struct err *e)
{
	struct virtio_blk_state st;

	virtio_blk_save(opaque, &st);
	virtio_blk_state_encode(w, &st);
	return stream_check(w, e);
}

static int blk_vm_load(void *opaque, struct stream *r, uint32_t version,
		       struct err *e)
{
	struct virtio_blk_state st;

	if (virtio_blk_state_decode(r, version, &st, e) < 0)
		return -1;
	return virtio_blk_restore(opaque, &st, e);
}

static int blk_vm_post_load(void *opaque, struct err *e)
{
	struct virtio_blk *b = opaque;
	return virtio_post_load(&b->vd, e);
}

static void blk_free(struct virtio_blk *b)
{
	if (b->fd >= 0)
		close(b->fd); /* also drops the OFD lock */
	free(b->dirty);
	free(b);
}

int virtio_blk_track_start(struct virtio_blk *b, struct err *e)
{
	uint64_t blocks = (b->capacity * VIRTIO_BLK_SECTOR + VIRTIO_BLK_TRACK_BLOCK - 1) /
			  VIRTIO_BLK_TRACK_BLOCK;
	uint64_t *map = calloc((size_t)(blocks / 64 + 1), sizeof(*map));
	if (!map)
		return err_set(e, "%s: out of memory for the write log of %llu blocks", b->name,
			       (unsigned long long)blocks);
	free(b->dirty);
	b->dirty = map;
	b->dirty_blocks = blocks;
	return 0;
}

void virtio_blk_track_stop(struct virtio_blk *b)
{
	free(b->dirty);
	b->dirty = NULL;
	b->dirty_blocks = 0;
}

uint64_t *virtio_blk_track_map(struct virtio_blk *b, uint64_t *blocks)
{
	*blocks = b->dirty_blocks;
	return b->dirty;
}

int virtio_blk_image_fd(const struct virtio_blk *b)
{
	return b->fd;
}

int virtio_blk_image_read(struct virtio_blk *b, uint64_t off, void *p, size_t len, struct err *e)
{
	if (pread_full(b->fd, p, len, off) < 0)
		return err_sys(e, "reading %zu bytes at %llu of disk image %s", len,
			       (unsigned long long)off, b->path);
	return 0;
}

static void blk_vm_destroy(void *opaque)
{
	blk_free(opaque);
}

static void blk_fill_config(struct virtio_blk *b)
{
	memset(b->config, 0, sizeof(b->config));
	le_put_u64(b->config + 0, b->capacity);
	le_put_u32(b->config + 8, 0);                       /* size_max: unused */
	le_put_u32(b->config + 12, VIRTIO_QUEUE_SIZE - 2);  /* seg_max */
	le_put_u32(b->config + 20, VIRTIO_BLK_SECTOR);      /* blk_size */
}

static int blk_count(struct vm *vm)
{
	int n = 0;
	for (int i = 0; i < vm->ndevices; i++)
		if (vm->devices[i].name &&
		    strncmp(vm->devices[i].name, "virtio-blk.", 11) == 0)
			n++;
	return n;
}

struct virtio_blk *virtio_blk_find(struct vm *vm, int n)
{
	char name[32];

	snprintf(name, sizeof(name), "virtio-blk.%d", n);
	for (int i = 0; i < vm->ndevices; i++)
		if (vm->devices[i].name && strcmp(vm->devices[i].name, name) == 0)
			return vm->devices[i].opaque;
	return NULL;
}

int virtio_blk_create_ex(struct vm *vm, int slot, const char *path,
			 bool readonly, bool take_lock, struct err *e)
{
	struct pci_bus *bus = pci_bus_of(vm);
	struct virtio_blk *b;
	struct stat st;
	const char *base;
	struct vm_device dev = {
		.version = VIRTIO_BLK_STATE_VERSION,
		.save = blk_vm_save,
		.load = blk_vm_load,
		.post_load = blk_vm_post_load,
		.poll_fd = -1,
		.destroy = blk_vm_destroy,
	};

	if (!bus)
		return err_set(e, "virtio-blk needs the PCI bus (create it first)");
	if (strlen(path) >= PATH_MAX)
		return err_set(e, "disk image path too long");
	b = calloc(1, sizeof(*b));
	if (!b)
		return err_set(e, "virtio-blk: out of memory");
	b->fd = -1;
	snprintf(b->name, sizeof(b->name), "virtio-blk.%d", blk_count(vm));
	snprintf(b->path, sizeof(b->path), "%s", path);
	b->readonly = readonly;
	b->fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (b->fd < 0) {
		err_sys(e, "opening disk image %s", path);
		goto fail;
	}
	if (fstat(b->fd, &st) < 0) {
		err_sys(e, "stat of disk image %s", path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		err_set(e, "disk image %s is not a regular file", path);
		goto fail;
	}
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(b->fd, 0, SEEK_END);
		if (end < 0) {
			err_sys(e, "size of disk image %s", path);
			goto fail;
		}
		st.st_size = end;
	}
	/* A trailing partial sector is not addressable by the guest. */
	b->capacity = (uint64_t)st.st_size / VIRTIO_BLK_SECTOR;
	if (take_lock && virtio_blk_take_lock(b, e) < 0)
		goto fail;
	base = strrchr(path, '/');
	base = base ? base + 1 : path;
	/* The id is 20 bytes, zero padded, with no NUL when it is full. */
	memcpy(b->serial, base, strnlen(base, sizeof(b->serial)));

	virtio_init(&b->vd, vm, &vm->mem, b->name, VIRTIO_ID_BLOCK, 0x010000, 1,
		    &blk_ops, b);
	b->vd.host_features = VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE |
			      VIRTIO_BLK_F_FLUSH |
			      (readonly ? VIRTIO_BLK_F_RO : 0);
	blk_fill_config(b);
	b->vd.config = b->config;
	b->vd.config_len = sizeof(b->config);

	dev.name = b->name;
	dev.opaque = b;
	/* Check the slot before registering with the VM, so the only later
	 * failure (the port claim) cannot happen for a predictable reason. */
	if (slot < 1 || slot > LAYOUT_PCI_MAX_SLOTS) {
		err_set(e, "pci slot %d out of range 1..%d", slot,
			LAYOUT_PCI_MAX_SLOTS);
		goto fail;
	}
	if (bus->slots[slot]) {
		err_set(e, "pci slot %d already in use", slot);
		goto fail;
	}
	if (vm_add_device(vm, &dev, e) < 0)
		goto fail;
	if (virtio_pci_attach(&b->vd, bus, slot, e) < 0) {
		/* Registered but unattached: keep it allocated (the VM owns
		 * it now and frees it on destroy); the caller aborts. */
		return err_prefix(e, "%s", b->name);
	}
	log_info("%s: %s, %llu sectors%s, slot %d", b->name, path,
		 (unsigned long long)b->capacity, readonly ? ", read-only" : "",
		 slot);
	return 0;
fail:
	blk_free(b);
	return -1;
}

int virtio_blk_create(struct vm *vm, int slot, const char *path, bool readonly,
		      struct err *e)
{
	return virtio_blk_create_ex(vm, slot, path, readonly, true, e);
}
