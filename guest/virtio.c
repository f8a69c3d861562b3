/*
 * Polled legacy virtio-pci drivers for the test guest: virtio-blk writes a
 * heartbeat record per second, virtio-net sends a heartbeat frame and
 * echoes test frames. Rings are built and polled at CPL3 (plain memory);
 * only PCI config and register accesses trap to CPL0, one port access per
 * trap, so a heartbeat costs a handful of exits. No interrupts are used.
 */
#include "lib.h"
#include "user.h"

/* legacy virtio-pci I/O BAR registers */
#define VIO_HOST_FEATURES 0x00
#define VIO_GUEST_FEATURES 0x04
#define VIO_QUEUE_PFN 0x08
#define VIO_QUEUE_SIZE 0x0c
#define VIO_QUEUE_SEL 0x0e
#define VIO_QUEUE_NOTIFY 0x10
#define VIO_STATUS 0x12
#define VIO_CONFIG 0x14 /* without MSI-X */

#define ST_ACK 1
#define ST_DRIVER 2
#define ST_DRIVER_OK 4
#define ST_FAILED 128

#define DESC_NEXT 1
#define DESC_WRITE 2

#define VQ_MAX 1024
#define VQ_BYTES 32768 /* desc 16K + avail 2K, aligned, + used 8K for 1024 */

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct vq {
	uint16_t io, index, size, last_used;
	volatile struct vring_desc *desc;
	volatile uint16_t *avail;	/* flags, idx, ring[size] */
	volatile uint16_t *used;	/* flags, idx, then {u32 id, u32 len}[size] */
};

static uint8_t vq_mem[3][VQ_BYTES] __attribute__((aligned(4096)));

static uint32_t io_in(uint16_t port, unsigned size) { return (uint32_t)svc(SVC_PIO_IN, port, size, 0); }
static void io_out(uint16_t port, unsigned size, uint32_t v) { svc(SVC_PIO_OUT, port, size, v); }

static uint32_t pci_cfg(unsigned dev, unsigned off)
{
	return (uint32_t)svc(SVC_PCI_READ, 0x80000000u | dev << 11 | off, 0, 0);
}

static void pci_cfg_write(unsigned dev, unsigned off, uint32_t v)
{
	svc(SVC_PCI_WRITE, 0x80000000u | dev << 11 | off, v, 0);
}

/* Bus 0 only, function 0: where QEMU and ferry put virtio devices. Enables
 * I/O decoding and bus mastering; assigns an I/O BAR if firmware did not. */
static int pci_find(uint16_t device, uint16_t *iobase)
{
	for (unsigned dev = 0; dev < 32; dev++) {
		uint32_t id = pci_cfg(dev, 0);
		if ((id & 0xffff) != 0x1af4 || (id >> 16) != device)
			continue;
		uint32_t bar = pci_cfg(dev, 0x10);
		if (!(bar & 1))
			continue;
		if ((bar & ~3u) == 0) {
			pci_cfg_write(dev, 0x10, 0xc000 + dev * 0x100);
			bar = pci_cfg(dev, 0x10);
		}
		pci_cfg_write(dev, 0x04, (pci_cfg(dev, 0x04) & 0xffff) | 0x5);
		*iobase = (uint16_t)(bar & ~3u);
		return 0;
	}
	return -1;
}

static int vq_setup(struct vq *q, uint16_t io, uint16_t index, uint8_t *mem)
{
	io_out(io + VIO_QUEUE_SEL, 2, index);
	uint16_t size = (uint16_t)io_in(io + VIO_QUEUE_SIZE, 2);
	if (size == 0 || size > VQ_MAX || (size & (size - 1)))
		return -1;
	q->io = io;
	q->index = index;
	q->size = size;
	q->last_used = 0;
	q->desc = (volatile struct vring_desc *)mem;
	q->avail = (volatile uint16_t *)(mem + 16 * size);
	uint64_t used_off = (16ULL * size + 6 + 2ULL * size + 4095) & ~4095ULL;
	q->used = (volatile uint16_t *)(mem + used_off);
	memset(mem, 0, VQ_BYTES);
	io_out(io + VIO_QUEUE_PFN, 4, (uint32_t)((uint64_t)mem >> 12));
	return 0;
}

static void vq_push(struct vq *q, uint16_t head)
{
	uint16_t idx = q->avail[1];
	q->avail[2 + idx % q->size] = head;
	barrier(); /* ring entry before idx: x86 keeps store order */
	q->avail[1] = (uint16_t)(idx + 1);
	barrier();
}

static void vq_kick(struct vq *q)
{
	io_out(q->io + VIO_QUEUE_NOTIFY, 2, q->index);
}

/* Next used element, or -1 if none. */
static int vq_pop(struct vq *q, uint32_t *len)
{
	if (q->used[1] == q->last_used)
		return -1;
	barrier();
	volatile uint32_t *e = (volatile uint32_t *)(q->used + 2) + 2 * (q->last_used % q->size);
	uint32_t id = e[0];
	*len = e[1];
	q->last_used++;
	return (int)id;
}

