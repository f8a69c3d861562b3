/*
 * Interrupt routing on real KVM (src/vmm/vm.c): the MP table tells the
 * guest that ISA IRQ0, the PIT, arrives on IOAPIC pin 2, as on a PC; KVM's
 * default routing delivers GSI 0 to pin 0, so the VM must route it. A
 * pulse on GSI 0 must reach the local APIC through pin 2's entry, and a
 * serial interrupt (GSI 4) still through pin 4. The interrupt controllers'
 * state (both PICs, the IOAPIC's redirection table) moves with the VM: a
 * destination that kept its own would leave the guest's devices masked.
 * Skips (exit 77) without
 * /dev/kvm or the guest binary (the machine is built, never run).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvm_test.h"
#include "vmm/machine.h"
#include "vmm/vcpu.h"
#include "vmm/x86/cpustate.h"
#include "vmm/x86/mptable.h"

static void kvm_test_sink(void *opaque, const uint8_t *buf, size_t n)
{
	(void)opaque;
	(void)buf;
	(void)n;
}

/* Is vector v pending in the LAPIC's IRR? */
static bool irr(int vcpu_fd, unsigned v)
{
	struct kvm_lapic_state la;
	uint32_t w;
	assert_int_equal(ioctl(vcpu_fd, KVM_GET_LAPIC, &la), 0);
	memcpy(&w, la.regs + 0x200 + 0x10 * (v / 32), 4);
	return w >> (v % 32) & 1;
}

static void pulse(int vm_fd, uint32_t gsi)
{
	struct kvm_irq_level l = { .irq = gsi, .level = 1 };
	assert_int_equal(ioctl(vm_fd, KVM_IRQ_LINE, &l), 0);
	l.level = 0;
	assert_int_equal(ioctl(vm_fd, KVM_IRQ_LINE, &l), 0);
}

static void pit_reaches_pin2(void **state)
{
	struct machine m;
	struct kvm_lapic_state la;
	struct kvm_irqchip io = { .chip_id = KVM_IRQCHIP_IOAPIC };
	uint32_t svr = 0x1ff; /* APIC software-enabled */
	int fd;
	(void)state;

	kvm_test_build(&m, "irq", 16ull << 20);
	fd = m.vm.vcpus[0]->fd;
	assert_int_equal(ioctl(fd, KVM_GET_LAPIC, &la), 0);
	memcpy(la.regs + 0xf0, &svr, 4);
	assert_int_equal(ioctl(fd, KVM_SET_LAPIC, &la), 0);
	/* pins 0, 2 and 4: fixed, edge, unmasked, to APIC 0, vectors 0x30/0x32/0x34 */
	assert_int_equal(ioctl(m.vm.vm_fd, KVM_GET_IRQCHIP, &io), 0);
	io.chip.ioapic.redirtbl[0].bits = 0x30;
	io.chip.ioapic.redirtbl[2].bits = 0x32;
	io.chip.ioapic.redirtbl[4].bits = 0x34;
	assert_int_equal(ioctl(m.vm.vm_fd, KVM_SET_IRQCHIP, &io), 0);
	pulse(m.vm.vm_fd, 0);
	assert_true(irr(fd, 0x30 + MPTABLE_PIT_PIN));
	assert_false(irr(fd, 0x30));
	pulse(m.vm.vm_fd, 4);
	assert_true(irr(fd, 0x34));
	machine_destroy(&m);
}

/* Saved on one VM and restored into another, every chip reads back as the
 * source left it. */
static void irqchips_move(void **state)
{
	struct machine a, b;
	struct kvm_irqchip io = { .chip_id = KVM_IRQCHIP_IOAPIC };
	struct kvm_irqchip pic = { .chip_id = KVM_IRQCHIP_PIC_MASTER };
	struct kvm_irqchip pic2 = { .chip_id = KVM_IRQCHIP_PIC_SLAVE };
	struct kvm_vm_state *st = calloc(1, sizeof(*st));
	struct err e;
	(void)state;

	assert_non_null(st);
	kvm_test_build(&a, "irq-src", 16ull << 20);
	assert_int_equal(ioctl(a.vm.vm_fd, KVM_GET_IRQCHIP, &io), 0);
	io.chip.ioapic.redirtbl[4].bits = 0x34;
	assert_int_equal(ioctl(a.vm.vm_fd, KVM_SET_IRQCHIP, &io), 0);
	assert_int_equal(ioctl(a.vm.vm_fd, KVM_GET_IRQCHIP, &pic), 0);
	pic.chip.pic.imr = 0xa5;
	assert_int_equal(ioctl(a.vm.vm_fd, KVM_SET_IRQCHIP, &pic), 0);
	assert_int_equal(ioctl(a.vm.vm_fd, KVM_GET_IRQCHIP, &pic2), 0);
	pic2.chip.pic.imr = 0x5a;
	assert_int_equal(ioctl(a.vm.vm_fd, KVM_SET_IRQCHIP, &pic2), 0);
	if (kvm_vm_save(a.vm.vm_fd, st, &e) < 0)
		fail_msg("kvm_vm_save: %s", e.msg);

	kvm_test_build_as(&b, "irq-dst", 16ull << 20, true);
	if (kvm_vm_restore_irq(b.vm.vm_fd, st, &e) < 0)
		fail_msg("kvm_vm_restore_irq: %s", e.msg);
	memset(&io.chip, 0, sizeof(io.chip));
	memset(&pic.chip, 0, sizeof(pic.chip));
	memset(&pic2.chip, 0, sizeof(pic2.chip));
	assert_int_equal(ioctl(b.vm.vm_fd, KVM_GET_IRQCHIP, &io), 0);
	assert_int_equal(ioctl(b.vm.vm_fd, KVM_GET_IRQCHIP, &pic), 0);
	assert_int_equal(ioctl(b.vm.vm_fd, KVM_GET_IRQCHIP, &pic2), 0);
	assert_true(io.chip.ioapic.redirtbl[4].bits == 0x34);
	assert_int_equal(pic.chip.pic.imr, 0xa5);
	assert_int_equal(pic2.chip.pic.imr, 0x5a);
	free(st);
	machine_destroy(&a);
	machine_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pit_reaches_pin2),
		cmocka_unit_test(irqchips_move),
	};
	int skip = kvm_test_skip("builds a VM");
	if (skip)
		return skip;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
