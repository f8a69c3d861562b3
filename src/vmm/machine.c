/*
 * Machine assembly (see machine.h). Device order is part of the state
 * format: uart, pci, then PCI slots in order (blk in slot 1, net in slot 2).
 */
#include "vmm/machine.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "devices/i8042.h"
#include "devices/pci.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "vmm/vcpu.h"
#include "vmm/x86/boot.h"
#include "vmm/x86/bzimage.h"
#include "vmm/x86/cpuid.h"
#include "vmm/x86/cpustate.h"
#include "vmm/x86/mptable.h"
#include "vmm/x86/multiboot.h"
#include "vmm/x86/vmlinux.h"

#define MACHINE_BLK_SLOT 1
#define MACHINE_NET_SLOT 2

int machine_build(struct machine *m, const struct vm_config *cfg, bool incoming,
		  struct guest_mem *reserved, uart_sink_fn sink, void *sink_opaque, struct err *e)
{
	struct vm *vm = &m->vm;
	struct vm_device ud = { .name = "uart", .version = UART_STATE_VERSION, .opaque = &m->uart,
				.save = uart_vm_save, .load = uart_vm_load, .poll_fd = -1 };
	struct cpuid_mask mask;

	memset(m, 0, sizeof(*m));
	m->cfg = *cfg;
	if (config_validate(cfg, e) < 0)
		return -1;
	if (cpuid_parse_mask(cfg->cpu_mask, &mask, e) < 0)
		return err_prefix(e, "--cpu-mask");
	if (vm_create(vm, cfg->mem_size, cfg->dirty_tracker == CONFIG_TRACKER_RING, reserved, e) < 0)
		return -1;
	m->built = true;
	if (uart_create(vm, &m->uart, sink, sink_opaque, e) < 0 || vm_add_device(vm, &ud, e) < 0)
		return err_prefix(e, "serial port");
	if (i8042_create(vm, e) < 0)
		return err_prefix(e, "i8042");
	if (pci_create(vm, e) < 0)
		return err_prefix(e, "PCI bus");
	if (cfg->disk[0]) {
		if (virtio_blk_create_ex(vm, MACHINE_BLK_SLOT, cfg->disk, cfg->disk_readonly, !incoming, e) < 0)
			return err_prefix(e, "disk %s", cfg->disk);
		m->blk = virtio_blk_find(vm, 0);
	}
	if (cfg->net) {
		uint8_t mac[6];
		bool have_mac = cfg->mac[0] != 0;
		if (have_mac && config_parse_mac(cfg->mac, mac, e) < 0)
			return -1;
		/* A tap of our own is named by the kernel, differently on each
		 * host: the VM's name keeps its MAC the same everywhere. */
		if (!have_mac && cfg->bridge[0]) {
			virtio_net_derive_mac(cfg->name, MACHINE_NET_SLOT, mac);
			have_mac = true;
		}
		if (virtio_net_create(vm, MACHINE_NET_SLOT, cfg->tap[0] ? cfg->tap : NULL,
				      cfg->bridge[0] ? cfg->bridge : NULL, have_mac ? mac : NULL, e) < 0)
			return err_prefix(e, "network interface");
		m->net = virtio_net_find(vm, 0);
	}
	for (int i = 0; i < cfg->vcpus; i++)
		if (vcpu_create(vm, i, e) < 0)
			return -1;
	if (incoming)
		return 0; /* CPUID and all registers come from the saved state */
	for (int i = 0; i < cfg->vcpus; i++) {
		struct kvm_cpuid2 *cpuid = NULL;
		int r;
		if (cpuid_build(vm->kvm_fd, &mask, i, cfg->vcpus, &cpuid, e) < 0)
			return err_prefix(e, "CPUID for vCPU %d", i);
		/* CPUID first: MSR and LAPIC setup depend on it, and KVM freezes it at the first run. */
		r = vcpu_set_cpuid(vm->vcpus[i], cpuid, e);
		/* Machine checks next, as QEMU does: the setup follows the CPUID. */
		if (r == 0 && vcpu_setup_mce(vm->kvm_fd, vm->vcpus[i]->fd, cpuid, e) < 0)
			r = err_prefix(e, "vCPU %d", i);
		free(cpuid);
		if (r < 0)
			return -1;
	}
	/* Nothing the boot sets later (registers, LAPIC, boot MSRs) is part
	 * of the model, so it is complete here. */
	return vm_capture_cpu_model(vm, e);
}

