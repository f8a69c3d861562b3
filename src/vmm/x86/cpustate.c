/*
 * vCPU and VM-wide KVM state capture and restore (see cpustate.h).
 *
 * Encoding: general registers and segment registers field by field; the
 * rest as length-checked blobs in the KVM UAPI layout (fixed, x86
 * little-endian, the same on every host). A decoder rejects any length that
 * does not match what this build expects.
 */
#include "vmm/x86/cpustate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/failpoint.h"
#include "common/log.h"
#include "vmm/x86/cpuid.h"

#define MSR_IA32_TSC 0x10
#define MSR_IA32_UCODE_REV 0x8b
#define MSR_IA32_ARCH_CAPABILITIES 0x10a
#define MSR_IA32_PERF_CAPABILITIES 0x345
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MSR_MTRRCAP 0xfe
#define MSR_MCG_CAP 0x179
#define MSR_MCG_STATUS 0x17a
#define MSR_MCG_CTL 0x17b
#define MSR_MC0_CTL 0x400             /* bank n: CTL, STATUS, ADDR, MISC at 0x400 + 4n */
#define MSR_MTRR_PHYSBASE0 0x200      /* PHYSBASEn 0x200 + 2n, PHYSMASKn 0x201 + 2n */
#define MSR_MTRR_FIX64K_00000 0x250
#define MSR_MTRR_FIX16K_80000 0x258   /* and 0x259 */
#define MSR_MTRR_FIX4K_C0000 0x268    /* to 0x26f */
#define MSR_MTRR_DEF_TYPE 0x2ff

#define CPUID1_EDX_MCE (1u << 7)
#define CPUID1_EDX_MTRR (1u << 12)
#define CPUID1_EDX_MCA (1u << 14)
#define MTRRCAP_VCNT 0xffu
#define MTRRCAP_FIX (1u << 8)
/* KVM_NR_VAR_MTRR: what every KVM emulates. */
#define MTRR_MAX_VAR 8

#define MCG_BANKS_MASK 0xffu
#define MCG_CTL_P (1ull << 8)
#define MCG_EXT_CNT_MASK 0xff0000ull
#define MCG_SER_P (1ull << 24)
/* KVM_MAX_MCE_BANKS; a boot gets QEMU's default of 10. */
#define MCE_MAX_BANKS 32
#define MCE_BOOT_BANKS 10

#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define EFER_LMA (1ull << 10)

/* QEMU's and Firecracker's tolerance: closer rates than this count as equal
 * (hosts of one CPU model differ by a few ppm in what KVM measured). */
#define TSC_KHZ_TOL_PPM 250

/* ---------- MSR list ---------- */

static uint32_t *msr_cache;
static uint32_t msr_cache_n;

/* One of KVM's MSR lists (req: KVM_GET_MSR_INDEX_LIST or
 * KVM_GET_MSR_FEATURE_INDEX_LIST, both on the /dev/kvm fd); the caller frees it. */
static struct kvm_msr_list *msr_list_get(int kvm_fd, unsigned long req, const char *what,
					 struct err *e)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	struct kvm_msr_list *list;

	if (ioctl(kvm_fd, req, &probe) < 0 && errno != E2BIG) {
		err_sys(e, "%s", what);
		return NULL;
	}
	/* Old kernels could write past nmsrs: leave slack, as QEMU does. */
	list = calloc(1, sizeof(*list) + (probe.nmsrs + 64) * sizeof(uint32_t));
	if (!list) {
		err_set(e, "out of memory");
		return NULL;
	}
	list->nmsrs = probe.nmsrs;
	if (ioctl(kvm_fd, req, list) < 0) {
		free(list);
		err_sys(e, "%s", what);
		return NULL;
	}
	return list;
}

bool cpustate_msr_get(int fd, uint32_t index, uint64_t *data)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry ent; } one;

	memset(&one, 0, sizeof(one));
	one.h.nmsrs = 1;
	one.ent.index = index;
	if (ioctl(fd, KVM_GET_MSRS, &one) != 1)
		return false;
	*data = one.ent.data;
	return true;
}

static struct kvm_msr_list *feature_cache;

/* This host's feature MSRs (KVM_GET_MSR_FEATURE_INDEX_LIST): an empty
 * list where KVM has no such list. Asked once per process, as the MSR
 * list is: a restore checks and sets each vCPU within the downtime. */
static const struct kvm_msr_list *feature_list_get(int kvm_fd, struct err *e)
{
	if (feature_cache)
		return feature_cache;
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_GET_MSR_FEATURES) > 0)
		feature_cache = msr_list_get(kvm_fd, KVM_GET_MSR_FEATURE_INDEX_LIST,
					     "KVM_GET_MSR_FEATURE_INDEX_LIST", e);
	else if (!(feature_cache = calloc(1, sizeof(*feature_cache))))
		err_set(e, "out of memory");
	return feature_cache;
}

static bool in_list(const struct kvm_msr_list *l, uint32_t index)
{
	for (uint32_t i = 0; i < l->nmsrs; i++)
		if (l->indices[i] == index)
			return true;
	return false;
}

/* A feature MSR describes the CPU the guest was shown, as CPUID does, not
 * state the guest wrote: a value this host cannot honour must stop the
 * restore. ARCH_CAPABILITIES matters most: KVM takes any value the VMM
 * writes, and a guest told "not vulnerable" (MDS_NO, RDCL_NO...) drops
 * mitigations this host needs. The two named ones count even where KVM
 * lists no features, so an old host cannot take them unchecked. */
static bool is_feature_msr(const struct kvm_msr_list *features, uint32_t index)
{
	/* A revision, not capabilities: the guest keeps the one it booted
	 * with (KVM takes any value), like QEMU's fixed ucode-rev. */
	if (index == MSR_IA32_UCODE_REV)
		return false;
	return index == MSR_IA32_ARCH_CAPABILITIES || index == MSR_IA32_PERF_CAPABILITIES ||
	       in_list(features, index);
}

static const char *feature_msr_name(uint32_t index)
{
	switch (index) {
	case MSR_IA32_ARCH_CAPABILITIES: return "IA32_ARCH_CAPABILITIES";
	case MSR_IA32_PERF_CAPABILITIES: return "IA32_PERF_CAPABILITIES";
	default: return "feature MSR";
	}
}

/* QEMU's rule for a CPU model (its "enforce"): every bit the guest was
 * given must be one KVM says it supports here (system KVM_GET_MSRS). */
static int feature_msr_check(int kvm_fd, const struct kvm_msr_list *features,
			     const struct cpu_msr *m, struct err *e)
{
	uint64_t supported;

	if (!in_list(features, m->index) || !cpustate_msr_get(kvm_fd, m->index, &supported)) {
		if (!m->data)
			return 0;
		return err_set(e, "incompatible host: the guest's %s (MSR 0x%x) is 0x%llx and this "
			       "host's KVM cannot say which values it supports",
			       feature_msr_name(m->index), m->index, (unsigned long long)m->data);
	}
	if (m->data & ~supported)
		return err_set(e, "incompatible host: the guest's %s (MSR 0x%x) is 0x%llx, this host "
			       "supports only 0x%llx (lacks 0x%llx)", feature_msr_name(m->index),
			       m->index, (unsigned long long)m->data, (unsigned long long)supported,
			       (unsigned long long)(m->data & ~supported));
	return 0;
}

