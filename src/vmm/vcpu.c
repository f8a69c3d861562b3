/*
 * vCPU run loop, exit dispatch and the pause handshake (see vcpu.h).
 * Device emulation runs under vm->dev_lock; only port I/O leaves this file.
 */
#include "vmm/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "migration/dirty_ring.h"

#define VCPU_KICK_SIGNAL SIGUSR1

static void vcpu_kick_handler(int sig)
{
	(void)sig; /* only here to interrupt KVM_RUN with EINTR */
}

int vcpu_create(struct vm *vm, int index, struct err *e)
{
	struct vcpu *vc;
	if (index >= LAYOUT_MAX_VCPUS)
		return err_set(e, "at most %d vCPUs are supported", LAYOUT_MAX_VCPUS);
	vc = calloc(1, sizeof(*vc));
	if (!vc)
		return err_set(e, "out of memory");
	vc->vm = vm;
	vc->index = index;
	vc->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (vc->fd < 0) {
		free(vc);
		return err_sys(e, "KVM_CREATE_VCPU %d", index);
	}
	vc->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vc->fd, 0);
	if (vc->run == MAP_FAILED) {
		err_sys(e, "mapping kvm_run of vCPU %d", index);
		close(vc->fd);
		free(vc);
		return -1;
	}
	if (vm->ring && dirty_ring_map_vcpu(vm->ring, index, vc->fd, e) < 0) {
		munmap(vc->run, (size_t)vm->run_size);
		close(vc->fd);
		free(vc);
		return -1;
	}
	vm->vcpus[index] = vc;
	if (index + 1 > vm->nvcpus)
		vm->nvcpus = index + 1;
	return 0;
}

int vcpu_set_cpuid(struct vcpu *vc, const struct kvm_cpuid2 *cpuid, struct err *e)
{
	size_t sz = sizeof(*cpuid) + cpuid->nent * sizeof(cpuid->entries[0]);
	struct kvm_cpuid2 *copy = malloc(sz);
	if (!copy)
		return err_set(e, "out of memory");
	memcpy(copy, cpuid, sz);
	if (ioctl(vc->fd, KVM_SET_CPUID2, copy) < 0) {
		free(copy);
		return err_sys(e, "KVM_SET_CPUID2 on vCPU %d", vc->index);
	}
	free(vc->cpuid);
	vc->cpuid = copy;
	return 0;
}

int vm_capture_cpu_model(struct vm *vm, struct err *e)
{
	struct vcpu *vc = vm->vcpus[0];

	if (!vc)
		return err_set(e, "the VM has no vCPU 0 to take its model from");
	if (cpu_model_read(vm->kvm_fd, vc->fd, vc->cpuid, &vm->cpu_model, e) < 0)
		return err_prefix(e, "reading vCPU 0's model");
	vm->cpu_model_known = true;
	return 0;
}

void vcpu_destroy(struct vcpu *vc)
{
	if (!vc)
		return;
	free(vc->cpuid);
	if (vc->vm->ring)
		dirty_ring_unmap_vcpu(vc->vm->ring, vc->index);
	if (vc->run && vc->run != MAP_FAILED)
		munmap(vc->run, (size_t)vc->vm->run_size);
	if (vc->fd >= 0)
		close(vc->fd);
	vc->vm->vcpus[vc->index] = NULL;
	free(vc);
}

static void vcpu_handle_io(struct vcpu *vc)
{
	struct kvm_run *run = vc->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	struct vm *vm = vc->vm;

	vc->io_exits++;
	pthread_mutex_lock(&vm->dev_lock);
	/* String I/O (rep outsb) arrives as count consecutive elements. */
	for (uint32_t i = 0; i < run->io.count; i++)
		iobus_dispatch(&vm->pio, run->io.port, is_write, data + i * run->io.size,
			       run->io.size);
	pthread_mutex_unlock(&vm->dev_lock);
}

