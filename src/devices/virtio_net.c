/*
 * virtio-net data path (see virtio_net.h). The main loop polls an epoll fd
 * of ours rather than the tap itself: the tap is in that epoll set only
 * while the guest has receive buffers posted, so frames wait in the tap's
 * queue (not dropped, not spinning the loop) until the guest is ready, and
 * a guest kick on the receive queue re-arms it and wakes the loop.
 */
#include "devices/virtio_net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/log.h"
#include "devices/tap.h"
#include "vmm/vm.h"

#define NET_CFG_SIZE   8      /* mac[6], status */
#define NET_FRAME_MAX  65536  /* largest frame a tap hands us without GSO */
#define NET_RX_BUDGET  64     /* frames per wakeup, to stay fair to others */
#define ETH_P_RARP_VAL 0x8035

struct virtio_net {
	struct virtio_dev vd;
	char name[32];
	char ifname[TAP_NAME_MAX];
	int fd;                      /* backend (tap), -1 = none */
	int epfd;                    /* what the main loop polls, -1 = none */
	bool rx_armed;               /* fd is in epfd */
	uint8_t config[NET_CFG_SIZE];
	uint64_t tx_dropped, rx_dropped;
	struct virtq_chain chain;
	uint8_t frame[NET_FRAME_MAX];
};

void virtio_net_get_mac(const struct virtio_net *n, uint8_t mac[6])
{
	memcpy(mac, n->config, 6);
}

const char *virtio_net_ifname(const struct virtio_net *n) { return n->ifname; }
struct virtio_dev *virtio_net_dev(struct virtio_net *n) { return &n->vd; }

static bool net_rx_possible(const struct virtio_net *n)
{
	const struct virtq *rxq = &n->vd.vq[VIRTIO_NET_RXQ];
	return n->fd >= 0 && virtio_is_live(&n->vd) && rxq->ready;
}

/* Keep the tap in the epoll set exactly while a frame could be delivered. */
static void net_update_poll(struct virtio_net *n)
{
	bool want = net_rx_possible(n) &&
		    virtq_has_avail(&n->vd.vq[VIRTIO_NET_RXQ], n->vd.gm);
	struct epoll_event ev = { .events = EPOLLIN };

	if (n->epfd < 0 || want == n->rx_armed)
		return;
	if (epoll_ctl(n->epfd, want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, n->fd,
		      &ev) < 0) {
		log_warn("%s: epoll_ctl(%s): %s", n->name, want ? "add" : "del",
			 strerror(errno));
		return;
	}
	n->rx_armed = want;
}

void virtio_net_rx(void *opaque)
{
	struct virtio_net *n = opaque;
	struct virtq *rxq = &n->vd.vq[VIRTIO_NET_RXQ];
	static const uint8_t hdr[VIRTIO_NET_HDR_LEN]; /* no offloads: zeros */
	bool delivered = false;
	struct err e;

	for (int i = 0; i < NET_RX_BUDGET; i++) {
		ssize_t len;
		uint32_t used;
		int rc;

		/* Look for a buffer before reading, so a frame we cannot
		 * place stays queued in the tap. */
		if (!net_rx_possible(n) || !virtq_has_avail(rxq, n->vd.gm))
			break;
		len = read(n->fd, n->frame, sizeof(n->frame));
		if (len < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				log_warn("%s: reading from %s: %s", n->name,
					 n->ifname, strerror(errno));
			break;
		}
		rc = virtq_pop(rxq, n->vd.gm, &n->chain, &e);
		if (rc < 0) {
			virtio_set_broken(&n->vd, "rx: %s", e.msg);
			break;
		}
		if (rc == 0)
			break; /* cannot happen under dev_lock: checked above */
		if (n->chain.in_len < VIRTIO_NET_HDR_LEN + (uint64_t)len) {
			/* Guest buffer too small for this frame: drop it and
			 * hand back the buffer empty, as the driver expects. */
			n->rx_dropped++;
			used = 0;
		} else {
			virtq_chain_write(&n->chain, n->vd.gm, 0, hdr, sizeof(hdr));
			virtq_chain_write(&n->chain, n->vd.gm, VIRTIO_NET_HDR_LEN,
					  n->frame, (size_t)len);
			used = VIRTIO_NET_HDR_LEN + (uint32_t)len;
		}
		if (virtq_push(rxq, n->vd.gm, n->chain.head, used, &e) < 0) {
			virtio_set_broken(&n->vd, "rx: %s", e.msg);
			break;
		}
		delivered = true;
	}
	if (delivered)
		virtio_notify_queue(&n->vd, VIRTIO_NET_RXQ);
	net_update_poll(n);
}