/* Which of msrs are feature MSRs is this host's call, as at the restore:
 * a model record and a saved vCPU are held to the same ones. */
static int feature_msrs_check(int kvm_fd, const struct cpu_msr *msrs, uint32_t n, struct err *e)
{
	const struct kvm_msr_list *features = feature_list_get(kvm_fd, e);
	int rc = 0;

	if (!features)
		return -1;
	for (uint32_t i = 0; i < n && rc == 0; i++)
		if (is_feature_msr(features, msrs[i].index))
			rc = feature_msr_check(kvm_fd, features, &msrs[i], e);
	return rc;
}

int cpustate_msr_list(int kvm_fd, int vcpu_fd, uint32_t **out, uint32_t *n, struct err *e)
{
	struct kvm_msr_list *list;
	uint32_t keep = 0;
	uint64_t ignored;

	if (msr_cache) {
		*out = msr_cache;
		*n = msr_cache_n;
		return 0;
	}
	list = msr_list_get(kvm_fd, KVM_GET_MSR_INDEX_LIST, "KVM_GET_MSR_INDEX_LIST", e);
	if (!list)
		return -1;
	msr_cache = calloc(list->nmsrs ? list->nmsrs : 1, sizeof(uint32_t));
	if (!msr_cache) {
		free(list);
		return err_set(e, "out of memory");
	}
	/* Keep only MSRs this vCPU model lets us read (PMU or VMX ones are refused
	 * when hidden by CPUID); probing one at a time tells exactly which. */
	for (uint32_t i = 0; i < list->nmsrs; i++)
		if (cpustate_msr_get(vcpu_fd, list->indices[i], &ignored))
			msr_cache[keep++] = list->indices[i];
	free(list);
	/* Dropping the excess would migrate a guest with some of its MSRs
	 * silently reset: refuse to save instead, naming the figures. */
	if (keep > CPUSTATE_MAX_MSRS) {
		free(msr_cache);
		msr_cache = NULL;
		return err_set(e, "KVM lists %u readable MSRs, more than the %d a vCPU state holds "
			       "(CPUSTATE_MAX_MSRS): saving would drop %u of them",
			       keep, CPUSTATE_MAX_MSRS, keep - CPUSTATE_MAX_MSRS);
	}
	msr_cache_n = keep;
	*out = msr_cache;
	*n = keep;
	return 0;
}

/* ---------- MSRs implied by CPUID ---------- */

static uint32_t cpuid1_edx(const struct kvm_cpuid2 *cpuid)
{
	const struct kvm_cpuid_entry2 *l1 = cpuid_find(cpuid, 1, 0);
	return l1 ? l1->edx : 0;
}

/* Adds index to the MSRs to save, once. Past the bound it refuses: an MSR
 * left out would come back reset on the destination, unnoticed. */
static int msr_add(struct vcpu_state *st, uint32_t index, struct err *e)
{
	for (uint32_t i = 0; i < st->nmsrs; i++)
		if (st->msrs[i].index == index)
			return 0;
	if (st->nmsrs >= CPUSTATE_MAX_MSRS)
		return err_set(e, "more than %d MSRs to save (at MSR 0x%x): CPUSTATE_MAX_MSRS is too small",
			       CPUSTATE_MAX_MSRS, index);
	st->msrs[st->nmsrs++] = (struct cpu_msr){ index, 0 };
	return 0;
}

static int msr_add_run(struct vcpu_state *st, uint32_t first, uint32_t count, struct err *e)
{
	for (uint32_t i = 0; i < count; i++)
		if (msr_add(st, first + i, e) < 0)
			return -1;
	return 0;
}

/* KVM emulates the MTRRs but leaves them out of its MSR list (QEMU and
 * Firecracker add them by CPUID too): unsaved, the guest would come back
 * with MTRRs off, all memory uncached by its own account. */
static int mtrr_msrs_add(int vcpu_fd, const struct kvm_cpuid2 *cpuid, struct vcpu_state *st,
			 struct err *e)
{
	uint64_t cap;
	uint32_t nvar;

	if (!(cpuid1_edx(cpuid) & CPUID1_EDX_MTRR))
		return 0;
	if (!cpustate_msr_get(vcpu_fd, MSR_MTRRCAP, &cap))
		return err_set(e, "the vCPU's CPUID shows MTRRs but KVM refuses to read MTRRcap (MSR 0x%x)",
			       MSR_MTRRCAP);
	nvar = cap & MTRRCAP_VCNT;
	if (nvar > MTRR_MAX_VAR) {
		log_warn("MTRRcap 0x%llx counts %u variable MTRRs: saving the first %d, as many as KVM emulates",
			 (unsigned long long)cap, nvar, MTRR_MAX_VAR);
		nvar = MTRR_MAX_VAR;
	}
	if (msr_add(st, MSR_MTRR_DEF_TYPE, e) < 0)
		return -1;
	if ((cap & MTRRCAP_FIX) && (msr_add(st, MSR_MTRR_FIX64K_00000, e) < 0 ||
				    msr_add_run(st, MSR_MTRR_FIX16K_80000, 2, e) < 0 ||
				    msr_add_run(st, MSR_MTRR_FIX4K_C0000, 8, e) < 0))
		return -1;
	return msr_add_run(st, MSR_MTRR_PHYSBASE0, 2 * nvar, e);
}

static bool mce_in_cpuid(const struct kvm_cpuid2 *cpuid)
{
	uint32_t need = CPUID1_EDX_MCE | CPUID1_EDX_MCA;
	return (cpuid1_edx(cpuid) & need) == need;
}

/* The MCG_CAP of a vCPU whose CPUID shows MCE and MCA. */
static int mcg_cap_read(int vcpu_fd, uint64_t *cap, struct err *e)
{
	uint32_t banks;

	if (!cpustate_msr_get(vcpu_fd, MSR_MCG_CAP, cap))
		return err_set(e, "the vCPU's CPUID shows MCE but KVM refuses to read MCG_CAP (MSR 0x%x)",
			       MSR_MCG_CAP);
	banks = *cap & MCG_BANKS_MASK;
	if (banks > MCE_MAX_BANKS)
		return err_set(e, "MCG_CAP 0x%llx counts %u machine-check banks, more than KVM's %d",
			       (unsigned long long)*cap, banks, MCE_MAX_BANKS);
	return 0;
}

/* The machine-check registers, by the vCPU's MCG_CAP (KVM lists only the
 * global ones): unsaved, banks the guest enabled come back disabled. */
static int mce_msrs_add(int vcpu_fd, const struct kvm_cpuid2 *cpuid, struct vcpu_state *st,
			struct err *e)
{
	uint32_t banks;