/* Wait for one completion: spin briefly (the device may be synchronous),
 * then sleep in 1 ms hlts, for up to timeout_ms. */
static int vq_wait(struct vq *q, uint32_t *len, unsigned timeout_ms)
{
	int id;
	for (int i = 0; i < 2000; i++) {
		if ((id = vq_pop(q, len)) >= 0)
			return id;
		cpu_relax();
	}
	uint64_t ms = tsc_hz / 1000;
	for (unsigned t = 0; t < timeout_ms; t++) {
		halt_until(rdtsc() + ms);
		if ((id = vq_pop(q, len)) >= 0)
			return id;
	}
	return -1;
}

static uint32_t dev_init(uint16_t io, uint32_t want)
{
	io_out(io + VIO_STATUS, 1, 0); /* reset */
	io_out(io + VIO_STATUS, 1, ST_ACK);
	io_out(io + VIO_STATUS, 1, ST_ACK | ST_DRIVER);
	uint32_t f = io_in(io + VIO_HOST_FEATURES, 4) & want;
	io_out(io + VIO_GUEST_FEATURES, 4, f);
	return f;
}

/* ---- virtio-blk ---- */

#define BLK_F_FLUSH (1u << 9)
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4

static struct {
	struct vq q;
	int flush;
	struct { uint32_t type, rsvd; uint64_t sector; } hdr;
	volatile uint8_t status;
	struct fg_blk_record rec __attribute__((aligned(512)));
} blk;

int vblk_init(void)
{
	uint16_t io;
	if (pci_find(0x1001, &io)) {
		gprintf("FERRY-GUEST error blk=1 but no virtio-blk device");
		return -1;
	}
	blk.flush = (dev_init(io, BLK_F_FLUSH) & BLK_F_FLUSH) != 0;
	if (vq_setup(&blk.q, io, 0, vq_mem[0])) {
		io_out(io + VIO_STATUS, 1, ST_FAILED);
		gprintf("FERRY-GUEST error virtio-blk queue setup failed");
		return -1;
	}
	io_out(io + VIO_STATUS, 1, ST_ACK | ST_DRIVER | ST_DRIVER_OK);
	gprintf("FERRY-GUEST blk io=0x%x queue=%u flush=%d", io, blk.q.size, blk.flush);
	return 0;
}

/* One request: header, optional data (device-readable), status byte. */
static int blk_request(uint32_t type, uint64_t sector, const void *data, uint32_t len)
{
	volatile struct vring_desc *d = blk.q.desc;
	blk.hdr.type = type;
	blk.hdr.rsvd = 0;
	blk.hdr.sector = sector;
	blk.status = 0xff;
	d[0] = (struct vring_desc){ (uint64_t)&blk.hdr, sizeof(blk.hdr), DESC_NEXT, 1 };
	uint16_t st = 1;
	if (data) {
		d[1] = (struct vring_desc){ (uint64_t)data, len, DESC_NEXT, 2 };
		st = 2;
	}
	d[st] = (struct vring_desc){ (uint64_t)&blk.status, 1, DESC_WRITE, 0 };
	vq_push(&blk.q, 0);
	vq_kick(&blk.q);
	uint32_t ulen;
	if (vq_wait(&blk.q, &ulen, 1000) < 0)
		return -1;
	return blk.status == 0 ? 0 : -2;
}

void vblk_heartbeat(uint64_t n)
{
	fg_blk_fill(&blk.rec, n);
	int r = blk_request(BLK_T_OUT, n % FG_BLK_SECTORS + 1, &blk.rec, sizeof(blk.rec));
	if (r == 0 && blk.flush)
		r = blk_request(BLK_T_FLUSH, 0, 0, 0);
	if (r == 0)
		gprintf("FERRY-GUEST blk wrote n=%lu", n);
	else
		gprintf("FERRY-GUEST error blk write n=%lu failed (%s)", n, r == -1 ? "timeout" : "status");
}

/* ---- virtio-net ---- */

#define NET_F_MAC (1u << 5)
#define NET_HDR 10 /* legacy header without mergeable rx buffers */
#define NET_RXBUFS 32
#define FRAME_MAX 1514

static struct {
	struct vq rx, tx;
	uint8_t mac[6];
	int tx_busy;
	uint8_t rx_hdr[NET_RXBUFS][NET_HDR];
	uint8_t rx_buf[NET_RXBUFS][FRAME_MAX];
	uint8_t tx_hdr[NET_HDR];
	uint8_t tx_buf[FRAME_MAX];
} net;

/* rx buffer k uses descriptors 2k (header) and 2k+1 (frame): the classic
 * split layout every legacy device accepts. */
