/*
 * vCPU state on real KVM (src/vmm/x86/cpustate.c): what a restore demands
 * of the destination host (the TSC rate, feature MSRs), checked on this
 * host's KVM with a saved state edited the way another host's would
 * differ; the MSRs KVM's list lacks (MTRRs, machine-check banks) saved;
 * the encoding in every version; a vCPU restored into another VM, and one
 * in 32-bit PAE paging with its PDPTRs (KVM_GET/SET_SREGS2). Skips (exit
 * 77) without /dev/kvm or the guest binary (machines are built, never run).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvm_test.h"
#include "migration/format.h"
#include "vmm/vmstate.h"
#include "vmm/machine.h"
#include "vmm/vcpu.h"
#include "vmm/x86/cpustate.h"

static void kvm_test_sink(void *opaque, const uint8_t *buf, size_t n)
{
	(void)opaque;
	(void)buf;
	(void)n;
}

/* MSRs a guest would have written, as KVM_SET_MSRS of one vCPU. */
static void msrs_set(int vcpu_fd, const struct cpu_msr *m, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct { struct kvm_msrs h; struct kvm_msr_entry ent; } one;
		memset(&one, 0, sizeof(one));
		one.h.nmsrs = 1;
		one.ent.index = m[i].index;
		one.ent.data = m[i].data;
		if (ioctl(vcpu_fd, KVM_SET_MSRS, &one) != 1)
			fail_msg("KVM refuses MSR 0x%x = 0x%llx", m[i].index, (unsigned long long)m[i].data);
	}
}

/* A fresh 1-vCPU machine given the MSRs in preset, saved. */
static struct vcpu_state *saved_vcpu_with(struct machine *m, const char *name,
					  const struct cpu_msr *preset, uint32_t npreset)
{
	struct vcpu_state *st = malloc(sizeof(*st));
	struct err e = { .code = 0 };

	assert_non_null(st);
	kvm_test_build(m, name, 16ull << 20);
	msrs_set(m->vm.vcpus[0]->fd, preset, npreset);
	if (vcpu_save(m->vm.kvm_fd, m->vm.vcpus[0]->fd, m->vm.vcpus[0]->cpuid, st, &e) < 0)
		fail_msg("vcpu_save: %s", e.msg);
	return st;
}

static struct vcpu_state *saved_vcpu(struct machine *m, const char *name)
{
	return saved_vcpu_with(m, name, NULL, 0);
}

static bool has_cap(int kvm_fd, int cap)
{
	return ioctl(kvm_fd, KVM_CHECK_EXTENSION, cap) > 0;
}

static bool has_msr(const struct vcpu_state *st, uint32_t index)
{
	for (uint32_t i = 0; i < st->nmsrs; i++)
		if (st->msrs[i].index == index)
			return true;
	return false;
}

/* The saved entry for index, added (value 0) if the state lacks it. */
static struct cpu_msr *msr_in(struct vcpu_state *st, uint32_t index)
{
	for (uint32_t i = 0; i < st->nmsrs; i++)
		if (st->msrs[i].index == index)
			return &st->msrs[i];
	assert_true(st->nmsrs < CPUSTATE_MAX_MSRS);
	st->msrs[st->nmsrs] = (struct cpu_msr){ index, 0 };
	return &st->msrs[st->nmsrs++];
}

static int set_cpuid(void *opaque, const struct kvm_cpuid2 *c, struct err *e)
{
	return vcpu_set_cpuid(opaque, c, e);
}

/* A source host whose TSC ran 100 ppm off is taken as is; 1% off only where
 * KVM can scale the TSC, else refused with both rates named. */
static void tsc_rate_checked(void **state)
{
	struct machine m;
	struct vcpu_state *st;
	struct err e = { .code = 0 };
	char want[80];
	uint32_t here;
	int kvm_fd, fd;
	(void)state;

	st = saved_vcpu(&m, "tsc");
	kvm_fd = m.vm.kvm_fd;
	fd = m.vm.vcpus[0]->fd;
	here = st->tsc_khz;
	printf("this host: TSC %u kHz, KVM_CAP_TSC_CONTROL %d\n", here,
	       ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL));
	assert_true(here > 0);
	assert_int_equal(vcpu_check_host(kvm_fd, fd, st, &e), 0);
	st->tsc_khz = here + here / 10000;
	assert_int_equal(vcpu_check_host(kvm_fd, fd, st, &e), 0);
	st->tsc_khz = here + here / 100;
	if (has_cap(kvm_fd, KVM_CAP_TSC_CONTROL)) {
		assert_int_equal(vcpu_check_host(kvm_fd, fd, st, &e), 0);
	} else {
		assert_int_equal(vcpu_check_host(kvm_fd, fd, st, &e), -1);
		printf("refused: %s\n", e.msg);
		snprintf(want, sizeof(want), "%u kHz, this host's at %u kHz", st->tsc_khz, here);
		assert_non_null(strstr(e.msg, want));
		assert_non_null(strstr(e.msg, "KVM_CAP_TSC_CONTROL"));
	}
	/* 0: a source that could not read its rate holds the guest to none. */
	st->tsc_khz = 0;
	assert_int_equal(vcpu_check_host(kvm_fd, fd, st, &e), 0);
	free(st);
	machine_destroy(&m);
}