	if (!mce_in_cpuid(cpuid))
		return 0; /* the guest cannot use the banks: KVM's default stays on both sides */
	if (mcg_cap_read(vcpu_fd, &st->mcg_cap, e) < 0)
		return -1;
	banks = st->mcg_cap & MCG_BANKS_MASK;
	if (msr_add(st, MSR_MCG_STATUS, e) < 0 ||
	    ((st->mcg_cap & MCG_CTL_P) && msr_add(st, MSR_MCG_CTL, e) < 0))
		return -1;
	return msr_add_run(st, MSR_MC0_CTL, 4 * banks, e);
}

static int mce_setup(int vcpu_fd, uint64_t mcg_cap, struct err *e)
{
	if (ioctl(vcpu_fd, KVM_X86_SETUP_MCE, &mcg_cap) < 0)
		return err_sys(e, "KVM_X86_SETUP_MCE 0x%llx", (unsigned long long)mcg_cap);
	return 0;
}

int vcpu_setup_mce(int kvm_fd, int vcpu_fd, const struct kvm_cpuid2 *cpuid, struct err *e)
{
	int max_banks = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MCE);
	uint64_t supported = 0, cap;

	if (!mce_in_cpuid(cpuid) || max_banks <= 0)
		return 0;
	if (ioctl(kvm_fd, KVM_X86_GET_MCE_CAP_SUPPORTED, &supported) < 0)
		return err_sys(e, "KVM_X86_GET_MCE_CAP_SUPPORTED");
	/* QEMU's default: MCG_CTL and software recovery where KVM has them. */
	cap = (supported & (MCG_CTL_P | MCG_SER_P)) |
	      (uint64_t)(max_banks < MCE_BOOT_BANKS ? max_banks : MCE_BOOT_BANKS);
	return mce_setup(vcpu_fd, cap, e);
}

/* Read or write MSRs in chunks; KVM stops at the first MSR it refuses, so the
 * count it returns is checked against what was asked. */
static int msrs_xfer(int vcpu_fd, bool set, struct cpu_msr *m, uint32_t n, struct err *e)
{
	enum { CHUNK = 64 };
	struct { struct kvm_msrs h; struct kvm_msr_entry ent[CHUNK]; } buf;
	for (uint32_t at = 0; at < n; at += CHUNK) {
		uint32_t c = n - at < CHUNK ? n - at : CHUNK;
		int r;
		memset(&buf, 0, sizeof(buf));
		buf.h.nmsrs = c;
		for (uint32_t i = 0; i < c; i++) {
			buf.ent[i].index = m[at + i].index;
			buf.ent[i].data = m[at + i].data;
		}
		r = ioctl(vcpu_fd, set ? KVM_SET_MSRS : KVM_GET_MSRS, &buf);
		if (r < 0)
			return err_sys(e, set ? "KVM_SET_MSRS" : "KVM_GET_MSRS");
		if ((uint32_t)r != c)
			return err_set(e, "%s stopped at MSR 0x%x (%d of %u done)",
				       set ? "KVM_SET_MSRS" : "KVM_GET_MSRS",
				       buf.ent[r].index, r, c);
		if (!set)
			for (uint32_t i = 0; i < c; i++)
				m[at + i].data = buf.ent[i].data;
	}
	return 0;
}

/* Which restore step writes a saved MSR (the steps are vcpu_restore's). */
enum msr_step { MSR_STEP_FEATURE, MSR_STEP_MAIN, MSR_STEP_DEADLINE };

static enum msr_step msr_step_of(const struct kvm_msr_list *features, uint32_t index)
{
	if (is_feature_msr(features, index))
		return MSR_STEP_FEATURE;
	return index == MSR_IA32_TSC_DEADLINE ? MSR_STEP_DEADLINE : MSR_STEP_MAIN;
}

/* Writes the saved MSRs that belong to one restore step, in saved order. */
static int msrs_put_step(int vcpu_fd, const struct vcpu_state *st,
			 const struct kvm_msr_list *features, enum msr_step step, struct err *e)
{
	struct cpu_msr *m = malloc((st->nmsrs ? st->nmsrs : 1) * sizeof(*m));
	uint32_t n = 0;
	int rc;

	if (!m)
		return err_set(e, "out of memory");
	for (uint32_t i = 0; i < st->nmsrs; i++) {
		if (msr_step_of(features, st->msrs[i].index) != step)
			continue;
		/* A deadline of 0 means disarmed; writing it would be harmless but
		 * Firecracker found a 0 can strand the timer, so only armed deadlines are written. */
		if (step == MSR_STEP_DEADLINE && !st->msrs[i].data)
			continue;
		m[n++] = st->msrs[i];
	}
	rc = msrs_xfer(vcpu_fd, true, m, n, e);
	free(m);
	return rc;
}

/* ---------- PDPTRs (KVM_GET/SET_SREGS2) ---------- */

static int sregs2_cap = -1;

/* KVM_CAP_SREGS2 (Linux 5.14), asked once per process as the MSR lists are:
 * a save and a restore ask for every vCPU, within the downtime. The
 * failpoint "kvm.no_sregs2" plays a host from before it. */
static bool sregs2_supported(int kvm_fd)
{
	if (sregs2_cap < 0)
		sregs2_cap = failpoint("kvm.no_sregs2") == 0 &&
			     ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SREGS2) > 0;
	return sregs2_cap > 0;
}

/* KVM's own test (is_pae_paging) for when it keeps PDPTRs. */
static bool pae_paging(const struct kvm_sregs *s)
{
	return (s->cr0 & CR0_PG) && (s->cr4 & CR4_PAE) && !(s->efer & EFER_LMA);
}

/* In PAE paging the CPU loads the four PDPTRs from the PDPT at CR3 when
 * CR3 is written and translates through them until the next write, so
 * the PDPT in memory may since hold something else: KVM_GET_SREGS leaves
 * them out, KVM_GET_SREGS2 has them. */
static int pdptrs_read(int vcpu_fd, struct vcpu_state *st, struct err *e)
{
	struct kvm_sregs2 s2;

	memset(&s2, 0, sizeof(s2));
	if (ioctl(vcpu_fd, KVM_GET_SREGS2, &s2) < 0)
		return err_sys(e, "KVM_GET_SREGS2");
	/* Only the flag this build can put back, as QEMU keeps only it: KVM
	 * defines no other, and refusing to save on a later kernel that did
	 * would stop every move from that host. */
	if (!(s2.flags & KVM_SREGS2_FLAGS_PDPTRS_VALID))
		return 0;
	st->sregs2_flags = KVM_SREGS2_FLAGS_PDPTRS_VALID;
	memcpy(st->pdptrs, s2.pdptrs, sizeof(st->pdptrs));
	return 0;
}

/* Without SET_SREGS2 the restore could only have KVM reload the PDPTRs
 * from the PDPT in memory (what SET_SREGS does), which the guest may have
 * rewritten since it loaded CR3: it would run on with translations it
 * never set up. */
