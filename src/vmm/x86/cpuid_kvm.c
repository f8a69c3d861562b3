/*
 * The KVM side of CPUID: reading the host's supported table and the thin
 * wrappers that feed it to the pure logic in cpuid.c / cpuid_check.c.
 */
#include "vmm/x86/cpuid.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>

int cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out, struct err *e)
{
	/* KVM answers E2BIG until the buffer is large enough; QEMU doubles. */
	for (uint32_t cap = 64; cap <= 4096; cap *= 2) {
		struct kvm_cpuid2 *c = cpuid_alloc(cap);
		if (!c)
			return err_set(e, "cpuid: out of memory");
		c->nent = cap;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			/* The stream format and KVM_SET_CPUID2 users bound it. */
			if (c->nent > CPUID_MAX_ENTRIES) {
				uint32_t n = c->nent;
				free(c);
				return err_set(e, "KVM_GET_SUPPORTED_CPUID: %u entries, more than %d",
					       n, CPUID_MAX_ENTRIES);
			}
			*out = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG)
			return err_sys(e, "KVM_GET_SUPPORTED_CPUID");
	}
	return err_set(e, "KVM_GET_SUPPORTED_CPUID: table larger than 4096 entries");
}

int cpuid_build(int kvm_fd, const struct cpuid_mask *mask, int vcpu_index, int nvcpus,
		struct kvm_cpuid2 **out, struct err *e)
{
	struct kvm_cpuid2 *sup;
	int r;

	if (cpuid_get_supported(kvm_fd, &sup, e) < 0)
		return -1;
	r = cpuid_normalize(sup, mask, vcpu_index, nvcpus, out, e);
	free(sup);
	return r;
}

int cpuid_check_host(int kvm_fd, const struct kvm_cpuid2 *guest, char *why, size_t whylen)
{
	struct kvm_cpuid2 *sup;
	struct err e;
	int tscdl, r;

	if (cpuid_get_supported(kvm_fd, &sup, &e) < 0) {
		snprintf(why, whylen, "%s", e.msg);
		return -1;
	}
	tscdl = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER);
	if (tscdl < 0) {
		err_sys(&e, "KVM_CHECK_EXTENSION(TSC_DEADLINE_TIMER)");
		snprintf(why, whylen, "%s", e.msg);
		free(sup);
		return -1;
	}
	r = cpuid_compare(sup, guest, tscdl > 0, why, whylen);
	free(sup);
	return r;
}
