/*
 * Whole-VM state as stream sections: one per vCPU ("cpu.N"), the in-kernel
 * interrupt controllers, PIT and clock ("kvm"), then every registered device
 * under its own name. Saving happens with all vCPUs parked. Loading first
 * collects every section, then applies them in the order KVM requires
 * (documented in vmstate.c), so the order on the wire does not matter.
 */
#ifndef FERRY_VMSTATE_H
#define FERRY_VMSTATE_H

#include <stdint.h>

#include "common/err.h"
#include "common/stream.h"
#include "migration/format.h"
#include "vmm/vm.h"

#define VMSTATE_MAX_SECTIONS (LAYOUT_MAX_VCPUS + VM_MAX_DEVICES + 4)

struct vmstate_section {
	char name[MIG_MAX_NAME + 1];
	uint32_t version;
	uint32_t len;
	uint8_t *data;
};

struct vmstate_loaded {
	int n;
	struct vmstate_section s[VMSTATE_MAX_SECTIONS];
};

/* Write all state sections followed by MIG_REC_STATE_END. vCPUs must be parked. */
int vmstate_save(struct vm *vm, struct stream *w, struct err *e);
/* Stash one section record (its header already read). */
int vmstate_read_section(struct vmstate_loaded *ld, struct stream *r, uint32_t rec_len, struct err *e);
/* Apply collected sections to a freshly built VM whose vCPUs exist but never ran. */
int vmstate_apply(struct vm *vm, struct vmstate_loaded *ld, struct err *e);
void vmstate_loaded_free(struct vmstate_loaded *ld);

#endif