static int pdptrs_check(int kvm_fd, const struct vcpu_state *st, struct err *e)
{
	if (!(st->sregs2_flags & KVM_SREGS2_FLAGS_PDPTRS_VALID) || sregs2_supported(kvm_fd))
		return 0;
	return err_set(e, "incompatible host: the guest uses 32-bit PAE paging and its vCPU's PDPTRs "
		       "can only be restored with KVM_SET_SREGS2, which this host's KVM lacks (no "
		       "KVM_CAP_SREGS2; Linux 5.14 and later have it)");
}

/* Restore step 4 (vcpu_put_registers): SET_SREGS2 where the state has
 * PDPTRs, so KVM takes them as saved instead of reading the PDPT at CR3
 * in this host's copy of memory; else SET_SREGS, as a state without them
 * was always put. */
static int sregs_put(int vcpu_fd, const struct vcpu_state *st, struct err *e)
{
	const struct kvm_sregs *s = &st->sregs;
	struct kvm_sregs2 s2;

	if (!(st->sregs2_flags & KVM_SREGS2_FLAGS_PDPTRS_VALID)) {
		if (ioctl(vcpu_fd, KVM_SET_SREGS, s) < 0)
			return err_sys(e, "KVM_SET_SREGS");
		return 0;
	}
	/* SREGS2 has no interrupt_bitmap, through which SET_SREGS queues the
	 * external interrupt KVM was injecting. Nothing is lost: that is the
	 * interrupt VCPU_EVENTS carries (interrupt.injected, .nr), read from
	 * the same place in KVM, and step 10 puts it after this one. */
	memset(&s2, 0, sizeof(s2));
	s2.cs = s->cs; s2.ds = s->ds; s2.es = s->es; s2.fs = s->fs;
	s2.gs = s->gs; s2.ss = s->ss; s2.tr = s->tr; s2.ldt = s->ldt;
	s2.gdt = s->gdt; s2.idt = s->idt;
	s2.cr0 = s->cr0; s2.cr2 = s->cr2; s2.cr3 = s->cr3; s2.cr4 = s->cr4; s2.cr8 = s->cr8;
	s2.efer = s->efer;
	s2.apic_base = s->apic_base;
	s2.flags = KVM_SREGS2_FLAGS_PDPTRS_VALID;
	memcpy(s2.pdptrs, st->pdptrs, sizeof(s2.pdptrs));
	if (ioctl(vcpu_fd, KVM_SET_SREGS2, &s2) < 0)
		return err_sys(e, "KVM_SET_SREGS2");
	return 0;
}

/* ---------- checks against this host ---------- */

static bool tsc_khz_close(uint32_t want, uint32_t have)
{
	uint64_t diff = want > have ? want - have : have - want;
	return diff * 1000000 <= (uint64_t)want * TSC_KHZ_TOL_PPM;
}

/* The guest calibrated its TSC rate once, at boot: it must keep ticking at
 * that rate here, by KVM's scaling when this host's own rate differs.
 * apply = false only says whether that is possible. */
static int tsc_khz_match(int kvm_fd, int vcpu_fd, uint32_t want, bool apply, struct err *e)
{
	int have;

	if (!want)
		return 0; /* the source could not read its rate: nothing to hold to */
	have = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
	if (have < 0)
		return err_sys(e, "KVM_GET_TSC_KHZ (the guest's TSC runs at %u kHz)", want);
	if (have > 0 && tsc_khz_close(want, (uint32_t)have))
		return 0;
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL) <= 0)
		return err_set(e, "incompatible host: the guest's TSC runs at %u kHz, this host's at "
			       "%d kHz (more than %d ppm apart) and this KVM cannot scale it (no "
			       "KVM_CAP_TSC_CONTROL)",
			       want, have, TSC_KHZ_TOL_PPM);
	if (apply && ioctl(vcpu_fd, KVM_SET_TSC_KHZ, (unsigned long)want) < 0)
		return err_sys(e, "KVM_SET_TSC_KHZ to the guest's %u kHz (this host's TSC runs at %d kHz)",
			       want, have);
	return 0;
}

/* KVM_X86_SETUP_MCE with the source's MCG_CAP must succeed here. */
static int mce_check(int kvm_fd, uint64_t mcg_cap, struct err *e)
{
	int max_banks;
	uint64_t supported = 0, lacking;

	if (!mcg_cap)
		return 0;
	max_banks = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MCE);
	if (max_banks <= 0)
		return err_set(e, "incompatible host: the guest's vCPU has machine-check banks (MCG_CAP "
			       "0x%llx) and this host's KVM has none (no KVM_CAP_MCE)",
			       (unsigned long long)mcg_cap);
	if ((mcg_cap & MCG_BANKS_MASK) > (uint64_t)max_banks)
		return err_set(e, "incompatible host: the guest's vCPU has %u machine-check banks, this "
			       "host's KVM at most %d",
			       (unsigned)(mcg_cap & MCG_BANKS_MASK), max_banks);
	if (ioctl(kvm_fd, KVM_X86_GET_MCE_CAP_SUPPORTED, &supported) < 0)
		return err_sys(e, "KVM_X86_GET_MCE_CAP_SUPPORTED");
	/* The counts are not capabilities: KVM's own check leaves them out too. */
	lacking = mcg_cap & ~(supported | MCG_BANKS_MASK | MCG_EXT_CNT_MASK);
	if (lacking)
		return err_set(e, "incompatible host: the guest's MCG_CAP is 0x%llx, this host's KVM "
			       "lacks 0x%llx", (unsigned long long)mcg_cap, (unsigned long long)lacking);
	return 0;
}

/* Everything of the vCPU model this host must honour, but CPUID (cpuid.c). */
static int model_check(int kvm_fd, int vcpu_fd, uint32_t tsc_khz, uint64_t mcg_cap,
		       const struct cpu_msr *msrs, uint32_t nmsrs, struct err *e)
{
	if (tsc_khz_match(kvm_fd, vcpu_fd, tsc_khz, false, e) < 0 || mce_check(kvm_fd, mcg_cap, e) < 0)
		return -1;
	return feature_msrs_check(kvm_fd, msrs, nmsrs, e);
}

int vcpu_check_host(int kvm_fd, int vcpu_fd, const struct vcpu_state *st, struct err *e)
{
	if (model_check(kvm_fd, vcpu_fd, st->tsc_khz, st->mcg_cap, st->msrs, st->nmsrs, e) < 0)
		return -1;
	return pdptrs_check(kvm_fd, st, e);
}

int cpu_model_check_host(int kvm_fd, int vcpu_fd, const struct cpu_model *cm, struct err *e)
{
	return model_check(kvm_fd, vcpu_fd, cm->tsc_khz, cm->mcg_cap, cm->msrs, cm->nmsrs, e);
}

/* 0 where KVM cannot say: nothing to hold the destination to. */
static uint32_t vcpu_tsc_khz(int vcpu_fd)
{
	int khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
	return khz > 0 ? (uint32_t)khz : 0;
}

/* ---------- vCPU ---------- */

