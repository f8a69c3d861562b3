/*
 * The disk copy of a live migration between hosts that share no storage
 * (see diskcopy.h): the source's write log and sender, the destination's
 * image creation and receiver.
 */
#include "migration/diskcopy.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/durable.h"
#include "common/log.h"
#include "devices/virtio_blk.h"
#include "migration/format.h"
#include "vmm/machine.h"

#define BLOCK VIRTIO_BLK_TRACK_BLOCK
#define RUN_BLOCKS (DISKCOPY_MAX_RUN / BLOCK)
/* Room the copy leaves on the destination's file system beyond what the
 * source has allocated: a disk filled to the last byte stops the host. */
#define TARGET_SLACK (64ULL << 20)

int diskcopy_get_hdr(struct stream *r, uint32_t len, uint64_t image_bytes, struct diskcopy_hdr *h,
		     struct err *e)
{
	uint32_t zero;

	if (len < DISKCOPY_HDR)
		return err_set(e, "corrupt stream: disk record of %u bytes, shorter than its header", len);
	h->offset = stream_get_u64(r);
	h->length = stream_get_u32(r);
	zero = stream_get_u32(r);
	h->sum = stream_get_u64(r);
	if (stream_check(r, e) < 0)
		return -1;
	if (zero != 0 || h->length != len - DISKCOPY_HDR)
		return err_set(e, "corrupt stream: disk record header does not match its %u bytes", len);
	if (!h->length || h->length > DISKCOPY_MAX_RUN || h->length % 512 || h->offset % 512)
		return err_set(e, "corrupt stream: disk run of %u bytes at %llu (whole sectors, at most %u bytes)",
			       h->length, (unsigned long long)h->offset, DISKCOPY_MAX_RUN);
	if (h->offset > image_bytes || h->length > image_bytes - h->offset)
		return err_set(e, "corrupt stream: disk run at %llu (%u bytes) past the disk's end (%llu bytes)",
			       (unsigned long long)h->offset, h->length, (unsigned long long)image_bytes);
	return 0;
}

/* ---- source ---- */

int diskcopy_describe(struct machine *m, const char *path, struct vm_config *out, struct err *e)
{
	struct stat st;

	if (!m->blk)
		return err_set(e, "the VM has no disk to copy");
	if (path[0] != '/')
		return err_set(e, "the disk copy's path must be absolute: %s", path);
	if (strlen(path) >= sizeof(out->disk))
		return err_set(e, "the disk copy's path is too long");
	if (fstat(virtio_blk_image_fd(m->blk), &st) < 0)
		return err_sys(e, "stat of disk image %s", m->cfg.disk);
	*out = m->cfg;
	snprintf(out->disk, sizeof(out->disk), "%s", path);
	out->disk_copy_bytes = virtio_blk_capacity(m->blk) * 512;
	/* a block device says nothing of what it holds: all of it */
	out->disk_copy_allocated = S_ISBLK(st.st_mode) ? out->disk_copy_bytes : (uint64_t)st.st_blocks * 512;
	if (out->disk_copy_allocated > out->disk_copy_bytes)
		out->disk_copy_allocated = out->disk_copy_bytes;
	return 0;
}

static void mark_range(struct diskcopy *dc, uint64_t from, uint64_t to)
{
	if (to > dc->image_bytes)
		to = dc->image_bytes;
	for (uint64_t k = from / BLOCK; k < dc->blocks && k * BLOCK < to; k++)
		__atomic_fetch_or(&dc->map[k / 64], 1ULL << (k % 64), __ATOMIC_RELAXED);
}

/* Holes were never written and read as zeros, which the destination's new
 * sparse image already holds: only the allocated ranges go. */
static void mark_allocated(struct diskcopy *dc)
{
	int fd = virtio_blk_image_fd(dc->b);
	off_t pos = 0;

	while ((uint64_t)pos < dc->image_bytes) {
		off_t data = lseek(fd, pos, SEEK_DATA), hole;
		if (data < 0) {
			if (errno != ENXIO) /* no SEEK_DATA here: all of it */
				mark_range(dc, (uint64_t)pos, dc->image_bytes);
			return;
		}
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			hole = (off_t)dc->image_bytes;
		mark_range(dc, (uint64_t)data, (uint64_t)hole);
		pos = hole;
	}
}

