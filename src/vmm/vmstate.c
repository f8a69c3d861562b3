/*
 * Whole-VM save and restore (see vmstate.h).
 *
 * Save order (source, vCPUs parked): devices first — a device may still
 * touch the virtio rings or raise an interrupt while being saved, which must
 * land in the vCPU/irqchip state captured after it (Firecracker's rule) —
 * then each vCPU, then the VM-wide irqchip/PIT, and the clock last of all.
 *
 * Restore order (destination, before any KVM_RUN):
 *   0. nothing yet: every vCPU's CPUID, and what vcpu_check_host checks
 *      (TSC rate, machine-check setup, feature MSRs, KVM_CAP_SREGS2 for a
 *      vCPU saved with PDPTRs), against this host first;
 *   1. every vCPU, each in cpustate.c's order (CPUID first, events last),
 *      then vCPU 0's model kept for a later move (vm.h);
 *   2. PIT, then PIC master, PIC slave, IOAPIC;
 *   3. devices, then their post_load hooks, which re-drive interrupt lines
 *      on top of the restored irqchip (doing it earlier would be overwritten);
 *   4. the kvmclock, as late as possible so the guest loses the least time;
 *   5. KVM_KVMCLOCK_CTRL on each vCPU so the guest's watchdog knows it was
 *      stopped rather than stuck.
 */
#include "vmm/vmstate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/failpoint.h"
#include "vmm/vcpu.h"
#include "vmm/x86/cpuid.h"
#include "vmm/x86/cpustate.h"

static int put_payload(struct stream *w, const char *name, uint32_t version, struct stream *m, struct err *e)
{
	if (stream_check(m, e) < 0)
		return err_prefix(e, "encoding %s", name);
	mig_put_section(w, name, version, stream_mem_data(m), (uint32_t)stream_mem_len(m));
	return 0;
}

int vmstate_save(struct vm *vm, struct stream *w, struct err *e)
{
	struct vcpu_state *vs;
	struct kvm_vm_state ks;
	struct stream m;
	char name[32];
	int rc = -1;

	for (int i = 0; i < vm->ndevices; i++) {
		struct vm_device *d = &vm->devices[i];
		int r;
		stream_init_mem_writer(&m);
		pthread_mutex_lock(&vm->dev_lock);
		r = d->save(d->opaque, &m, e);
		pthread_mutex_unlock(&vm->dev_lock);
		if (r < 0 || put_payload(w, d->name, d->version, &m, e) < 0) {
			stream_destroy(&m);
			return err_prefix(e, "saving device %s", d->name);
		}
		stream_destroy(&m);
	}
	vs = malloc(sizeof(*vs));
	if (!vs)
		return err_set(e, "out of memory");
	for (int i = 0; i < vm->nvcpus; i++) {
		if (vcpu_save(vm->kvm_fd, vm->vcpus[i]->fd, vm->vcpus[i]->cpuid, vs, e) < 0) {
			err_prefix(e, "saving vCPU %d", i);
			goto out;
		}
		/* A test's way to send a vCPU whose own table offers more than the
		 * CPUID record (tests/e2e/worker_refuse.sh): the last vCPU's table
		 * also shows x2apic (leaf 1, ECX bit 21). */
		if (i == vm->nvcpus - 1 && failpoint("src.vcpu_cpuid_x2apic") < 0)
			for (uint32_t k = 0; k < vs->ncpuid; k++)
				if (vs->cpuid[k].function == 1)
					vs->cpuid[k].ecx |= 1u << 21;
		stream_init_mem_writer(&m);
		vcpu_state_put(&m, vs);
		snprintf(name, sizeof(name), "cpu.%d", i);
		if (put_payload(w, name, CPUSTATE_VERSION, &m, e) < 0) {
			stream_destroy(&m);
			goto out;
		}
		stream_destroy(&m);
	}
	if (kvm_vm_save(vm->vm_fd, &ks, e) < 0)
		goto out;
	stream_init_mem_writer(&m);
	kvm_vm_state_put(&m, &ks);
	rc = put_payload(w, "kvm", VMSTATE_KVM_VERSION, &m, e);
	stream_destroy(&m);
	if (rc == 0) {
		mig_put_rec(w, MIG_REC_STATE_END, 0);
		rc = stream_check(w, e);
	}
out:
	free(vs);
	return rc;
}

