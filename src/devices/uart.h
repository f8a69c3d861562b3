/*
 * 8250/16550A UART on COM1 (0x3f8, GSI 4): the serial console. Output goes to
 * a sink callback (log file and live console clients); input arrives from
 * console clients through uart_feed(). Interrupts follow the 16550 rules
 * Linux relies on (THR-empty and receive-data interrupts, IIR priorities).
 */
#ifndef FERRY_UART_H
#define FERRY_UART_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/stream.h"

struct vm;

#define UART_FIFO 64
#define UART_STATE_VERSION 1

struct uart_state {
	uint8_t dll, dlm, ier, lcr, mcr, lsr, msr, scr, fcr;
	uint8_t thr_ipending;   /* THR-empty interrupt armed and not yet acknowledged */
	uint8_t rx_len;
	uint8_t rx[UART_FIFO];
};

typedef void (*uart_sink_fn)(void *opaque, const uint8_t *buf, size_t n);

struct uart {
	struct vm *vm;
	uint32_t gsi;
	int irq_level;
	struct uart_state s;
	uart_sink_fn sink;
	void *sink_opaque;
};

int uart_create(struct vm *vm, struct uart *u, uart_sink_fn sink, void *opaque, struct err *e);
/* Queue input bytes for the guest (called with dev_lock held). Returns bytes taken. */
size_t uart_feed(struct uart *u, const uint8_t *buf, size_t n);

void uart_save(const struct uart *u, struct uart_state *st);
int uart_restore(struct uart *u, const struct uart_state *st, struct err *e);
void uart_state_put(struct stream *w, const struct uart_state *st);
int uart_state_get(struct stream *r, struct uart_state *st, struct err *e);
/* The vm_device save/load hooks (opaque: the struct uart), as machine_build
 * registers them; the device fuzz harness registers the same ones. */
int uart_vm_save(void *opaque, struct stream *w, struct err *e);
int uart_vm_load(void *opaque, struct stream *r, uint32_t version, struct err *e);

#endif
