/*
 * Applying a struct boot_entry to a vCPU through KVM ioctls, in the order
 * Firecracker and the reference recipe use: MSRs, FPU, sregs, regs, LAPIC.
 * Every ioctl is checked; nothing here touches guest memory.
 */
#include "vmm/x86/boot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>

#define CR0_PE   (1ULL << 0)
#define CR0_ET   (1ULL << 4)
#define CR0_PG   (1ULL << 31)
#define CR4_PAE  (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

#define MSR_IA32_TSC            0x10
#define MSR_IA32_SYSENTER_CS    0x174
#define MSR_IA32_SYSENTER_ESP   0x175
#define MSR_IA32_SYSENTER_EIP   0x176
#define MSR_IA32_MISC_ENABLE    0x1a0
#define MSR_MTRR_DEF_TYPE       0x2ff
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SYSCALL_MASK        0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102

#define MISC_ENABLE_FAST_STRING 0x1ULL
#define MTRR_ENABLE             0x800ULL
#define MTRR_TYPE_WB            0x6ULL

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

static const struct { uint32_t index; uint64_t data; } boot_msrs[] = {
	{ MSR_IA32_SYSENTER_CS, 0 },
	{ MSR_IA32_SYSENTER_ESP, 0 },
	{ MSR_IA32_SYSENTER_EIP, 0 },
	{ MSR_STAR, 0 },
	{ MSR_CSTAR, 0 },
	{ MSR_KERNEL_GS_BASE, 0 },
	{ MSR_SYSCALL_MASK, 0 },
	{ MSR_LSTAR, 0 },
	{ MSR_IA32_TSC, 0 },
	/* Linux expects fast strings on; a VM's BIOS would have enabled them. */
	{ MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING },
	/* No BIOS programs the MTRRs, so make all memory write-back. */
	{ MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WB },
};
#define NBOOT_MSRS (sizeof(boot_msrs) / sizeof(boot_msrs[0]))

int boot_setup_msrs(int kvm_fd, int vcpu_fd, struct err *e)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry ent[NBOOT_MSRS];
	} m;
	int r;

	(void)kvm_fd; /* kept in the API: a host-specific MSR filter would need it */
	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = NBOOT_MSRS;
	for (size_t i = 0; i < NBOOT_MSRS; i++) {
		m.ent[i].index = boot_msrs[i].index;
		m.ent[i].data = boot_msrs[i].data;
	}
	r = ioctl(vcpu_fd, KVM_SET_MSRS, &m);
	if (r < 0)
		return err_sys(e, "KVM_SET_MSRS (boot MSRs)");
	/* KVM stops at the first MSR it refuses and returns how many it set. */
	if ((size_t)r != NBOOT_MSRS)
		return err_set(e, "KVM_SET_MSRS: boot MSR 0x%x refused", boot_msrs[r].index);
	return 0;
}

int boot_setup_fpu(int vcpu_fd, struct err *e)
{
	struct kvm_fpu fpu;

	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;      /* FNINIT's control word: all exceptions masked */
	fpu.mxcsr = 0x1f80;   /* reset MXCSR: all SIMD exceptions masked */
	if (ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0)
		return err_sys(e, "KVM_SET_FPU");
	return 0;
}

static uint32_t lvt_mode(uint32_t reg, uint32_t mode)
{
	return (reg & ~0x700u) | (mode << 8);
}

int boot_setup_lapic(int vcpu_fd, struct err *e)
{
	struct kvm_lapic_state la;
	uint32_t v;

	if (ioctl(vcpu_fd, KVM_GET_LAPIC, &la) < 0)
		return err_sys(e, "KVM_GET_LAPIC");
	/* Virtual-wire mode: the PIC reaches the CPU through LINT0 and NMIs
	 * through LINT1, as the MP table's local interrupt entries say. */
	memcpy(&v, la.regs + APIC_LVT_LINT0, 4);
	v = lvt_mode(v, APIC_MODE_EXTINT);
	memcpy(la.regs + APIC_LVT_LINT0, &v, 4);
	memcpy(&v, la.regs + APIC_LVT_LINT1, 4);
	v = lvt_mode(v, APIC_MODE_NMI);
	memcpy(la.regs + APIC_LVT_LINT1, &v, 4);
	if (ioctl(vcpu_fd, KVM_SET_LAPIC, &la) < 0)
		return err_sys(e, "KVM_SET_LAPIC");
	return 0;
}

static void flat_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int code64)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->dpl = 0;
	s->s = 1;
	s->g = 1;
	s->l = code64 ? 1 : 0;
	s->db = code64 ? 0 : 1; /* D must be 0 when L is 1 */
}

static int setup_sregs(int vcpu_fd, const struct boot_entry *be, struct err *e)
{
	struct kvm_sregs sr;
	int lm = be->mode == BOOT_MODE_LONG64;

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sr) < 0)
		return err_sys(e, "KVM_GET_SREGS");
	flat_seg(&sr.cs, BOOT_SEL_CODE, 0xb, lm);
	flat_seg(&sr.ds, BOOT_SEL_DATA, 0x3, 0);
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	memset(&sr.tr, 0, sizeof(sr.tr));
	sr.tr.selector = BOOT_SEL_TSS;
	sr.tr.limit = 0x67;
	sr.tr.type = 0xb; /* busy TSS: VM entry insists on it */
	sr.tr.present = 1;
	sr.gdt.base = be->gdt_base;
	sr.gdt.limit = be->gdt_limit;
	sr.idt.base = be->idt_base;
	sr.idt.limit = be->idt_limit;
	/* Reset CR0 has CD|NW set; the guest gets caching on from the start. */
	sr.cr0 = CR0_PE | CR0_ET;
	sr.cr4 = 0;
	sr.efer = 0;
	sr.cr3 = 0;
	if (lm) {
		sr.cr0 |= CR0_PG;
		sr.cr3 = be->cr3;
		sr.cr4 = CR4_PAE;
		sr.efer = EFER_LME | EFER_LMA;
	}
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sr) < 0)
		return err_sys(e, "KVM_SET_SREGS");
	return 0;
}

static int setup_regs(int vcpu_fd, const struct boot_entry *be, struct err *e)
{
	struct kvm_regs r;

	memset(&r, 0, sizeof(r));
	r.rflags = 0x2; /* bit 1 is reserved-one; IF off */
	r.rip = be->rip;
	r.rsp = be->rsp;
	r.rbp = be->rsp;
	r.rsi = be->rsi;
	r.rax = be->rax;
	r.rbx = be->rbx;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &r) < 0)
		return err_sys(e, "KVM_SET_REGS");
	return 0;
}

int boot_setup_vcpu(int kvm_fd, int vcpu_fd, const struct boot_entry *be, struct err *e)
{
	if (be->mode != BOOT_MODE_PROT32 && be->mode != BOOT_MODE_LONG64)
		return err_set(e, "boot: unknown mode %d", (int)be->mode);
	if (be->mode == BOOT_MODE_LONG64 && be->cr3 == 0)
		return err_set(e, "boot: long mode entry without page tables");
	if (boot_setup_msrs(kvm_fd, vcpu_fd, e) < 0 ||
	    boot_setup_fpu(vcpu_fd, e) < 0 ||
	    setup_sregs(vcpu_fd, be, e) < 0 ||
	    setup_regs(vcpu_fd, be, e) < 0 ||
	    boot_setup_lapic(vcpu_fd, e) < 0)
		return err_prefix(e, "setting up boot vCPU");
	return 0;
}
