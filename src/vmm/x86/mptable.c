/*
 * MP table writer (see mptable.h). The whole table is built in a local
 * buffer, checksummed, and written with one gmem_write, so the guest never
 * sees half a table and the VMM-dirty bitmap records it.
 */
#include "vmm/x86/mptable.h"

#include <string.h>

#include "common/stream.h"

#define MPF_SIZE       16
#define MPC_HDR_SIZE   44
#define MP_PROC_SIZE   20
#define MP_SMALL_SIZE  8
#define MP_SPEC_REV    4       /* MP spec 1.4 */
#define APIC_VERSION   0x14    /* an integrated xAPIC */
#define IOAPIC_VERSION 0x11
#define CPU_FLAG_EN    0x1
#define CPU_FLAG_BP    0x2
/* Family 6 signature and the FPU|APIC feature bits, as QEMU/Firecracker
 * advertise; Linux reads the real values from CPUID anyway. */
#define CPU_SIGNATURE  0x600
#define CPU_FEATURES   0x201
#define ISA_IRQS       16
#define PIT_IRQ        0
#define CASCADE_IRQ    2

/* Room for the floating pointer, header and the largest table we build. */
#define MPT_MAX (MPF_SIZE + MPC_HDR_SIZE + LAYOUT_MAX_VCPUS * MP_PROC_SIZE + \
		 (2 + 1 + (ISA_IRQS + 1) + LAYOUT_PCI_MAX_SLOTS * 4 + 2) * MP_SMALL_SIZE)

/* Linux scans only the first KiB of the EBDA for the floating pointer, and
 * the table must end before the VGA hole at 640 KiB. */
_Static_assert(MPT_MAX <= 1024, "MP table must fit the 1 KiB EBDA");

static uint8_t checksum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return (uint8_t)(0 - s);
}

static uint8_t *small(uint8_t **pp, uint8_t type, uint8_t a, uint16_t flags,
		      uint8_t bus, uint8_t irq, uint8_t dst, uint8_t dstpin)
{
	uint8_t *p = *pp;
	p[0] = type;
	p[1] = a;
	le_put_u16(p + 2, flags);
	p[4] = bus;
	p[5] = irq;
	p[6] = dst;
	p[7] = dstpin;
	*pp += MP_SMALL_SIZE;
	return p;
}

/* PCI GSIs (10..13) fall in the ISA range; a pin is either an edge ISA
 * line or a level PCI line, never both, or the guest gets two polarities. */
static int pci_owns(const struct mptable_irq *pci, int npci, int gsi)
{
	for (int i = 0; i < npci; i++)
		if (pci[i].gsi == gsi)
			return 1;
	return 0;
}

static int check_args(int nvcpus, const struct mptable_irq *pci, int npci, struct err *e)
{
	if (nvcpus < 1 || nvcpus > LAYOUT_MAX_VCPUS)
		return err_set(e, "mptable: %d vCPUs (1..%d)", nvcpus, LAYOUT_MAX_VCPUS);
	if (npci < 0 || npci > LAYOUT_PCI_MAX_SLOTS * 4 || (npci && !pci))
		return err_set(e, "mptable: %d PCI interrupt routes", npci);
	for (int i = 0; i < npci; i++) {
		if (pci[i].slot < 1 || pci[i].slot > 31 || pci[i].pin > 3 ||
		    pci[i].gsi == PIT_IRQ || pci[i].gsi == MPTABLE_PIT_PIN ||
		    pci[i].gsi >= LAYOUT_IOAPIC_PINS)
			return err_set(e, "mptable: bad PCI route slot %u pin %u gsi %u",
				       pci[i].slot, pci[i].pin, pci[i].gsi);
	}
	return 0;
}

