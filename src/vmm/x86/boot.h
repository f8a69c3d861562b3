/*
 * The boot CPU's first state. A loader (multiboot, bzImage) fills a
 * struct boot_entry and writes the boot GDT/page tables it implies into
 * guest memory with boot_prepare_memory(); the VMM then applies it to the
 * BSP with boot_setup_vcpu(). APs are left in KVM's reset state: the
 * in-kernel LAPIC holds them until the guest sends INIT/SIPI.
 */
#ifndef FERRY_X86_BOOT_H
#define FERRY_X86_BOOT_H

#include <stdint.h>

#include "common/err.h"
#include "vmm/guestmem.h"

enum boot_mode {
	BOOT_MODE_PROT32 = 1, /* flat 32-bit protected mode, paging off (multiboot) */
	BOOT_MODE_LONG64 = 2, /* 64-bit long mode, identity-mapped 4 GiB (Linux) */
};

/* GDT selectors, the same in both modes (Firecracker's order). */
#define BOOT_SEL_CODE 0x08
#define BOOT_SEL_DATA 0x10
#define BOOT_SEL_TSS  0x18

struct boot_entry {
	enum boot_mode mode;
	uint64_t rip;
	uint64_t rsp;
	uint64_t rsi;       /* Linux: boot_params address */
	uint64_t rax;       /* multiboot: 0x2BADB002 */
	uint64_t rbx;       /* multiboot: info address */
	uint64_t cr3;       /* long mode only */
	uint64_t gdt_base;
	uint16_t gdt_limit;
	uint64_t idt_base;
	uint16_t idt_limit;
};

/* Write the boot GDT and an empty IDT (and, for long mode, the identity
 * page tables at LAYOUT_PML4/PDPT/PD, 2 MiB pages over 4 GiB) into guest
 * memory, and fill be's gdt/idt/cr3 fields. be->mode must be set. */
int boot_prepare_memory(struct guest_mem *gm, struct boot_entry *be, struct err *e);

/* Apply be to a vCPU: sregs, regs, FPU, boot MSRs, LAPIC LINT0/1. Call
 * after KVM_SET_CPUID2 (the MSRs and LAPIC depend on CPUID). */
int boot_setup_vcpu(int kvm_fd, int vcpu_fd, const struct boot_entry *be, struct err *e);

/* The pieces, for vCPUs that need only some (APs want MSRs and LINTs). */
int boot_setup_msrs(int kvm_fd, int vcpu_fd, struct err *e);
int boot_setup_lapic(int vcpu_fd, struct err *e);
int boot_setup_fpu(int vcpu_fd, struct err *e);

#endif