/* ARCH_CAPABILITIES is the CPU the guest was shown: a bit this host's KVM
 * does not support refuses the restore, naming the MSR; the microcode
 * revision is a value, not capabilities, and is never refused. */
static void feature_msrs_checked(void **state)
{
	struct machine m;
	struct vcpu_state *st;
	struct err e = { .code = 0 };
	uint64_t supported = 0, extra;
	struct cpu_msr *arch;
	int kvm_fd, fd;
	char want[120];
	(void)state;

	st = saved_vcpu(&m, "features");
	kvm_fd = m.vm.kvm_fd;
	fd = m.vm.vcpus[0]->fd;
	if (!has_cap(kvm_fd, KVM_CAP_GET_MSR_FEATURES) ||
	    !cpustate_msr_get(kvm_fd, 0x10a, &supported))
		printf("this KVM reports no supported ARCH_CAPABILITIES: any bit is refused\n");
	printf("this host: ARCH_CAPABILITIES supported 0x%llx\n", (unsigned long long)supported);
	arch = msr_in(st, 0x10a);
	arch->data = supported;
	if (vcpu_check_host(kvm_fd, fd, st, &e) < 0)
		fail_msg("the host's own value refused: %s", e.msg);
	extra = ~supported & (supported + 1); /* lowest bit this host lacks */
	assert_true(extra != 0);
	arch->data = supported | extra;
	assert_int_equal(vcpu_check_host(kvm_fd, fd, st, &e), -1);
	printf("refused: %s\n", e.msg);
	assert_non_null(strstr(e.msg, "IA32_ARCH_CAPABILITIES (MSR 0x10a)"));
	snprintf(want, sizeof(want), "lacks 0x%llx", (unsigned long long)extra);
	if (supported || has_cap(kvm_fd, KVM_CAP_GET_MSR_FEATURES))
		assert_non_null(strstr(e.msg, want));
	arch->data = supported;
	msr_in(st, 0x8b)->data = ~0ull;
	if (vcpu_check_host(kvm_fd, fd, st, &e) < 0)
		fail_msg("a microcode revision refused: %s", e.msg);
	free(st);
	machine_destroy(&m);
}

/* Firmware-like MTRRs: memory write-back by default, the first 64 KiB
 * write-back, the last 4 KiB below 1 MiB write-protected, 2 GiB at 2 GiB
 * write-back through variable pair 0 (a 36-bit mask fits every CPU). */
static const struct cpu_msr guest_mtrrs[] = {
	{ 0x2ff, 0xc06 }, { 0x250, 0x0606060606060606ull }, { 0x26f, 0x0505050505050505ull },
	{ 0x200, 0x80000006ull }, { 0x201, 0xf80000800ull },
};

/* KVM's MSR list lacks the MTRRs: a vCPU whose CPUID shows them saves the
 * default type, the fixed ranges and each variable pair MTRRcap counts. */
static void mtrrs_saved(void **state)
{
	struct machine m;
	struct vcpu_state *st;
	uint64_t cap = 0;
	uint32_t nvar;
	(void)state;

	st = saved_vcpu(&m, "mtrr");
	if (!cpustate_msr_get(m.vm.vcpus[0]->fd, 0xfe, &cap))
		fail_msg("this KVM does not read MTRRcap though the vCPU's CPUID shows MTRRs");
	nvar = cap & 0xff;
	printf("this KVM: MTRRcap 0x%llx (%u variable pairs), %u MSRs saved\n",
	       (unsigned long long)cap, nvar, st->nmsrs);
	assert_true(nvar >= 1 && nvar <= 8);
	assert_true(has_msr(st, 0x2ff));
	for (uint32_t i = 0; i < 2 * nvar; i++)
		assert_true(has_msr(st, 0x200 + i));
	assert_false(has_msr(st, 0x200 + 2 * nvar));
	if (cap & 0x100) {
		assert_true(has_msr(st, 0x250) && has_msr(st, 0x258) && has_msr(st, 0x259));
		for (uint32_t i = 0x268; i <= 0x26f; i++)
			assert_true(has_msr(st, i));
	}
	/* MTRRcap is read-only: not state. */
	assert_false(has_msr(st, 0xfe));
	free(st);
	machine_destroy(&m);
}

/* What KVM_X86_SETUP_MCE is given at boot here (vcpu_setup_mce), or 0 for
 * none: QEMU's MCG_CTL_P | MCG_SER_P where supported, 10 banks at most. */
static uint64_t boot_mcg_cap(int kvm_fd)
{
	int banks = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MCE);
	uint64_t supported = 0;

	if (banks <= 0)
		return 0;
	assert_int_equal(ioctl(kvm_fd, KVM_X86_GET_MCE_CAP_SUPPORTED, &supported), 0);
	return (supported & ((1ull << 8) | (1ull << 24))) | (uint64_t)(banks < 10 ? banks : 10);
}

/* A booted vCPU has QEMU's machine-check setup, and its save carries the
 * MCG_CAP and every bank's four MSRs. */
