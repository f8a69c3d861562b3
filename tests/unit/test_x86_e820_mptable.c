/*
 * The machine description the guest reads before anything else: the e820
 * map for a small and a >4 GiB guest, and the MP table (checksums, CPU,
 * bus, IOAPIC, interrupt entries) parsed back the way Linux walks it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/stream.h"
#include "vmm/guestmem.h"
#include "vmm/x86/e820.h"
#include "vmm/x86/layout.h"
#include "vmm/x86/mptable.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

static void regions_for(struct guest_mem *gm, uint64_t size)
{
	memset(gm, 0, sizeof(*gm));
	gm->ram_size = size;
	gm->regions[0].size = size < LAYOUT_MMIO_HOLE_START ? size : LAYOUT_MMIO_HOLE_START;
	gm->nregions = 1;
	if (size > LAYOUT_MMIO_HOLE_START) {
		gm->regions[1].gpa = LAYOUT_HIGH_RAM_START;
		gm->regions[1].size = size - LAYOUT_MMIO_HOLE_START;
		gm->regions[1].offset = LAYOUT_MMIO_HOLE_START;
		gm->nregions = 2;
	}
}

static void test_e820_256m(void **state)
{
	struct guest_mem gm;
	struct e820_map m;
	struct err e;
	(void)state;

	regions_for(&gm, 256 * MiB);
	assert_int_equal(e820_build(&gm, &m, &e), 0);
	assert_int_equal(m.n, 3);
	assert_true(m.e[0].addr == 0 && m.e[0].size == 0x9fc00 && m.e[0].type == E820_RAM);
	assert_true(m.e[1].addr == 0x9fc00 && m.e[1].size == 0x100000 - 0x9fc00 &&
		    m.e[1].type == E820_RESERVED);
	assert_true(m.e[2].addr == MiB && m.e[2].size == 255 * MiB && m.e[2].type == E820_RAM);
	assert_true(e820_low_ram_end(&m) == 256 * MiB);
	assert_true(e820_is_ram(&m, 0x200000, 0x1000));
	assert_false(e820_is_ram(&m, 0x9fc00, 16));
	assert_false(e820_is_ram(&m, 256 * MiB - 0x1000, 0x2000));
	assert_false(e820_is_ram(&m, UINT64_MAX - 10, 100)); /* wraps */
}

static void test_e820_6g(void **state)
{
	struct guest_mem gm;
	struct e820_map m;
	struct err e;
	(void)state;

	regions_for(&gm, 6 * GiB);
	assert_int_equal(e820_build(&gm, &m, &e), 0);
	assert_int_equal(m.n, 4);
	assert_true(m.e[2].addr == MiB && m.e[2].addr + m.e[2].size == 3 * GiB);
	assert_true(m.e[3].addr == 4 * GiB && m.e[3].size == 3 * GiB && m.e[3].type == E820_RAM);
	assert_false(e820_is_ram(&m, LAYOUT_IOAPIC_BASE, 0x1000));
	assert_true(e820_is_ram(&m, 5 * GiB, MiB));
}

static void test_e820_bad_layout(void **state)
{
	struct guest_mem gm;
	struct e820_map m;
	struct err e;
	(void)state;

	regions_for(&gm, 256 * MiB);
	gm.regions[0].gpa = 0x1000;
	assert_int_equal(e820_build(&gm, &m, &e), -1);
	regions_for(&gm, 512 * 1024);
	assert_int_equal(e820_build(&gm, &m, &e), -1);
}

/* --- MP table --- */

struct ram {
	struct guest_mem gm;
};

static int ram_setup(void **state)
{
	struct ram *r = calloc(1, sizeof(*r));
	struct err e;
	assert_non_null(r);
	assert_int_equal(gmem_init(&r->gm, 32 * MiB, &e), 0);
	*state = r;
	return 0;
}