int diskcopy_start(struct diskcopy *dc, struct machine *m, struct err *e)
{
	int rc;

	memset(dc, 0, sizeof(*dc));
	if (!m->blk)
		return err_set(e, "the VM has no disk to copy");
	dc->m = m;
	dc->b = m->blk;
	dc->image_bytes = virtio_blk_capacity(m->blk) * 512;
	dc->buf = malloc(DISKCOPY_MAX_RUN);
	if (!dc->buf)
		return err_set(e, "out of memory for the disk copy");
	/* requests run under dev_lock: none is halfway through a write */
	pthread_mutex_lock(&m->vm.dev_lock);
	rc = virtio_blk_track_start(m->blk, e);
	pthread_mutex_unlock(&m->vm.dev_lock);
	if (rc < 0) {
		free(dc->buf);
		dc->buf = NULL;
		return -1;
	}
	dc->map = virtio_blk_track_map(m->blk, &dc->blocks);
	dc->on = true;
	mark_allocated(dc);
	return 0;
}

uint64_t diskcopy_dirty_bytes(const struct diskcopy *dc)
{
	uint64_t n = 0;

	if (!dc->on)
		return 0;
	for (uint64_t w = 0; w < (dc->blocks + 63) / 64; w++)
		n += (uint64_t)__builtin_popcountll(__atomic_load_n(&dc->map[w], __ATOMIC_RELAXED));
	return n * BLOCK < dc->image_bytes ? n * BLOCK : dc->image_bytes;
}

/* Takes (clears) up to RUN_BLOCKS marked blocks in a row from *k on;
 * *first is where they start. 0: nothing marked from *k on. */
static uint64_t take_run(struct diskcopy *dc, uint64_t *k, uint64_t *first)
{
	uint64_t n = 0;

	while (*k < dc->blocks) {
		uint64_t word = __atomic_load_n(&dc->map[*k / 64], __ATOMIC_ACQUIRE) >> (*k % 64);
		if (word) {
			*k += (uint64_t)__builtin_ctzll(word);
			break;
		}
		*k = (*k / 64 + 1) * 64;
	}
	*first = *k;
	while (*k < dc->blocks && n < RUN_BLOCKS) {
		uint64_t bit = 1ULL << (*k % 64);
		/* cleared before the read: a write from here on marks it again */
		if (!(__atomic_fetch_and(&dc->map[*k / 64], ~bit, __ATOMIC_ACQ_REL) & bit))
			break;
		n++;
		(*k)++;
	}
	return n;
}

int diskcopy_send(struct diskcopy *dc, struct stream *w,
		  int (*between)(void *opaque, struct err *e), void *opaque, struct err *e)
{
	uint64_t k = 0, first, n;

	while ((n = take_run(dc, &k, &first)) > 0) {
		uint64_t off = first * BLOCK, end = (first + n) * BLOCK;
		uint32_t len;
		int rc;
		if (end > dc->image_bytes)
			end = dc->image_bytes;
		if (off >= end)
			continue;
		len = (uint32_t)(end - off);
		if (virtio_blk_image_read(dc->b, off, dc->buf, len, e) < 0) {
			mark_range(dc, off, end); /* still owed, should the move go on */
			return -1;
		}
		mig_put_rec(w, MIG_REC_DISK, DISKCOPY_HDR + len);
		stream_put_u64(w, off);
		stream_put_u32(w, len);
		stream_put_u32(w, 0);
		stream_put_u64(w, mig_sum(dc->buf, len));
		stream_put(w, dc->buf, len);
		if (!stream_ok(w))
			return stream_check(w, e);
		dc->sent_bytes += len;
		rc = between ? between(opaque, e) : 0;
		if (rc)
			return rc < 0 ? -1 : 1;
	}
	return 0;
}

void diskcopy_stop(struct diskcopy *dc)
{
	if (!dc->on)
		return;
	pthread_mutex_lock(&dc->m->vm.dev_lock);
	virtio_blk_track_stop(dc->b);
	pthread_mutex_unlock(&dc->m->vm.dev_lock);
	free(dc->buf);
	dc->buf = NULL;
	dc->map = NULL;
	dc->on = false;
}

/* ---- destination ---- */

