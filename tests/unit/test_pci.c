/*
 * PCI host bridge through the conf1 ports as a guest would use them:
 * identification, unclaimed slots, write masks, BAR sizing and moves (seen
 * on the port bus), and the state round trip with its mismatch checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/stream.h"
#include "devices/pci.h"
#include "vmm/iobus.h"

struct fixture {
	struct iobus pio;
	struct pci_bus bus;
	struct pci_dev dev;
	int bar_hits;
	uint16_t last_off;
};

static void bar_fn(void *opaque, uint16_t port, bool is_write, uint8_t *data,
		   uint32_t size)
{
	struct fixture *f = opaque;
	f->bar_hits++;
	f->last_off = port;
	if (!is_write)
		memset(data, 0x5a, size);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct err e;

	assert_non_null(f);
	assert_int_equal(pci_bus_init(&f->bus, &f->pio, &e), 0);
	pci_dev_init(&f->dev, 0x1af4, 0x1001, 0x010000, 0x1af4, 2);
	assert_int_equal(pci_add_device(&f->bus, 1, &f->dev, 0x100, bar_fn, f, &e), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

static void outl(struct fixture *f, uint16_t port, uint32_t v)
{
	uint8_t d[4];
	le_put_u32(d, v);
	iobus_dispatch(&f->pio, port, true, d, 4);
}

static uint32_t in(struct fixture *f, uint16_t port, uint32_t size)
{
	uint8_t d[4] = { 0 };
	uint32_t v = 0;
	iobus_dispatch(&f->pio, port, false, d, size);
	for (uint32_t i = size; i-- > 0;)
		v = (v << 8) | d[i];
	return v;
}

static void out(struct fixture *f, uint16_t port, uint32_t size, uint32_t v)
{
	uint8_t d[4];
	le_put_u32(d, v);
	iobus_dispatch(&f->pio, port, true, d, size);
}

static uint32_t cfg_addr(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
	return 0x80000000u | bus << 16 | dev << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t cfg_read(struct fixture *f, unsigned dev, unsigned reg, uint32_t size)
{
	outl(f, 0xcf8, cfg_addr(0, dev, 0, reg));
	return in(f, (uint16_t)(0xcfc + (reg & 3)), size);
}

static void cfg_write(struct fixture *f, unsigned dev, unsigned reg, uint32_t size,
		      uint32_t v)
{
	outl(f, 0xcf8, cfg_addr(0, dev, 0, reg));
	out(f, (uint16_t)(0xcfc + (reg & 3)), size, v);
}

static void test_host_bridge(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(cfg_read(f, 0, 0x00, 4), 0x12378086);
	assert_int_equal(cfg_read(f, 0, 0x08, 4) >> 8, 0x060000);
	assert_int_equal(cfg_read(f, 0, 0x0e, 1), 0);
	/* The address latch reads back (Linux's conf1 probe relies on it),
	 * without the reserved and low bits. */
	outl(f, 0xcf8, 0xffffffff);
	assert_int_equal(in(f, 0xcf8, 4), 0x80fffffc);
	/* A byte write to 0xcfb (part of Linux's probe) is harmless. */
	out(f, 0xcfb, 1, 0x01);
	assert_int_equal(in(f, 0xcf8, 4), 0x80fffffc);
}

static void test_device_ids(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(cfg_read(f, 1, 0x00, 4), 0x10011af4);
	/* 16- and 8-bit accesses at 0xcfc + offset. */
	assert_int_equal(cfg_read(f, 1, 0x02, 2), 0x1001);
	assert_int_equal(cfg_read(f, 1, 0x01, 1), 0x1a);
	assert_int_equal(cfg_read(f, 1, 0x2e, 2), 2);
	assert_int_equal(cfg_read(f, 1, 0x0b, 1), 0x01);
	/* INTA#, line = GSI of slot 1. */
	assert_int_equal(cfg_read(f, 1, 0x3d, 1), 1);
	assert_int_equal(cfg_read(f, 1, 0x3c, 1), LAYOUT_PCI_FIRST_GSI);
	assert_int_equal(f->dev.gsi, LAYOUT_PCI_FIRST_GSI);
}

