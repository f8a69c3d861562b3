/*
 * vCPU threads and the pause handshake. A pause must leave no vCPU inside
 * KVM_RUN: the requester sets pause_req, arms kvm_run->immediate_exit (which
 * closes the race where the kick lands just before KVM_RUN) and signals each
 * thread; vcpus_pause() returns only when every thread has parked.
 */
#ifndef FERRY_VCPU_H
#define FERRY_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/vm.h"

struct vcpu {
	struct vm *vm;
	int index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	bool parked;
	/* The CPUID we gave this vCPU. Kept here because KVM_GET_CPUID2 does
	 * not return it on every KVM (PVM answers with the host's table). */
	struct kvm_cpuid2 *cpuid;
	uint64_t exits;          /* statistics */
	uint64_t io_exits;
};

int vcpu_create(struct vm *vm, int index, struct err *e);
void vcpu_destroy(struct vcpu *vc);
/* KVM_SET_CPUID2 and remember the table (copied). */
int vcpu_set_cpuid(struct vcpu *vc, const struct kvm_cpuid2 *cpuid, struct err *e);

/* vm->cpu_model from vCPU 0, once its model is set (CPUID given, or the
 * state restored) and before any vCPU thread runs (see vm.h). */
int vm_capture_cpu_model(struct vm *vm, struct err *e);

/* Start a thread per vCPU. They start parked if the VM is paused. */
int vcpus_start(struct vm *vm, struct err *e);
/* Returns once every vCPU is out of KVM_RUN and parked, and no device
 * input handler is running (vm->paused keeps new ones out). Never call
 * it holding dev_lock. */
void vcpus_pause(struct vm *vm);
void vcpus_resume(struct vm *vm);
/* Stop and join every vCPU thread. */
void vcpus_stop(struct vm *vm);

#endif
