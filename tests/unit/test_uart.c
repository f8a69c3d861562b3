/*
 * Unit tests for the 16550 model (src/devices/uart.c) on a fake VM's port
 * bus: the loopback wiring of the modem lines, which Linux's serial driver
 * probes at boot (autoconfig writes MCR = LOOP | OUT2 | RTS and wants
 * MSR 0x90 back), and the receive FIFO's bound (uart_feed takes what fits
 * and says how much; the worker keeps the rest).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/stream.h"
#include "devices/uart.h"
#include "vmm/vm.h"
#include "vmm/x86/layout.h"

static void out(struct vm *vm, uint16_t port, uint8_t v)
{
	iobus_dispatch(&vm->pio, port, true, &v, 1);
}

static uint8_t in(struct vm *vm, uint16_t port)
{
	uint8_t v = 0;
	iobus_dispatch(&vm->pio, port, false, &v, 1);
	return v;
}

static void test_loopback_msr(void **state)
{
	static const struct { uint8_t mcr, msr; } wiring[] = {
		{ 0x01, 0x20 }, /* DTR -> DSR */
		{ 0x02, 0x10 }, /* RTS -> CTS */
		{ 0x04, 0x40 }, /* OUT1 -> RI */
		{ 0x08, 0x80 }, /* OUT2 -> DCD */
		{ 0x0a, 0x90 }, /* Linux's autoconfig probe */
		{ 0x0f, 0xf0 },
	};
	struct vm *vm = calloc(1, sizeof(*vm));
	struct uart *u = calloc(1, sizeof(*u));
	struct err e;
	(void)state;
	assert_non_null(vm);
	assert_non_null(u);
	assert_int_equal(uart_create(vm, u, NULL, NULL, &e), 0);
	for (size_t i = 0; i < sizeof(wiring) / sizeof(wiring[0]); i++) {
		out(vm, LAYOUT_COM1_PORT + 4, (uint8_t)(0x10 | wiring[i].mcr));
		assert_int_equal(in(vm, LAYOUT_COM1_PORT + 6) & 0xf0, wiring[i].msr);
	}
	free(u);
	free(vm);
}

static void test_feed_bound(void **state)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct uart *u = calloc(1, sizeof(*u));
	uint8_t buf[100];
	struct err e;
	(void)state;
	assert_non_null(vm);
	assert_non_null(u);
	assert_int_equal(uart_create(vm, u, NULL, NULL, &e), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(uart_feed(u, buf, sizeof(buf)), UART_FIFO);
	assert_int_equal(uart_feed(u, buf, 1), 0);
	assert_int_equal(in(vm, LAYOUT_COM1_PORT), 0); /* first in, first out */
	assert_int_equal(in(vm, LAYOUT_COM1_PORT), 1);
	assert_int_equal(uart_feed(u, buf + UART_FIFO, sizeof(buf) - UART_FIFO), 2);
	free(u);
	free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loopback_msr),
		cmocka_unit_test(test_feed_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
