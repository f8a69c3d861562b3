/*
 * vCPU state on real KVM (src/vmm/x86/cpustate.c): what a restore demands
 * of the destination host (the TSC rate), checked on this host's KVM with
 * a saved state edited the way another host's would differ. Skips (exit
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
#include "vmm/machine.h"
#include "vmm/vcpu.h"
#include "vmm/x86/cpustate.h"

static void kvm_test_sink(void *opaque, const uint8_t *buf, size_t n)
{
	(void)opaque;
	(void)buf;
	(void)n;
}

/* A fresh 1-vCPU machine, saved. */
static struct vcpu_state *saved_vcpu(struct machine *m, const char *name)
{
	struct vcpu_state *st = malloc(sizeof(*st));
	struct err e = { .code = 0 };

	assert_non_null(st);
	kvm_test_build(m, name, 16ull << 20);
	if (vcpu_save(m->vm.kvm_fd, m->vm.vcpus[0]->fd, m->vm.vcpus[0]->cpuid, st, &e) < 0)
		fail_msg("vcpu_save: %s", e.msg);
	return st;
}

static bool has_cap(int kvm_fd, int cap)
{
	return ioctl(kvm_fd, KVM_CHECK_EXTENSION, cap) > 0;
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tsc_rate_checked),
	};
	int skip = kvm_test_skip("saves and restores vCPUs");
	if (skip)
		return skip;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