int vcpu_save(int kvm_fd, int vcpu_fd, const struct kvm_cpuid2 *cpuid, struct vcpu_state *st,
	      struct err *e)
{
	uint32_t *idx, n;
	int xsave_size;

	memset(st, 0, sizeof(*st));
	/* Order (Firecracker's): MP_STATE first, since reading it makes KVM
	 * process pending INIT/SIPI, which can change registers and the LAPIC. */
	if (ioctl(vcpu_fd, KVM_GET_MP_STATE, &st->mp) < 0)
		return err_sys(e, "KVM_GET_MP_STATE");
	if (ioctl(vcpu_fd, KVM_GET_REGS, &st->regs) < 0)
		return err_sys(e, "KVM_GET_REGS");
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &st->sregs) < 0)
		return err_sys(e, "KVM_GET_SREGS");
	/* Besides GET_SREGS, not instead: the rest is the same registers, and
	 * a save where KVM has no SREGS2 stays what it always was. */
	if (sregs2_supported(kvm_fd) && pdptrs_read(vcpu_fd, st, e) < 0)
		return -1;
	xsave_size = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (xsave_size > (int)sizeof(struct kvm_xsave)) {
		if (xsave_size > CPUSTATE_XSAVE_MAX)
			return err_set(e, "XSAVE area of %d bytes exceeds %d", xsave_size, CPUSTATE_XSAVE_MAX);
		if (ioctl(vcpu_fd, KVM_GET_XSAVE2, st->xsave) < 0)
			return err_sys(e, "KVM_GET_XSAVE2");
		st->xsave_len = (uint32_t)xsave_size;
	} else {
		if (ioctl(vcpu_fd, KVM_GET_XSAVE, st->xsave) < 0)
			return err_sys(e, "KVM_GET_XSAVE");
		st->xsave_len = sizeof(struct kvm_xsave);
	}
	if (ioctl(vcpu_fd, KVM_GET_XCRS, &st->xcrs) < 0)
		return err_sys(e, "KVM_GET_XCRS");
	if (ioctl(vcpu_fd, KVM_GET_DEBUGREGS, &st->dregs) < 0)
		return err_sys(e, "KVM_GET_DEBUGREGS");
	if (ioctl(vcpu_fd, KVM_GET_LAPIC, &st->lapic) < 0)
		return err_sys(e, "KVM_GET_LAPIC");
	st->tsc_khz = vcpu_tsc_khz(vcpu_fd);
	if (!cpuid || cpuid->nent > CPUSTATE_MAX_CPUID)
		return err_set(e, "vCPU has no recorded CPUID");
	st->ncpuid = cpuid->nent;
	memcpy(st->cpuid, cpuid->entries, st->ncpuid * sizeof(cpuid->entries[0]));
	if (cpustate_msr_list(kvm_fd, vcpu_fd, &idx, &n, e) < 0)
		return -1;
	st->nmsrs = n;
	for (uint32_t i = 0; i < n; i++)
		st->msrs[i].index = idx[i];
	if (mtrr_msrs_add(vcpu_fd, cpuid, st, e) < 0 || mce_msrs_add(vcpu_fd, cpuid, st, e) < 0)
		return -1;
	if (msrs_xfer(vcpu_fd, false, st->msrs, st->nmsrs, e) < 0)
		return -1;
	/* Last: the GETs above may have changed what is pending. */
	if (ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &st->events) < 0)
		return err_sys(e, "KVM_GET_VCPU_EVENTS");
	return 0;
}

/* What vcpu_save would send of the model: the same reads, the feature
 * MSRs picked from the same list by this host's KVM. */
int cpu_model_read(int kvm_fd, int vcpu_fd, const struct kvm_cpuid2 *cpuid, struct cpu_model *cm,
		   struct err *e)
{
	const struct kvm_msr_list *features;
	uint32_t *idx, n;
	int rc = 0;

	memset(cm, 0, sizeof(*cm));
	if (!cpuid)
		return err_set(e, "vCPU has no recorded CPUID");
	cm->tsc_khz = vcpu_tsc_khz(vcpu_fd);
	if (mce_in_cpuid(cpuid) && mcg_cap_read(vcpu_fd, &cm->mcg_cap, e) < 0)
		return -1;
	if (cpustate_msr_list(kvm_fd, vcpu_fd, &idx, &n, e) < 0)
		return -1;
	features = feature_list_get(kvm_fd, e);
	if (!features)
		return -1;
	for (uint32_t i = 0; i < n && rc == 0; i++) {
		struct cpu_msr m = { idx[i], 0 };
		if (!is_feature_msr(features, idx[i]))
			continue;
		/* Left out, a feature MSR would go unchecked until the state is
		 * applied: refuse to describe the vCPU instead. */
		if (cm->nmsrs == CPU_MODEL_MAX_MSRS)
			rc = err_set(e, "more than %d feature MSRs (at MSR 0x%x): CPU_MODEL_MAX_MSRS is "
				     "too small", CPU_MODEL_MAX_MSRS, idx[i]);
		else if (msrs_xfer(vcpu_fd, false, &m, 1, e) < 0)
			rc = -1;
		else
			cm->msrs[cm->nmsrs++] = m;
	}
	return rc;
}

/* Steps 1-1d: the vCPU model, what the source set at vCPU creation. */
static int vcpu_put_model(int kvm_fd, int vcpu_fd, const struct vcpu_state *st,
			  const struct kvm_msr_list *features,
			  int (*set_cpuid)(void *opaque, const struct kvm_cpuid2 *c, struct err *e),
			  void *opaque, struct err *e)
{
	struct { struct kvm_cpuid2 h; struct kvm_cpuid_entry2 ent[CPUSTATE_MAX_CPUID]; } cpuid;

	/* 1. CPUID before anything: other SETs (MP state, MSRs) depend on the
	 *    vCPU model, and KVM freezes CPUID after the first KVM_RUN. */
	memset(&cpuid, 0, sizeof(cpuid));
	cpuid.h.nent = st->ncpuid;
	memcpy(cpuid.ent, st->cpuid, st->ncpuid * sizeof(cpuid.ent[0]));
	if (set_cpuid(opaque, &cpuid.h, e) < 0)
		return -1;
	/* 1b. TSC rate before any TSC write (IA32_TSC in step 9, the kvmclock
	 *     after all vCPUs): KVM converts a written TSC value at the rate in
	 *     force, so a later rate change would skew it. QEMU and Firecracker
	 *     set the rate at vCPU creation for the same reason. */
	if (tsc_khz_match(kvm_fd, vcpu_fd, st->tsc_khz, true, e) < 0)
		return -1;
	/* 1c. Machine checks set up as on the source (both sides, or neither
	 *     for a version 1 state, whose source kept KVM's default), before
	 *     any MSR: this fixes the bank count the bank MSRs are checked
	 *     against, and resets MCG_CTL and every MCi_CTL, which step 9 then
	 *     overwrites with the saved values. */
	if (st->mcg_cap && mce_setup(vcpu_fd, st->mcg_cap, e) < 0)
		return -1;
	/* 1d. Feature MSRs, right after CPUID as QEMU sets them at vCPU
	 *     creation, and before every other MSR: they decide which others
	 *     exist (IA32_TSX_CTRL only with ARCH_CAPABILITIES.TSX_CTRL_MSR,
	 *     PMU MSRs by PERF_CAPABILITIES). */
	return msrs_put_step(vcpu_fd, st, features, MSR_STEP_FEATURE, e);
}