static void net_tx(struct virtio_net *n)
{
	struct virtq *txq = &n->vd.vq[VIRTIO_NET_TXQ];
	bool done_any = false;
	struct err e;

	/* A queue's worth per kick, as virtio-blk (the next kick goes on). */
	for (unsigned k = 0; k < txq->size; k++) {
		int rc = virtq_pop(txq, n->vd.gm, &n->chain, &e);
		uint64_t flen;

		if (rc < 0) {
			virtio_set_broken(&n->vd, "tx: %s", e.msg);
			break;
		}
		if (rc == 0)
			break;
		flen = n->chain.out_len > VIRTIO_NET_HDR_LEN ?
		       n->chain.out_len - VIRTIO_NET_HDR_LEN : 0;
		if (n->fd < 0 || flen == 0 || flen > sizeof(n->frame)) {
			n->tx_dropped++;
		} else {
			ssize_t w;
			virtq_chain_read(&n->chain, VIRTIO_NET_HDR_LEN, n->frame,
					 (size_t)flen);
			do {
				w = write(n->fd, n->frame, (size_t)flen);
			} while (w < 0 && errno == EINTR);
			/* A full tap queue drops, as a wire would. */
			if (w < 0) {
				if (n->tx_dropped++ == 0 || errno != EAGAIN)
					log_warn("%s: writing to %s: %s", n->name,
						 n->ifname, strerror(errno));
			}
		}
		if (virtq_push(txq, n->vd.gm, n->chain.head, 0, &e) < 0) {
			virtio_set_broken(&n->vd, "tx: %s", e.msg);
			break;
		}
		done_any = true;
	}
	if (done_any)
		virtio_notify_queue(&n->vd, VIRTIO_NET_TXQ);
}

static void net_notify(struct virtio_dev *vd, uint16_t q)
{
	struct virtio_net *n = vd->opaque;

	if (q == VIRTIO_NET_TXQ)
		net_tx(n);
	else if (q == VIRTIO_NET_RXQ)
		net_update_poll(n); /* new buffers: frames may flow again */
}

static void net_reset(struct virtio_dev *vd)
{
	net_update_poll(vd->opaque);
}

static void net_status_changed(struct virtio_dev *vd)
{
	net_update_poll(vd->opaque);
}

static void net_config_write(struct virtio_dev *vd, uint32_t off,
			     const uint8_t *data, uint32_t size)
{
	struct virtio_net *n = vd->opaque;

	/* Legacy drivers set the MAC by writing the config bytes. */
	for (uint32_t i = 0; i < size; i++)
		if (off + i < 6)
			n->config[off + i] = data[i];
}

static const struct virtio_dev_ops net_ops = {
	.notify = net_notify,
	.reset = net_reset,
	.status_changed = net_status_changed,
	.config_write = net_config_write,
};

int virtio_net_announce(struct virtio_net *n, struct err *e)
{
	uint8_t f[60]; /* minimum Ethernet frame without FCS */
	ssize_t w;

	if (n->fd < 0)
		return 0;
	if (n->config[0] & 1) /* set so by the guest: no switch learns it */
		return err_set(e, "%s: not announced: the guest set a multicast MAC", n->name);
	memset(f, 0, sizeof(f));
	memset(f, 0xff, 6);                 /* broadcast */
	memcpy(f + 6, n->config, 6);        /* source: our MAC */
	f[12] = ETH_P_RARP_VAL >> 8;
	f[13] = ETH_P_RARP_VAL & 0xff;
	f[14] = 0x00; f[15] = 0x01;         /* hardware type: Ethernet */
	f[16] = 0x08; f[17] = 0x00;         /* protocol type: IPv4 */
	f[18] = 6;                          /* hardware address length */
	f[19] = 4;                          /* protocol address length */
	f[20] = 0x00; f[21] = 0x03;         /* op: reverse request */
	memcpy(f + 22, n->config, 6);       /* sender MAC, sender IP 0 */
	memcpy(f + 32, n->config, 6);       /* target MAC, target IP 0 */
	do {
		w = write(n->fd, f, sizeof(f));
	} while (w < 0 && errno == EINTR);
	if (w < 0)
		return err_sys(e, "%s: sending announcement on %s", n->name,
			       n->ifname);
	return 0;
}

