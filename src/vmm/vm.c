/*
 * KVM VM setup. Order matters and follows KVM's rules: the TSS address must
 * be set before any vCPU exists, and the in-kernel irqchip is created before
 * the vCPUs so each gets an in-kernel LAPIC; PIT2 needs the irqchip.
 */
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/log.h"
#include "migration/dirty.h"
#include "vmm/x86/mptable.h"

/* The interrupt routing of a PC: ISA IRQ n reaches the PICs and IOAPIC
 * pin n, except IRQ0 (the PIT), which firmware wires to IOAPIC pin 2 and
 * our MP table says so (mptable.h). KVM's default sends GSI 0 to pin 0:
 * Linux without "noapic" would find no timer on pin 2 ("MP-BIOS bug:
 * 8254 timer not connected"). The whole table is replaced, as QEMU's
 * kvm_pc_setup_irq_routing does. Both ends of a move set the same. */
static int vm_set_gsi_routing(struct vm *vm, struct err *e)
{
	enum { MAX = 40 };
	struct kvm_irq_routing *r = calloc(1, sizeof(*r) + MAX * sizeof(r->entries[0]));
	uint32_t n = 0;
	int rc;

	if (!r)
		return err_set(e, "out of memory");
#define ROUTE(g, chip, p) r->entries[n++] = (struct kvm_irq_routing_entry){ \
		.gsi = (g), .type = KVM_IRQ_ROUTING_IRQCHIP, .u.irqchip = { .irqchip = (chip), .pin = (p) } }
	for (uint32_t i = 0; i < 8; i++)
		if (i != 2)
			ROUTE(i, KVM_IRQCHIP_PIC_MASTER, i);
	for (uint32_t i = 8; i < 16; i++)
		ROUTE(i, KVM_IRQCHIP_PIC_SLAVE, i - 8);
	for (uint32_t i = 0; i < 24; i++)
		if (i == 0)
			ROUTE(0, KVM_IRQCHIP_IOAPIC, MPTABLE_PIT_PIN);
		else if (i != 2)
			ROUTE(i, KVM_IRQCHIP_IOAPIC, i);
#undef ROUTE
	r->nr = n;
	rc = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r);
	free(r);
	return rc < 0 ? err_sys(e, "KVM_SET_GSI_ROUTING") : 0;
}

int vm_create(struct vm *vm, uint64_t mem_size, bool dirty_ring, struct guest_mem *reserved,
	      struct err *e)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	int api;

	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->event_fd = -1;
	vm->mem.memfd = -1;
	pthread_mutex_init(&vm->dev_lock, NULL);
	pthread_mutex_init(&vm->run_lock, NULL);
	pthread_cond_init(&vm->run_cond, NULL);

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		if (errno == ENOENT)
			return err_set(e, "no /dev/kvm on this host: load the kvm module (kvm_intel or kvm_amd) or run on a host with virtualization");
		return err_sys(e, "opening /dev/kvm (are you root or in the kvm group?)");
	}
	api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION)
		return err_set(e, "KVM API version %d, expected %d", api, KVM_API_VERSION);
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0)
		return err_sys(e, "KVM_GET_VCPU_MMAP_SIZE");
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return err_sys(e, "KVM_CREATE_VM");
	vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->event_fd < 0)
		return err_sys(e, "eventfd");
	/* Before any vCPU: KVM refuses a TSS address once vCPUs exist. */
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_KVM_TSS) < 0)
		return err_sys(e, "KVM_SET_TSS_ADDR");
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return err_sys(e, "KVM_CREATE_IRQCHIP");
	if (vm_set_gsi_routing(vm, e) < 0)
		return -1;
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return err_sys(e, "KVM_CREATE_PIT2");
	/* Before any slot has dirty logging (the protect mode is fixed at
	 * enable time) and before any vCPU (the ring needs that). */
	if (dirty_vm_setup(vm, dirty_ring, e) < 0)
		return -1;
	if (reserved && reserved->host) {
		if (reserved->ram_size != mem_size)
			return err_set(e, "this destination reserved %llu MiB of memory, the VM has %llu MiB",
				       (unsigned long long)(reserved->ram_size >> 20),
				       (unsigned long long)(mem_size >> 20));
		vm->mem = *reserved; /* ownership moves to the VM */
		memset(reserved, 0, sizeof(*reserved));
		reserved->memfd = -1;
	} else if (gmem_init(&vm->mem, mem_size, e) < 0) {
		return -1;
	}
	if (dirty_vm_layout(vm, e) < 0)
		return -1;
	return vm_set_dirty_logging(vm, false, e);
}

int vm_set_dirty_logging(struct vm *vm, bool on, struct err *e)
{
	for (int i = 0; i < vm->mem.nregions; i++) {
		const struct gmem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region mr = {
			.slot = r->slot,
			.flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)(vm->mem.host + r->offset),
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0)
			return err_sys(e, "KVM_SET_USER_MEMORY_REGION slot %u", r->slot);
	}
	return 0;
}

void vm_destroy(struct vm *vm)
{
	for (int i = vm->ndevices - 1; i >= 0; i--)
		if (vm->devices[i].destroy)
			vm->devices[i].destroy(vm->devices[i].opaque);
	vm->ndevices = 0;
	dirty_ring_destroy(vm->ring);
	vm->ring = NULL;
	gmem_destroy(&vm->mem);
	if (vm->event_fd >= 0)
		close(vm->event_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->event_fd = vm->vm_fd = vm->kvm_fd = -1;
}

int vm_irq_line(struct vm *vm, uint32_t gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level ? 1 : 0 };
	if (vm->vm_fd < 0)
		return -1; /* unit tests run devices without KVM */
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0) {
		log_warn("KVM_IRQ_LINE gsi %u level %d: %s", gsi, level, strerror(errno));
		return -1;
	}
	return 0;
}

int vm_add_device(struct vm *vm, const struct vm_device *d, struct err *e)
{
	if (vm->ndevices >= VM_MAX_DEVICES)
		return err_set(e, "too many devices (max %d)", VM_MAX_DEVICES);
	if (vm_find_device(vm, d->name))
		return err_set(e, "device name %s registered twice", d->name);
	vm->devices[vm->ndevices++] = *d;
	return 0;
}

struct vm_device *vm_find_device(struct vm *vm, const char *name)
{
	for (int i = 0; i < vm->ndevices; i++)
		if (strcmp(vm->devices[i].name, name) == 0)
			return &vm->devices[i];
	return NULL;
}

void vm_request_exit(struct vm *vm, int reason, const char *detail)
{
	uint64_t one = 1;
	if (vm->exit_reason == VM_EXIT_NONE) {
		snprintf(vm->exit_detail, sizeof(vm->exit_detail), "%s", detail ? detail : "");
		vm->exit_reason = reason;
	}
	if (vm->event_fd >= 0 && write(vm->event_fd, &one, sizeof(one)) < 0)
		log_warn("waking main loop: %s", strerror(errno));
}