static void mce_set_up_and_saved(void **state)
{
	struct machine m;
	struct vcpu_state *st;
	struct err e = { .code = 0 };
	uint64_t want, cap = 0;
	uint32_t banks;
	(void)state;

	st = saved_vcpu(&m, "mce");
	want = boot_mcg_cap(m.vm.kvm_fd);
	assert_true(cpustate_msr_get(m.vm.vcpus[0]->fd, 0x179, &cap));
	printf("this KVM: KVM_CAP_MCE %d, MCG_CAP after boot setup 0x%llx (expected 0x%llx)\n",
	       ioctl(m.vm.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MCE), (unsigned long long)cap,
	       (unsigned long long)want);
	if (!want)
		skip();
	assert_true(cap == want);
	assert_true(st->mcg_cap == want);
	banks = want & 0xff;
	assert_true(has_msr(st, 0x17a));
	assert_true(has_msr(st, 0x17b) == ((want & (1ull << 8)) != 0));
	for (uint32_t i = 0; i < 4 * banks; i++)
		assert_true(has_msr(st, 0x400 + i));
	assert_false(has_msr(st, 0x400 + 4 * banks));
	/* A host that cannot repeat the setup refuses, naming what it lacks. */
	st->mcg_cap = want | (1ull << 27);
	if (vcpu_check_host(m.vm.kvm_fd, m.vm.vcpus[0]->fd, st, &e) == 0) {
		printf("this KVM supports LMCE: not checked\n");
	} else {
		printf("refused: %s\n", e.msg);
		assert_non_null(strstr(e.msg, "lacks 0x8000000"));
	}
	st->mcg_cap = (want & ~0xffull) | 33;
	assert_int_equal(vcpu_check_host(m.vm.kvm_fd, m.vm.vcpus[0]->fd, st, &e), -1);
	printf("refused: %s\n", e.msg);
	assert_non_null(strstr(e.msg, "33 machine-check banks"));
	free(st);
	machine_destroy(&m);
}

/* A guest's own machine-check state: bank 2 disabled, an error logged in
 * bank 1 (status and address). */
static const struct cpu_msr guest_mce[] = {
	{ 0x408, 0 }, { 0x405, 0x8c00004000010090ull }, { 0x406, 0x1234000ull },
};

/* Restores st into b's bare vCPU, saves it again and compares every MSR
 * st has (a version 1 state has fewer than a save here finds). */
static void restore_and_compare(struct machine *b, struct vcpu_state *st)
{
	struct vcpu_state *dst = malloc(sizeof(*dst));
	struct err e = { .code = 0 };

	assert_non_null(dst);
	if (vcpu_restore(b->vm.kvm_fd, b->vm.vcpus[0]->fd, st, set_cpuid, b->vm.vcpus[0], &e) < 0)
		fail_msg("vcpu_restore: %s", e.msg);
	if (vcpu_save(b->vm.kvm_fd, b->vm.vcpus[0]->fd, b->vm.vcpus[0]->cpuid, dst, &e) < 0)
		fail_msg("vcpu_save after restore: %s", e.msg);
	assert_true(dst->nmsrs >= st->nmsrs);
	assert_true(!st->mcg_cap || dst->mcg_cap == st->mcg_cap);
	/* A guest's debugger loses its breakpoint addresses otherwise. */
	assert_memory_equal(dst->dregs.db, st->dregs.db, sizeof(st->dregs.db));
	for (uint32_t i = 0; i < st->nmsrs; i++) {
		uint32_t idx = st->msrs[i].index;
		/* The TSC ran on between the two reads. */
		if (idx == 0x10)
			continue;
		if (msr_in(dst, idx)->data != st->msrs[i].data)
			fail_msg("MSR 0x%x: 0x%llx saved, 0x%llx after restore", idx,
				 (unsigned long long)st->msrs[i].data,
				 (unsigned long long)msr_in(dst, idx)->data);
	}
	free(dst);
}

/* A saved vCPU restored into another VM's bare vCPU (a destination's)
 * carries its MSRs there, MTRRs and machine-check banks included: saved
 * again, every MSR reads back as it was written. */
static void restores_into_another_vm(void **state)
{
	struct machine a, b;
	struct vcpu_state *src;
	struct cpu_msr preset[16];
	uint32_t n = 0;
	uint64_t cap = 0;
	(void)state;

	for (size_t i = 0; i < sizeof(guest_mtrrs) / sizeof(guest_mtrrs[0]); i++)
		preset[n++] = guest_mtrrs[i];
	kvm_test_build(&a, "probe", 16ull << 20);
	if ((boot_mcg_cap(a.vm.kvm_fd) & 0xff) >= 3)
		for (size_t i = 0; i < sizeof(guest_mce) / sizeof(guest_mce[0]); i++)
			preset[n++] = guest_mce[i];
	machine_destroy(&a);
	src = saved_vcpu_with(&a, "src", preset, n);
	for (uint32_t i = 0; i < n; i++)
		assert_true(msr_in(src, preset[i].index)->data == preset[i].data);
	/* On VMX/SVM KVM starts a vCPU with the host's ARCH_CAPABILITIES, so
	 * the feature step is checked below; kvm_pvm keeps it 0 (it takes
	 * no other value). */
	printf("source vCPU: ARCH_CAPABILITIES 0x%llx\n",
	       (unsigned long long)msr_in(src, 0x10a)->data);
	kvm_test_build_as(&b, "dst", 16ull << 20, true);
	/* Values a fresh vCPU does not have, so a restore that left the debug
	 * registers out shows. */
	for (int i = 0; i < 4; i++)
		src->dregs.db[i] = 0x1000ull * (uint64_t)(i + 1);
	restore_and_compare(&b, src);
	assert_true(src->mcg_cap == boot_mcg_cap(b.vm.kvm_fd));
	assert_true(cpustate_msr_get(b.vm.vcpus[0]->fd, 0x179, &cap));
	assert_true(cap == src->mcg_cap || !src->mcg_cap);
	printf("%u MSRs restored into another VM, MCG_CAP 0x%llx\n", src->nmsrs,
	       (unsigned long long)cap);
	free(src);
	machine_destroy(&a);
	machine_destroy(&b);
}