/* Returns false when the vCPU must stop running. */
static bool vcpu_handle_exit(struct vcpu *vc)
{
	struct kvm_run *run = vc->run;
	char detail[200];

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_handle_io(vc);
		return true;
	case KVM_EXIT_MMIO:
		/* Nothing is memory-mapped outside the in-kernel LAPIC/IOAPIC: reads see all ones. */
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
		return true;
	case KVM_EXIT_HLT:
		return true;
	case KVM_EXIT_DIRTY_RING_FULL:
		/* Harvest here rather than wait for the migration thread, which
		 * may be busy sending a whole pass: the ring lock makes this safe
		 * against its syncs (dirty_ring.h), and the vCPU re-enters at once. */
		if (vc->vm->ring) {
			struct err e = { .code = 0 };
			if (dirty_ring_harvest(vc->vm->ring, true, &e) == 0)
				return true;
			snprintf(detail, sizeof(detail), "vCPU %d: dirty ring full: %.150s", vc->index, e.msg);
		} else {
			snprintf(detail, sizeof(detail), "vCPU %d: dirty ring full without a ring", vc->index);
		}
		vm_request_exit(vc->vm, VM_EXIT_ERROR, detail);
		return false;
	case KVM_EXIT_SHUTDOWN:
		vm_request_exit(vc->vm, VM_EXIT_RESET, "triple fault (KVM_EXIT_SHUTDOWN)");
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		vm_request_exit(vc->vm, run->system_event.type == KVM_SYSTEM_EVENT_RESET ?
				VM_EXIT_RESET : VM_EXIT_SHUTDOWN, "system event");
		return false;
	case KVM_EXIT_INTERNAL_ERROR: {
		/* Name the instruction's address: on an emulating KVM (PVM) this
		 * is how an unsupported guest instruction is found (objdump it). */
		struct kvm_regs regs;
		unsigned long long rip = ioctl(vc->fd, KVM_GET_REGS, &regs) == 0 ? regs.rip : 0;
		snprintf(detail, sizeof(detail), "vCPU %d: KVM internal error, suberror %u%s, at RIP 0x%llx",
			 vc->index, run->internal.suberror,
			 run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ?
			 " (instruction emulation failed)" : "", rip);
		vm_request_exit(vc->vm, VM_EXIT_ERROR, detail);
		return false;
	}
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(detail, sizeof(detail), "vCPU %d: VM entry failed, reason 0x%llx",
			 vc->index, (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vm_request_exit(vc->vm, VM_EXIT_ERROR, detail);
		return false;
	default:
		snprintf(detail, sizeof(detail), "vCPU %d: unhandled exit reason %u", vc->index,
			 run->exit_reason);
		vm_request_exit(vc->vm, VM_EXIT_ERROR, detail);
		return false;
	}
}

/* Park while a pause is requested. Returns false if the thread must quit. */
static bool vcpu_park_if_asked(struct vcpu *vc)
{
	struct vm *vm = vc->vm;
	bool go_on;
	pthread_mutex_lock(&vm->run_lock);
	while (vm->pause_req && !vm->quit) {
		if (!vc->parked) {
			vc->parked = true;
			vm->nparked++;
			pthread_cond_broadcast(&vm->run_cond);
		}
		pthread_cond_wait(&vm->run_cond, &vm->run_lock);
	}
	if (vc->parked) {
		vc->parked = false;
		vm->nparked--;
	}
	go_on = !vm->quit;
	pthread_mutex_unlock(&vm->run_lock);
	return go_on;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vc = arg;
	char name[16];
	sigset_t set;

	snprintf(name, sizeof(name), "vcpu%d", vc->index);
	pthread_setname_np(pthread_self(), name);
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	/* KVM finishes an I/O or MMIO exit (stores the data of an IN, moves RIP
	 * past an OUT on the fast path) only inside the next KVM_RUN, and that
	 * pending work is in no state KVM_GET_* returns (KVM API, "KVM_RUN").
	 * A vCPU parked straight after such an exit would be saved half-way
	 * through an instruction: the destination would repeat an OUT or read
	 * an IN again from its own device. So with a pause asked for, a vCPU
	 * with an exit behind it re-enters once with immediate_exit set: KVM
	 * completes the operation and returns EINTR without running guest code
	 * (or reports the next exit of a string I/O, handled the same way);
	 * only after EINTR does it park. Without a pause asked for, the next
	 * KVM_RUN finishes the exit anyway, and a pause asked for meanwhile
	 * kicks that KVM_RUN out with EINTR. */
	bool unfinished = false;
	for (;;) {
		if (unfinished) {
			if (__atomic_load_n(&vc->vm->pause_req, __ATOMIC_ACQUIRE))
				__atomic_store_n(&vc->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		} else if (!vcpu_park_if_asked(vc)) {
			break;
		}
		int r = ioctl(vc->fd, KVM_RUN, 0);
		unfinished = r >= 0;
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			char detail[128];
			snprintf(detail, sizeof(detail), "vCPU %d: KVM_RUN: %s", vc->index, strerror(errno));
			vm_request_exit(vc->vm, VM_EXIT_ERROR, detail);
			break;
		}
		vc->exits++;
		if (!vcpu_handle_exit(vc))
			break;
	}
	/* A vCPU that stopped on its own counts as parked so pauses never hang. */
	pthread_mutex_lock(&vc->vm->run_lock);
	if (!vc->parked) {
		vc->parked = true;
		vc->vm->nparked++;
	}
	pthread_cond_broadcast(&vc->vm->run_cond);
	pthread_mutex_unlock(&vc->vm->run_lock);
	return NULL;
}

int vcpus_start(struct vm *vm, struct err *e)
{
	struct sigaction sa;
	sigset_t set;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = vcpu_kick_handler; /* no SA_RESTART: KVM_RUN must return EINTR */
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return err_sys(e, "sigaction");
	/* Only vCPU threads take the kick; block it in the caller (inherited by new threads, which unblock). */
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	for (int i = 0; i < vm->nvcpus; i++) {
		struct vcpu *vc = vm->vcpus[i];
		int r = pthread_create(&vc->thread, NULL, vcpu_thread, vc);
		if (r != 0) {
			errno = r;
			return err_sys(e, "starting vCPU %d thread", i);
		}
		vc->thread_started = true;
	}
	return 0;
}

static void vcpus_kick(struct vm *vm)
{
	for (int i = 0; i < vm->nvcpus; i++) {
		struct vcpu *vc = vm->vcpus[i];
		if (!vc || !vc->thread_started)
			continue;
		__atomic_store_n(&vc->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		pthread_kill(vc->thread, VCPU_KICK_SIGNAL);
	}
}

void vcpus_pause(struct vm *vm)
{
	int started = 0;
	pthread_mutex_lock(&vm->run_lock);
	__atomic_store_n(&vm->pause_req, 1, __ATOMIC_RELEASE); /* read unlocked by vcpu_thread */
	pthread_mutex_unlock(&vm->run_lock);
	vcpus_kick(vm);
	for (int i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i] && vm->vcpus[i]->thread_started)
			started++;
	pthread_mutex_lock(&vm->run_lock);
	while (vm->nparked < started) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		/* Re-kick on timeout: a signal can be consumed by a vCPU between exits. */
		if (pthread_cond_timedwait(&vm->run_cond, &vm->run_lock, &ts) == ETIMEDOUT) {
			pthread_mutex_unlock(&vm->run_lock);
			vcpus_kick(vm);
			pthread_mutex_lock(&vm->run_lock);
		}
	}
	vm->paused = true;
	pthread_mutex_unlock(&vm->run_lock);
	/* Device input (the worker's loop: a frame from the tap) runs under
	 * dev_lock and only while !paused. A handler that began before the
	 * flag was set may still be writing guest memory: wait it out, so
	 * that nothing changes memory or device state once this returns
	 * (a dirty sync after it must see every write). */
	pthread_mutex_lock(&vm->dev_lock);
	pthread_mutex_unlock(&vm->dev_lock);
}

