/*
 * virtio-net without a real tap: a SOCK_DGRAM socketpair stands in for it
 * (both carry whole frames). Checks header strip/add, that received frames
 * wait in the backend until the guest posts buffers, the RARP announce
 * format, and the state round trip carrying the MAC.
 */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/stream.h"
#include "devices/pci.h"
#include "devices/virtio_net.h"
#include "vmm/vm.h"

#define RAM_SIZE (1u << 20)
#define RX_PFN   0x10
#define TX_PFN   0x20
#define BUF_GPA  0x40000ULL
#define IO       LAYOUT_PCI_IO_START

struct fixture {
	struct vm *vm;
	struct virtio_net *net;
	int peer;                  /* the "network" side of the fake tap */
	uint16_t rx_avail, tx_avail;
};

static const uint8_t MAC[6] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc };

static void out(struct vm *vm, uint16_t port, uint32_t size, uint32_t v)
{
	uint8_t d[4];
	le_put_u32(d, v);
	iobus_dispatch(&vm->pio, port, true, d, size);
}

static uint32_t in(struct vm *vm, uint16_t port, uint32_t size)
{
	uint8_t d[4] = { 0 };
	uint32_t v = 0;
	iobus_dispatch(&vm->pio, port, false, d, size);
	for (uint32_t i = size; i-- > 0;)
		v = (v << 8) | d[i];
	return v;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct vm *vm = calloc(1, sizeof(*vm));
	int sv[2];
	struct err e;

	assert_non_null(f);
	assert_non_null(vm);
	vm->kvm_fd = vm->vm_fd = -1;
	vm->mem.memfd = -1;
	vm->mem.host = calloc(1, RAM_SIZE);
	vm->mem.ram_size = RAM_SIZE;
	vm->mem.nregions = 1;
	vm->mem.regions[0] = (struct gmem_region){ .gpa = 0, .size = RAM_SIZE };
	vm->mem.vmm_dirty = calloc(RAM_SIZE / GMEM_PAGE_SIZE / 64 + 1, 8);
	assert_int_equal(pci_create(vm, &e), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv), 0);
	if (virtio_net_create_fd(vm, 1, sv[0], "fake0", MAC, &e) < 0)
		fail_msg("create: %s", e.msg);
	f->vm = vm;
	f->peer = sv[1];
	f->net = virtio_net_find(vm, 0);
	assert_non_null(f->net);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	for (int i = f->vm->ndevices - 1; i >= 0; i--)
		if (f->vm->devices[i].destroy)
			f->vm->devices[i].destroy(f->vm->devices[i].opaque);
	close(f->peer);
	free(f->vm->mem.host);
	free(f->vm->mem.vmm_dirty);
	free(f->vm);
	free(f);
	return 0;
}

static void driver_init(struct vm *vm)
{
	out(vm, IO + VIRTIO_PCI_STATUS, 1, 0);
	out(vm, IO + VIRTIO_PCI_STATUS, 1, 3);
	out(vm, IO + VIRTIO_PCI_GUEST_FEATURES, 4, in(vm, IO + VIRTIO_PCI_HOST_FEATURES, 4));
	out(vm, IO + VIRTIO_PCI_QUEUE_SEL, 2, 0);
	out(vm, IO + VIRTIO_PCI_QUEUE_PFN, 4, RX_PFN);
	out(vm, IO + VIRTIO_PCI_QUEUE_SEL, 2, 1);
	out(vm, IO + VIRTIO_PCI_QUEUE_PFN, 4, TX_PFN);
	out(vm, IO + VIRTIO_PCI_STATUS, 1, 7);
}

static uint8_t *ram(struct vm *vm, uint64_t gpa) { return vm->mem.host + gpa; }

static void set_desc(struct vm *vm, uint32_t pfn, uint16_t i, uint64_t addr,
		     uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = ram(vm, ((uint64_t)pfn << 12) + 16ULL * i);
	le_put_u64(d, addr);
	le_put_u32(d + 8, len);
	le_put_u16(d + 12, flags);
	le_put_u16(d + 14, next);
}