static bool is_bzimage(const char *path)
{
	uint8_t hdr[4];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool yes = false;
	if (fd < 0)
		return false;
	if (pread(fd, hdr, 4, 0x202) == 4 && memcmp(hdr, "HdrS", 4) == 0)
		yes = true;
	close(fd);
	return yes;
}

int machine_boot(struct machine *m, struct err *e)
{
	struct vm *vm = &m->vm;
	struct boot_entry be;
	struct mptable_irq irqs[2];
	int nirq = 0;

	if (access(m->cfg.kernel, R_OK) < 0)
		return err_sys(e, "kernel %s", m->cfg.kernel[0] ? m->cfg.kernel : "(none given: use --kernel)");
	memset(&be, 0, sizeof(be));
	/* An uncompressed Linux ELF first: the multiboot test guest is an ELF
	 * too, but carries no "Linux" note. */
	if (vmlinux_probe_file(m->cfg.kernel)) {
		if (vmlinux_load(&vm->mem, m->cfg.kernel, m->cfg.initrd[0] ? m->cfg.initrd : NULL,
				 m->cfg.cmdline, &be, e) < 0)
			return err_prefix(e, "loading Linux vmlinux %s", m->cfg.kernel);
	} else if (is_bzimage(m->cfg.kernel)) {
		if (bzimage_load(&vm->mem, m->cfg.kernel, m->cfg.initrd[0] ? m->cfg.initrd : NULL,
				 m->cfg.cmdline, &be, e) < 0)
			return err_prefix(e, "loading Linux kernel %s", m->cfg.kernel);
	} else {
		if (m->cfg.initrd[0])
			return err_set(e, "--initrd is only for Linux kernels (bzImage or vmlinux); %s is neither", m->cfg.kernel);
		if (multiboot_load(&vm->mem, m->cfg.kernel, m->cfg.cmdline, &be, e) < 0)
			return err_prefix(e, "loading multiboot kernel %s", m->cfg.kernel);
	}
	/* The loaders already wrote the boot GDT/IDT (and page tables) for their mode. */
	if (m->blk)
		irqs[nirq++] = (struct mptable_irq){ MACHINE_BLK_SLOT, 0, mptable_pci_slot_gsi(MACHINE_BLK_SLOT) };
	if (m->net)
		irqs[nirq++] = (struct mptable_irq){ MACHINE_NET_SLOT, 0, mptable_pci_slot_gsi(MACHINE_NET_SLOT) };
	if (mptable_write(&vm->mem, m->cfg.vcpus, irqs, nirq, e) < 0)
		return err_prefix(e, "MP table");
	if (boot_setup_vcpu(vm->kvm_fd, vm->vcpus[0]->fd, &be, e) < 0)
		return err_prefix(e, "boot vCPU");
	/* APs wait for INIT/SIPI, but need their MSRs and LAPIC LINTs like real firmware leaves them. */
	for (int i = 1; i < m->cfg.vcpus; i++)
		if (boot_setup_msrs(vm->kvm_fd, vm->vcpus[i]->fd, e) < 0 ||
		    boot_setup_lapic(vm->vcpus[i]->fd, e) < 0 || boot_setup_fpu(vm->vcpus[i]->fd, e) < 0)
			return err_prefix(e, "vCPU %d", i);
	return 0;
}

void machine_destroy(struct machine *m)
{
	if (!m->built)
		return;
	vcpus_stop(&m->vm);
	for (int i = 0; i < m->vm.nvcpus; i++)
		vcpu_destroy(m->vm.vcpus[i]);
	vm_destroy(&m->vm);
	m->built = false;
}