/* Steps 2-10: what the guest changed since. */
static int vcpu_put_registers(int vcpu_fd, const struct vcpu_state *st,
			      const struct kvm_msr_list *features, struct err *e)
{
	/* 2. MP state. */
	if (ioctl(vcpu_fd, KVM_SET_MP_STATE, &st->mp) < 0)
		return err_sys(e, "KVM_SET_MP_STATE");
	/* 3. REGS: clears pending exceptions, so it must precede VCPU_EVENTS. */
	if (ioctl(vcpu_fd, KVM_SET_REGS, &st->regs) < 0)
		return err_sys(e, "KVM_SET_REGS");
	/* 4. SREGS2 or SREGS (sregs_put): restores the APIC base, which
	 *    SET_LAPIC depends on. SREGS2 drops SREGS's pending-interrupt
	 *    bitmap, which step 10 makes good. */
	if (sregs_put(vcpu_fd, st, e) < 0)
		return -1;
	/* 5-7. FPU/extended state, XCR0, debug registers. KVM_SET_XSAVE takes the larger XSAVE2 buffer. */
	if (ioctl(vcpu_fd, KVM_SET_XSAVE, st->xsave) < 0)
		return err_sys(e, "KVM_SET_XSAVE");
	if (ioctl(vcpu_fd, KVM_SET_XCRS, &st->xcrs) < 0)
		return err_sys(e, "KVM_SET_XCRS");
	if (ioctl(vcpu_fd, KVM_SET_DEBUGREGS, &st->dregs) < 0)
		return err_sys(e, "KVM_SET_DEBUGREGS");
	/* 8. LAPIC after SREGS (APIC base) and before MSRs (TSC deadline needs a configured LAPIC). */
	if (ioctl(vcpu_fd, KVM_SET_LAPIC, &st->lapic) < 0)
		return err_sys(e, "KVM_SET_LAPIC");
	/* 9. MSRs, except TSC_DEADLINE, which must follow IA32_TSC or its timer is lost. */
	if (msrs_put_step(vcpu_fd, st, features, MSR_STEP_MAIN, e) < 0 ||
	    msrs_put_step(vcpu_fd, st, features, MSR_STEP_DEADLINE, e) < 0)
		return -1;
	/* 10. Events last: pending exception/interrupt/NMI survive only after
	 *     REGS/SREGS; this also puts the interrupt SREGS2 has no field for. */
	if (ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, &st->events) < 0)
		return err_sys(e, "KVM_SET_VCPU_EVENTS");
	return 0;
}

int vcpu_restore(int kvm_fd, int vcpu_fd, const struct vcpu_state *st,
		 int (*set_cpuid)(void *opaque, const struct kvm_cpuid2 *c, struct err *e),
		 void *opaque, struct err *e)
{
	const struct kvm_msr_list *features;
	int rc;

	/* Nothing is set on a host that cannot run the guest as it was. */
	if (vcpu_check_host(kvm_fd, vcpu_fd, st, e) < 0)
		return -1;
	features = feature_list_get(kvm_fd, e);
	if (!features)
		return -1;
	rc = vcpu_put_model(kvm_fd, vcpu_fd, st, features, set_cpuid, opaque, e);
	if (rc == 0)
		rc = vcpu_put_registers(vcpu_fd, st, features, e);
	return rc;
}

static void put_seg(struct stream *w, const struct kvm_segment *s)
{
	stream_put_u64(w, s->base);
	stream_put_u32(w, s->limit);
	stream_put_u16(w, s->selector);
	const uint8_t f[] = { s->type, s->present, s->dpl, s->db, s->s, s->l, s->g, s->avl, s->unusable };
	stream_put(w, f, sizeof(f));
}

static void get_seg(struct stream *r, struct kvm_segment *s)
{
	uint8_t f[9];
	s->base = stream_get_u64(r);
	s->limit = stream_get_u32(r);
	s->selector = stream_get_u16(r);
	stream_get(r, f, sizeof(f));
	s->type = f[0]; s->present = f[1]; s->dpl = f[2]; s->db = f[3]; s->s = f[4];
	s->l = f[5]; s->g = f[6]; s->avl = f[7]; s->unusable = f[8];
}

static void put_blob(struct stream *w, const void *p, uint32_t len)
{
	stream_put_u32(w, len);
	stream_put(w, p, len);
}

/* A blob must have exactly the size this build's KVM headers define. */
static void get_blob(struct stream *r, void *p, uint32_t len, const char *what)
{
	uint32_t got = stream_get_u32(r);
	if (!stream_ok(r))
		return;
	if (got != len) {
		stream_fail(r, "%s: %u bytes in stream, expected %u", what, got, len);
		return;
	}
	stream_get(r, p, len);
}

/* 0: no machine-check setup to repeat; else KVM_X86_SETUP_MCE would take it. */
static void get_mcg_cap(struct stream *r, const char *what, uint64_t *mcg_cap)
{
	uint32_t banks;

	*mcg_cap = stream_get_u64(r);
	banks = *mcg_cap & MCG_BANKS_MASK;
	if (stream_ok(r) && *mcg_cap && (banks == 0 || banks > MCE_MAX_BANKS))
		stream_fail(r, "%s: MCG_CAP 0x%llx counts %u machine-check banks (1 to %d)", what,
			    (unsigned long long)*mcg_cap, banks, MCE_MAX_BANKS);
}

/* The flags decide how the restore puts the special registers: one it
 * does not know, or PDPTRs for a mode that has none (KVM_SET_SREGS2 would
 * refuse them only once the restore had begun), is refused here. */
static void get_pdptrs(struct stream *r, struct vcpu_state *st)
{
	const struct kvm_sregs *s = &st->sregs;

	st->sregs2_flags = stream_get_u32(r);
	for (int i = 0; i < 4; i++)
		st->pdptrs[i] = stream_get_u64(r);
	if (!stream_ok(r))
		return;
	if (st->sregs2_flags & ~(uint32_t)KVM_SREGS2_FLAGS_PDPTRS_VALID)
		stream_fail(r, "vCPU state: unknown SREGS2 flags 0x%x (this build knows 0x%x, PDPTRs "
			    "valid)", st->sregs2_flags, KVM_SREGS2_FLAGS_PDPTRS_VALID);
	else if (st->sregs2_flags && !pae_paging(s))
		stream_fail(r, "vCPU state: PDPTRs marked valid for a vCPU not in PAE paging (CR0 "
			    "0x%llx, CR4 0x%llx, EFER 0x%llx)", (unsigned long long)s->cr0,
			    (unsigned long long)s->cr4, (unsigned long long)s->efer);
}

