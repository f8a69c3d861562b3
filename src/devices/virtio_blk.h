/*
 * virtio-blk on a raw image file ("the virtual hard disk"). Requests run
 * synchronously on queue notify, so there is no in-flight I/O to migrate:
 * the device state is the transport state plus the capacity (checked on the
 * destination). The image carries an OFD lock while this VM owns it; live
 * migration hands the disk over by releasing it on the source and taking it
 * on the destination. Without the lock every request fails with IOERR, so a
 * copy that lost the disk cannot write to it.
 */
#ifndef FERRY_VIRTIO_BLK_H
#define FERRY_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/stream.h"
#include "devices/virtio_pci.h"

struct vm;
struct virtio_blk;

#define VIRTIO_BLK_F_SEG_MAX  (1u << 2)
#define VIRTIO_BLK_F_RO       (1u << 5)
#define VIRTIO_BLK_F_BLK_SIZE (1u << 6)
#define VIRTIO_BLK_F_FLUSH    (1u << 9)

#define VIRTIO_BLK_T_IN     0
#define VIRTIO_BLK_T_OUT    1
#define VIRTIO_BLK_T_FLUSH  4
#define VIRTIO_BLK_T_GET_ID 8

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_SECTOR   512
#define VIRTIO_BLK_ID_BYTES 20

/* Open `path` (read-write unless readonly), lock it and put a virtio-blk
 * in `slot` on the VM's PCI bus, registered as "virtio-blk.<n>". */
int virtio_blk_create(struct vm *vm, int slot, const char *path, bool readonly,
		      struct err *e);
/* Same, but take_lock=false leaves the image unlocked: a migration
 * destination creates the device before the source hands the disk over
 * and calls virtio_blk_take_lock at the storage-handoff stage. */
int virtio_blk_create_ex(struct vm *vm, int slot, const char *path,
			 bool readonly, bool take_lock, struct err *e);
/* The n-th virtio-blk of the VM (creation order), or NULL. */
struct virtio_blk *virtio_blk_find(struct vm *vm, int n);

/* fdatasync the image. */
int virtio_blk_flush(struct virtio_blk *b, struct err *e);
/* Drop / take the OFD lock on the image (storage handoff). Taking fails
 * with "disk image X is in use by another VM (locked)" if someone holds it. */
int virtio_blk_release_lock(struct virtio_blk *b, struct err *e);
int virtio_blk_take_lock(struct virtio_blk *b, struct err *e);
bool virtio_blk_locked(const struct virtio_blk *b);
const char *virtio_blk_path(const struct virtio_blk *b);
bool virtio_blk_readonly(const struct virtio_blk *b);
uint64_t virtio_blk_capacity(const struct virtio_blk *b); /* sectors */
struct virtio_dev *virtio_blk_dev(struct virtio_blk *b);

/* Write log for copying the disk to another host while the guest runs
 * (migration/diskcopy.c). Start and stop under the VM's dev_lock (the
 * requests run under it); the map has a bit per VIRTIO_BLK_TRACK_BLOCK
 * bytes, set after each guest write, which the copier clears atomically
 * before it reads the block. */
#define VIRTIO_BLK_TRACK_BLOCK (64u << 10)
int virtio_blk_track_start(struct virtio_blk *b, struct err *e);
void virtio_blk_track_stop(struct virtio_blk *b);
uint64_t *virtio_blk_track_map(struct virtio_blk *b, uint64_t *blocks);
/* The image itself, for the copier on the source. */
int virtio_blk_image_fd(const struct virtio_blk *b);
int virtio_blk_image_read(struct virtio_blk *b, uint64_t off, void *p, size_t len, struct err *e);

#define VIRTIO_BLK_STATE_VERSION 1
struct virtio_blk_state {
	struct virtio_state transport;
	uint64_t capacity;           /* sectors; must match on restore */
};
void virtio_blk_save(const struct virtio_blk *b, struct virtio_blk_state *st);
int virtio_blk_restore(struct virtio_blk *b, const struct virtio_blk_state *st,
		       struct err *e);
void virtio_blk_state_encode(struct stream *w, const struct virtio_blk_state *st);
int virtio_blk_state_decode(struct stream *r, uint32_t version,
			    struct virtio_blk_state *st, struct err *e);

#endif
