/*
 * Copying a VM's disk image to the destination during a live migration,
 * for hosts that share no storage. The source logs the guest's writes
 * (virtio_blk_track_*), sends the image's allocated blocks first and then,
 * pass after pass, the blocks written since they were sent, all on the
 * main connection; the last ones go with the guest paused. The destination
 * creates the image (never over an existing file), writes each run where
 * it belongs, and syncs it before it says it is ready: past the commit
 * point the copy is the VM's disk. Until then the source's image is the
 * disk and the copy is removed if the move fails.
 *
 * Record (MIG_REC_DISK): offset u64, length u32, zero u32, XXH3 sum u64 of
 * the data, then length bytes of the image at offset. Offset and length
 * are multiples of 512, length at most DISKCOPY_MAX_RUN.
 */
#ifndef FERRY_DISKCOPY_H
#define FERRY_DISKCOPY_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/stream.h"
#include "vmm/config.h"

struct machine;
struct virtio_blk;

#define DISKCOPY_HDR 24
#define DISKCOPY_MAX_RUN (1u << 20)

struct diskcopy_hdr {
	uint64_t offset;
	uint32_t length;
	uint64_t sum;
};

/* Reads a DISK record's header (its payload len from the framing) and
 * checks it against an image of image_bytes. */
int diskcopy_get_hdr(struct stream *r, uint32_t len, uint64_t image_bytes, struct diskcopy_hdr *h,
		     struct err *e);

/* ---- source ---- */
struct diskcopy {
	struct machine *m;
	struct virtio_blk *b;
	uint64_t *map;          /* the device's write log */
	uint64_t blocks;
	uint64_t image_bytes;   /* what the guest can address */
	uint8_t *buf;
	uint64_t sent_bytes;    /* data sent, every pass */
	bool on;
};

/* What CONFIG tells the destination: the copy goes to `path` there. */
int diskcopy_describe(struct machine *m, const char *path, struct vm_config *out, struct err *e);
/* Starts logging writes and marks every allocated block of the image to
 * be sent. */
int diskcopy_start(struct diskcopy *dc, struct machine *m, struct err *e);
/* Bytes waiting to be sent (blocks marked, at their full size). */
uint64_t diskcopy_dirty_bytes(const struct diskcopy *dc);
/* Sends the marked blocks as DISK records on w, clearing each run's bits
 * just before it reads it. between() runs after each record: < 0 fails,
 * > 0 stops for now (what is left stays marked), 0 goes on. Returns 0 when
 * nothing marked is left, 1 when between() stopped it, -1 on error. */
int diskcopy_send(struct diskcopy *dc, struct stream *w,
		  int (*between)(void *opaque, struct err *e), void *opaque, struct err *e);
void diskcopy_stop(struct diskcopy *dc);

/* ---- destination ---- */
/* Can this host take the copy CONFIG asks for? Never over an existing
 * file, and with room for what the source has allocated. */
int diskcopy_check_target(const struct vm_config *c, struct err *e);
/* Creates the empty (sparse) image of the source's size. */
int diskcopy_create_image(const struct vm_config *c, struct err *e);

struct diskcopy_rx {
	uint8_t *buf;
	/* its own descriptor on the copy: the disk may be attached read-only */
	int fd;
	bool fd_open;
	uint64_t bytes, records;
};
int diskcopy_recv(struct diskcopy_rx *rx, struct stream *r, uint32_t len, struct machine *m,
		  struct err *e);
/* All runs are in: the image on stable storage before READY. */
int diskcopy_rx_finish(struct diskcopy_rx *rx, struct machine *m, struct err *e);
void diskcopy_rx_free(struct diskcopy_rx *rx);

#endif