/* What each version appends: version 2 MCG_CAP; 3 the SREGS2 flags and
 * the four PDPTRs. An earlier version's section is a later one without
 * its last bytes. */
#define V2_TAIL 8
#define V3_TAIL (4 + 4 * 8)

/* st encoded, then decoded as version; the bytes are cut by cut first. */
static int decode(const struct vcpu_state *st, size_t cut, uint32_t version,
		  struct vcpu_state *out, size_t *left, struct err *e)
{
	struct stream w, r;
	int rc;

	stream_init_mem_writer(&w);
	vcpu_state_put(&w, st);
	assert_int_equal(stream_check(&w, e), 0);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w) - cut);
	rc = vcpu_state_get(&r, version, out, e);
	*left = stream_remaining(&r);
	stream_destroy(&w);
	return rc;
}

/* st's whole encoding, decoded as version, is refused with want named. */
static void decode_refused(const struct vcpu_state *st, uint32_t version, const char *want)
{
	struct vcpu_state *out = malloc(sizeof(*out));
	struct err e = { .code = 0 };
	size_t left;

	assert_non_null(out);
	assert_int_equal(decode(st, 0, version, out, &left, &e), -1);
	printf("refused as version %u: %s\n", version, e.msg);
	if (!strstr(e.msg, want))
		fail_msg("expected \"%s\" in the refusal", want);
	free(out);
}

static void same_state(const struct vcpu_state *a, const struct vcpu_state *b)
{
	assert_int_equal(a->nmsrs, b->nmsrs);
	assert_memory_equal(a->msrs, b->msrs, a->nmsrs * sizeof(a->msrs[0]));
	assert_int_equal(a->ncpuid, b->ncpuid);
	assert_memory_equal(a->cpuid, b->cpuid, a->ncpuid * sizeof(a->cpuid[0]));
	assert_memory_equal(&a->regs, &b->regs, sizeof(a->regs));
	assert_memory_equal(&a->lapic, &b->lapic, sizeof(a->lapic));
	assert_int_equal(a->tsc_khz, b->tsc_khz);
}

/* The encoding round-trips in version 3; versions 2 (no PDPTRs) and 1
 * (no MCG_CAP either) still decode, to PDPTRs not valid and mcg_cap 0; a
 * section too short for its version, an unknown version and an impossible
 * bank count are refused. */
static void encoding_versions(void **state)
{
	const uint32_t bad_versions[] = { 0, CPUSTATE_VERSION + 1 };
	struct machine m;
	struct vcpu_state *st, *out = malloc(sizeof(*out));
	struct err e = { .code = 0 };
	size_t left;
	(void)state;

	assert_non_null(out);
	st = saved_vcpu(&m, "enc");
	assert_int_equal(CPUSTATE_VERSION, 3);
	assert_int_equal(decode(st, 0, CPUSTATE_VERSION, out, &left, &e), 0);
	assert_int_equal(left, 0);
	same_state(st, out);
	assert_true(out->mcg_cap == st->mcg_cap);
	assert_int_equal(decode(st, V3_TAIL, 2, out, &left, &e), 0);
	assert_int_equal(left, 0);
	same_state(st, out);
	assert_true(out->mcg_cap == st->mcg_cap);
	assert_int_equal(out->sregs2_flags, 0);
	assert_int_equal(decode(st, V3_TAIL + V2_TAIL, 1, out, &left, &e), 0);
	assert_int_equal(left, 0);
	same_state(st, out);
	assert_true(out->mcg_cap == 0);
	assert_int_equal(decode(st, V3_TAIL + V2_TAIL, 2, out, &left, &e), -1);
	printf("version 2 cut short: %s\n", e.msg);
	assert_int_equal(decode(st, V3_TAIL, 3, out, &left, &e), -1);
	printf("version 3 cut short: %s\n", e.msg);
	/* vmstate_apply refuses trailing bytes */
	assert_int_equal(decode(st, 0, 1, out, &left, &e), 0);
	assert_int_equal(left, V3_TAIL + V2_TAIL);
	assert_int_equal(decode(st, 0, 2, out, &left, &e), 0);
	assert_int_equal(left, V3_TAIL);
	for (size_t i = 0; i < sizeof(bad_versions) / sizeof(bad_versions[0]); i++)
		decode_refused(st, bad_versions[i], "unsupported");
	st->mcg_cap = (1ull << 8) | 33;
	decode_refused(st, 2, "33 machine-check banks");
	st->mcg_cap = 0;
	/* Counts past the arrays they fill are refused before a write: one
	 * over the limit, with all its bytes present, not only wild values. */
	st->xcrs.nr_xcrs = KVM_MAX_XCRS + 1;
	decode_refused(st, 3, "XCRs");
	st->xcrs.nr_xcrs = 0;
	{
		/* The encoder cannot write MAX+1 MSRs from the array, so the
		 * section is spliced: MAX MSRs encoded, the count bumped and one
		 * more MSR's bytes inserted after them. */
		const size_t tail = 4 + (size_t)st->ncpuid * 28 + V2_TAIL + V3_TAIL;
		const size_t msr_bytes = (size_t)CPUSTATE_MAX_MSRS * 12;
		struct stream w, r;
		uint8_t *buf;
		size_t len, at;

		st->nmsrs = CPUSTATE_MAX_MSRS;
		stream_init_mem_writer(&w);
		vcpu_state_put(&w, st);
		len = stream_mem_len(&w);
		at = len - tail - msr_bytes - 4; /* the MSR count */
		buf = calloc(1, len + 12);
		assert_non_null(buf);
		memcpy(buf, stream_mem_data(&w), at + 4 + msr_bytes);
		memcpy(buf + at + 4 + msr_bytes + 12, (const uint8_t *)stream_mem_data(&w) + at + 4 +
		       msr_bytes, tail);
		stream_init_mem_reader(&r, stream_mem_data(&w), len);
		assert_int_equal(vcpu_state_get(&r, CPUSTATE_VERSION, out, &e), 0); /* MAX is fine */
		le_put_u32(buf + at, CPUSTATE_MAX_MSRS + 1);
		stream_init_mem_reader(&r, buf, len + 12);
		assert_int_equal(vcpu_state_get(&r, CPUSTATE_VERSION, out, &e), -1);
		assert_non_null(strstr(e.msg, "MSRs exceeds"));
		free(buf);
		stream_destroy(&w);
	}
	free(st);
	free(out);
	machine_destroy(&m);
}

