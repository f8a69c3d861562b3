/*
 * The machine a VM runs on: builds the VM, its devices and vCPUs from a
 * vm_config in one fixed order, so that a fresh boot and a restore (from a
 * state file or a migration stream) produce identical device lists — the
 * state sections are matched by name against this list.
 */
#ifndef FERRY_MACHINE_H
#define FERRY_MACHINE_H

#include <stdbool.h>

#include "common/err.h"
#include "devices/uart.h"
#include "vmm/config.h"
#include "vmm/vm.h"

struct virtio_blk;
struct virtio_net;

struct machine {
	struct vm vm;
	struct vm_config cfg;
	struct uart uart;
	struct virtio_blk *blk;
	struct virtio_net *net;
	bool built;
};

/* Build everything. `incoming`: the state will be restored, so no kernel is
 * loaded, CPUID comes from the state, and the disk lock is not taken yet
 * (the source still holds it until the storage handoff). `reserved`: guest
 * memory set aside beforehand, or NULL (see vm_create). */
int machine_build(struct machine *m, const struct vm_config *cfg, bool incoming,
		  struct guest_mem *reserved, uart_sink_fn sink, void *sink_opaque, struct err *e);
/* Load the kernel and set up the boot vCPU state (fresh boot only). */
int machine_boot(struct machine *m, struct err *e);
void machine_destroy(struct machine *m);

#endif
