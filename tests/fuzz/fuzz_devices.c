/*
 * libFuzzer harness for the device models a guest drives (src/devices/):
 * the machine ferry-vm builds (UART, i8042, PCI host bridge, virtio-blk on
 * a small image, virtio-net on a socketpair standing in for the tap),
 * without KVM. An input is one setup byte, then operations: port I/O of
 * any width and repeat count through the VM's port bus, as vcpu.c
 * dispatches KVM_EXIT_IO; guest writes into its RAM (raw bytes,
 * descriptors, avail ring entries and indices); queue kicks; frames from
 * the network and the main loop's poll of the NIC; console input; the
 * disk lock handoff; and a migration: every device saved, then restored
 * into fresh devices from those bytes, from patched bytes or from raw
 * input (a state section arrives from the network), and the guest goes on
 * against the destination. See tests/fuzz/make_devices_corpus.py for the
 * encoding.
 *
 * Beyond crashes, leaks and sanitizer reports it checks what a live move
 * relies on: every guest page a device changes is marked dirty; a device
 * that may not touch memory (bus mastering off, or broken) changes none; a
 * saved state restores, and saves again to the same bytes; a read-only or
 * unlocked disk image never changes. A failure of these aborts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/stream.h"
#include "devices/i8042.h"
#include "devices/pci.h"
#include "devices/uart.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "vmm/vm.h"

/* Two RAM regions, as a guest above 3 GiB has, so a buffer or ring that
 * straddles a region's end is reachable. Small, so each input's reset and
 * the per-operation page comparison stay cheap. */
#define LOW_RAM      (128u << 10)
#define HIGH_RAM     (32u << 10)
#define RAM_BYTES    (LOW_RAM + HIGH_RAM)
#define RAM_PAGES    (RAM_BYTES / 4096)
#define HIGH_GPA     LAYOUT_HIGH_RAM_START
#define DISK_SECTORS 64
#define DISK_MAX     (DISK_SECTORS * 512 + 100)
#define BLK_SLOT     1   /* as machine.c */
#define NET_SLOT     2
#define MAX_OPS      512 /* per input, so no input runs into the timeout */
#define FRAME_MAX    70000

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t in_u8(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint16_t in_u16(struct input *in)
{
	uint16_t lo = in_u8(in);
	return (uint16_t)(lo | in_u8(in) << 8);
}

static uint32_t in_u32(struct input *in)
{
	uint32_t lo = in_u16(in);
	return lo | (uint32_t)in_u16(in) << 16;
}

static uint64_t in_u64(struct input *in)
{
	uint64_t lo = in_u32(in);
	return lo | (uint64_t)in_u32(in) << 32;
}

/* Up to `want` bytes of input, in place; how many there were. */
static size_t in_take(struct input *in, const uint8_t **p, size_t want)
{
	size_t n = want < in->n ? want : in->n;
	*p = in->p;
	in->p += n;
	in->n -= n;
	return n;
}

/* stderr as it was before -close_fd_mask=2 silenced the devices' logs. */
static int report_fd = 2;
/* The operation under way, named in a failure report. */
static int op_index = -1, op_code = -1;

static __attribute__((noreturn, format(printf, 1, 2))) void fatal(const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(msg) - 2)
		n = (int)sizeof(msg) - 2;
	msg[n++] = '\n';
	dprintf(report_fd, "fuzz_devices: operation %d (code %d): %.*s", op_index, op_code, n, msg);
	abort();
}

/* The machine under test: what machine_build puts on a VM, minus KVM. */
struct rig {
	struct vm *vm;
	struct uart uart;
	struct virtio_blk *blk;
	struct virtio_net *net;
	int peer;                 /* the network's end of the fake tap, or -1 */
};

static struct guest_mem gm;      /* survives a move, as RAM does */
static uint8_t *shadow;          /* RAM as last seen, for the dirty check */
static int disk_fd = -1;
static char disk_path[64];
static size_t disk_len;
static uint8_t disk_init[DISK_MAX], disk_now[DISK_MAX];
static struct rig rigs[2];
/* During this operation: a device could write guest memory at some
 * point (sampled before each access that may let it), or the guest wrote
 * PCI config, where setting COMMAND.MASTER serves queues at once. */
static bool dma_seen, cfg_port_written;