int vmstate_read_section(struct vmstate_loaded *ld, struct stream *r, uint32_t rec_len, struct err *e)
{
	struct vmstate_section *s;
	char name[MIG_MAX_NAME + 1];
	uint32_t version, len;
	uint64_t sum;

	if (mig_get_section_hdr(r, rec_len, name, &version, &len, &sum, e) < 0)
		return -1;
	for (int i = 0; i < ld->n; i++)
		if (strcmp(ld->s[i].name, name) == 0)
			return err_set(e, "corrupt stream: section %s appears twice", name);
	if (ld->n >= VMSTATE_MAX_SECTIONS)
		return err_set(e, "corrupt stream: more than %d state sections", VMSTATE_MAX_SECTIONS);
	s = &ld->s[ld->n];
	s->data = malloc(len ? len : 1);
	if (!s->data)
		return err_set(e, "out of memory for section %s", name);
	stream_get(r, s->data, len);
	if (stream_check(r, e) < 0) {
		free(s->data);
		return err_prefix(e, "reading section %s", name);
	}
	if (mig_sum(s->data, len) != sum) {
		free(s->data);
		return err_set(e, "corrupt stream: checksum mismatch in section %s", name);
	}
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->version = version;
	s->len = len;
	ld->n++;
	return 0;
}

void vmstate_loaded_free(struct vmstate_loaded *ld)
{
	for (int i = 0; i < ld->n; i++)
		free(ld->s[i].data);
	ld->n = 0;
}

static struct vmstate_section *find(struct vmstate_loaded *ld, const char *name)
{
	for (int i = 0; i < ld->n; i++)
		if (strcmp(ld->s[i].name, name) == 0)
			return &ld->s[i];
	return NULL;
}

/* Every section must be consumed exactly: trailing bytes mean a mismatch. */
static int check_consumed(struct stream *r, const char *name, struct err *e)
{
	if (stream_check(r, e) < 0)
		return err_prefix(e, "section %s", name);
	if (stream_remaining(r) != 0)
		return err_set(e, "section %s has %zu unexpected trailing bytes", name, stream_remaining(r));
	return 0;
}

static int set_cpuid(void *opaque, const struct kvm_cpuid2 *c, struct err *e)
{
	return vcpu_set_cpuid(opaque, c, e);
}

/* The stream's CPUID record (vCPU 0's table, checked at a move's setup)
 * speaks for the guest, but each vCPU is given the table its own section
 * carries, and a state file has no such record at all. A feature bit this
 * host lacks would be accepted by KVM_SET_CPUID2 and fault (#UD) in the
 * guest at its first use, long after the move or restore "succeeded". */
static int check_vcpu_cpuid(struct vm *vm, const struct vcpu_state *vs, struct err *e)
{
	struct kvm_cpuid2 *c = cpuid_alloc(vs->ncpuid);
	char why[400];
	int rc;
	if (!c)
		return err_set(e, "out of memory");
	c->nent = vs->ncpuid;
	memcpy(c->entries, vs->cpuid, vs->ncpuid * sizeof(c->entries[0]));
	rc = cpuid_check_host(vm->kvm_fd, c, why, sizeof(why));
	if (rc == 0)
		rc = cpuid_check_mask(c, vm->host_cpu_mask, why, sizeof(why));
	free(c);
	return rc < 0 ? err_set(e, "incompatible CPU: %s", why) : 0;
}