/* Special registers of 32-bit protected mode with PAE paging (CR0.PG,
 * CR4.PAE, EFER.LMA clear), flat 4 GiB segments, CR3 at cr3. */
static void pae_sregs(struct kvm_sregs *s, uint64_t cr3)
{
	struct kvm_segment code = { .base = 0, .limit = 0xffffffff, .selector = 0x8, .type = 0xb,
				    .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1 };
	struct kvm_segment data = code;

	data.selector = 0x10;
	data.type = 0x3;
	s->cs = code;
	s->ds = s->es = s->fs = s->gs = s->ss = data;
	s->cr0 = (1ull << 31) | (1ull << 4) | 1; /* PG, ET, PE */
	s->cr4 = 1ull << 5;                       /* PAE */
	s->efer = 0;
	s->cr3 = cr3;
}

/* A version 3 section carries the SREGS2 flags and the PDPTRs: they
 * round-trip, a version 2 reading of the same bytes has none, and flags
 * this build does not know, PDPTRs for a vCPU outside PAE paging and a
 * section cut anywhere inside the new fields are refused. */
static void pdptrs_encoding(void **state)
{
	static const uint64_t pdptrs[4] = { 0x101001, 0x102001, 0x103001, 0x7ff00000104001ull };
	struct machine m;
	struct vcpu_state *st, *out = malloc(sizeof(*out));
	struct err e = { .code = 0 };
	struct kvm_sregs longmode;
	size_t left;
	(void)state;

	assert_non_null(out);
	st = saved_vcpu(&m, "pdptrs");
	/* the test guest's vCPU starts in long mode: no PDPTRs */
	assert_int_equal(st->sregs2_flags, 0);
	longmode = st->sregs;
	pae_sregs(&st->sregs, 0x3000);
	st->sregs2_flags = KVM_SREGS2_FLAGS_PDPTRS_VALID;
	memcpy(st->pdptrs, pdptrs, sizeof(pdptrs));
	assert_int_equal(decode(st, 0, 3, out, &left, &e), 0);
	assert_int_equal(left, 0);
	same_state(st, out);
	assert_memory_equal(&out->sregs, &st->sregs, sizeof(st->sregs));
	assert_int_equal(out->sregs2_flags, KVM_SREGS2_FLAGS_PDPTRS_VALID);
	assert_memory_equal(out->pdptrs, pdptrs, sizeof(pdptrs));
	/* the same bytes as a version 2 section, without its tail */
	assert_int_equal(decode(st, V3_TAIL, 2, out, &left, &e), 0);
	assert_int_equal(left, 0);
	assert_int_equal(out->sregs2_flags, 0);
	for (size_t cut = 1; cut <= V3_TAIL; cut++) {
		e.msg[0] = 0;
		if (decode(st, cut, 3, out, &left, &e) != -1)
			fail_msg("a version 3 section %zu bytes short decoded", cut);
		assert_non_null(strstr(e.msg, "truncated"));
	}
	printf("cut inside the PDPTRs: %s\n", e.msg);
	st->sregs2_flags = KVM_SREGS2_FLAGS_PDPTRS_VALID | 2;
	decode_refused(st, 3, "unknown SREGS2 flags 0x3");
	st->sregs2_flags = 1u << 31;
	decode_refused(st, 3, "unknown SREGS2 flags 0x80000000");
	st->sregs2_flags = KVM_SREGS2_FLAGS_PDPTRS_VALID;
	st->sregs = longmode;
	decode_refused(st, 3, "not in PAE paging");
	free(st);
	free(out);
	machine_destroy(&m);
}