void vcpu_state_put(struct stream *w, const struct vcpu_state *st)
{
	const struct kvm_regs *g = &st->regs;
	const uint64_t regs[] = { g->rax, g->rbx, g->rcx, g->rdx, g->rsi, g->rdi, g->rsp, g->rbp,
				  g->r8, g->r9, g->r10, g->r11, g->r12, g->r13, g->r14, g->r15,
				  g->rip, g->rflags };
	const struct kvm_sregs *s = &st->sregs;

	stream_put_u32(w, st->mp.mp_state);
	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		stream_put_u64(w, regs[i]);
	put_seg(w, &s->cs); put_seg(w, &s->ds); put_seg(w, &s->es); put_seg(w, &s->fs);
	put_seg(w, &s->gs); put_seg(w, &s->ss); put_seg(w, &s->tr); put_seg(w, &s->ldt);
	stream_put_u64(w, s->gdt.base); stream_put_u16(w, s->gdt.limit);
	stream_put_u64(w, s->idt.base); stream_put_u16(w, s->idt.limit);
	stream_put_u64(w, s->cr0); stream_put_u64(w, s->cr2); stream_put_u64(w, s->cr3);
	stream_put_u64(w, s->cr4); stream_put_u64(w, s->cr8); stream_put_u64(w, s->efer);
	stream_put_u64(w, s->apic_base);
	for (int i = 0; i < 4; i++)
		stream_put_u64(w, s->interrupt_bitmap[i]);
	put_blob(w, st->xsave, st->xsave_len);
	put_blob(w, &st->xcrs, sizeof(st->xcrs));
	put_blob(w, &st->dregs, sizeof(st->dregs));
	put_blob(w, &st->lapic, sizeof(st->lapic));
	put_blob(w, &st->events, sizeof(st->events));
	stream_put_u32(w, st->tsc_khz);
	stream_put_u32(w, st->nmsrs);
	for (uint32_t i = 0; i < st->nmsrs; i++) {
		stream_put_u32(w, st->msrs[i].index);
		stream_put_u64(w, st->msrs[i].data);
	}
	stream_put_u32(w, st->ncpuid);
	for (uint32_t i = 0; i < st->ncpuid; i++) {
		const struct kvm_cpuid_entry2 *c = &st->cpuid[i];
		stream_put_u32(w, c->function); stream_put_u32(w, c->index);
		stream_put_u32(w, c->flags); stream_put_u32(w, c->eax);
		stream_put_u32(w, c->ebx); stream_put_u32(w, c->ecx); stream_put_u32(w, c->edx);
	}
	/* Version 2 on. */
	stream_put_u64(w, st->mcg_cap);
	/* Version 3 on: the PDPTRs go as they are even when not valid (zero),
	 * so the section's length never depends on the guest's paging mode. */
	stream_put_u32(w, st->sregs2_flags);
	for (int i = 0; i < 4; i++)
		stream_put_u64(w, st->pdptrs[i]);
}

int vcpu_state_get(struct stream *r, uint32_t version, struct vcpu_state *st, struct err *e)
{
	struct kvm_regs *g = &st->regs;
	__u64 *regs[] = { &g->rax, &g->rbx, &g->rcx, &g->rdx, &g->rsi, &g->rdi, &g->rsp, &g->rbp,
			     &g->r8, &g->r9, &g->r10, &g->r11, &g->r12, &g->r13, &g->r14, &g->r15,
			     &g->rip, &g->rflags };
	struct kvm_sregs *s = &st->sregs;

	if (version < 1 || version > CPUSTATE_VERSION)
		return err_set(e, "vCPU state version %u unsupported (this build reads 1 to %d)", version,
			       CPUSTATE_VERSION);
	memset(st, 0, sizeof(*st));
	st->mp.mp_state = stream_get_u32(r);
	if (st->mp.mp_state > KVM_MP_STATE_AP_RESET_HOLD)
		stream_fail(r, "vCPU state: unknown MP state %u", st->mp.mp_state);
	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		*regs[i] = stream_get_u64(r);
	get_seg(r, &s->cs); get_seg(r, &s->ds); get_seg(r, &s->es); get_seg(r, &s->fs);
	get_seg(r, &s->gs); get_seg(r, &s->ss); get_seg(r, &s->tr); get_seg(r, &s->ldt);
	s->gdt.base = stream_get_u64(r); s->gdt.limit = stream_get_u16(r);
	s->idt.base = stream_get_u64(r); s->idt.limit = stream_get_u16(r);
	s->cr0 = stream_get_u64(r); s->cr2 = stream_get_u64(r); s->cr3 = stream_get_u64(r);
	s->cr4 = stream_get_u64(r); s->cr8 = stream_get_u64(r); s->efer = stream_get_u64(r);
	s->apic_base = stream_get_u64(r);
	for (int i = 0; i < 4; i++)
		s->interrupt_bitmap[i] = stream_get_u64(r);
	st->xsave_len = stream_get_u32(r);
	if (stream_ok(r) && (st->xsave_len < sizeof(struct kvm_xsave) || st->xsave_len > CPUSTATE_XSAVE_MAX))
		stream_fail(r, "vCPU state: XSAVE area of %u bytes is out of range", st->xsave_len);
	stream_get(r, st->xsave, stream_ok(r) ? st->xsave_len : 0);
	get_blob(r, &st->xcrs, sizeof(st->xcrs), "XCRS");
	get_blob(r, &st->dregs, sizeof(st->dregs), "debug registers");
	get_blob(r, &st->lapic, sizeof(st->lapic), "LAPIC");
	get_blob(r, &st->events, sizeof(st->events), "vCPU events");
	if (stream_ok(r) && st->xcrs.nr_xcrs > KVM_MAX_XCRS)
		stream_fail(r, "vCPU state: %u XCRs exceeds %d", st->xcrs.nr_xcrs, KVM_MAX_XCRS);
	st->tsc_khz = stream_get_u32(r);
	st->nmsrs = stream_get_u32(r);
	if (stream_ok(r) && st->nmsrs > CPUSTATE_MAX_MSRS)
		stream_fail(r, "vCPU state: %u MSRs exceeds %d", st->nmsrs, CPUSTATE_MAX_MSRS);
	for (uint32_t i = 0; stream_ok(r) && i < st->nmsrs; i++) {
		st->msrs[i].index = stream_get_u32(r);
		st->msrs[i].data = stream_get_u64(r);
	}
	st->ncpuid = stream_get_u32(r);
	if (stream_ok(r) && st->ncpuid > CPUSTATE_MAX_CPUID)
		stream_fail(r, "vCPU state: %u CPUID entries exceeds %d", st->ncpuid, CPUSTATE_MAX_CPUID);
	for (uint32_t i = 0; stream_ok(r) && i < st->ncpuid; i++) {
		struct kvm_cpuid_entry2 *c = &st->cpuid[i];
		c->function = stream_get_u32(r); c->index = stream_get_u32(r);
		c->flags = stream_get_u32(r); c->eax = stream_get_u32(r);
		c->ebx = stream_get_u32(r); c->ecx = stream_get_u32(r); c->edx = stream_get_u32(r);
	}
	if (version >= 2)
		get_mcg_cap(r, "vCPU state", &st->mcg_cap);
	if (version >= 3)
		get_pdptrs(r, st);
	return stream_check(r, e);
}