void vcpus_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	for (int i = 0; i < vm->nvcpus; i++) {
		if (!vm->vcpus[i])
			continue;
		/* Tell the guest's kvmclock it was stopped (while it still is):
		 * a Linux guest paused for long (pause, a move that fell back
		 * to the source) would otherwise report soft lockups. EINVAL:
		 * the guest never enabled kvmclock. */
		if (vm->paused && ioctl(vm->vcpus[i]->fd, KVM_KVMCLOCK_CTRL, 0) < 0 && errno != EINVAL)
			log_debug("vCPU %d: KVM_KVMCLOCK_CTRL: %s", i, strerror(errno));
		vm->vcpus[i]->run->immediate_exit = 0;
	}
	__atomic_store_n(&vm->pause_req, 0, __ATOMIC_RELEASE);
	vm->paused = false;
	pthread_cond_broadcast(&vm->run_cond);
	pthread_mutex_unlock(&vm->run_lock);
}

void vcpus_stop(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	vm->quit = true;
	pthread_cond_broadcast(&vm->run_cond);
	pthread_mutex_unlock(&vm->run_lock);
	vcpus_kick(vm);
	for (int i = 0; i < vm->nvcpus; i++) {
		struct vcpu *vc = vm->vcpus[i];
		if (vc && vc->thread_started) {
			pthread_join(vc->thread, NULL);
			vc->thread_started = false;
		}
	}
}
