/* 8250 UART emulation (see uart.h). Register layout per the 16550A datasheet. */
#include "devices/uart.h"

#include <string.h>

#include "vmm/vm.h"

enum { RBR = 0, THR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };
#define LCR_DLAB 0x80
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NO_INT 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_LOOP 0x10
#define MSR_DEFAULT 0xb0 /* DCD | DSR | CTS */

static uint8_t uart_iir(const struct uart *u)
{
	uint8_t fifo = (u->s.fcr & 1) ? IIR_FIFO : 0;
	if ((u->s.ier & IER_RDI) && u->s.rx_len)
		return IIR_RDI | fifo;
	if ((u->s.ier & IER_THRI) && u->s.thr_ipending)
		return IIR_THRI | fifo;
	return IIR_NO_INT | fifo;
}

static void uart_update_irq(struct uart *u)
{
	int level = !(uart_iir(u) & IIR_NO_INT);
	if (level != u->irq_level) {
		u->irq_level = level;
		vm_irq_line(u->vm, u->gsi, level);
	}
}

static void uart_io(void *opaque, uint16_t port, bool is_write, uint8_t *data, uint32_t size)
{
	struct uart *u = opaque;
	unsigned reg = (unsigned)(port - LAYOUT_COM1_PORT);
	uint8_t v = data[0];

	if (size != 1) { /* the 8250 is byte-wide; wider accesses see the low byte */
		if (!is_write)
			memset(data, 0xff, size);
	}
	if (is_write) {
		switch (reg) {
		case THR:
			if (u->s.lcr & LCR_DLAB) {
				u->s.dll = v;
			} else if (u->s.mcr & MCR_LOOP) {
				if (u->s.rx_len < UART_FIFO)
					u->s.rx[u->s.rx_len++] = v;
				u->s.lsr |= LSR_DR;
			} else {
				if (u->sink)
					u->sink(u->sink_opaque, &v, 1);
				/* Transmission is instant: THR is empty again at once. */
				u->s.thr_ipending = 1;
			}
			break;
		case IER:
			if (u->s.lcr & LCR_DLAB) {
				u->s.dlm = v;
			} else {
				uint8_t old = u->s.ier;
				u->s.ier = v & 0x0f;
				/* Enabling THRI with THR empty raises the interrupt at once. */
				if (!(old & IER_THRI) && (u->s.ier & IER_THRI))
					u->s.thr_ipending = 1;
			}
			break;
		case FCR:
			u->s.fcr = v & 0xc9;
			if (v & 0x02) { /* clear receive FIFO */
				u->s.rx_len = 0;
				u->s.lsr &= (uint8_t)~LSR_DR;
			}
			break;
		case LCR: u->s.lcr = v; break;
		case MCR: u->s.mcr = v & 0x1f; break;
		case LSR: break; /* read-only */
		case MSR: break;
		case SCR: u->s.scr = v; break;
		}
	} else {
		switch (reg) {
		case RBR:
			if (u->s.lcr & LCR_DLAB) {
				v = u->s.dll;
			} else {
				v = 0;
				if (u->s.rx_len) {
					v = u->s.rx[0];
					memmove(u->s.rx, u->s.rx + 1, --u->s.rx_len);
				}
				if (!u->s.rx_len)
					u->s.lsr &= (uint8_t)~LSR_DR;
			}
			break;
		case IER: v = (u->s.lcr & LCR_DLAB) ? u->s.dlm : u->s.ier; break;
		case IIR:
			v = uart_iir(u);
			/* Reading IIR while it reports THRE acknowledges that interrupt. */
			if ((v & 0x0f) == IIR_THRI)
				u->s.thr_ipending = 0;
			break;
		case LCR: v = u->s.lcr; break;
		case MCR: v = u->s.mcr; break;
		case LSR: v = u->s.lsr | LSR_THRE | LSR_TEMT; break;
		case MSR:
			/* loopback wiring: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD
			 * (Linux's autoconfig checks for 0x90 after MCR 0x1a) */
			v = (u->s.mcr & MCR_LOOP)
				? (uint8_t)(((u->s.mcr & 0x02) << 3) | ((u->s.mcr & 0x01) << 5) |
					    ((u->s.mcr & 0x0c) << 4))
				: u->s.msr;
			break;
		case SCR: v = u->s.scr; break;
		}
		memset(data, 0, size);
		data[0] = v;
	}
	uart_update_irq(u);
}

int uart_create(struct vm *vm, struct uart *u, uart_sink_fn sink, void *opaque, struct err *e)
{
	memset(u, 0, sizeof(*u));
	u->vm = vm;
	u->gsi = LAYOUT_COM1_GSI;
	u->sink = sink;
	u->sink_opaque = opaque;
	u->s.lsr = LSR_THRE | LSR_TEMT;
	u->s.msr = MSR_DEFAULT;
	u->s.mcr = 0x08; /* OUT2 */
	return iobus_register(&vm->pio, LAYOUT_COM1_PORT, 8, uart_io, u, e);
}

size_t uart_feed(struct uart *u, const uint8_t *buf, size_t n)
{
	size_t took = 0;
	while (took < n && u->s.rx_len < UART_FIFO)
		u->s.rx[u->s.rx_len++] = buf[took++];
	if (u->s.rx_len)
		u->s.lsr |= LSR_DR;
	uart_update_irq(u);
	return took;
}

void uart_save(const struct uart *u, struct uart_state *st)
{
	*st = u->s;
}

int uart_restore(struct uart *u, const struct uart_state *st, struct err *e)
{
	if (st->rx_len > UART_FIFO)
		return err_set(e, "uart state: receive FIFO length %u exceeds %d", st->rx_len, UART_FIFO);
	u->s = *st;
	u->irq_level = -1; /* force the line to be driven again */
	uart_update_irq(u);
	return 0;
}

void uart_state_put(struct stream *w, const struct uart_state *st)
{
	const uint8_t regs[] = { st->dll, st->dlm, st->ier, st->lcr, st->mcr, st->lsr,
				 st->msr, st->scr, st->fcr, st->thr_ipending, st->rx_len };
	stream_put(w, regs, sizeof(regs));
	stream_put(w, st->rx, st->rx_len <= UART_FIFO ? st->rx_len : 0);
}

int uart_state_get(struct stream *r, struct uart_state *st, struct err *e)
{
	uint8_t regs[11];
	memset(st, 0, sizeof(*st));
	stream_get(r, regs, sizeof(regs));
	if (stream_check(r, e) < 0)
		return -1;
	st->dll = regs[0]; st->dlm = regs[1]; st->ier = regs[2]; st->lcr = regs[3];
	st->mcr = regs[4]; st->lsr = regs[5]; st->msr = regs[6]; st->scr = regs[7];
	st->fcr = regs[8]; st->thr_ipending = regs[9]; st->rx_len = regs[10];
	if (st->rx_len > UART_FIFO)
		return err_set(e, "uart state: receive FIFO length %u exceeds %d", st->rx_len, UART_FIFO);
	stream_get(r, st->rx, st->rx_len);
	return stream_check(r, e);
}

int uart_vm_save(void *opaque, struct stream *w, struct err *e)
{
	struct uart_state st;
	uart_save(opaque, &st);
	uart_state_put(w, &st);
	return stream_check(w, e);
}

int uart_vm_load(void *opaque, struct stream *r, uint32_t version, struct err *e)
{
	struct uart_state st;
	if (version != UART_STATE_VERSION)
		return err_set(e, "uart state version %u unsupported", version);
	if (uart_state_get(r, &st, e) < 0)
		return -1;
	return uart_restore(opaque, &st, e);
}
