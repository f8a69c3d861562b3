/*
 * Unit tests for the 16550 model (src/devices/uart.c) on a fake VM's port
 * bus: the loopback wiring of the modem lines, which Linux's serial driver
 * probes at boot (autoconfig writes MCR = LOOP | OUT2 | RTS and wants
 * MSR 0x90 back), and the receive FIFO's bound (uart_feed takes what fits
 * and says how much; the worker keeps the rest), and the state a move
 * carries: every register and the pending THRE interrupt arrive (a guest
 * driver waiting for that interrupt would stall otherwise), and a receive
 * FIFO count larger than the FIFO is refused before any byte is read.
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

/* What the source's guest saw must be what the destination's guest sees:
 * the state goes through the same encoder and decoder a move uses. */
static void test_state_round_trip(void **state)
{
	struct vm *vm = calloc(1, sizeof(*vm)), *vm2 = calloc(1, sizeof(*vm2));
	struct uart *u = calloc(1, sizeof(*u)), *u2 = calloc(1, sizeof(*u2));
	struct uart_state a, b;
	struct stream w, r;
	struct err e;
	(void)state;
	assert_non_null(vm);
	assert_non_null(vm2);
	assert_non_null(u);
	assert_non_null(u2);
	assert_int_equal(uart_create(vm, u, NULL, NULL, &e), 0);
	assert_int_equal(uart_create(vm2, u2, NULL, NULL, &e), 0);
	out(vm, LAYOUT_COM1_PORT + 3, 0x83); /* DLAB: divisor 0x0c01 */
	out(vm, LAYOUT_COM1_PORT + 0, 0x01);
	out(vm, LAYOUT_COM1_PORT + 1, 0x0c);
	out(vm, LAYOUT_COM1_PORT + 3, 0x03);
	out(vm, LAYOUT_COM1_PORT + 7, 0x5a);
	out(vm, LAYOUT_COM1_PORT + 2, 0x01); /* FIFO on */
	out(vm, LAYOUT_COM1_PORT + 1, 0x02); /* THRI: THR empty, interrupt pending */
	assert_int_equal(uart_feed(u, (const uint8_t *)"abc", 3), 3);

	stream_init_mem_writer(&w);
	assert_int_equal(uart_vm_save(u, &w, &e), 0);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(uart_vm_load(u2, &r, UART_STATE_VERSION, &e), 0);
	uart_save(u, &a);
	uart_save(u2, &b);
	assert_memory_equal(&a, &b, sizeof(a));
	/* The THRE interrupt is still owed to the guest, then the bytes. */
	assert_int_equal(in(vm2, LAYOUT_COM1_PORT + 2), 0xc2);
	assert_int_equal(in(vm2, LAYOUT_COM1_PORT), 'a');
	assert_int_equal(in(vm2, LAYOUT_COM1_PORT + 7), 0x5a);
	stream_destroy(&w);
	free(u);
	free(u2);
	free(vm);
	free(vm2);
}

/* A count past the FIFO would have the decoder write past rx[]: refused. */
static void test_state_rx_len_refused(void **state)
{
	uint8_t buf[11 + UART_FIFO + 1];
	struct uart_state st;
	struct stream r;
	struct err e;
	(void)state;
	memset(buf, 0, sizeof(buf));
	buf[10] = UART_FIFO + 1;
	stream_init_mem_reader(&r, buf, sizeof(buf));
	assert_int_equal(uart_state_get(&r, &st, &e), -1);
	buf[10] = UART_FIFO; /* a full FIFO is fine */
	stream_init_mem_reader(&r, buf, sizeof(buf) - 1);
	assert_int_equal(uart_state_get(&r, &st, &e), 0);
	assert_int_equal(st.rx_len, UART_FIFO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loopback_msr),
		cmocka_unit_test(test_feed_bound),
		cmocka_unit_test(test_state_round_trip),
		cmocka_unit_test(test_state_rx_len_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