static int ram_teardown(void **state)
{
	struct ram *r = *state;
	gmem_destroy(&r->gm);
	free(r);
	return 0;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

static void test_mptable(void **state)
{
	struct ram *r = *state;
	struct err e;
	struct mptable_irq pci[2] = {
		{ .slot = 1, .pin = 0, .gsi = mptable_pci_slot_gsi(1) },
		{ .slot = 3, .pin = 0, .gsi = mptable_pci_slot_gsi(3) },
	};
	int nproc = 0, nbus = 0, nioapic = 0, nint = 0, nlint = 0, bsp = -1;
	int pin_of_isa[16], pci_gsi[32] = { 0 };

	memset(pin_of_isa, 0xff, sizeof(pin_of_isa));
	assert_int_equal(mptable_write(&r->gm, 4, pci, 2, &e), 0);

	/* Linux finds it through the BDA's EBDA segment. */
	uint8_t *bda = gmem_ptr(&r->gm, LAYOUT_BDA_EBDA_PTR, 2);
	uint64_t ebda = (uint64_t)le_get_u16(bda) << 4;
	assert_true(ebda == LAYOUT_EBDA_START);
	uint8_t *mpf = gmem_ptr(&r->gm, ebda, 16);
	assert_memory_equal(mpf, "_MP_", 4);
	assert_int_equal(mpf[8], 1);
	assert_int_equal(sum(mpf, 16), 0);
	assert_int_equal(mpf[11], 0); /* feature1 = 0: table present */

	uint32_t phys = le_get_u32(mpf + 4);
	uint8_t *mpc = gmem_ptr(&r->gm, phys, 44);
	assert_memory_equal(mpc, "PCMP", 4);
	uint16_t len = le_get_u16(mpc + 4);
	assert_true(phys + len <= 0xa0000);
	mpc = gmem_ptr(&r->gm, phys, len);
	assert_int_equal(sum(mpc, len), 0);
	assert_int_equal(mpc[6], 4);
	assert_true(le_get_u32(mpc + 36) == LAYOUT_LAPIC_BASE);

	uint16_t count = le_get_u16(mpc + 34);
	uint8_t *p = mpc + 44, *end = mpc + len;
	for (int i = 0; i < count; i++) {
		assert_true(p < end);
		switch (p[0]) {
		case MP_ENT_PROC:
			assert_int_equal(p[1], nproc);
			assert_true(p[3] & 1);
			if (p[3] & 2)
				bsp = p[1];
			nproc++;
			p += 20;
			break;
		case MP_ENT_BUS:
			assert_memory_equal(p + 2, p[1] == MPTABLE_BUS_PCI ? "PCI   " : "ISA   ", 6);
			nbus++;
			p += 8;
			break;
		case MP_ENT_IOAPIC:
			assert_int_equal(p[1], 4);
			assert_true(le_get_u32(p + 4) == LAYOUT_IOAPIC_BASE);
			nioapic++;
			p += 8;
			break;
		case MP_ENT_IOINT:
			assert_int_equal(p[6], 4);
			if (p[4] == MPTABLE_BUS_ISA && p[1] == MP_INT_INT)
				pin_of_isa[p[5]] = p[7];
			if (p[4] == MPTABLE_BUS_PCI) {
				assert_int_equal(le_get_u16(p + 2), MP_IRQ_PCI);
				assert_int_equal(p[5] & 3, 0); /* INTA# */
				pci_gsi[p[5] >> 2] = p[7];
			}
			nint++;
			p += 8;
			break;
		case MP_ENT_LINT:
			assert_int_equal(p[6], 0xff);
			assert_int_equal(p[7], p[1] == MP_INT_EXTINT ? 0 : 1);
			nlint++;
			p += 8;
			break;
		default:
			fail_msg("unknown MP entry type %u", p[0]);
		}
	}
	assert_ptr_equal(p, end);
	assert_int_equal(nproc, 4);
	assert_int_equal(bsp, 0);
	assert_int_equal(nbus, 2);
	assert_int_equal(nioapic, 1);
	assert_int_equal(nlint, 2);
	/* ExtINT + 15 ISA (no cascade) - 2 ISA lines PCI owns + 2 PCI. */
	assert_int_equal(nint, 1 + 15 - 2 + 2);
	assert_int_equal(pin_of_isa[LAYOUT_PCI_FIRST_GSI], -1);
	assert_int_equal(pin_of_isa[LAYOUT_PCI_FIRST_GSI + 1], 11);
	assert_int_equal(pin_of_isa[0], 2);
	assert_int_equal(pin_of_isa[4], LAYOUT_COM1_GSI);
	assert_int_equal(pin_of_isa[2], -1); /* the cascade is not routed */
	assert_int_equal(pin_of_isa[15], 15);
	assert_int_equal(pci_gsi[1], LAYOUT_PCI_FIRST_GSI);
	assert_int_equal(pci_gsi[3], LAYOUT_PCI_FIRST_GSI + 2);
}

static void test_mptable_bad_args(void **state)
{
	struct ram *r = *state;
	struct err e;
	struct mptable_irq bad = { .slot = 1, .pin = 0, .gsi = 30 };
	struct mptable_irq timer = { .slot = 1, .pin = 0, .gsi = 2 };

	assert_int_equal(mptable_write(&r->gm, 0, NULL, 0, &e), -1);
	assert_int_equal(mptable_write(&r->gm, LAYOUT_MAX_VCPUS + 1, NULL, 0, &e), -1);
	assert_int_equal(mptable_write(&r->gm, 1, &bad, 1, &e), -1);
	assert_non_null(strstr(e.msg, "gsi 30"));
	assert_int_equal(mptable_write(&r->gm, 1, &timer, 1, &e), -1);
	assert_int_equal(mptable_write(&r->gm, LAYOUT_MAX_VCPUS, NULL, 0, &e), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_e820_256m),
		cmocka_unit_test(test_e820_6g),
		cmocka_unit_test(test_e820_bad_layout),
		cmocka_unit_test_setup_teardown(test_mptable, ram_setup, ram_teardown),
		cmocka_unit_test_setup_teardown(test_mptable_bad_args, ram_setup, ram_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
