/*
 * Port-I/O bus: devices claim [base, base+len) with a callback. Unclaimed
 * reads return all ones and writes are dropped, as on a PC with nothing
 * decoding that port. Calls arrive with the VM's device lock held.
 */
#ifndef FERRY_IOBUS_H
#define FERRY_IOBUS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define IOBUS_MAX 64

/* data is `size` bytes (1, 2 or 4), little-endian. On read the callback fills it. */
typedef void (*iobus_fn)(void *opaque, uint16_t port, bool is_write,
			 uint8_t *data, uint32_t size);

struct iobus_range {
	uint16_t base;
	uint16_t len;
	iobus_fn fn;
	void *opaque;
};

struct iobus {
	int n;
	struct iobus_range r[IOBUS_MAX];
};

int iobus_register(struct iobus *bus, uint16_t base, uint16_t len, iobus_fn fn,
		   void *opaque, struct err *e);
/* Move an existing claim (PCI BAR reprogramming); returns -1 if not found. */
int iobus_move(struct iobus *bus, void *opaque, uint16_t old_base,
	       uint16_t new_base);
void iobus_dispatch(struct iobus *bus, uint16_t port, bool is_write,
		    uint8_t *data, uint32_t size);

#endif