int diskcopy_check_target(const struct vm_config *c, struct err *e)
{
	char dir[CONFIG_PATH_MAX];
	struct statvfs vfs;
	struct stat st;
	uint64_t avail;

	if (c->disk[0] != '/')
		return err_set(e, "the disk copy's path must be absolute: %s", c->disk);
	if (lstat(c->disk, &st) == 0) {
		err_set(e, "disk image %s already exists on this host: a copy never overwrites a "
			"file (give the copy another path with --disk-path, or move without "
			"--copy-disk if both hosts share this storage)", c->disk);
		e->code = EEXIST; /* ferryd's E_DISK_EXISTS */
		return -1;
	}
	if (errno != ENOENT)
		return err_sys(e, "disk copy %s", c->disk);
	snprintf(dir, sizeof(dir), "%s", c->disk);
	if (statvfs(dirname(dir), &vfs) < 0)
		return err_sys(e, "the disk copy's directory %s", dir);
	if (access(dir, W_OK) < 0)
		return err_sys(e, "cannot create the disk copy in %s", dir);
	avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (avail < c->disk_copy_allocated + TARGET_SLACK)
		return err_set(e, "not enough space in %s for the copy of the disk: it holds %llu MiB, "
			       "%llu MiB are free (and %llu MiB are left free)", dir,
			       (unsigned long long)(c->disk_copy_allocated >> 20),
			       (unsigned long long)(avail >> 20), (unsigned long long)(TARGET_SLACK >> 20));
	return 0;
}

int diskcopy_create_image(const struct vm_config *c, struct err *e)
{
	int fd = open(c->disk, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0)
		return err_sys(e, "creating the disk copy %s", c->disk);
	if (ftruncate(fd, (off_t)c->disk_copy_bytes) < 0) {
		err_sys(e, "sizing the disk copy %s to %llu bytes", c->disk,
			(unsigned long long)c->disk_copy_bytes);
		close(fd);
		if (unlink(c->disk) < 0 && errno != ENOENT)
			log_warn("removing the disk copy %s: %s", c->disk, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

int diskcopy_recv(struct diskcopy_rx *rx, struct stream *r, uint32_t len, struct machine *m,
		  struct err *e)
{
	struct diskcopy_hdr h;

	if (!m->cfg.disk_copy_bytes || !m->blk)
		return err_set(e, "corrupt stream: a disk record, but no copy of the disk was asked for");
	if (diskcopy_get_hdr(r, len, virtio_blk_capacity(m->blk) * 512, &h, e) < 0)
		return -1;
	if (!rx->buf && !(rx->buf = malloc(DISKCOPY_MAX_RUN)))
		return err_set(e, "out of memory for the disk copy");
	if (!rx->fd_open) {
		rx->fd = open(m->cfg.disk, O_WRONLY | O_CLOEXEC);
		if (rx->fd < 0)
			return err_sys(e, "opening the disk copy %s", m->cfg.disk);
		rx->fd_open = true;
	}
	stream_get(r, rx->buf, h.length);
	if (stream_check(r, e) < 0)
		return -1;
	if (mig_sum(rx->buf, h.length) != h.sum)
		return err_set(e, "corrupt stream: the disk run at %llu (%u bytes) fails its checksum",
			       (unsigned long long)h.offset, h.length);
	if (durable_pwrite_all(rx->fd, rx->buf, h.length, (off_t)h.offset, m->cfg.disk, e) < 0)
		return -1;
	/* Start writing it out now, without waiting: the sync before READY
	 * is downtime, and would otherwise write the whole image (512 MiB:
	 * 210 ms here). Only a hint; that sync reports any error. */
	(void)sync_file_range(rx->fd, (off_t)h.offset, h.length, SYNC_FILE_RANGE_WRITE);
	rx->bytes += h.length;
	rx->records++;
	return 0;
}

int diskcopy_rx_finish(struct diskcopy_rx *rx, struct machine *m, struct err *e)
{
	if (!m->cfg.disk_copy_bytes || !m->blk)
		return 0;
	/* all of it, and its name: a copy with no runs (an image of holes) too;
	 * the data is the file's, whichever descriptor wrote it */
	if (virtio_blk_flush(m->blk, e) < 0 || durable_dir_sync(m->cfg.disk, e) < 0)
		return err_prefix(e, "disk copy");
	log_info("disk copy: %llu MiB in %llu runs written to %s and synced",
		 (unsigned long long)(rx->bytes >> 20), (unsigned long long)rx->records, m->cfg.disk);
	/* The copy is the VM's disk now like any other: this VM's next move
	 * copies it or hands it over as that move asks, and a configuration
	 * still saying "copying" would make its destination expect a copy. */
	m->cfg.disk_copy_bytes = 0;
	m->cfg.disk_copy_allocated = 0;
	return 0;
}

void diskcopy_rx_free(struct diskcopy_rx *rx)
{
	free(rx->buf);
	rx->buf = NULL;
	if (rx->fd_open)
		close(rx->fd);
	rx->fd_open = false;
}