/* The PDPT of the PAE tests: four present entries (page directories at
 * 1 MiB up; one above 4 GiB, which PAE allows). */
#define PDPT_GPA 0x3000
static const uint64_t guest_pdpt[4] = { 0x100001, 0x101001, 0x102001, 0x1fff00001ull };

static void print_sregs2(const char *what, const struct kvm_sregs2 *s)
{
	printf("%s: CR0 0x%llx CR3 0x%llx CR4 0x%llx EFER 0x%llx, SREGS2 flags 0x%llx, PDPTRs 0x%llx "
	       "0x%llx 0x%llx 0x%llx\n", what, (unsigned long long)s->cr0, (unsigned long long)s->cr3,
	       (unsigned long long)s->cr4, (unsigned long long)s->efer, (unsigned long long)s->flags,
	       (unsigned long long)s->pdptrs[0], (unsigned long long)s->pdptrs[1],
	       (unsigned long long)s->pdptrs[2], (unsigned long long)s->pdptrs[3]);
}

static void sregs2_read(int vcpu_fd, struct kvm_sregs2 *s)
{
	memset(s, 0, sizeof(*s));
	if (ioctl(vcpu_fd, KVM_GET_SREGS2, s) < 0)
		fail_msg("KVM_GET_SREGS2: %s", strerror(errno));
}

/* The vCPU's PDPTRs as KVM holds them equal guest_pdpt, in PAE paging. */
static void holds_guest_pdptrs(int vcpu_fd, const struct kvm_sregs *want)
{
	struct kvm_sregs2 back;

	sregs2_read(vcpu_fd, &back);
	print_sregs2("restored", &back);
	assert_true(back.flags == KVM_SREGS2_FLAGS_PDPTRS_VALID);
	assert_memory_equal(back.pdptrs, guest_pdpt, sizeof(guest_pdpt));
	assert_true(back.cr0 == want->cr0 && back.cr3 == want->cr3 && back.cr4 == want->cr4 &&
		    back.efer == want->efer);
}

/* Whether this KVM keeps a vCPU in 32-bit PAE paging: kvm_pvm runs only
 * long-mode guests and drops CR0.PG from any other mode without an error.
 * The vCPU is left in that mode (CR3 at PDPT_GPA) where KVM keeps it. */
static bool enters_pae_paging(int vcpu_fd)
{
	struct kvm_sregs s;
	uint64_t want;

	assert_int_equal(ioctl(vcpu_fd, KVM_GET_SREGS, &s), 0);
	pae_sregs(&s, PDPT_GPA);
	want = s.cr0;
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &s) < 0)
		fail_msg("KVM_SET_SREGS into 32-bit PAE paging: %s", strerror(errno));
	assert_int_equal(ioctl(vcpu_fd, KVM_GET_SREGS, &s), 0);
	if (s.cr0 == want)
		return true;
	printf("SKIP: this KVM drops 32-bit PAE paging (CR0 0x%llx set, 0x%llx read back; kvm_pvm "
	       "runs only long-mode guests): no PDPTRs to carry here\n", (unsigned long long)want,
	       (unsigned long long)s.cr0);
	return false;
}

/* A guest in 32-bit PAE paging whose PDPT changed in memory after it
 * loaded CR3: the save carries the PDPTRs the vCPU loaded, not what
 * memory holds, and the restore puts those into a vCPU of a VM whose
 * memory at CR3 is zero (through KVM_SET_SREGS it would load zeros). Runs
 * where KVM keeps the mode (VMX/SVM); skipped on kvm_pvm. */
static void pae_pdptrs_migrate(void **state)
{
	struct machine a, b;
	struct vcpu_state *st;
	struct err e = { .code = 0 };
	uint64_t *pdpt;
	int fd;
	(void)state;

	kvm_test_build(&a, "pae", 16ull << 20);
	fd = a.vm.vcpus[0]->fd;
	pdpt = (uint64_t *)(a.vm.mem.host + PDPT_GPA);
	memcpy(pdpt, guest_pdpt, sizeof(guest_pdpt));
	if (!has_cap(a.vm.kvm_fd, KVM_CAP_SREGS2)) {
		printf("SKIP: this KVM has no KVM_CAP_SREGS2\n");
		machine_destroy(&a);
		skip();
	}
	if (!enters_pae_paging(fd)) {
		machine_destroy(&a);
		skip();
	}
	/* the guest rewrites its PDPT without reloading CR3 */
	memset(pdpt, 0, sizeof(guest_pdpt));
	pdpt[0] = 0x200001;
	st = malloc(sizeof(*st));
	assert_non_null(st);
	if (vcpu_save(a.vm.kvm_fd, fd, a.vm.vcpus[0]->cpuid, st, &e) < 0)
		fail_msg("vcpu_save: %s", e.msg);
	printf("saved: SREGS2 flags 0x%x, PDPTRs 0x%llx 0x%llx 0x%llx 0x%llx\n", st->sregs2_flags,
	       (unsigned long long)st->pdptrs[0], (unsigned long long)st->pdptrs[1],
	       (unsigned long long)st->pdptrs[2], (unsigned long long)st->pdptrs[3]);
	assert_int_equal(st->sregs2_flags, KVM_SREGS2_FLAGS_PDPTRS_VALID);
	assert_memory_equal(st->pdptrs, guest_pdpt, sizeof(guest_pdpt));

	kvm_test_build_as(&b, "paedst", 16ull << 20, true);
	assert_true(((uint64_t *)(b.vm.mem.host + PDPT_GPA))[0] == 0);
	restore_and_compare(&b, st);
	holds_guest_pdptrs(b.vm.vcpus[0]->fd, &st->sregs);
	free(st);
	machine_destroy(&a);
	machine_destroy(&b);
}

