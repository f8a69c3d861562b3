/*
 * Internal interface of the test guest: segment selectors, sizes shared
 * with boot.S, the CPL3 -> CPL0 service-trap ABI and the globals the two
 * privilege levels share. All memory is identity mapped and user
 * accessible, so CPL3 code may read kernel-side globals directly; it only
 * traps to CPL0 for what CPL3 cannot do (port I/O, MSRs, LAPIC, hlt).
 */
#ifndef FERRY_GUEST_GUEST_H
#define FERRY_GUEST_GUEST_H

#define SEL_KCODE	0x08
#define SEL_KDATA	0x10
#define SEL_KCODE32	0x18
#define SEL_UDATA	0x23
#define SEL_UCODE	0x2b
#define SEL_TSS0	0x30
#define GDT_ENTRIES	(6 + 2 * 64)
#define KSTACK_SIZE	8192
#define USTACK_SIZE	32768
#define PD_POOL_PAGES	64		/* 2 MiB pages for up to 64 GiB */
/* asm cannot use protocol.h's typed constants; kern.c asserts these match */
#define FG_MAX_CPUS_ASM	64
#define FG_TRAMP_ASM	0x8000

#ifdef __ASSEMBLER__
#define FG_MAX_CPUS	FG_MAX_CPUS_ASM
#define FG_TRAMPOLINE_GPA FG_TRAMP_ASM
#else

#include <stdint.h>
#include "protocol.h"

#define VEC_UD		6
#define VEC_TIMER	0x40
#define VEC_SPURIOUS	0xff

/* Service numbers (RAX at the ud2); args in RDI, RSI, RDX; result in RAX. */
enum svc {
	SVC_PUTS = 1,	/* (ptr, len): write one line to COM1 */
	SVC_HALT,	/* (tsc_deadline): sti; hlt until the timer or an IRQ */
	SVC_RDMSR,	/* (msr) -> value */
	SVC_WRMSR,	/* (msr, value) */
	SVC_PIO_IN,	/* (port, size 1/2/4) -> value */
	SVC_PIO_OUT,	/* (port, size, value) */
	SVC_PCI_READ,	/* (0x80000000 | bdf << 8 | off) -> dword */
	SVC_PCI_WRITE,	/* (addr, dword) */
	SVC_AP_INIT,	/* (cpu index, apic id): stage stack, copy trampoline, INIT */
	SVC_AP_SIPI,	/* (apic id) */
	SVC_MAP_RAM,	/* (top): extend the identity map to cover [4G, top) */
	SVC_CPUID,	/* (leaf, subleaf, uint32_t out[4]): CPUID as the VMM set it */
};

static inline uint64_t svc(uint64_t n, uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t r;
	__asm__ volatile("ud2" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "memory");
	return r;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

/* The raw instruction: CPL0 only. At CPL3 a PVM host without CPUID
 * faulting (kvm_pvm on AMD EPYC) runs it natively, so it answers with the
 * host's CPU (its APIC ID, its hypervisor), not the VM's; user code asks
 * the kernel (user_cpuid). */
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

#define barrier() __asm__ volatile("" ::: "memory")
#define cpu_relax() __asm__ volatile("pause" ::: "memory")

/* boot.S */
extern uint32_t boot_magic, boot_mbi, ap_boot_stack, ap_boot_cpu;
extern char __load_start[], __bss_end[], tramp_start[], tramp_end[];
extern uint64_t pml4[], pdpt[], pd_pool[];
extern uint8_t kstacks[];
void enter_user(void (*entry)(uint64_t), uint64_t rsp, uint64_t arg);

/* kern.c (CPL0) */
extern volatile uint32_t ap_started[FG_MAX_CPUS];
extern uint64_t kern_tsc_hz;		/* set by CPL3 once known; one-shot timer fallback */
extern int kern_tsc_deadline;		/* CPUID.1:ECX[24] */
extern uint8_t ustacks[];

/* main.c (CPL3) */
void user_bsp_main(uint64_t arg);
void user_ap_main(uint64_t cpu);

/* CPL3 conveniences */
void gprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void halt_until(uint64_t tsc_deadline);

#endif /* !__ASSEMBLER__ */
#endif
