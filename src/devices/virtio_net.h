/*
 * virtio-net on a tap interface: queue 0 receives, queue 1 transmits, each
 * frame preceded in guest buffers by the 10-byte virtio_net_hdr (no offloads
 * are offered, so it is all zeros on receive and ignored on transmit).
 * Received frames stay in the tap until the guest has posted a buffer for
 * them. virtio_net_announce sends RARP frames for the NIC's MAC after a
 * migration so the network learns where the VM now is.
 */
#ifndef FERRY_VIRTIO_NET_H
#define FERRY_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/stream.h"
#include "devices/virtio_pci.h"

struct vm;
struct virtio_net;

#define VIRTIO_NET_F_MAC     (1u << 5)
#define VIRTIO_NET_F_STATUS  (1u << 16)
#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_HDR_LEN   10
#define VIRTIO_NET_RXQ       0
#define VIRTIO_NET_TXQ       1

/* tap: an existing tap interface to attach; bridge: a host bridge to put
 * a tap of our own on (tap.h); both NULL: a NIC with no backend
 * (transmitted frames are dropped, nothing is received). mac: 6 bytes, or
 * NULL to derive one from the tap name and slot (virtio_net_derive_mac).
 * Registered as "virtio-net.<n>"; the vm_device's poll_fd is an epoll fd
 * that is readable when a frame can be delivered. */
int virtio_net_create(struct vm *vm, int slot, const char *tap, const char *bridge,
		      const uint8_t *mac, struct err *e);
/* A stable MAC from a name and the slot: 52:54:00 plus a hash, so the same
 * configuration gives the same MAC on every host. */
void virtio_net_derive_mac(const char *seed, int slot, uint8_t mac[6]);
/* Same with an already open backend fd (ownership passes to the device):
 * anything that reads and writes whole frames, e.g. a datagram socket in
 * tests. fd -1 = no backend. */
int virtio_net_create_fd(struct vm *vm, int slot, int fd, const char *ifname,
			 const uint8_t *mac, struct err *e);
struct virtio_net *virtio_net_find(struct vm *vm, int n);

/* Send one RARP announcement (ethertype 0x8035, source = our MAC) out of
 * the tap; migration calls it several times after resume. Without a
 * backend it does nothing. */
int virtio_net_announce(struct virtio_net *n, struct err *e);
void virtio_net_get_mac(const struct virtio_net *n, uint8_t mac[6]);
const char *virtio_net_ifname(const struct virtio_net *n);
struct virtio_dev *virtio_net_dev(struct virtio_net *n);
/* The vm_device's on_readable (exposed for tests). */
void virtio_net_rx(void *opaque);
/* Parse "52:54:00:12:34:56". */
int virtio_net_parse_mac(const char *s, uint8_t mac[6], struct err *e);

#define VIRTIO_NET_STATE_VERSION 1
struct virtio_net_state {
	struct virtio_state transport;
	uint8_t mac[6];
	uint16_t status;             /* config-space link status */
};
void virtio_net_save(const struct virtio_net *n, struct virtio_net_state *st);
int virtio_net_restore(struct virtio_net *n, const struct virtio_net_state *st,
		       struct err *e);
void virtio_net_state_encode(struct stream *w, const struct virtio_net_state *st);
int virtio_net_state_decode(struct stream *r, uint32_t version,
			    struct virtio_net_state *st, struct err *e);

#endif