/* What runs on kvm_pvm too: a state with PDPTRs, as a VMX/SVM source in
 * PAE paging saves it, goes in through KVM_SET_SREGS2 and KVM takes it
 * (and, where it keeps the mode, holds those PDPTRs, not the zeros at CR3
 * here). The proof that SET_SREGS2 was used: KVM refuses PDPTRs for a
 * vCPU in long mode, which SET_SREGS has no way to be given. */
static void pdptrs_put_with_sregs2(void **state)
{
	struct machine a, b, c;
	struct vcpu_state *st;
	struct kvm_sregs2 back;
	struct kvm_sregs longmode;
	struct err e = { .code = 0 };
	(void)state;

	st = saved_vcpu(&a, "pdptrsrc");
	if (!has_cap(a.vm.kvm_fd, KVM_CAP_SREGS2)) {
		printf("SKIP: this KVM has no KVM_CAP_SREGS2\n");
		free(st);
		machine_destroy(&a);
		skip();
	}
	longmode = st->sregs;
	pae_sregs(&st->sregs, PDPT_GPA);
	st->sregs2_flags = KVM_SREGS2_FLAGS_PDPTRS_VALID;
	memcpy(st->pdptrs, guest_pdpt, sizeof(guest_pdpt));
	kvm_test_build_as(&b, "pdptrdst", 16ull << 20, true);
	restore_and_compare(&b, st);
	sregs2_read(b.vm.vcpus[0]->fd, &back);
	if (back.cr0 & (1ull << 31))
		holds_guest_pdptrs(b.vm.vcpus[0]->fd, &st->sregs);
	else
		print_sregs2("restored (this KVM dropped PAE paging: PDPTRs not comparable)", &back);

	st->sregs = longmode;
	kvm_test_build_as(&c, "pdptrlm", 16ull << 20, true);
	assert_int_equal(vcpu_restore(c.vm.kvm_fd, c.vm.vcpus[0]->fd, st, set_cpuid, c.vm.vcpus[0],
				      &e), -1);
	printf("PDPTRs in long mode: %s\n", e.msg);
	assert_non_null(strstr(e.msg, "KVM_SET_SREGS2"));
	free(st);
	machine_destroy(&a);
	machine_destroy(&b);
	machine_destroy(&c);
}

/* What the previous build saved (version 1: KVM's list only, no MTRRs,
 * no banks, no MCG_CAP) restores into a bare vCPU, which keeps KVM's
 * machine-check default as that build's source did. */
static void version1_state_restores(void **state)
{
	struct machine a, b, c;
	struct vcpu_state *st = malloc(sizeof(*st)), *v1 = malloc(sizeof(*v1));
	struct err e = { .code = 0 };
	uint32_t keep = 0;
	uint64_t cap = 0;
	size_t left;
	(void)state;

	assert_non_null(st);
	assert_non_null(v1);
	/* The previous build's source vCPU: its CPUID, no machine-check setup. */
	kvm_test_build(&c, "cpuid", 16ull << 20);
	kvm_test_build_as(&a, "v1src", 16ull << 20, true);
	if (vcpu_set_cpuid(a.vm.vcpus[0], c.vm.vcpus[0]->cpuid, &e) < 0 ||
	    vcpu_save(a.vm.kvm_fd, a.vm.vcpus[0]->fd, a.vm.vcpus[0]->cpuid, st, &e) < 0)
		fail_msg("the version 1 source: %s", e.msg);
	machine_destroy(&c);
	for (uint32_t i = 0; i < st->nmsrs; i++) {
		uint32_t idx = st->msrs[i].index;
		if ((idx >= 0x200 && idx <= 0x2ff && idx != 0x277) || (idx >= 0x400 && idx < 0x480))
			continue;
		st->msrs[keep++] = st->msrs[i];
	}
	printf("version 1 state: %u of %u MSRs\n", keep, st->nmsrs);
	st->nmsrs = keep;
	assert_int_equal(decode(st, V3_TAIL + V2_TAIL, 1, v1, &left, &e), 0);
	assert_int_equal(left, 0);
	kvm_test_build_as(&b, "v1dst", 16ull << 20, true);
	restore_and_compare(&b, v1);
	assert_true(cpustate_msr_get(b.vm.vcpus[0]->fd, 0x179, &cap));
	printf("restored; MCG_CAP left at KVM's default 0x%llx\n", (unsigned long long)cap);
	free(st);
	free(v1);
	machine_destroy(&a);
	machine_destroy(&b);
}

/* The model a move sends at setup, read once when the machine was built,
 * is what a save of that vCPU finds; and the setup check refuses what the
 * restore's check refuses, in the same words (one set of rules). */
