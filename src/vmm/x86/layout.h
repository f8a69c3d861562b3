/*
 * Every guest-physical address, port and interrupt number ferry's x86
 * machine uses, in one place (Firecracker keeps its layout.rs the same way).
 * Both the loaders and the devices take their constants from here so the
 * e820 map, the MP table and the device models cannot disagree.
 */
#ifndef FERRY_X86_LAYOUT_H
#define FERRY_X86_LAYOUT_H

/* --- low memory --- */
#define LAYOUT_BDA_EBDA_PTR      0x40eULL    /* BDA word: EBDA segment */
#define LAYOUT_BOOT_GDT          0x500ULL
#define LAYOUT_BOOT_IDT          0x520ULL
#define LAYOUT_ZERO_PAGE         0x7000ULL   /* Linux boot_params */
#define LAYOUT_BOOT_STACK        0x8ff0ULL
#define LAYOUT_PML4              0x9000ULL   /* Linux 64-bit entry page tables */
#define LAYOUT_PDPT              0xa000ULL
#define LAYOUT_PD                0xb000ULL   /* 4 pages: identity map of 4 GiB */
#define LAYOUT_MB_INFO           0x10000ULL  /* multiboot info + memory map */
#define LAYOUT_MB_CMDLINE        0x11000ULL
#define LAYOUT_CMDLINE           0x20000ULL  /* Linux command line */
#define LAYOUT_CMDLINE_MAX       4096
#define LAYOUT_EBDA_START        0x9fc00ULL  /* MP table lives here, reserved in e820 */
#define LAYOUT_LOWMEM_END        0x9fc00ULL
#define LAYOUT_HIMEM_START       0x100000ULL /* kernels load at 1 MiB */

/* --- the 32-bit hole and what lives in it --- */
#define LAYOUT_MMIO_HOLE_START   0xc0000000ULL /* RAM above this moves to 4 GiB */
#define LAYOUT_HIGH_RAM_START    0x100000000ULL
#define LAYOUT_IOAPIC_BASE       0xfec00000ULL
#define LAYOUT_LAPIC_BASE        0xfee00000ULL
#define LAYOUT_KVM_TSS           0xfffbd000ULL

/* --- ports --- */
#define LAYOUT_COM1_PORT         0x3f8
#define LAYOUT_I8042_PORT        0x60        /* 0x60 and 0x64: reset via 0xfe */
#define LAYOUT_PCI_CONF_PORT     0xcf8       /* conf1: 0xcf8..0xcff */
#define LAYOUT_PCI_IO_START      0xc000      /* I/O BARs handed out from here */
#define LAYOUT_PCI_IO_BAR_SIZE   0x100

/* --- interrupts (GSI == IOAPIC pin == ISA IRQ for < 16) --- */
#define LAYOUT_COM1_GSI          4
#define LAYOUT_PCI_FIRST_GSI     10          /* PCI slot n (1-based) uses GSI 9 + n */
#define LAYOUT_PCI_MAX_SLOTS     4
#define LAYOUT_IOAPIC_PINS       24

#define LAYOUT_MAX_VCPUS         8

#endif