int vmstate_apply(struct vm *vm, struct vmstate_loaded *ld, struct err *e)
{
	struct vmstate_section *s;
	struct vcpu_state *vs;
	struct kvm_vm_state ks;
	struct stream r;
	char name[32];
	int expected = vm->nvcpus + 1 + vm->ndevices;

	/* Reject unknown or missing sections before touching anything. */
	if (ld->n != expected)
		return err_set(e, "state has %d sections, this VM needs %d (%d vCPUs, kvm, %d devices)",
			       ld->n, expected, vm->nvcpus, vm->ndevices);
	/* 0. the kvm section and every vCPU section decode, and each vCPU's
	 * CPUID fits this host, before anything is set (the vCPUs decoded
	 * again below: a few KiB each). A device section that fails later
	 * fails the whole restore, whose VM is then discarded, never run. */
	s = find(ld, "kvm");
	if (!s || s->version != VMSTATE_KVM_VERSION)
		return err_set(e, "state lacks a usable kvm section");
	stream_init_mem_reader(&r, s->data, s->len);
	if (kvm_vm_state_get(&r, &ks, e) < 0 || check_consumed(&r, "kvm", e) < 0)
		return err_prefix(e, "restoring interrupt controllers");
	vs = malloc(sizeof(*vs));
	if (!vs)
		return err_set(e, "out of memory");
	/* 1. vCPUs */
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < vm->nvcpus; i++) {
			snprintf(name, sizeof(name), "cpu.%d", i);
			s = find(ld, name);
			if (!s) {
				free(vs);
				return err_set(e, "state lacks section %s", name);
			}
			stream_init_mem_reader(&r, s->data, s->len);
			if (vcpu_state_get(&r, s->version, vs, e) < 0 || check_consumed(&r, name, e) < 0 ||
			    (pass == 0 && check_vcpu_cpuid(vm, vs, e) < 0) ||
			    (pass == 0 && vcpu_check_host(vm->kvm_fd, vm->vcpus[i]->fd, vs, e) < 0) ||
			    (pass == 1 && vcpu_restore(vm->kvm_fd, vm->vcpus[i]->fd, vs, set_cpuid,
						       vm->vcpus[i], e) < 0)) {
				free(vs);
				return err_prefix(e, "restoring vCPU %d", i);
			}
		}
	}
	free(vs);
	/* The restored vCPU 0 is what a move from here sends as its model
	 * (not the saved section's values: its TSC rate is this host's when
	 * that was close enough to keep). */
	if (vm_capture_cpu_model(vm, e) < 0)
		return -1;
	/* 2. irqchip and PIT */
	if (kvm_vm_restore_irq(vm->vm_fd, &ks, e) < 0)
		return err_prefix(e, "restoring interrupt controllers");
	/* 3. devices, in registration order, then post-load */
	for (int i = 0; i < vm->ndevices; i++) {
		struct vm_device *d = &vm->devices[i];
		s = find(ld, d->name);
		if (!s)
			return err_set(e, "state lacks section for device %s", d->name);
		stream_init_mem_reader(&r, s->data, s->len);
		if (d->load(d->opaque, &r, s->version, e) < 0 || check_consumed(&r, d->name, e) < 0)
			return err_prefix(e, "restoring device %s", d->name);
	}
	for (int i = 0; i < vm->ndevices; i++) {
		struct vm_device *d = &vm->devices[i];
		if (d->post_load && d->post_load(d->opaque, e) < 0)
			return err_prefix(e, "after restoring device %s", d->name);
	}
	/* 4. clock last */
	if (kvm_vm_restore_clock(vm->vm_fd, &ks, e) < 0)
		return -1;
	/* 5. tell each vCPU's kvmclock it was paused; EINVAL = guest never enabled kvmclock */
	for (int i = 0; i < vm->nvcpus; i++)
		if (ioctl(vm->vcpus[i]->fd, KVM_KVMCLOCK_CTRL, 0) < 0 && errno != EINVAL)
			return err_sys(e, "KVM_KVMCLOCK_CTRL vCPU %d", i);
	return 0;
}