void cpu_model_put(struct stream *w, const struct cpu_model *cm)
{
	stream_put_u32(w, CPU_MODEL_VERSION);
	stream_put_u32(w, cm->tsc_khz);
	stream_put_u64(w, cm->mcg_cap);
	stream_put_u32(w, cm->nmsrs);
	for (uint32_t i = 0; i < cm->nmsrs; i++) {
		stream_put_u32(w, cm->msrs[i].index);
		stream_put_u64(w, cm->msrs[i].data);
	}
}

int cpu_model_get(struct stream *r, uint32_t len, struct cpu_model *cm, struct err *e)
{
	uint32_t version;

	memset(cm, 0, sizeof(*cm));
	/* The record's length first: reading past it would take the next
	 * record's bytes for fields (or wait for bytes never sent). */
	if (len < CPU_MODEL_WIRE_MIN)
		return err_set(e, "vCPU model: a record of %u bytes (at least %d)", len, CPU_MODEL_WIRE_MIN);
	version = stream_get_u32(r);
	if (stream_check(r, e) < 0)
		return err_prefix(e, "vCPU model");
	if (version != CPU_MODEL_VERSION)
		return err_set(e, "vCPU model version %u unsupported (this build reads %d)", version,
			       CPU_MODEL_VERSION);
	cm->tsc_khz = stream_get_u32(r);
	get_mcg_cap(r, "vCPU model", &cm->mcg_cap);
	cm->nmsrs = stream_get_u32(r);
	if (stream_check(r, e) < 0)
		return -1;
	if (cm->nmsrs > CPU_MODEL_MAX_MSRS)
		return err_set(e, "vCPU model: %u feature MSRs exceeds %d", cm->nmsrs, CPU_MODEL_MAX_MSRS);
	if (len != CPU_MODEL_WIRE_MIN + cm->nmsrs * CPU_MODEL_WIRE_MSR)
		return err_set(e, "vCPU model: %u MSRs in a record of %u bytes (expected %u)", cm->nmsrs,
			       len, CPU_MODEL_WIRE_MIN + cm->nmsrs * CPU_MODEL_WIRE_MSR);
	for (uint32_t i = 0; i < cm->nmsrs; i++) {
		cm->msrs[i].index = stream_get_u32(r);
		cm->msrs[i].data = stream_get_u64(r);
		if (stream_check(r, e) < 0)
			return err_prefix(e, "vCPU model MSR %u", i);
		/* The source lists each MSR once: a repeat is corruption, and
		 * which of two values to check would be a guess. */
		for (uint32_t j = 0; j < i; j++)
			if (cm->msrs[j].index == cm->msrs[i].index)
				return err_set(e, "vCPU model: MSR 0x%x appears twice", cm->msrs[i].index);
	}
	return 0;
}

/* ---------- VM-wide ---------- */

int kvm_vm_save(int vm_fd, struct kvm_vm_state *st, struct err *e)
{
	memset(st, 0, sizeof(*st));
	if (ioctl(vm_fd, KVM_GET_PIT2, &st->pit) < 0)
		return err_sys(e, "KVM_GET_PIT2");
	st->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	st->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	st->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	if (ioctl(vm_fd, KVM_GET_IRQCHIP, &st->pic_master) < 0 ||
	    ioctl(vm_fd, KVM_GET_IRQCHIP, &st->pic_slave) < 0 ||
	    ioctl(vm_fd, KVM_GET_IRQCHIP, &st->ioapic) < 0)
		return err_sys(e, "KVM_GET_IRQCHIP");
	/* The clock is read last, as late as possible, so the guest loses the
	 * least time across the move (QEMU measured 5 s -> 0.1 s doing so). */
	if (ioctl(vm_fd, KVM_GET_CLOCK, &st->clock) < 0)
		return err_sys(e, "KVM_GET_CLOCK");
	return 0;
}

int kvm_vm_restore_irq(int vm_fd, const struct kvm_vm_state *st, struct err *e)
{
	struct kvm_irqchip chips[3] = { st->pic_master, st->pic_slave, st->ioapic };
	if (ioctl(vm_fd, KVM_SET_PIT2, &st->pit) < 0)
		return err_sys(e, "KVM_SET_PIT2");
	for (int i = 0; i < 3; i++)
		if (ioctl(vm_fd, KVM_SET_IRQCHIP, &chips[i]) < 0)
			return err_sys(e, "KVM_SET_IRQCHIP %u", chips[i].chip_id);
	return 0;
}

int kvm_vm_restore_clock(int vm_fd, const struct kvm_vm_state *st, struct err *e)
{
	struct kvm_clock_data c = st->clock;
	/* With REALTIME, KVM advances the clock by the wall time that passed
	 * in between, so guest time keeps pace with the world. */
	c.flags &= KVM_CLOCK_REALTIME;
	if (ioctl(vm_fd, KVM_SET_CLOCK, &c) < 0) {
		if (errno != EINVAL || !c.flags)
			return err_sys(e, "KVM_SET_CLOCK");
		c.flags = 0;
		if (ioctl(vm_fd, KVM_SET_CLOCK, &c) < 0)
			return err_sys(e, "KVM_SET_CLOCK");
	}
	return 0;
}

void kvm_vm_state_put(struct stream *w, const struct kvm_vm_state *st)
{
	put_blob(w, &st->pit, sizeof(st->pit));
	put_blob(w, &st->pic_master, sizeof(st->pic_master));
	put_blob(w, &st->pic_slave, sizeof(st->pic_slave));
	put_blob(w, &st->ioapic, sizeof(st->ioapic));
	stream_put_u64(w, st->clock.clock);
	stream_put_u32(w, st->clock.flags);
	stream_put_u64(w, st->clock.realtime);
	stream_put_u64(w, st->clock.host_tsc);
}

int kvm_vm_state_get(struct stream *r, struct kvm_vm_state *st, struct err *e)
{
	memset(st, 0, sizeof(*st));
	get_blob(r, &st->pit, sizeof(st->pit), "PIT");
	get_blob(r, &st->pic_master, sizeof(st->pic_master), "PIC master");
	get_blob(r, &st->pic_slave, sizeof(st->pic_slave), "PIC slave");
	get_blob(r, &st->ioapic, sizeof(st->ioapic), "IOAPIC");
	if (stream_ok(r) && (st->pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER ||
			     st->pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE ||
			     st->ioapic.chip_id != KVM_IRQCHIP_IOAPIC))
		stream_fail(r, "irqchip state: chip ids out of order");
	st->clock.clock = stream_get_u64(r);
	st->clock.flags = stream_get_u32(r);
	st->clock.realtime = stream_get_u64(r);
	st->clock.host_tsc = stream_get_u64(r);
	return stream_check(r, e);
}
