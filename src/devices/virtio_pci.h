/*
 * Legacy virtio-pci transport (virtio 0.9.5): one I/O BAR with the common
 * registers at 0x00..0x13 and the device config from 0x14 (no MSI-X), INTx
 * on the slot's GSI. A device (blk, net) embeds struct virtio_dev and
 * supplies its queues, features, config bytes and a notify callback.
 * A guest that breaks the protocol gets the device marked broken
 * (DEVICE_NEEDS_RESET), never a crash; only a reset revives it.
 */
#ifndef FERRY_VIRTIO_PCI_H
#define FERRY_VIRTIO_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/stream.h"
#include "devices/pci.h"
#include "devices/virtqueue.h"

struct vm;

/* Legacy register offsets in the I/O BAR. */
#define VIRTIO_PCI_HOST_FEATURES  0x00
#define VIRTIO_PCI_GUEST_FEATURES 0x04
#define VIRTIO_PCI_QUEUE_PFN      0x08
#define VIRTIO_PCI_QUEUE_NUM      0x0c
#define VIRTIO_PCI_QUEUE_SEL      0x0e
#define VIRTIO_PCI_QUEUE_NOTIFY   0x10
#define VIRTIO_PCI_STATUS         0x12
#define VIRTIO_PCI_ISR            0x13
#define VIRTIO_PCI_CONFIG         0x14
#define VIRTIO_PCI_BAR_SIZE       0x100

#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER      0x02
#define VIRTIO_STATUS_DRIVER_OK   0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED      0x80

#define VIRTIO_ISR_QUEUE  0x1
#define VIRTIO_ISR_CONFIG 0x2

#define VIRTIO_PCI_VENDOR      0x1af4
#define VIRTIO_ID_NET          1
#define VIRTIO_ID_BLOCK        2

#define VIRTIO_MAX_QUEUES      4
#define VIRTIO_QUEUE_SIZE      256

struct virtio_dev;

struct virtio_dev_ops {
	/* Guest kicked queue q (q < nqueues, device not broken). */
	void (*notify)(struct virtio_dev *vd, uint16_t q);
	/* After a device reset (status 0) has cleared the transport. */
	void (*reset)(struct virtio_dev *vd);
	/* After the guest changed the status register. May be NULL. */
	void (*status_changed)(struct virtio_dev *vd);
	/* Guest wrote device config bytes [off, off+size). May be NULL
	 * (config is then read-only). */
	void (*config_write)(struct virtio_dev *vd, uint32_t off,
			     const uint8_t *data, uint32_t size);
};

struct virtio_dev {
	struct pci_dev pci;          /* first: container_of-free casts */
	struct vm *vm;
	struct guest_mem *gm;
	const struct virtio_dev_ops *ops;
	void *opaque;                /* the device (blk, net) */
	const char *name;            /* for messages */
	uint32_t host_features;
	uint32_t guest_features;
	uint8_t status;
	uint8_t isr;
	uint16_t queue_sel;
	uint16_t nqueues;
	struct virtq vq[VIRTIO_MAX_QUEUES];
	uint8_t *config;             /* device config bytes, owned by the device */
	uint32_t config_len;
	bool irq_level;              /* what we last drove on the INTx line */
};

/* Transport state, shared by every virtio device's state section. */
#define VIRTIO_STATE_VERSION 1
struct virtio_queue_state {
	uint16_t size;
	uint32_t pfn;
	uint16_t last_avail_idx;
	uint16_t used_idx;
};
struct virtio_state {
	uint32_t host_features;
	uint32_t guest_features;
	uint8_t status;
	uint8_t isr;
	uint16_t queue_sel;
	uint16_t nqueues;
	struct virtio_queue_state q[VIRTIO_MAX_QUEUES];
};

/* Fill the transport; queues get size VIRTIO_QUEUE_SIZE. Then the caller
 * sets host_features/config and calls virtio_pci_attach. vm may have
 * vm_fd < 0 (unit tests): the ISR still works, the line stays low. */
void virtio_init(struct virtio_dev *vd, struct vm *vm, struct guest_mem *gm,
		 const char *name, uint16_t device_id, uint32_t class_code,
		 uint16_t nqueues, const struct virtio_dev_ops *ops,
		 void *opaque);
/* Put the device on the bus in `slot` with its I/O BAR. */
int virtio_pci_attach(struct virtio_dev *vd, struct pci_bus *bus, int slot,
		      struct err *e);

/* The BAR handler (port = offset in the BAR); exposed for tests. */
void virtio_pci_io(void *opaque, uint16_t off, bool is_write, uint8_t *data,
		   uint32_t size);
/* Raise the queue interrupt for used buffers on q unless the guest
 * suppressed it. */
void virtio_notify_queue(struct virtio_dev *vd, uint16_t q);
/* Raise a config-change interrupt. */
void virtio_notify_config(struct virtio_dev *vd);
/* The guest broke the protocol: log, set NEEDS_RESET, stop all queues. */
void virtio_set_broken(struct virtio_dev *vd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
bool virtio_is_broken(const struct virtio_dev *vd);
/* DRIVER_OK set, not broken, bus mastering on: the device may process queues. */
bool virtio_is_live(const struct virtio_dev *vd);
/* Device reset as by a status write of 0. */
void virtio_reset(struct virtio_dev *vd);

void virtio_save(const struct virtio_dev *vd, struct virtio_state *st);
/* Validate against the live device (same features offered, same queues,
 * rings in RAM) then apply. The INTx line is driven by virtio_post_load. */
int virtio_restore(struct virtio_dev *vd, const struct virtio_state *st,
		   struct err *e);
int virtio_post_load(struct virtio_dev *vd, struct err *e);
void virtio_state_encode(struct stream *w, const struct virtio_state *st);
int virtio_state_decode(struct stream *r, uint32_t version,
			struct virtio_state *st, struct err *e);

#endif
