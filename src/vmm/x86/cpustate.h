/*
 * Complete x86 vCPU state: what KVM holds for one vCPU, captured with the
 * GET ioctls and put back with the SET ioctls in the order KVM requires
 * (the order is written next to the code in cpustate.c). Plus the VM-wide
 * in-kernel state: PIC, IOAPIC, PIT and kvmclock.
 */
#ifndef FERRY_CPUSTATE_H
#define FERRY_CPUSTATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/stream.h"

/* 3 adds the PDPTRs (KVM_GET_SREGS2); 2 adds mcg_cap (and with it the
 * machine-check bank MSRs); 1 and 2 are still read. */
#define CPUSTATE_VERSION 3
#define VMSTATE_KVM_VERSION 1
#define CPUSTATE_MAX_MSRS 1024
#define CPUSTATE_MAX_CPUID 256
#define CPUSTATE_XSAVE_MAX 16384

struct cpu_msr { uint32_t index; uint64_t data; };

struct vcpu_state {
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint32_t xsave_len;                 /* bytes valid in xsave */
	uint8_t xsave[CPUSTATE_XSAVE_MAX];
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dregs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	uint32_t nmsrs;
	struct cpu_msr msrs[CPUSTATE_MAX_MSRS];
	uint32_t ncpuid;
	struct kvm_cpuid_entry2 cpuid[CPUSTATE_MAX_CPUID];
	uint32_t tsc_khz;
	/* What KVM_X86_SETUP_MCE must be given before the MSRs are written;
	 * 0 = leave KVM's default (CPUID without MCE, or a version 1 state). */
	uint64_t mcg_cap;
	/* KVM_SREGS2_FLAGS_PDPTRS_VALID when the guest is in PAE paging (CR0.PG,
	 * CR4.PAE, not long mode) and this host's KVM read the four PDPTRs the
	 * CPU loaded with CR3 (KVM_GET_SREGS2); else 0, pdptrs unused (a host
	 * without KVM_CAP_SREGS2, another paging mode, a version 1 or 2 state). */
	uint32_t sregs2_flags;
	uint64_t pdptrs[4];
};

/*
 * The vCPU model a destination must be able to run, apart from CPUID: what
 * vcpu_check_host checks of a saved vCPU, sent ahead of memory in a move's
 * CPU_MODEL record (docs/stream.md) so a host that cannot take the guest
 * refuses at setup, not after all memory has moved. None of it changes
 * while the guest runs (KVM fixes the TSC rate and the machine-check setup
 * before the first KVM_RUN; feature MSRs are read-only to the guest).
 * vcpu_check_host's PDPTR rule is left out for that reason: whether the
 * guest has PDPTRs to carry depends on the paging mode it is in when it
 * stops, so a host without KVM_CAP_SREGS2 refuses only such a guest's
 * state, before anything is set, while the source can still resume.
 */
#define CPU_MODEL_VERSION 1
/* Feature MSRs KVM can report: 19 VMX capability MSRs, ARCH_CAPABILITIES,
 * PERF_CAPABILITIES, AMD's DE_CFG; room to spare for a newer kernel. */
#define CPU_MODEL_MAX_MSRS 32
#define CPU_MODEL_WIRE_MIN 20     /* version, tsc_khz, mcg_cap, nmsrs */
#define CPU_MODEL_WIRE_MSR 12     /* index, data */

struct cpu_model {
	uint32_t tsc_khz;            /* 0: the source could not read its rate */
	uint64_t mcg_cap;            /* 0: no machine-check setup (as vcpu_state's) */
	uint32_t nmsrs;
	struct cpu_msr msrs[CPU_MODEL_MAX_MSRS]; /* the feature MSRs, as the source classifies them */
};

struct kvm_vm_state {
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	struct kvm_irqchip pic_master, pic_slave, ioapic;
};

/* The MSRs worth saving on this host: KVM's index list, filtered to those
 * KVM_GET_MSRS accepts on a real vCPU. Computed once per process. */
int cpustate_msr_list(int kvm_fd, int vcpu_fd, uint32_t **out, uint32_t *n, struct err *e);

/* One MSR through KVM_GET_MSRS on fd (a vCPU, or /dev/kvm for a feature
 * MSR's supported value); false when KVM refuses it. */
bool cpustate_msr_get(int fd, uint32_t index, uint64_t *data);

/* cpuid: the table this vCPU was given (saved as is: see vcpu.h). The MSRs
 * saved are cpustate_msr_list's plus those KVM's list leaves out and the
 * CPUID implies: the MTRRs, and the machine-check banks MCG_CAP counts. */
int vcpu_save(int kvm_fd, int vcpu_fd, const struct kvm_cpuid2 *cpuid, struct vcpu_state *st,
	      struct err *e);
/* At vCPU creation for a boot, after CPUID: QEMU's machine-check setup
 * (MCG_CTL, software recovery, 10 banks, as far as KVM offers), when the
 * CPUID shows MCE and MCA. Stated rather than left to KVM's default, which
 * can differ between kernels: the destination repeats it from mcg_cap. */
int vcpu_setup_mce(int kvm_fd, int vcpu_fd, const struct kvm_cpuid2 *cpuid, struct err *e);
/* Whether this host can take the vCPU as saved: the TSC rate (equal within
 * 250 ppm, or KVM can scale it), the machine-check setup, each feature
 * MSR's value (within what this host's KVM supports), and, for a guest
 * saved with its PDPTRs, KVM_CAP_SREGS2. Sets nothing; vcpu_restore checks
 * it too. */
int vcpu_check_host(int kvm_fd, int vcpu_fd, const struct vcpu_state *st, struct err *e);
/* The same checks for a model (the CPU_MODEL record): one set of rules. */
int cpu_model_check_host(int kvm_fd, int vcpu_fd, const struct cpu_model *cm, struct err *e);
/* Reads a vCPU's model, as vcpu_save would find it (cpuid: the table the
 * vCPU was given). Only on a vCPU that is not running: a vCPU ioctl waits
 * for the vCPU's thread to leave KVM_RUN. */
int cpu_model_read(int kvm_fd, int vcpu_fd, const struct kvm_cpuid2 *cpuid, struct cpu_model *cm,
		   struct err *e);
/* The CPU_MODEL record's payload, CPU_MODEL_VERSION; the decoder takes the
 * record's length and checks every field and count against it. */
void cpu_model_put(struct stream *w, const struct cpu_model *cm);
int cpu_model_get(struct stream *r, uint32_t len, struct cpu_model *cm, struct err *e);
/* Restores everything; CPUID is set through set_cpuid so the caller keeps a copy. */
int vcpu_restore(int kvm_fd, int vcpu_fd, const struct vcpu_state *st,
		 int (*set_cpuid)(void *opaque, const struct kvm_cpuid2 *c, struct err *e),
		 void *opaque, struct err *e);
/* Encodes CPUSTATE_VERSION; decodes that and every earlier version. */
void vcpu_state_put(struct stream *w, const struct vcpu_state *st);
int vcpu_state_get(struct stream *r, uint32_t version, struct vcpu_state *st, struct err *e);

int kvm_vm_save(int vm_fd, struct kvm_vm_state *st, struct err *e);
/* Everything but the clock; the clock goes last, see vmstate.c. */
int kvm_vm_restore_irq(int vm_fd, const struct kvm_vm_state *st, struct err *e);
int kvm_vm_restore_clock(int vm_fd, const struct kvm_vm_state *st, struct err *e);
void kvm_vm_state_put(struct stream *w, const struct kvm_vm_state *st);
int kvm_vm_state_get(struct stream *r, struct kvm_vm_state *st, struct err *e);

#endif