static void model_read_at_build(void **state)
{
	struct machine m;
	struct vcpu_state *st;
	struct cpu_model cm;
	struct err e1 = { .code = 0 }, e2 = { .code = 0 };
	int kvm_fd, fd, rc1, rc2;
	(void)state;

	st = saved_vcpu(&m, "model");
	kvm_fd = m.vm.kvm_fd;
	fd = m.vm.vcpus[0]->fd;
	assert_true(m.vm.cpu_model_known);
	cm = m.vm.cpu_model;
	printf("model: TSC %u kHz, MCG_CAP 0x%llx, %u feature MSRs:", cm.tsc_khz,
	       (unsigned long long)cm.mcg_cap, cm.nmsrs);
	for (uint32_t i = 0; i < cm.nmsrs; i++)
		printf(" 0x%x=0x%llx", cm.msrs[i].index, (unsigned long long)cm.msrs[i].data);
	printf("\n");
	assert_int_equal(cm.tsc_khz, st->tsc_khz);
	assert_true(cm.mcg_cap == st->mcg_cap);
	for (uint32_t i = 0; i < cm.nmsrs; i++) {
		struct cpu_msr *saved = NULL;
		for (uint32_t k = 0; k < st->nmsrs; k++)
			if (st->msrs[k].index == cm.msrs[i].index)
				saved = &st->msrs[k];
		assert_non_null(saved);
		assert_true(saved->data == cm.msrs[i].data);
	}
	if (cpu_model_check_host(kvm_fd, fd, &cm, &e1) < 0)
		fail_msg("this host refuses its own vCPU model: %s", e1.msg);
	/* 1% faster: both checks agree (refused here without TSC scaling) */
	cm.tsc_khz += cm.tsc_khz / 100;
	st->tsc_khz = cm.tsc_khz;
	rc1 = cpu_model_check_host(kvm_fd, fd, &cm, &e1);
	rc2 = vcpu_check_host(kvm_fd, fd, st, &e2);
	assert_int_equal(rc1, rc2);
	assert_int_equal(rc1, has_cap(kvm_fd, KVM_CAP_TSC_CONTROL) ? 0 : -1);
	if (rc1 < 0) {
		printf("refused: %s\n", e1.msg);
		assert_string_equal(e1.msg, e2.msg);
		assert_non_null(strstr(e1.msg, "incompatible host: the guest's TSC runs at"));
	}
	/* a machine-check setup this KVM cannot repeat */
	cm.tsc_khz = st->tsc_khz = 0;
	cm.mcg_cap = st->mcg_cap = 33;
	assert_int_equal(cpu_model_check_host(kvm_fd, fd, &cm, &e1), -1);
	assert_int_equal(vcpu_check_host(kvm_fd, fd, st, &e2), -1);
	assert_string_equal(e1.msg, e2.msg);
	free(st);
	machine_destroy(&m);
}

/* A whole VM's state applied to another VM: one device section with a
 * byte more than its decoder reads means the two sides disagree on its
 * layout, and is refused rather than applied half-understood. */
static void section_trailing_bytes_refused(void **state)
{
	struct machine a, b;
	struct vmstate_loaded *ld = calloc(1, sizeof(*ld));
	struct stream w, r;
	struct mig_rec rec;
	struct err e = { .code = 0 };
	int uart = -1;
	(void)state;

	assert_non_null(ld);
	kvm_test_build(&a, "vms-src", 16ull << 20);
	stream_init_mem_writer(&w);
	if (vmstate_save(&a.vm, &w, &e) < 0)
		fail_msg("vmstate_save: %s", e.msg);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	for (;;) {
		assert_int_equal(mig_get_rec(&r, &rec, &e), 0);
		if (rec.type == MIG_REC_STATE_END)
			break;
		assert_int_equal(rec.type, MIG_REC_SECTION);
		if (vmstate_read_section(ld, &r, rec.len, &e) < 0)
			fail_msg("read section: %s", e.msg);
	}
	for (int i = 0; i < ld->n; i++)
		if (strcmp(ld->s[i].name, "uart") == 0)
			uart = i;
	assert_true(uart >= 0);
	ld->s[uart].data = realloc(ld->s[uart].data, ld->s[uart].len + 1);
	assert_non_null(ld->s[uart].data);
	ld->s[uart].data[ld->s[uart].len++] = 0;
	kvm_test_build_as(&b, "vms-dst", 16ull << 20, true);
	assert_int_equal(vmstate_apply(&b.vm, ld, &e), -1);
	printf("refused: %s\n", e.msg);
	assert_non_null(strstr(e.msg, "trailing"));
	vmstate_loaded_free(ld);
	free(ld);
	stream_destroy(&w);
	machine_destroy(&a);
	machine_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tsc_rate_checked),
		cmocka_unit_test(feature_msrs_checked),
		cmocka_unit_test(mtrrs_saved),
		cmocka_unit_test(mce_set_up_and_saved),
		cmocka_unit_test(encoding_versions),
		cmocka_unit_test(pdptrs_encoding),
		cmocka_unit_test(pae_pdptrs_migrate),
		cmocka_unit_test(pdptrs_put_with_sregs2),
		cmocka_unit_test(version1_state_restores),
		cmocka_unit_test(restores_into_another_vm),
		cmocka_unit_test(model_read_at_build),
		cmocka_unit_test(section_trailing_bytes_refused),
	};
	int skip = kvm_test_skip("saves and restores vCPUs");
	if (skip)
		return skip;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