static void make_avail(struct vm *vm, uint32_t pfn, uint16_t *idx, uint16_t head)
{
	uint8_t *a = ram(vm, ((uint64_t)pfn << 12) + 16 * 256);
	le_put_u16(a + 4 + 2 * (*idx % 256), head);
	(*idx)++;
	le_put_u16(a + 2, *idx);
}

static uint8_t *used_entry(struct vm *vm, uint32_t pfn, uint16_t n)
{
	return ram(vm, ((uint64_t)pfn << 12) + 0x2000 + 4 + 8ULL * n);
}

static bool epoll_ready(struct fixture *f)
{
	struct pollfd p = { .fd = f->vm->devices[1].poll_fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1;
}

static void test_config_and_mac(void **state)
{
	struct fixture *f = *state;
	uint8_t mac[6];
	struct err e;

	driver_init(f->vm);
	for (int i = 0; i < 6; i++)
		assert_int_equal(in(f->vm, IO + VIRTIO_PCI_CONFIG + i, 1), MAC[i]);
	assert_int_equal(in(f->vm, IO + VIRTIO_PCI_CONFIG + 6, 2), VIRTIO_NET_S_LINK_UP);
	assert_true(in(f->vm, IO + VIRTIO_PCI_HOST_FEATURES, 4) & VIRTIO_NET_F_MAC);
	assert_int_equal(virtio_net_parse_mac("02:00:00:00:00:01", mac, &e), 0);
	assert_int_equal(mac[5], 1);
	assert_int_equal(virtio_net_parse_mac("02:00:00:00:00", mac, &e), -1);
	assert_int_equal(virtio_net_parse_mac("01:00:00:00:00:01", mac, &e), -1);
	assert_int_equal(virtio_net_parse_mac("02:00:00:00:00:01x", mac, &e), -1);
}

static void test_tx(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[100], got[200];

	driver_init(f->vm);
	for (unsigned i = 0; i < sizeof(frame); i++)
		frame[i] = (uint8_t)i;
	memset(ram(f->vm, BUF_GPA), 0x77, VIRTIO_NET_HDR_LEN);
	memcpy(ram(f->vm, BUF_GPA + 0x100), frame, sizeof(frame));
	set_desc(f->vm, TX_PFN, 0, BUF_GPA, VIRTIO_NET_HDR_LEN, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f->vm, TX_PFN, 1, BUF_GPA + 0x100, sizeof(frame), 0, 0);
	make_avail(f->vm, TX_PFN, &f->tx_avail, 0);
	out(f->vm, IO + VIRTIO_PCI_QUEUE_NOTIFY, 2, VIRTIO_NET_TXQ);
	/* Header stripped, frame intact. */
	assert_int_equal(recv(f->peer, got, sizeof(got), 0), sizeof(frame));
	assert_memory_equal(got, frame, sizeof(frame));
	assert_int_equal(le_get_u32(used_entry(f->vm, TX_PFN, 0)), 0);
	assert_int_equal(in(f->vm, IO + VIRTIO_PCI_ISR, 1), VIRTIO_ISR_QUEUE);
}

static void test_rx_waits_for_buffers(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[64];
	uint8_t zero[VIRTIO_NET_HDR_LEN] = { 0 };

	driver_init(f->vm);
	memset(frame, 0x42, sizeof(frame));
	assert_int_equal(send(f->peer, frame, sizeof(frame), 0), sizeof(frame));
	/* No buffers posted: not polled, and a stray call drops nothing. */
	assert_false(epoll_ready(f));
	virtio_net_rx(f->net);

	memset(ram(f->vm, BUF_GPA), 0xee, 0x1000);
	set_desc(f->vm, RX_PFN, 0, BUF_GPA, VIRTIO_NET_HDR_LEN,
		 VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	set_desc(f->vm, RX_PFN, 1, BUF_GPA + 0x100, 1514, VIRTQ_DESC_F_WRITE, 0);
	make_avail(f->vm, RX_PFN, &f->rx_avail, 0);
	out(f->vm, IO + VIRTIO_PCI_QUEUE_NOTIFY, 2, VIRTIO_NET_RXQ);
	/* Buffers posted: the main loop would now wake up. */
	assert_true(epoll_ready(f));
	memset(f->vm->mem.vmm_dirty, 0, (RAM_SIZE / GMEM_PAGE_SIZE / 64 + 1) * 8);
	virtio_net_rx(f->net);
	assert_memory_equal(ram(f->vm, BUF_GPA), zero, sizeof(zero));
	assert_memory_equal(ram(f->vm, BUF_GPA + 0x100), frame, sizeof(frame));
	assert_int_equal(le_get_u32(used_entry(f->vm, RX_PFN, 0) + 4),
			 VIRTIO_NET_HDR_LEN + sizeof(frame));
	assert_true(f->vm->mem.vmm_dirty[BUF_GPA >> 18] & (1ULL << ((BUF_GPA >> 12) % 64)));
	/* Ring empty again: no longer polled, the next frame waits. */
	assert_int_equal(send(f->peer, frame, 10, 0), 10);
	assert_false(epoll_ready(f));
}

static void test_announce(void **state)
{
	struct fixture *f = *state;
	uint8_t got[128];
	struct err e;

	assert_int_equal(virtio_net_announce(f->net, &e), 0);
	assert_int_equal(recv(f->peer, got, sizeof(got), 0), 60);
	for (int i = 0; i < 6; i++)
		assert_int_equal(got[i], 0xff);
	assert_memory_equal(got + 6, MAC, 6);
	assert_int_equal(got[12] << 8 | got[13], 0x8035);
	assert_int_equal(got[20] << 8 | got[21], 3); /* reverse request */
	assert_memory_equal(got + 22, MAC, 6);
	assert_memory_equal(got + 32, MAC, 6);
}

static void cfg_write(struct vm *vm, unsigned reg, uint32_t size, uint32_t v)
{
	out(vm, LAYOUT_PCI_CONF_PORT, 4, 0x80000000u | (1u << 11) | (reg & 0xfc));
	out(vm, (uint16_t)(LAYOUT_PCI_CONF_PORT + 4 + (reg & 3)), size, v);
}

static uint32_t cfg_read(struct vm *vm, unsigned reg, uint32_t size)
{
	out(vm, LAYOUT_PCI_CONF_PORT, 4, 0x80000000u | (1u << 11) | (reg & 0xfc));
	return in(vm, (uint16_t)(LAYOUT_PCI_CONF_PORT + 4 + (reg & 3)), size);
}

/* COMMAND's INTx Disable masks the line while set and lets a pending
 * interrupt through when cleared; STATUS bit 3 shows the pending one
 * either way (Linux's INTx masking relies on both). */
static void test_intx_disable(void **state)
{
	struct fixture *f = *state;
	struct virtio_dev *vd = virtio_net_dev(f->net);
	const uint32_t on = PCI_COMMAND_IO | PCI_COMMAND_MASTER;

	driver_init(f->vm);
	assert_false(cfg_read(f->vm, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	virtio_notify_config(vd);
	assert_true(vd->irq_level);
	assert_true(cfg_read(f->vm, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	assert_true(cfg_read(f->vm, PCI_COMMAND, 4) & (PCI_STATUS_INTERRUPT << 16));
	cfg_write(f->vm, PCI_COMMAND, 2, on | PCI_COMMAND_INTX_DISABLE);
	assert_false(vd->irq_level);
	assert_true(cfg_read(f->vm, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	cfg_write(f->vm, PCI_COMMAND, 2, on);
	assert_true(vd->irq_level);
	in(f->vm, IO + VIRTIO_PCI_ISR, 1); /* acknowledged */
	assert_false(vd->irq_level);
	assert_false(cfg_read(f->vm, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	cfg_write(f->vm, PCI_COMMAND, 2, on | PCI_COMMAND_INTX_DISABLE);
	virtio_notify_config(vd); /* raised while masked */
	assert_false(vd->irq_level);
	cfg_write(f->vm, PCI_COMMAND, 2, on);
	assert_true(vd->irq_level);
}

/* Bus mastering off (Linux clears it before kexec): no frame reaches
 * guest memory and the tap is not polled; on again, the frame goes in. */
static void test_bus_master(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[64];

	driver_init(f->vm);
	assert_true(cfg_read(f->vm, PCI_COMMAND, 2) & PCI_COMMAND_MASTER); /* as firmware leaves it */
	set_desc(f->vm, RX_PFN, 0, BUF_GPA, 2048, VIRTQ_DESC_F_WRITE, 0);
	make_avail(f->vm, RX_PFN, &f->rx_avail, 0);
	out(f->vm, IO + VIRTIO_PCI_QUEUE_NOTIFY, 2, VIRTIO_NET_RXQ);
	cfg_write(f->vm, PCI_COMMAND, 2, PCI_COMMAND_IO);
	memset(frame, 0x42, sizeof(frame));
	assert_int_equal(send(f->peer, frame, sizeof(frame), 0), sizeof(frame));
	assert_false(epoll_ready(f));
	virtio_net_rx(f->net);
	assert_int_equal(virtio_net_dev(f->net)->vq[VIRTIO_NET_RXQ].used_idx, 0);
	assert_int_equal(ram(f->vm, BUF_GPA + VIRTIO_NET_HDR_LEN)[0], 0);
	cfg_write(f->vm, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MASTER);
	assert_true(epoll_ready(f));
	virtio_net_rx(f->net);
	assert_int_equal(virtio_net_dev(f->net)->vq[VIRTIO_NET_RXQ].used_idx, 1);
	assert_memory_equal(ram(f->vm, BUF_GPA + VIRTIO_NET_HDR_LEN), frame, sizeof(frame));
}

static void test_no_backend(void **state)
{
	struct fixture *f = *state;
	struct err e;

	assert_int_equal(virtio_net_create(f->vm, 2, NULL, NULL, NULL, &e), 0);
	struct virtio_net *n2 = virtio_net_find(f->vm, 1);
	assert_non_null(n2);
	assert_int_equal(f->vm->devices[2].poll_fd, -1);
	assert_int_equal(virtio_net_announce(n2, &e), 0);
	uint8_t mac[6];
	virtio_net_get_mac(n2, mac);
	assert_int_equal(mac[0], 0x52);
}

static void test_state_round_trip(void **state)
{
	struct fixture *f = *state;
	struct virtio_net_state st, st2;
	struct stream w, r;
	struct err e;
	uint8_t newmac[6] = { 0x02, 1, 2, 3, 4, 5 }, mac[6];

	driver_init(f->vm);
	/* Legacy drivers may set the MAC through config; it must travel. */
	for (int i = 0; i < 6; i++)
		out(f->vm, IO + VIRTIO_PCI_CONFIG + i, 1, newmac[i]);
	virtio_net_save(f->net, &st);
	stream_init_mem_writer(&w);
	virtio_net_state_encode(&w, &st);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(virtio_net_state_decode(&r, VIRTIO_NET_STATE_VERSION, &st2, &e), 0);
	out(f->vm, IO + VIRTIO_PCI_STATUS, 1, 0); /* wipe the live device */
	assert_int_equal(virtio_net_restore(f->net, &st2, &e), 0);
	virtio_net_get_mac(f->net, mac);
	assert_memory_equal(mac, newmac, 6);
	assert_int_equal(virtio_net_dev(f->net)->vq[1].pfn, TX_PFN);
	assert_int_equal(in(f->vm, IO + VIRTIO_PCI_STATUS, 1), 7);
	/* A guest that wrote a multicast MAC still moves (the destination
	 * takes what the source device held); it is only not announced. */
	st2.mac[0] = 0x01;
	assert_int_equal(virtio_net_restore(f->net, &st2, &e), 0);
	virtio_net_get_mac(f->net, mac);
	assert_int_equal(mac[0], 0x01);
	assert_int_equal(virtio_net_announce(f->net, &e), -1);
	assert_non_null(strstr(e.msg, "multicast"));
	assert_int_equal(recv(f->peer, mac, sizeof(mac), MSG_DONTWAIT), -1);
	/* A link status bit this device never reports is corruption: the
	 * guest would read it from config space as a state it cannot be in. */
	st2.status = 0x8001;
	assert_int_equal(virtio_net_restore(f->net, &st2, &e), -1);
	assert_non_null(strstr(e.msg, "link status"));
	stream_destroy(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_config_and_mac, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_waits_for_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_announce, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_backend, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intx_disable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bus_master, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_round_trip, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