static void test_unclaimed(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(cfg_read(f, 3, 0x00, 4), 0xffffffff);
	assert_int_equal(cfg_read(f, 31, 0x00, 2), 0xffff);
	/* Other functions and buses are empty. */
	outl(f, 0xcf8, cfg_addr(0, 1, 1, 0));
	assert_int_equal(in(f, 0xcfc, 4), 0xffffffff);
	outl(f, 0xcf8, cfg_addr(1, 1, 0, 0));
	assert_int_equal(in(f, 0xcfc, 4), 0xffffffff);
	/* Enable bit clear: nothing is addressed. */
	outl(f, 0xcf8, cfg_addr(0, 1, 0, 0) & ~0x80000000u);
	assert_int_equal(in(f, 0xcfc, 4), 0xffffffff);
	/* Writes to an empty slot go nowhere and do not crash. */
	cfg_write(f, 4, 0x10, 4, 0xffffffff);
	assert_int_equal(cfg_read(f, 4, 0x10, 4), 0xffffffff);
}

static void test_read_only_fields(void **state)
{
	struct fixture *f = *state;

	cfg_write(f, 1, 0x00, 4, 0xdeadbeef);
	assert_int_equal(cfg_read(f, 1, 0x00, 4), 0x10011af4);
	cfg_write(f, 1, 0x3d, 1, 4);
	assert_int_equal(cfg_read(f, 1, 0x3d, 1), 1);
	/* Interrupt line is a scratch register for the OS. */
	cfg_write(f, 1, 0x3c, 1, 0x33);
	assert_int_equal(cfg_read(f, 1, 0x3c, 1), 0x33);
	/* Only the command bits we implement stick. */
	cfg_write(f, 1, 0x04, 2, 0xffff);
	assert_int_equal(cfg_read(f, 1, 0x04, 2), 0x0407);
	/* Unimplemented BARs read as zero even after all-ones. */
	cfg_write(f, 1, 0x14, 4, 0xffffffff);
	assert_int_equal(cfg_read(f, 1, 0x14, 4), 0);
}

static void test_bar_sizing(void **state)
{
	struct fixture *f = *state;
	uint32_t orig = cfg_read(f, 1, 0x10, 4);

	assert_int_equal(orig, LAYOUT_PCI_IO_START | 1);
	/* Pre-enabled so a guest without an allocator can use it. */
	assert_int_equal(cfg_read(f, 1, 0x04, 2) & PCI_COMMAND_IO, PCI_COMMAND_IO);
	in(f, LAYOUT_PCI_IO_START + 4, 4);
	assert_int_equal(f->bar_hits, 1);
	assert_int_equal(f->last_off, 4);

	/* Linux: decode off, all ones, read size, restore, decode on. */
	cfg_write(f, 1, 0x04, 2, 0);
	cfg_write(f, 1, 0x10, 4, 0xffffffff);
	assert_int_equal(cfg_read(f, 1, 0x10, 4), 0xffffff01);
	assert_int_equal(pci_bar_base(&f->dev), 0);
	cfg_write(f, 1, 0x10, 4, orig);
	cfg_write(f, 1, 0x04, 2, PCI_COMMAND_IO);
	assert_int_equal(cfg_read(f, 1, 0x10, 4), orig);
	assert_int_equal(pci_bar_base(&f->dev), LAYOUT_PCI_IO_START);

	/* Even sizing with decode left on must not map the BAR at 0xff00. */
	cfg_write(f, 1, 0x10, 4, 0xffffffff);
	f->bar_hits = 0;
	assert_int_equal(in(f, 0xff00, 4), 0xffffffff);
	assert_int_equal(in(f, LAYOUT_PCI_IO_START, 4), 0xffffffff);
	assert_int_equal(f->bar_hits, 0);
	cfg_write(f, 1, 0x10, 4, orig);
	assert_int_equal(in(f, LAYOUT_PCI_IO_START, 4), 0x5a5a5a5a);
}

static void test_bar_move(void **state)
{
	struct fixture *f = *state;

	cfg_write(f, 1, 0x10, 4, 0xd000);
	/* The I/O flag is read-only, the address aligned to the size. */
	assert_int_equal(cfg_read(f, 1, 0x10, 4), 0xd001);
	assert_int_equal(pci_bar_base(&f->dev), 0xd000);
	f->bar_hits = 0;
	assert_int_equal(in(f, 0xd010, 2), 0x5a5a);
	assert_int_equal(f->last_off, 0x10);
	assert_int_equal(in(f, LAYOUT_PCI_IO_START + 0x10, 2), 0xffff);
	assert_int_equal(f->bar_hits, 1);
	/* Unaligned addresses are rounded down by the mask. */
	cfg_write(f, 1, 0x10, 4, 0xe080);
	assert_int_equal(cfg_read(f, 1, 0x10, 4), 0xe001);
	/* I/O decode off: not reachable. */
	cfg_write(f, 1, 0x04, 2, 0);
	assert_int_equal(in(f, 0xe000, 1), 0xff);
	assert_int_equal(f->bar_hits, 1);
}