int virtio_net_parse_mac(const char *s, uint8_t mac[6], struct err *e)
{
	unsigned v[6];
	char tail;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &tail) != 6)
		return err_set(e, "bad MAC address '%s' (want xx:xx:xx:xx:xx:xx)", s);
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	if (mac[0] & 1)
		return err_set(e, "MAC address %s is multicast", s);
	return 0;
}

/* 52:54:00 is the prefix QEMU/KVM users know; the rest an FNV-1a hash. */
void virtio_net_derive_mac(const char *seed, int slot, uint8_t mac[6])
{
	uint32_t h = 2166136261u;

	for (const char *p = seed; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ (uint8_t)slot) * 16777619u;
	mac[0] = 0x52; mac[1] = 0x54; mac[2] = 0x00;
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}

void virtio_net_save(const struct virtio_net *n, struct virtio_net_state *st)
{
	memset(st, 0, sizeof(*st));
	virtio_save(&n->vd, &st->transport);
	memcpy(st->mac, n->config, 6);
	st->status = le_get_u16(n->config + 6);
}

int virtio_net_restore(struct virtio_net *n, const struct virtio_net_state *st,
		       struct err *e)
{
	/* Any MAC goes: the guest may have written one (legacy config
	 * writes) that we would never configure, and a move must not make
	 * it unmovable (virtio_net_announce skips a multicast one). */
	if (st->status & ~VIRTIO_NET_S_LINK_UP)
		return err_set(e, "%s: bad link status 0x%x", n->name, st->status);
	if (virtio_restore(&n->vd, &st->transport, e) < 0)
		return -1;
	/* The guest knows the NIC by the source's MAC, whatever we were
	 * configured with here. */
	memcpy(n->config, st->mac, 6);
	le_put_u16(n->config + 6, st->status);
	return 0;
}

void virtio_net_state_encode(struct stream *w, const struct virtio_net_state *st)
{
	virtio_state_encode(w, &st->transport);
	stream_put(w, st->mac, 6);
	stream_put_u16(w, st->status);
}

int virtio_net_state_decode(struct stream *r, uint32_t version,
			    struct virtio_net_state *st, struct err *e)
{
	if (version != VIRTIO_NET_STATE_VERSION)
		return err_set(e, "virtio-net state version %u not supported "
			       "(want %u)", version, VIRTIO_NET_STATE_VERSION);
	memset(st, 0, sizeof(*st));
	if (virtio_state_decode(r, VIRTIO_STATE_VERSION, &st->transport, e) < 0)
		return -1;
	stream_get(r, st->mac, 6);
	st->status = stream_get_u16(r);
	if (stream_check(r, e) < 0)
		return err_prefix(e, "virtio-net state");
	return 0;
}

static int net_vm_save(void *opaque, struct stream *w, struct err *e)
{
	struct virtio_net_state st;

	virtio_net_save(opaque, &st);
	virtio_net_state_encode(w, &st);
	return stream_check(w, e);
}

static int net_vm_load(void *opaque, struct stream *r, uint32_t version,
		       struct err *e)
{
	struct virtio_net_state st;

	if (virtio_net_state_decode(r, version, &st, e) < 0)
		return -1;
	return virtio_net_restore(opaque, &st, e);
}

static int net_vm_post_load(void *opaque, struct err *e)
{
	struct virtio_net *n = opaque;

	net_update_poll(n);
	return virtio_post_load(&n->vd, e);
}

