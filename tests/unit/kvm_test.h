/*
 * What the unit tests that need real KVM share: the check that skips them
 * (exit 77, with the reason) without /dev/kvm or the test guest, and a
 * machine built from the test guest (booted only if the test does).
 */
#ifndef FERRY_TESTS_KVM_TEST_H
#define FERRY_TESTS_KVM_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/machine.h"

static const char *kvm_test_guest;

/* 0 when the test can run; else 77 after saying why ("what" needs KVM). */
static int kvm_test_skip(const char *what)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("SKIP: /dev/kvm: %s (this test %s)\n", strerror(errno), what);
		return 77;
	}
	close(fd);
	kvm_test_guest = getenv("FERRY_GUEST");
	if (!kvm_test_guest)
		kvm_test_guest = "build/guest/testguest.elf";
	if (access(kvm_test_guest, R_OK) != 0) {
		printf("SKIP: test guest %s: %s (build it with make)\n", kvm_test_guest, strerror(errno));
		return 77;
	}
	return 0;
}

static void kvm_test_sink(void *opaque, const uint8_t *buf, size_t n);

/* A 1-vCPU machine of mem bytes for the test guest; serial output to
 * kvm_test_sink, which the test defines. incoming: as a destination's,
 * its vCPU left bare (no CPUID) for a restore. */
static void kvm_test_build_as(struct machine *m, const char *name, uint64_t mem, bool incoming)
{
	struct vm_config cfg;
	struct err e = { .code = 0 };

	memset(m, 0, sizeof(*m));
	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.name, sizeof(cfg.name), "%s", name);
	cfg.mem_size = mem;
	cfg.vcpus = 1;
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", kvm_test_guest);
	if (machine_build(m, &cfg, incoming, NULL, kvm_test_sink, NULL, &e) < 0)
		fail_msg("machine: %s", e.msg);
}

static void kvm_test_build(struct machine *m, const char *name, uint64_t mem)
{
	kvm_test_build_as(m, name, mem, false);
}

#endif