static void test_state_round_trip(void **state)
{
	struct fixture *f = *state;
	struct fixture *g = calloc(1, sizeof(*g));
	struct pci_state *st = malloc(sizeof(*st)), *st2 = malloc(sizeof(*st2));
	struct stream w, r;
	struct err e;

	assert_non_null(g);
	cfg_write(f, 1, 0x10, 4, 0xd000);
	cfg_write(f, 1, 0x3c, 1, 0x0b);
	outl(f, 0xcf8, cfg_addr(0, 1, 0, 0x3c));
	pci_save(&f->bus, st);
	stream_init_mem_writer(&w);
	pci_state_encode(&w, st);
	assert_true(stream_ok(&w));

	/* Destination: same devices, fresh state. */
	assert_int_equal(pci_bus_init(&g->bus, &g->pio, &e), 0);
	pci_dev_init(&g->dev, 0x1af4, 0x1001, 0x010000, 0x1af4, 2);
	assert_int_equal(pci_add_device(&g->bus, 1, &g->dev, 0x100, bar_fn, g, &e), 0);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(pci_state_decode(&r, PCI_STATE_VERSION, st2, &e), 0);
	assert_int_equal(pci_restore(&g->bus, st2, &e), 0);
	/* BAR re-registered at the saved address, latch restored. */
	assert_int_equal(pci_bar_base(&g->dev), 0xd000);
	assert_int_equal(in(g, 0xd000, 1), 0x5a);
	assert_int_equal(g->bar_hits, 1);
	assert_int_equal(in(g, LAYOUT_PCI_IO_START, 1), 0xff);
	assert_int_equal(in(g, 0xcfc, 1), 0x0b);

	/* Truncated stream: decode fails cleanly. */
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w) - 1);
	assert_int_equal(pci_state_decode(&r, PCI_STATE_VERSION, st2, &e), -1);
	/* Unknown version. */
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(pci_state_decode(&r, 99, st2, &e), -1);

	/* A different device in the saved state is refused, bus unchanged. */
	memcpy(st2, st, sizeof(*st));
	le_put_u16(st2->cfg[1] + PCI_DEVICE_ID, 0x1000);
	st2->cfg[1][PCI_BAR0 + 1] = 0xe0;
	assert_int_equal(pci_restore(&g->bus, st2, &e), -1);
	assert_non_null(strstr(e.msg, "different device"));
	assert_int_equal(pci_bar_base(&g->dev), 0xd000);
	/* A device present on one side only. */
	memcpy(st2, st, sizeof(*st));
	st2->present[2] = 1;
	assert_int_equal(pci_restore(&g->bus, st2, &e), -1);
	/* The other way round: a device here the source never had would
	 * take the saved slot's zeros as its config space. */
	memcpy(st2, st, sizeof(*st));
	st2->present[1] = 0;
	assert_int_equal(pci_restore(&g->bus, st2, &e), -1);
	/* Every read-only byte counts, not only the IDs: a different
	 * subsystem (0x2e) or class (0x0b) is another device to the guest. */
	memcpy(st2, st, sizeof(*st));
	st2->cfg[1][0x2e] ^= 1;
	assert_int_equal(pci_restore(&g->bus, st2, &e), -1);
	memcpy(st2, st, sizeof(*st));
	st2->cfg[1][0x0b] ^= 1;
	assert_int_equal(pci_restore(&g->bus, st2, &e), -1);

	stream_destroy(&w);
	free(st);
	free(st2);
	free(g);
}

static void test_slot_checks(void **state)
{
	struct fixture *f = *state;
	struct pci_dev d2;
	struct err e;

	pci_dev_init(&d2, 0x1af4, 0x1000, 0x020000, 0x1af4, 1);
	assert_int_equal(pci_add_device(&f->bus, 1, &d2, 0x100, bar_fn, f, &e), -1);
	assert_int_equal(pci_add_device(&f->bus, 0, &d2, 0x100, bar_fn, f, &e), -1);
	assert_int_equal(pci_add_device(&f->bus, LAYOUT_PCI_MAX_SLOTS + 1, &d2, 0x100,
					bar_fn, f, &e), -1);
	assert_int_equal(pci_add_device(&f->bus, 2, &d2, 0x30, bar_fn, f, &e), -1);
	assert_int_equal(pci_add_device(&f->bus, 2, &d2, 0x100, bar_fn, f, &e), 0);
	assert_int_equal(cfg_read(f, 2, 0x10, 4),
			 (LAYOUT_PCI_IO_START + LAYOUT_PCI_IO_BAR_SIZE) | 1);
	assert_int_equal(cfg_read(f, 2, 0x3c, 1), LAYOUT_PCI_FIRST_GSI + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_host_bridge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unclaimed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slot_checks, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