static void rx_post(uint16_t k)
{
	volatile struct vring_desc *d = net.rx.desc;
	d[2 * k] = (struct vring_desc){ (uint64_t)net.rx_hdr[k], NET_HDR, DESC_NEXT | DESC_WRITE,
					(uint16_t)(2 * k + 1) };
	d[2 * k + 1] = (struct vring_desc){ (uint64_t)net.rx_buf[k], FRAME_MAX, DESC_WRITE, 0 };
	vq_push(&net.rx, (uint16_t)(2 * k));
}

int vnet_init(void)
{
	uint16_t io;
	if (pci_find(0x1000, &io)) {
		gprintf("FERRY-GUEST error net=1 but no virtio-net device");
		return -1;
	}
	uint32_t f = dev_init(io, NET_F_MAC);
	if (vq_setup(&net.rx, io, 0, vq_mem[1]) || vq_setup(&net.tx, io, 1, vq_mem[2])) {
		io_out(io + VIO_STATUS, 1, ST_FAILED);
		gprintf("FERRY-GUEST error virtio-net queue setup failed");
		return -1;
	}
	static const uint8_t fallback[6] = { 0x52, 0x54, 0x00, 0xfe, 0x77, 0x01 };
	for (int i = 0; i < 6; i++)
		net.mac[i] = f & NET_F_MAC ? (uint8_t)io_in(io + VIO_CONFIG + i, 1) : fallback[i];
	unsigned nbufs = net.rx.size / 2 < NET_RXBUFS ? net.rx.size / 2 : NET_RXBUFS;
	for (unsigned k = 0; k < nbufs; k++)
		rx_post((uint16_t)k);
	io_out(io + VIO_STATUS, 1, ST_ACK | ST_DRIVER | ST_DRIVER_OK);
	vq_kick(&net.rx);
	gprintf("FERRY-GUEST net io=0x%x mac=%02x:%02x:%02x:%02x:%02x:%02x rxq=%u txq=%u", io,
		net.mac[0], net.mac[1], net.mac[2], net.mac[3], net.mac[4], net.mac[5],
		net.rx.size, net.tx.size);
	return 0;
}

/* One frame in flight at a time: reap the previous one first. */
static void net_send(uint32_t len)
{
	uint32_t ulen;
	if (net.tx_busy && vq_wait(&net.tx, &ulen, 100) < 0) {
		gprintf("FERRY-GUEST error net tx stuck");
		return;
	}
	memset(net.tx_hdr, 0, NET_HDR);
	volatile struct vring_desc *d = net.tx.desc;
	d[0] = (struct vring_desc){ (uint64_t)net.tx_hdr, NET_HDR, DESC_NEXT, 1 };
	d[1] = (struct vring_desc){ (uint64_t)net.tx_buf, len < 60 ? 60 : len, 0, 0 };
	vq_push(&net.tx, 0);
	vq_kick(&net.tx);
	net.tx_busy = 1;
}

void vnet_heartbeat(uint64_t n)
{
	uint8_t *f = net.tx_buf;
	uint32_t ulen;
	if (net.tx_busy && vq_wait(&net.tx, &ulen, 100) >= 0)
		net.tx_busy = 0;
	if (net.tx_busy)
		return;
	memset(f, 0, 60);
	memset(f, 0xff, 6);
	memcpy(f + 6, net.mac, 6);
	f[12] = FG_ETHERTYPE >> 8;
	f[13] = FG_ETHERTYPE & 0xff;
	int plen = snprintf((char *)f + 14, FRAME_MAX - 14, "FERRY-GUEST hb n=%lu", n);
	net_send(14 + (uint32_t)plen);
}

void vnet_poll(void)
{
	uint32_t len;
	int id, reposted = 0;
	while ((id = vq_pop(&net.rx, &len)) >= 0) {
		uint16_t k = (uint16_t)id / 2;
		if ((unsigned)id % 2 || k >= NET_RXBUFS)
			continue; /* not a head we posted: device bug, drop */
		uint32_t flen = len > NET_HDR ? len - NET_HDR : 0;
		if (flen > FRAME_MAX)
			flen = FRAME_MAX;
		const uint8_t *f = net.rx_buf[k];
		if (flen >= 14 && (f[12] << 8 | f[13]) == FG_ETHERTYPE) {
			gprintf("FERRY-GUEST net rx len=%u", flen);
			/* Echo, swapping MACs; never echo guest-originated frames
			 * (heartbeats, echoes) so two guests cannot ping-pong. */
			if (!(flen >= 25 && !memcmp(f + 14, "FERRY-GUEST", 11))) {
				uint32_t ulen;
				if (!net.tx_busy || vq_wait(&net.tx, &ulen, 100) >= 0) {
					net.tx_busy = 0;
					memcpy(net.tx_buf, f + 6, 6);
					memcpy(net.tx_buf + 6, net.mac, 6);
					memcpy(net.tx_buf + 12, f + 12, flen - 12);
					net_send(flen);
				}
			}
		}
		rx_post(k);
		reposted = 1;
	}
	if (reposted)
		vq_kick(&net.rx);
}
