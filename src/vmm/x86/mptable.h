/*
 * Intel MultiProcessor Specification 1.4 tables: the floating pointer and
 * the configuration table, written into the EBDA (reserved in e820), with
 * the BDA's EBDA pointer aimed at it so both Linux's scan and the test
 * guest find it. Describes the vCPUs (APIC id = vCPU index, BSP = 0), the
 * ISA and PCI buses, the IOAPIC and every interrupt route the VMM wires.
 */
#ifndef FERRY_X86_MPTABLE_H
#define FERRY_X86_MPTABLE_H

#include <stdint.h>

#include "common/err.h"
#include "vmm/guestmem.h"
#include "vmm/x86/layout.h"

/* The table routes ISA IRQ0 (the PIT) to IOAPIC pin 2, as PC firmware does.
 * KVM's default routing sends GSI 0 to pin 0, so vm_create installs a GSI
 * routing table with GSI 0 -> IOAPIC pin 2 (vm_set_gsi_routing, as QEMU's
 * kvm_pc_setup_irq_routing) for the IOAPIC timer path to work. */
#define MPTABLE_PIT_PIN 2

/* MP bus ids we assign. PCI comes first so it maps to PCI bus 0. */
#define MPTABLE_BUS_PCI 0
#define MPTABLE_BUS_ISA 1

/* One PCI function's INTx route. */
struct mptable_irq {
	uint8_t slot;   /* PCI device number on bus 0 (1..31) */
	uint8_t pin;    /* 0 = INTA# .. 3 = INTD# */
	uint8_t gsi;    /* IOAPIC input it is wired to */
};

/* The GSI layout.h assigns to PCI slot n (1-based). */
static inline uint8_t mptable_pci_slot_gsi(int slot)
{
	return (uint8_t)(LAYOUT_PCI_FIRST_GSI + slot - 1);
}

int mptable_write(struct guest_mem *gm, int nvcpus, const struct mptable_irq *pci_irqs,
		  int npci, struct err *e);

/* Entry types and flag values (for the writer and for tests that parse). */
#define MP_ENT_PROC     0
#define MP_ENT_BUS      1
#define MP_ENT_IOAPIC   2
#define MP_ENT_IOINT    3
#define MP_ENT_LINT     4
#define MP_INT_INT      0
#define MP_INT_NMI      1
#define MP_INT_EXTINT   3
#define MP_IRQ_DEFAULT  0x0
#define MP_IRQ_PCI      0xf /* active low (3) | level triggered (3 << 2) */

#endif