static void net_free(struct virtio_net *n)
{
	if (n->epfd >= 0)
		close(n->epfd);
	if (n->fd >= 0)
		close(n->fd);
	free(n);
}

static void net_vm_destroy(void *opaque)
{
	net_free(opaque);
}

static int net_count(struct vm *vm)
{
	int c = 0;
	for (int i = 0; i < vm->ndevices; i++)
		if (vm->devices[i].name &&
		    strncmp(vm->devices[i].name, "virtio-net.", 11) == 0)
			c++;
	return c;
}

struct virtio_net *virtio_net_find(struct vm *vm, int idx)
{
	char name[32];

	snprintf(name, sizeof(name), "virtio-net.%d", idx);
	for (int i = 0; i < vm->ndevices; i++)
		if (vm->devices[i].name && strcmp(vm->devices[i].name, name) == 0)
			return vm->devices[i].opaque;
	return NULL;
}

int virtio_net_create_fd(struct vm *vm, int slot, int fd, const char *ifname,
			 const uint8_t *mac, struct err *e)
{
	struct pci_bus *bus = pci_bus_of(vm);
	struct virtio_net *n;
	struct vm_device dev = {
		.version = VIRTIO_NET_STATE_VERSION,
		.save = net_vm_save,
		.load = net_vm_load,
		.post_load = net_vm_post_load,
		.poll_fd = -1,
		.on_readable = virtio_net_rx,
		.destroy = net_vm_destroy,
	};

	n = calloc(1, sizeof(*n));
	if (!n) {
		if (fd >= 0)
			close(fd);
		return err_set(e, "virtio-net: out of memory");
	}
	n->fd = fd;
	n->epfd = -1;
	snprintf(n->name, sizeof(n->name), "virtio-net.%d", net_count(vm));
	snprintf(n->ifname, sizeof(n->ifname), "%s", ifname ? ifname : "");
	if (!bus) {
		err_set(e, "virtio-net needs the PCI bus (create it first)");
		goto fail;
	}
	if (slot < 1 || slot > LAYOUT_PCI_MAX_SLOTS) {
		err_set(e, "pci slot %d out of range 1..%d", slot,
			LAYOUT_PCI_MAX_SLOTS);
		goto fail;
	}
	if (bus->slots[slot]) {
		err_set(e, "pci slot %d already in use", slot);
		goto fail;
	}
	if (fd >= 0) {
		n->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (n->epfd < 0) {
			err_sys(e, "%s: epoll_create1", n->name);
			goto fail;
		}
	}
	if (mac)
		memcpy(n->config, mac, 6);
	else
		virtio_net_derive_mac(n->ifname, slot, n->config);
	le_put_u16(n->config + 6, VIRTIO_NET_S_LINK_UP);

	virtio_init(&n->vd, vm, &vm->mem, n->name, VIRTIO_ID_NET, 0x020000, 2,
		    &net_ops, n);
	n->vd.host_features = VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS;
	n->vd.config = n->config;
	n->vd.config_len = sizeof(n->config);

	dev.name = n->name;
	dev.opaque = n;
	dev.poll_fd = n->epfd;
	if (vm_add_device(vm, &dev, e) < 0)
		goto fail;
	if (virtio_pci_attach(&n->vd, bus, slot, e) < 0)
		return err_prefix(e, "%s", n->name); /* the VM owns n now */
	log_info("%s: %s, mac %02x:%02x:%02x:%02x:%02x:%02x, slot %d", n->name,
		 fd >= 0 ? n->ifname : "no backend", n->config[0], n->config[1],
		 n->config[2], n->config[3], n->config[4], n->config[5], slot);
	return 0;
fail:
	net_free(n);
	return -1;
}

int virtio_net_create(struct vm *vm, int slot, const char *tap, const char *bridge,
		      const uint8_t *mac, struct err *e)
{
	char actual[TAP_NAME_MAX] = "";
	int fd = -1;

	if (tap || bridge) {
		fd = tap ? tap_open(tap, actual, e) : tap_open_on_bridge(bridge, actual, e);
		if (fd < 0)
			return -1;
	}
	return virtio_net_create_fd(vm, slot, fd, actual, mac, e);
}
