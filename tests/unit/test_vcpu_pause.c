/*
 * A pause that lands on a port-I/O exit must leave the vCPU with that
 * instruction finished (src/vmm/vcpu.c): KVM completes an IN only inside
 * the next KVM_RUN, so state read while parked straight after the exit
 * would show RIP still on the IN and the value not yet in AL — a migration
 * taken then repeats the read on the destination.
 *
 * Runs the test guest on real KVM. The UART's port handler is wrapped: on
 * the guest's first read of the line-status register it holds the vCPU
 * inside the exit until the main thread has asked for a pause, so the
 * pause always meets an exit in flight. Then, with the vCPU parked, the
 * registers must show RIP just past the `in al, dx` (opcode 0xEC) and AL
 * holding the value the device returned. The guest must run on after the
 * resume. Skips (exit 77) without /dev/kvm or the guest binary.
 *
 * And a pause must wait out a device input handler already running (the
 * worker's loop writing a received frame into guest memory under
 * dev_lock): stop-and-copy's last dirty sync comes right after the pause,
 * and a write after it would reach the destination's memory never.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <pthread.h>

#include "kvm_test.h"
#include "vmm/machine.h"
#include "vmm/vcpu.h"
#include "vmm/x86/layout.h"

#define LSR_PORT (LAYOUT_COM1_PORT + 5)

static struct {
	iobus_fn uart_fn;
	void *uart_opaque;
	struct vm *vm;
	int armed;          /* next LSR read is held until a pause is asked for */
	int held;           /* the vCPU is inside that exit */
	uint8_t lsr_value;  /* what the device answered */
	unsigned long out_bytes;
} t;

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void kvm_test_sink(void *opaque, const uint8_t *buf, size_t n)
{
	(void)opaque;
	(void)buf;
	__atomic_add_fetch(&t.out_bytes, n, __ATOMIC_RELAXED);
}

static void held_uart(void *opaque, uint16_t port, bool is_write, uint8_t *data, uint32_t size)
{
	bool hold = !is_write && port == LSR_PORT && __atomic_exchange_n(&t.armed, 0, __ATOMIC_ACQ_REL);
	t.uart_fn(opaque, port, is_write, data, size);
	if (!hold)
		return;
	t.lsr_value = data[0];
	__atomic_store_n(&t.held, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 5000 && !__atomic_load_n(&t.vm->pause_req, __ATOMIC_ACQUIRE); i++)
		sleep_ms(1);
}

static void wrap_uart(struct vm *vm)
{
	for (int i = 0; i < vm->pio.n; i++) {
		struct iobus_range *r = &vm->pio.r[i];
		if (r->base <= LSR_PORT && LSR_PORT < r->base + r->len) {
			t.uart_fn = r->fn;
			t.uart_opaque = r->opaque;
			r->fn = held_uart;
			return;
		}
	}
	fail_msg("no device claims port 0x%x", LSR_PORT);
}

static bool wait_flag(int *flag, int ms)
{
	for (int i = 0; i < ms && !__atomic_load_n(flag, __ATOMIC_ACQUIRE); i++)
		sleep_ms(1);
	return __atomic_load_n(flag, __ATOMIC_ACQUIRE);
}

static void pause_finishes_the_in(void **state)
{
	(void)state;
	struct machine m;
	struct err e = { .code = 0 };

	kvm_test_build(&m, "pause-io", 64ull << 20);
	if (machine_boot(&m, &e) < 0)
		fail_msg("machine: %s", e.msg);
	t.vm = &m.vm;
	wrap_uart(&m.vm);
	__atomic_store_n(&t.armed, 1, __ATOMIC_RELEASE);
	if (vcpus_start(&m.vm, &e) < 0)
		fail_msg("vcpus_start: %s", e.msg);

	assert_true(wait_flag(&t.held, 20000)); /* the guest polls LSR before its first line */
	vcpus_pause(&m.vm);

	struct kvm_regs regs;
	assert_int_equal(ioctl(m.vm.vcpus[0]->fd, KVM_GET_REGS, &regs), 0);
	struct kvm_translation tr = { .linear_address = regs.rip - 1 };
	uint64_t gpa = regs.rip - 1; /* the guest's kernel is identity-mapped */
	if (ioctl(m.vm.vcpus[0]->fd, KVM_TRANSLATE, &tr) == 0 && tr.valid)
		gpa = tr.physical_address;
	uint8_t code[2];
	assert_int_equal(gmem_read(&m.vm.mem, gpa, code, sizeof(code)), 0);
	print_message("paused at RIP 0x%llx: bytes %02x %02x, AL 0x%02x, device said 0x%02x\n",
		      (unsigned long long)regs.rip, code[0], code[1], (unsigned)(regs.rax & 0xff),
		      t.lsr_value);
	assert_int_equal(code[0], 0xec);            /* RIP is just past `in al, dx` */
	assert_int_equal(regs.rax & 0xff, t.lsr_value);

	unsigned long before = __atomic_load_n(&t.out_bytes, __ATOMIC_RELAXED);
	vcpus_resume(&m.vm);
	for (int i = 0; i < 20000 && __atomic_load_n(&t.out_bytes, __ATOMIC_RELAXED) == before; i++)
		sleep_ms(1);
	assert_true(__atomic_load_n(&t.out_bytes, __ATOMIC_RELAXED) > before);
	vcpus_stop(&m.vm);
	machine_destroy(&m);
}

static struct {
	struct vm *vm;
	int locked, done;
} h;

/* A device handler: holds dev_lock, writes "guest memory" late. */
static void *slow_handler(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&h.vm->dev_lock);
	__atomic_store_n(&h.locked, 1, __ATOMIC_RELEASE);
	sleep_ms(300);
	__atomic_store_n(&h.done, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&h.vm->dev_lock);
	return NULL;
}

static void pause_waits_for_device_input(void **state)
{
	(void)state;
	struct machine m;
	pthread_t th;

	kvm_test_build(&m, "pause-dev", 16ull << 20);
	h.vm = &m.vm;
	assert_int_equal(pthread_create(&th, NULL, slow_handler, NULL), 0);
	assert_true(wait_flag(&h.locked, 5000));
	vcpus_pause(&m.vm);
	assert_true(m.vm.paused);
	assert_int_equal(__atomic_load_n(&h.done, __ATOMIC_ACQUIRE), 1);
	pthread_join(th, NULL);
	vcpus_resume(&m.vm);
	machine_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pause_finishes_the_in),
		cmocka_unit_test(pause_waits_for_device_input),
	};
	int skip = kvm_test_skip("runs a guest");
	if (skip)
		return skip;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
