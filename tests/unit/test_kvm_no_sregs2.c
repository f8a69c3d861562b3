/*
 * A destination whose KVM predates KVM_CAP_SREGS2 (Linux 5.14), played by
 * the failpoint "kvm.no_sregs2" on this host's real KVM: a vCPU saved in
 * 32-bit PAE paging with its PDPTRs is refused there, by the check that
 * runs before any state goes in and by the restore itself, with the reason
 * an administrator can act on; a vCPU without PDPTRs (every long-mode
 * guest) still restores, and its save leaves the PDPTRs out. A binary of
 * its own: failpoints are read once per process. Skips (exit 77) without
 * /dev/kvm or the guest binary.
 */
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int set_cpuid(void *opaque, const struct kvm_cpuid2 *c, struct err *e)
{
	return vcpu_set_cpuid(opaque, c, e);
}

static void pdptrs_refused_without_sregs2(void **state)
{
	static const uint64_t pdptrs[4] = { 0x101001, 0x102001, 0x103001, 0x104001 };
	struct machine a, b;
	struct vcpu_state *st = malloc(sizeof(*st));
	struct err e = { .code = 0 };
	(void)state;

	assert_non_null(st);
	kvm_test_build(&a, "nosregs2src", 16ull << 20);
	if (vcpu_save(a.vm.kvm_fd, a.vm.vcpus[0]->fd, a.vm.vcpus[0]->cpuid, st, &e) < 0)
		fail_msg("vcpu_save: %s", e.msg);
	/* no SREGS2 here: the save does not ask for PDPTRs */
	assert_int_equal(st->sregs2_flags, 0);

	kvm_test_build_as(&b, "nosregs2dst", 16ull << 20, true);
	/* a long-mode vCPU (no PDPTRs) passes the check and restores */
	assert_int_equal(vcpu_check_host(b.vm.kvm_fd, b.vm.vcpus[0]->fd, st, &e), 0);
	if (vcpu_restore(b.vm.kvm_fd, b.vm.vcpus[0]->fd, st, set_cpuid, b.vm.vcpus[0], &e) < 0)
		fail_msg("a vCPU without PDPTRs did not restore: %s", e.msg);

	/* one a source with SREGS2 saved in PAE paging is refused, before
	 * any of its state is put */
	st->sregs2_flags = KVM_SREGS2_FLAGS_PDPTRS_VALID;
	memcpy(st->pdptrs, pdptrs, sizeof(pdptrs));
	assert_int_equal(vcpu_check_host(b.vm.kvm_fd, b.vm.vcpus[0]->fd, st, &e), -1);
	printf("refused: %s\n", e.msg);
	assert_non_null(strstr(e.msg, "incompatible host"));
	assert_non_null(strstr(e.msg, "PDPTRs"));
	assert_non_null(strstr(e.msg, "KVM_CAP_SREGS2"));
	memset(&e, 0, sizeof(e));
	assert_int_equal(vcpu_restore(b.vm.kvm_fd, b.vm.vcpus[0]->fd, st, set_cpuid, b.vm.vcpus[0], &e),
			 -1);
	assert_non_null(strstr(e.msg, "KVM_CAP_SREGS2"));
	free(st);
	machine_destroy(&a);
	machine_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pdptrs_refused_without_sregs2),
	};
	int skip = kvm_test_skip("plays a host without KVM_CAP_SREGS2");
	if (skip)
		return skip;
	/* before anything asks KVM for the capability (kept per process) */
	if (setenv("FERRY_FAILPOINTS", "kvm.no_sregs2=error", 1) != 0) {
		perror("setenv");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