int mptable_write(struct guest_mem *gm, int nvcpus, const struct mptable_irq *pci,
		  int npci, struct err *e)
{
	uint8_t buf[MPT_MAX];
	uint8_t *mpf = buf, *mpc = buf + MPF_SIZE, *p = mpc + MPC_HDR_SIZE;
	uint8_t ioapic_id = (uint8_t)nvcpus; /* first id after the LAPICs */
	uint16_t count = 0;
	uint8_t ebda_seg[2];

	if (check_args(nvcpus, pci, npci, e) < 0)
		return -1;
	memset(buf, 0, sizeof(buf));

	for (int i = 0; i < nvcpus; i++, count++) {
		p[0] = MP_ENT_PROC;
		p[1] = (uint8_t)i;
		p[2] = APIC_VERSION;
		p[3] = CPU_FLAG_EN | (i == 0 ? CPU_FLAG_BP : 0);
		le_put_u32(p + 4, CPU_SIGNATURE);
		le_put_u32(p + 8, CPU_FEATURES);
		p += MP_PROC_SIZE;
	}
	memcpy(small(&p, MP_ENT_BUS, MPTABLE_BUS_PCI, 0, 0, 0, 0, 0) + 2, "PCI   ", 6);
	memcpy(small(&p, MP_ENT_BUS, MPTABLE_BUS_ISA, 0, 0, 0, 0, 0) + 2, "ISA   ", 6);
	count += 2;
	{
		uint8_t *io = small(&p, MP_ENT_IOAPIC, ioapic_id, 0, 0, 0, 0, 0);
		io[2] = IOAPIC_VERSION;
		io[3] = 1; /* enabled */
		le_put_u32(io + 4, (uint32_t)LAYOUT_IOAPIC_BASE);
		count++;
	}
	/* The 8259 reaches IOAPIC pin 0 as ExtINT, the PIT pin 2 (override). */
	small(&p, MP_ENT_IOINT, MP_INT_EXTINT, MP_IRQ_DEFAULT, MPTABLE_BUS_ISA, PIT_IRQ, ioapic_id, 0);
	count++;
	for (int irq = 0; irq < ISA_IRQS; irq++) {
		if (irq == CASCADE_IRQ || pci_owns(pci, npci, irq))
			continue;
		small(&p, MP_ENT_IOINT, MP_INT_INT, MP_IRQ_DEFAULT, MPTABLE_BUS_ISA, (uint8_t)irq,
		      ioapic_id, (uint8_t)(irq == PIT_IRQ ? MPTABLE_PIT_PIN : irq));
		count++;
	}
	for (int i = 0; i < npci; i++, count++)
		small(&p, MP_ENT_IOINT, MP_INT_INT, MP_IRQ_PCI, MPTABLE_BUS_PCI,
		      (uint8_t)(pci[i].slot << 2 | pci[i].pin), ioapic_id, pci[i].gsi);
	/* Virtual wire: LINT0 takes ExtINT from the PIC, LINT1 NMI; all LAPICs. */
	small(&p, MP_ENT_LINT, MP_INT_EXTINT, MP_IRQ_DEFAULT, MPTABLE_BUS_ISA, 0, 0xff, 0);
	small(&p, MP_ENT_LINT, MP_INT_NMI, MP_IRQ_DEFAULT, MPTABLE_BUS_ISA, 0, 0xff, 1);
	count += 2;

	memcpy(mpc, "PCMP", 4);
	le_put_u16(mpc + 4, (uint16_t)(p - mpc));
	mpc[6] = MP_SPEC_REV;
	memcpy(mpc + 8, "FERRY   ", 8);
	memcpy(mpc + 16, "FERRY-VM    ", 12);
	le_put_u16(mpc + 34, count);
	le_put_u32(mpc + 36, (uint32_t)LAYOUT_LAPIC_BASE);
	mpc[7] = checksum(mpc, (size_t)(p - mpc));

	memcpy(mpf, "_MP_", 4);
	le_put_u32(mpf + 4, (uint32_t)(LAYOUT_EBDA_START + MPF_SIZE));
	mpf[8] = 1; /* length in 16-byte units */
	mpf[9] = MP_SPEC_REV;
	/* feature1 = 0: a configuration table is present; feature2 = 0:
	 * virtual wire mode, no IMCR. */
	mpf[10] = checksum(mpf, MPF_SIZE);

	if (gmem_write(gm, LAYOUT_EBDA_START, buf, (uint64_t)(p - buf)) < 0)
		return err_set(e, "mptable: EBDA at 0x%llx is not in guest RAM",
			       (unsigned long long)LAYOUT_EBDA_START);
	le_put_u16(ebda_seg, (uint16_t)(LAYOUT_EBDA_START >> 4));
	if (gmem_write(gm, LAYOUT_BDA_EBDA_PTR, ebda_seg, 2) < 0)
		return err_set(e, "mptable: BDA is not in guest RAM");
	return 0;
}
