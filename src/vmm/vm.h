/*
 * The VM: KVM fds, guest memory, the port-I/O bus, registered devices and
 * the vCPUs. Devices register a struct vm_device so that save/restore can
 * walk them in one explicit order (registration order) and the main loop can
 * poll their file descriptors. All device emulation runs under dev_lock,
 * whether entered from a vCPU exit or from the main loop.
 */
#ifndef FERRY_VM_H
#define FERRY_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/stream.h"
#include "vmm/guestmem.h"
#include "vmm/iobus.h"
#include "vmm/x86/cpustate.h"
#include "vmm/x86/layout.h"

#define VM_MAX_DEVICES 16

struct vm_device {
	const char *name;   /* state-section name, unique in the VM, e.g. "virtio-blk.0" */
	uint32_t version;   /* state-section format version written by save */
	void *opaque;
	/* Encode the device's *_state into w. Called with vCPUs paused and dev_lock held. */
	int (*save)(void *opaque, struct stream *w, struct err *e);
	/* Decode and apply state written by a save of `version`. Every value
	 * from the stream is validated before use. */
	int (*load)(void *opaque, struct stream *r, uint32_t version, struct err *e);
	/* After all state is loaded: re-assert interrupt lines etc. May be NULL. */
	int (*post_load)(void *opaque, struct err *e);
	/* Main-loop readiness: fd to poll for input (-1 if none). */
	int poll_fd;
	void (*on_readable)(void *opaque);
	void (*destroy)(void *opaque);
};

struct vcpu;
struct dirty_ring;

struct vm {
	int kvm_fd;
	int vm_fd;
	int run_size;            /* mmap size of struct kvm_run */
	struct guest_mem mem;
	struct iobus pio;
	pthread_mutex_t dev_lock;
	int ndevices;
	struct vm_device devices[VM_MAX_DEVICES];
	int nvcpus;
	struct vcpu *vcpus[LAYOUT_MAX_VCPUS];
	/* vCPU run control (vcpu.c): pause handshake and quit. */
	pthread_mutex_t run_lock;
	pthread_cond_t run_cond;
	int pause_req;           /* vCPUs must park */
	int nparked;             /* vCPUs parked (out of KVM_RUN) */
	bool quit;
	volatile bool paused;    /* main loop skips device input while paused */
	volatile int exit_reason;/* set when the guest resets/shuts down */
	int event_fd;            /* eventfd: wakes the main loop (guest exit, errors) */
	int dirty_manual_flags;  /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 flags enabled (dirty.c) */
	struct dirty_ring *ring; /* the dirty ring, if the VM tracks with it (dirty_ring.c) */
	char exit_detail[256];
	/* Features this host must be treated as lacking (--host-cpu-mask): a
	 * CPUID loaded from a stream or a state file must not offer them. */
	const char *host_cpu_mask;
	/* vCPU 0's model (TSC rate, machine-check setup, feature MSRs), sent
	 * ahead of memory so a destination can refuse at a move's setup.
	 * Captured once, when the vCPUs are set up and before they first run
	 * (machine_build for a boot, vmstate_apply for a restore), not read by
	 * the migration thread at move time: a vCPU ioctl from another thread
	 * waits until that vCPU leaves KVM_RUN, which a busy guest may not do
	 * for long. None of it changes while the guest runs. */
	struct cpu_model cpu_model;
	bool cpu_model_known;
};

/* Guest asked to end: values for vm_request_exit(). */
enum vm_exit_reason { VM_EXIT_NONE = 0, VM_EXIT_RESET = 1, VM_EXIT_SHUTDOWN = 2, VM_EXIT_ERROR = 3 };

/* Create the KVM VM: TSS, irqchip, PIT, dirty tracker, memory slots. No
 * vCPUs yet. dirty_ring: track with KVM's dirty ring instead of the bitmap
 * (decided here because KVM accepts the ring only before any vCPU).
 * reserved: guest memory set aside earlier (e.g. pre-allocated by an
 * incoming worker), taken over if it has mem_size bytes; NULL: allocate. */
int vm_create(struct vm *vm, uint64_t mem_size, bool dirty_ring, struct guest_mem *reserved,
	      struct err *e);
void vm_destroy(struct vm *vm);
/* (Re)register the memory slots, with or without dirty logging. */
int vm_set_dirty_logging(struct vm *vm, bool on, struct err *e);
int vm_irq_line(struct vm *vm, uint32_t gsi, int level);
int vm_add_device(struct vm *vm, const struct vm_device *d, struct err *e);
void vm_request_exit(struct vm *vm, int reason, const char *detail);
struct vm_device *vm_find_device(struct vm *vm, const char *name);

#endif