/* Setup byte. */
#define SET_READONLY   0x01
#define SET_UNLOCKED   0x02      /* incoming VM before the storage handoff */
#define SET_NO_BACKEND 0x04
#define SET_DISK_SHIFT 3         /* 2 bits: image size */
#define SET_DRIVER_UP  0x20      /* both drivers set up before the first op */

static void sink(void *opaque, const uint8_t *buf, size_t n)
{
	(void)opaque;
	(void)buf;
	(void)n;
}

static void rig_destroy(struct rig *r)
{
	struct vm *vm = r->vm;

	if (!vm)
		return;
	for (int i = vm->ndevices - 1; i >= 0; i--)
		if (vm->devices[i].destroy)
			vm->devices[i].destroy(vm->devices[i].opaque);
	if (r->peer >= 0)
		close(r->peer);
	free(vm);
	memset(r, 0, sizeof(*r));
	r->peer = -1;
}

/* machine_build's device part, in its order (uart, pci, blk, net). */
static void rig_build(struct rig *r, uint8_t setup, bool take_lock)
{
	struct vm_device ud = { .name = "uart", .version = UART_STATE_VERSION,
				.opaque = &r->uart, .save = uart_vm_save,
				.load = uart_vm_load, .poll_fd = -1 };
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	struct vm *vm = calloc(1, sizeof(*vm));
	struct err e;
	int sv[2] = { -1, -1 };

	if (!vm)
		fatal("out of memory");
	memset(r, 0, sizeof(*r));
	r->vm = vm;
	r->peer = -1;
	vm->kvm_fd = vm->vm_fd = vm->event_fd = -1;
	vm->mem = gm;
	if (uart_create(vm, &r->uart, sink, NULL, &e) < 0 || vm_add_device(vm, &ud, &e) < 0 ||
	    i8042_create(vm, &e) < 0 || pci_create(vm, &e) < 0 ||
	    virtio_blk_create_ex(vm, BLK_SLOT, disk_path, setup & SET_READONLY, take_lock, &e) < 0)
		fatal("building the machine: %s", e.msg);
	if (!(setup & SET_NO_BACKEND) &&
	    socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		fatal("socketpair: %s", strerror(errno));
	if (virtio_net_create_fd(vm, NET_SLOT, sv[0], sv[0] >= 0 ? "fuzz0" : NULL, mac, &e) < 0)
		fatal("building the machine: %s", e.msg);
	r->peer = sv[1];
	r->blk = virtio_blk_find(vm, 0);
	r->net = virtio_net_find(vm, 0);
	if (!r->blk || !r->net)
		fatal("devices not registered");
}

/* ---- guest side ---- */

static bool may_dma(struct rig *r);

static void port_io(struct rig *r, uint16_t port, bool is_write, uint8_t *data,
		    uint32_t size, uint32_t count)
{
	/* rep outs/ins arrive as count elements, as vcpu_handle_io passes them */
	for (uint32_t i = 0; i < count; i++) {
		dma_seen |= may_dma(r);
		iobus_dispatch(&r->vm->pio, port, is_write, data + i * size, size);
	}
	if (is_write && port >= LAYOUT_PCI_CONF_PORT && port < LAYOUT_PCI_CONF_PORT + 8)
		cfg_port_written = true;
}

static void outv(struct rig *r, uint16_t port, uint32_t size, uint32_t v)
{
	uint8_t d[4];
	le_put_u32(d, v);
	port_io(r, port, true, d, size, 1);
}

static uint32_t inv(struct rig *r, uint16_t port, uint32_t size)
{
	uint8_t d[4] = { 0 };
	port_io(r, port, false, d, size, 1);
	return le_get_u32(d) & (size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1);
}

static struct virtio_dev *vdev(struct rig *r, int which)
{
	return which ? virtio_net_dev(r->net) : virtio_blk_dev(r->blk);
}

/* Where the guest reaches a virtio device's registers: its BAR as it is now. */
static uint16_t bar(struct rig *r, int which)
{
	return vdev(r, which)->pci.claim_base;
}

static uint16_t take_port(struct rig *r, struct input *in)
{
	uint8_t t = in_u8(in), o = in_u8(in);

	switch (t % 7) {
	case 0: return (uint16_t)(LAYOUT_COM1_PORT + o % 16);
	case 1: return (uint16_t)(LAYOUT_I8042_PORT + o % 8);
	case 2: return (uint16_t)(LAYOUT_PCI_CONF_PORT + o % 8);
	case 3: return (uint16_t)(bar(r, 0) + o);
	case 4: return (uint16_t)(bar(r, 1) + o);
	case 5: return (uint16_t)(LAYOUT_PCI_IO_START + o * 4);
	default: return (uint16_t)(o | in_u8(in) << 8);
	}
}

/* Mostly addresses in or just past RAM; sometimes anything at all. */
static uint64_t take_gpa(struct input *in)
{
	uint8_t m = in_u8(in);

	switch (m % 4) {
	case 0: {
		uint32_t v = in_u16(in) | (uint32_t)in_u8(in) << 16;
		return v % (LOW_RAM + 8192);
	}
	case 1:
		return HIGH_GPA + in_u16(in) % (HIGH_RAM + 8192);
	case 2:
		return in_u32(in);
	default:
		return in_u64(in);
	}
}

/* Queue rings before a driver set them: where DRIVER_INIT puts them by default. */
static const uint32_t default_pfn[3] = { 1, 4, 7 };

/* The queue an operation names: blk, net RX or net TX. */
static void take_queue(struct input *in, int *which, uint16_t *q)
{
	uint8_t b = in_u8(in) % 3;
	*which = b ? 1 : 0;
	*q = b == 2 ? 1 : 0;
}

/* Where the named queue's rings are (its descriptor table). */
static uint64_t take_ring(struct rig *r, struct input *in)
{
	int which;
	uint16_t q;
	const struct virtq *vq;

	take_queue(in, &which, &q);
	vq = &vdev(r, which)->vq[q];
	return vq->ready ? vq->desc_gpa : (uint64_t)default_pfn[which + q] << 12;
}

/* A guest store into its RAM: KVM's dirty log sees it, so the shadow
 * follows it and the next device operation is judged on its own writes. */
static void guest_write(uint64_t gpa, const void *src, size_t len)
{
	uint8_t *p = gmem_ptr(&gm, gpa, len);
	int64_t off = gmem_offset(&gm, gpa);

	if (!p || off < 0)
		return; /* outside RAM: the store goes nowhere */
	memcpy(p, src, len);
	memcpy(shadow + off, src, len);
}

static void guest_write_u16(uint64_t gpa, uint16_t v)
{
	uint8_t b[2];
	le_put_u16(b, v);
	guest_write(gpa, b, 2);
}

static uint32_t take_pfn(struct input *in, uint32_t dflt)
{
	uint8_t p = in_u8(in);

	if (p == 0)
		return dflt;
	if (p == 0xff)
		return in_u32(in);
	if (p >= 0xf0)
		return (uint32_t)(HIGH_GPA >> 12) + (p & 7);
	return p % 44; /* some rings run past the end of low RAM */
}

/* The legacy bring-up a Linux driver does, with the guest's choices. */
static void driver_init(struct rig *r, int which, struct input *in, bool from_input)
{
	uint16_t io = bar(r, which);
	struct virtio_dev *vd = vdev(r, which);
	uint32_t feat;
	uint8_t status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			 VIRTIO_STATUS_DRIVER_OK;

	outv(r, io + VIRTIO_PCI_STATUS, 1, 0);
	outv(r, io + VIRTIO_PCI_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	outv(r, io + VIRTIO_PCI_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	feat = inv(r, io + VIRTIO_PCI_HOST_FEATURES, 4);
	if (from_input)
		feat ^= in_u32(in);
	outv(r, io + VIRTIO_PCI_GUEST_FEATURES, 4, feat);
	for (uint16_t q = 0; q < vd->nqueues; q++) {
		uint32_t dflt = default_pfn[which + q];
		outv(r, io + VIRTIO_PCI_QUEUE_SEL, 2, q);
		outv(r, io + VIRTIO_PCI_QUEUE_PFN, 4, from_input ? take_pfn(in, dflt) : dflt);
	}
	if (from_input && (in_u8(in) & 1))
		status = in_u8(in);
	outv(r, io + VIRTIO_PCI_STATUS, 1, status);
}

/* ---- the host side's checks ---- */

/* A device that may touch guest memory now. */
static bool may_dma(struct rig *r)
{
	for (int w = 0; w < 2; w++) {
		struct virtio_dev *vd = vdev(r, w);
		if (pci_bus_master(&vd->pci) && !virtio_is_broken(vd))
			return true;
	}
	return false;
}

/* After a device operation: each page that changed must be marked dirty
 * (or a move would leave it behind), and none may change if no device
 * could write. */
static void check_memory(void)
{
	for (uint32_t pg = 0; pg < RAM_PAGES; pg++) {
		uint8_t *now = gm.host + (uint64_t)pg * 4096, *was = shadow + (uint64_t)pg * 4096;
		if (!memcmp(now, was, 4096))
			continue;
		if (!dma_seen && !cfg_port_written)
			fatal("guest page %u changed while no device could write memory", pg);
		if (!(gm.vmm_dirty[pg / 64] & (1ULL << (pg % 64))))
			fatal("guest page %u changed by a device but not marked dirty", pg);
		memcpy(was, now, 4096);
	}
	memset(gm.vmm_dirty, 0, (RAM_PAGES + 63) / 64 * sizeof(uint64_t));
}

/* What the worker's main loop does when the NIC's poll fd is readable. */
static void main_loop_step(struct rig *r)
{
	for (int i = 0; i < r->vm->ndevices; i++) {
		struct vm_device *d = &r->vm->devices[i];
		struct epoll_event ev;
		if (d->poll_fd < 0 || !d->on_readable)
			continue;
		int ready = epoll_wait(d->poll_fd, &ev, 1, 0);
		if (ready < 0 && errno != EINTR)
			fatal("polling %s: %s", d->name, strerror(errno));
		if (ready > 0) {
			dma_seen |= may_dma(r);
			d->on_readable(d->opaque);
		}
	}
}

/* ---- migration ---- */

struct section {
	uint8_t *data;
	size_t len;
	uint32_t version;
};

static void sections_free(struct section *s, int n)
{
	for (int i = 0; i < n; i++)
		free(s[i].data);
}

static void save_all(struct rig *r, struct section *s)
{
	struct err e;

	for (int i = 0; i < r->vm->ndevices; i++) {
		struct vm_device *d = &r->vm->devices[i];
		struct stream w;
		stream_init_mem_writer(&w);
		if (d->save(d->opaque, &w, &e) < 0)
			fatal("saving %s: %s", d->name, e.msg);
		s[i].len = stream_mem_len(&w);
		s[i].data = malloc(s[i].len ? s[i].len : 1);
		if (!s[i].data)
			fatal("out of memory");
		memcpy(s[i].data, stream_mem_data(&w), s[i].len);
		s[i].version = d->version;
		stream_destroy(&w);
	}
}

/* vmstate_apply's device part: each section loaded and wholly consumed,
 * then the post-load hooks. */
static int load_all(struct rig *r, const struct section *s, struct err *e)
{
	for (int i = 0; i < r->vm->ndevices; i++) {
		struct vm_device *d = &r->vm->devices[i];
		struct stream rd;
		stream_init_mem_reader(&rd, s[i].data, s[i].len);
		if (d->load(d->opaque, &rd, s[i].version, e) < 0)
			return err_prefix(e, "restoring device %s", d->name);
		if (stream_check(&rd, e) < 0 || stream_remaining(&rd))
			return err_set(e, "section %s not consumed exactly", d->name);
	}
	for (int i = 0; i < r->vm->ndevices; i++) {
		struct vm_device *d = &r->vm->devices[i];
		if (d->post_load && d->post_load(d->opaque, e) < 0)
			return err_prefix(e, "after restoring device %s", d->name);
	}
	return 0;
}

/* Move the VM from *cur to the other rig. Modes: 0 the saved state as it
 * is (must restore, and save again to the same bytes); 1 a move called off
 * after the save (the source runs on); 2 a section patched; 3 a section
 * replaced by input. False when the destination refused the state: a
 * failed restore discards the VM, so the input ends. */
static bool migrate(struct rig **cur, uint8_t setup, struct input *in)
{
	struct rig *src = *cur, *dst = src == &rigs[0] ? &rigs[1] : &rigs[0];
	struct section s[VM_MAX_DEVICES];
	int nd = src->vm->ndevices;
	uint8_t mode = in_u8(in) % 4;
	bool locked = virtio_blk_locked(src->blk);
	struct err e;

	save_all(src, s);
	if (mode == 1) {
		sections_free(s, nd);
		return true;
	}
	if (mode >= 2) {
		struct section *t = &s[in_u8(in) % nd];
		if (mode == 2) {
			uint8_t how = in_u8(in);
			size_t off = in_u16(in) % (t->len + 1);
			const uint8_t *p;
			size_t n = in_take(in, &p, in_u8(in) % 64);
			if (how & 1) {
				t->len = off; /* cut short */
			} else {
				if (off + n > t->len) {
					uint8_t *g = realloc(t->data, off + n);
					if (!g)
						fatal("out of memory");
					t->data = g;
					t->len = off + n;
				}
				memcpy(t->data + off, p, n);
			}
			if (how & 2)
				t->version ^= in_u8(in);
		} else {
			const uint8_t *p;
			size_t n = in_take(in, &p, in_u16(in) % 2048);
			free(t->data);
			t->data = malloc(n ? n : 1);
			if (!t->data)
				fatal("out of memory");
			memcpy(t->data, p, n);
			t->len = n;
			t->version ^= in_u8(in) & 1;
		}
	}
	/* The source lets go of the disk (storage handoff) and is gone. */
	rig_destroy(src);
	rig_build(dst, setup, false);
	*cur = dst;
	if (load_all(dst, s, &e) < 0) {
		if (mode == 0)
			fatal("a state the source saved does not restore: %s", e.msg);
		sections_free(s, nd);
		return false;
	}
	if (locked && virtio_blk_take_lock(dst->blk, &e) < 0)
		fatal("taking the disk over: %s", e.msg);
	if (mode == 0) {
		struct section again[VM_MAX_DEVICES];
		save_all(dst, again);
		for (int i = 0; i < nd; i++)
			if (again[i].len != s[i].len || memcmp(again[i].data, s[i].data, s[i].len))
				fatal("%s saves differently after a move (%zu bytes, was %zu)",
				      dst->vm->devices[i].name, again[i].len, s[i].len);
		sections_free(again, nd);
	}
	sections_free(s, nd);
	return true;
}

/* ---- the operations ---- */

enum {
	OP_OUT, OP_IN, OP_POKE, OP_DESC, OP_AVAIL, OP_AVAIL_IDX, OP_KICK,
	OP_DRIVER_INIT, OP_CFG, OP_FRAME, OP_DRAIN, OP_RX, OP_FEED, OP_DISK,
	OP_ANNOUNCE, OP_MIGRATE, OP_COUNT
};

static bool is_guest_memory_op(uint8_t op)
{
	return op == OP_POKE || op == OP_DESC || op == OP_AVAIL || op == OP_AVAIL_IDX;
}

/* One operation; false when the VM is gone (restore refused, reset). */
static bool run_op(struct rig **cur, uint8_t setup, uint8_t op, struct input *in)
{
	struct rig *r = *cur;
	struct err e;

	switch (op) {
	case OP_OUT:
	case OP_IN: {
		uint16_t port = take_port(r, in);
		uint8_t w = in_u8(in);
		uint32_t size = (uint32_t[]){ 1, 2, 4 }[w % 3];
		uint32_t count = 1 + (w >> 4) % 4;
		uint8_t data[16];
		for (uint32_t i = 0; i < count; i++)
			le_put_u32(data + i * size, op == OP_OUT ? in_u32(in) : 0xa5a5a5a5u);
		port_io(r, port, op == OP_OUT, data, size, count);
		break;
	}
	case OP_POKE: {
		uint64_t gpa = take_gpa(in);
		const uint8_t *p;
		size_t n = in_take(in, &p, in_u8(in));
		guest_write(gpa, p, n);
		break;
	}
	case OP_DESC: {
		uint8_t d[16];
		uint64_t at = take_ring(r, in);
		at += 16ULL * in_u8(in);
		le_put_u64(d, take_gpa(in));
		le_put_u32(d + 8, (in_u8(in) & 1) ? in_u32(in) : in_u16(in));
		le_put_u16(d + 12, in_u8(in));
		le_put_u16(d + 14, in_u16(in));
		guest_write(at, d, sizeof(d));
		break;
	}
	case OP_AVAIL: {
		uint64_t avail = take_ring(r, in) + 16ULL * VIRTQ_MAX_SIZE;
		const uint8_t *idxp = gmem_ptr(&gm, avail + 2, 2);
		uint16_t idx;
		if (!idxp)
			break;
		idx = le_get_u16(idxp);
		guest_write_u16(avail + 4 + 2ULL * (idx % VIRTQ_MAX_SIZE), in_u16(in));
		guest_write_u16(avail + 2, (uint16_t)(idx + 1));
		break;
	}
	case OP_AVAIL_IDX: {
		uint64_t avail = take_ring(r, in) + 16ULL * VIRTQ_MAX_SIZE;
		guest_write_u16(avail, in_u16(in));
		guest_write_u16(avail + 2, in_u16(in));
		break;
	}
	case OP_KICK: {
		int which;
		uint16_t q;
		take_queue(in, &which, &q);
		outv(r, bar(r, which) + VIRTIO_PCI_QUEUE_NOTIFY, 2, q);
		break;
	}
	case OP_DRIVER_INIT:
		driver_init(r, in_u8(in) & 1, in, true);
		break;
	case OP_CFG: {
		uint8_t b = in_u8(in), reg = in_u8(in), w = in_u8(in);
		uint32_t size = (uint32_t[]){ 1, 2, 4 }[w % 3];
		uint32_t addr = 0x80000000u | (uint32_t)(b % 8) << 11 |
				(uint32_t)((b >> 3) & 7) << 8 | (reg & 0xfcu);
		if (b & 0x80)
			addr |= 1u << 16; /* bus 1: nothing there */
		outv(r, LAYOUT_PCI_CONF_PORT, 4, addr);
		if (w & 0x80)
			outv(r, (uint16_t)(LAYOUT_PCI_CONF_PORT + 4 + (reg & 3)), size, in_u32(in));
		else
			(void)inv(r, (uint16_t)(LAYOUT_PCI_CONF_PORT + 4 + (reg & 3)), size);
		break;
	}
	case OP_FRAME: {
		static uint8_t frame[FRAME_MAX];
		uint16_t want = in_u16(in);
		size_t len = (want & 0x8000) ? (size_t)FRAME_MAX - (want & 0x7fff) : want % 2048u;
		const uint8_t *p;
		size_t n = in_take(in, &p, len < 64 ? len : 64);
		memcpy(frame, p, n);
		memset(frame + n, 0x5a, len - n);
		if (r->peer >= 0)
			(void)send(r->peer, frame, len, MSG_DONTWAIT); /* a full queue drops */
		break;
	}
	case OP_DRAIN: {
		static uint8_t buf[FRAME_MAX];
		if (r->peer >= 0)
			while (recv(r->peer, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
				;
		break;
	}
	case OP_RX:
		/* on_readable with nothing to read, or after poll said so:
		 * the main loop can race with the guest */
		dma_seen |= may_dma(r);
		virtio_net_rx(r->net);
		break;
	case OP_FEED: {
		const uint8_t *p;
		size_t n = in_take(in, &p, in_u8(in) % 80);
		(void)uart_feed(&r->uart, p, n);
		break;
	}
	case OP_DISK: {
		uint8_t b = in_u8(in) % 3;
		int rc = b == 0 ? virtio_blk_release_lock(r->blk, &e) :
			 b == 1 ? virtio_blk_take_lock(r->blk, &e) :
				  virtio_blk_flush(r->blk, &e);
		if (rc < 0)
			fatal("disk %s: %s", b == 0 ? "release" : b == 1 ? "lock" : "flush", e.msg);
		break;
	}
	case OP_ANNOUNCE:
		/* fails for a multicast MAC the guest set: that is fine */
		(void)virtio_net_announce(r->net, &e);
		break;
	case OP_MIGRATE:
		if (!migrate(cur, setup, in))
			return false;
		break;
	}
	/* The guest resetting the machine (i8042) ends the VM. */
	return (*cur)->vm->exit_reason == VM_EXIT_NONE;
}

static void disk_reset(uint8_t setup)
{
	static const size_t sizes[4] = { DISK_SECTORS * 512, 0, 511, DISK_MAX };

	disk_len = sizes[(setup >> SET_DISK_SHIFT) & 3];
	if (ftruncate(disk_fd, 0) < 0 || pwrite(disk_fd, disk_init, disk_len, 0) != (ssize_t)disk_len)
		fatal("resetting the disk image: %s", strerror(errno));
}

/* A read-only disk, or one this VM never locked, must be as it was. */
static void check_disk(void)
{
	off_t end = lseek(disk_fd, 0, SEEK_END);

	if (end != (off_t)disk_len)
		fatal("disk image size changed to %lld (was %zu)", (long long)end, disk_len);
	if (pread(disk_fd, disk_now, disk_len, 0) != (ssize_t)disk_len)
		fatal("reading the disk image back: %s", strerror(errno));
	if (memcmp(disk_now, disk_init, disk_len))
		fatal("a read-only or unlocked disk image was written");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	char tmpl[256];

	(void)argc;
	(void)argv;
	/* libFuzzer closes fd 2 only after this returns */
	report_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
	if (report_fd < 0)
		report_fd = 2;
	/* Every message's formatting runs; run with -close_fd_mask=2 for quiet. */
	log_init("fuzz_devices", LOG_DEBUG);
	snprintf(tmpl, sizeof(tmpl), "%s/ferry-fuzz-disk-XXXXXX", dir ? dir : "/tmp");
	disk_fd = mkstemp(tmpl);
	if (disk_fd < 0)
		fatal("creating the disk image %s: %s", tmpl, strerror(errno));
	/* Unlinked at once, so no run leaves it behind; the devices open it
	 * again by its /proc name, as they would a path. */
	if (unlink(tmpl) < 0)
		fatal("removing %s: %s", tmpl, strerror(errno));
	snprintf(disk_path, sizeof(disk_path), "/proc/self/fd/%d", disk_fd);
	for (size_t i = 0; i < sizeof(disk_init); i++)
		disk_init[i] = (uint8_t)(i % 512 ? i * 7 + 3 : i / 512);
	gm.memfd = -1;
	gm.host = aligned_alloc(4096, RAM_BYTES);
	shadow = malloc(RAM_BYTES);
	gm.ram_size = RAM_BYTES;
	gm.nregions = 2;
	gm.regions[0] = (struct gmem_region){ .gpa = 0, .size = LOW_RAM, .offset = 0, .slot = 0 };
	gm.regions[1] = (struct gmem_region){ .gpa = HIGH_GPA, .size = HIGH_RAM, .offset = LOW_RAM,
					      .slot = 1 };
	gm.vmm_dirty = calloc((RAM_PAGES + 63) / 64, sizeof(uint64_t));
	if (!gm.host || !shadow || !gm.vmm_dirty)
		fatal("out of memory");
	rigs[0].peer = rigs[1].peer = -1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	uint8_t setup = in_u8(&in);
	bool readonly = setup & SET_READONLY, disk_owned = false;
	struct rig *r = &rigs[0];

	op_index = op_code = -1;
	dma_seen = cfg_port_written = false;
	memset(gm.host, 0, RAM_BYTES);
	memset(shadow, 0, RAM_BYTES);
	memset(gm.vmm_dirty, 0, (RAM_PAGES + 63) / 64 * sizeof(uint64_t));
	disk_reset(setup);
	rig_build(r, setup, !(setup & SET_UNLOCKED));
	if (setup & SET_DRIVER_UP) {
		driver_init(r, 0, &in, false);
		driver_init(r, 1, &in, false);
		check_memory();
	}
	for (int n = 0; n < MAX_OPS && in.n; n++) {
		uint8_t op = in_u8(&in) % OP_COUNT;
		bool guest = is_guest_memory_op(op), alive;

		op_index = n;
		op_code = op;
		dma_seen = may_dma(r);
		cfg_port_written = false;
		disk_owned |= virtio_blk_locked(r->blk);
		alive = run_op(&r, setup, op, &in);
		if (alive && !guest)
			main_loop_step(r);
		if (!guest)
			check_memory();
		if (!alive)
			break;
	}
	disk_owned |= r->vm && virtio_blk_locked(r->blk);
	rig_destroy(r);
	if (readonly || !disk_owned)
		check_disk();
	return 0;
}
