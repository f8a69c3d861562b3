/*
 * vCPU state on real KVM (src/vmm/x86/cpustate.c): what a restore demands
 * of the destination host (the TSC rate, feature MSRs), checked on this
 * host's KVM with a saved state edited the way another host's would
 * differ; the MSRs KVM's list lacks (MTRRs) saved; a vCPU restored into
 * another VM. Skips (exit 77) without
 * /dev/kvm or the guest binary (machines are built, never run).
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

/* A saved vCPU restored into another VM's vCPU carries its MSRs there:
 * saved again, every MSR reads back as it was written. */
static void restores_into_another_vm(void **state)
{
	struct machine a, b;
	struct vcpu_state *src, *dst;
	struct err e = { .code = 0 };
	(void)state;

	src = saved_vcpu_with(&a, "src", guest_mtrrs, sizeof(guest_mtrrs) / sizeof(guest_mtrrs[0]));
	for (size_t i = 0; i < sizeof(guest_mtrrs) / sizeof(guest_mtrrs[0]); i++)
		assert_true(msr_in(src, guest_mtrrs[i].index)->data == guest_mtrrs[i].data);
	dst = malloc(sizeof(*dst));
	assert_non_null(dst);
	/* On VMX/SVM KVM starts a vCPU with the host's ARCH_CAPABILITIES, so
	 * the feature step is checked below; kvm_pvm keeps it 0 (it takes
	 * no other value). */
	printf("source vCPU: ARCH_CAPABILITIES 0x%llx\n",
	       (unsigned long long)msr_in(src, 0x10a)->data);
	kvm_test_build(&b, "dst", 16ull << 20);
	if (vcpu_restore(b.vm.kvm_fd, b.vm.vcpus[0]->fd, src, set_cpuid, b.vm.vcpus[0], &e) < 0)
		fail_msg("vcpu_restore: %s", e.msg);
	if (vcpu_save(b.vm.kvm_fd, b.vm.vcpus[0]->fd, b.vm.vcpus[0]->cpuid, dst, &e) < 0)
		fail_msg("vcpu_save after restore: %s", e.msg);
	assert_int_equal(dst->nmsrs, src->nmsrs);
	for (uint32_t i = 0; i < src->nmsrs; i++) {
		uint32_t idx = src->msrs[i].index;
		/* The TSC ran on between the two reads. */
		if (idx == 0x10)
			continue;
		if (msr_in(dst, idx)->data != src->msrs[i].data)
			fail_msg("MSR 0x%x: 0x%llx saved, 0x%llx after restore", idx,
				 (unsigned long long)src->msrs[i].data,
				 (unsigned long long)msr_in(dst, idx)->data);
	}
	printf("%u MSRs restored into another VM\n", src->nmsrs);
	free(src);
	free(dst);
	machine_destroy(&a);
	machine_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tsc_rate_checked),
		cmocka_unit_test(feature_msrs_checked),
		cmocka_unit_test(mtrrs_saved),
		cmocka_unit_test(restores_into_another_vm),
	};
	int skip = kvm_test_skip("saves and restores vCPUs");
	if (skip)
		return skip;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
