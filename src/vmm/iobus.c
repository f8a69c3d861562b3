/* Port-I/O dispatch (see iobus.h). A linear scan: there are a handful of devices. */
#include "vmm/iobus.h"

#include <string.h>

int iobus_register(struct iobus *bus, uint16_t base, uint16_t len, iobus_fn fn,
		   void *opaque, struct err *e)
{
	if (len == 0 || (uint32_t)base + len > 0x10000)
		return err_set(e, "port range 0x%x+%u is invalid", base, len);
	for (int i = 0; i < bus->n; i++) {
		const struct iobus_range *r = &bus->r[i];
		if (base < r->base + r->len && r->base < base + len)
			return err_set(e, "port range 0x%x+%u overlaps 0x%x+%u", base, len,
				       r->base, r->len);
	}
	if (bus->n >= IOBUS_MAX)
		return err_set(e, "too many port-I/O devices");
	bus->r[bus->n++] = (struct iobus_range){ base, len, fn, opaque };
	return 0;
}

int iobus_move(struct iobus *bus, void *opaque, uint16_t old_base, uint16_t new_base)
{
	for (int i = 0; i < bus->n; i++) {
		struct iobus_range *r = &bus->r[i];
		if (r->opaque == opaque && r->base == old_base) {
			if ((uint32_t)new_base + r->len > 0x10000)
				return -1;
			r->base = new_base;
			return 0;
		}
	}
	return -1;
}

void iobus_dispatch(struct iobus *bus, uint16_t port, bool is_write,
		    uint8_t *data, uint32_t size)
{
	for (int i = 0; i < bus->n; i++) {
		struct iobus_range *r = &bus->r[i];
		if (port >= r->base && port - r->base < r->len) {
			r->fn(r->opaque, port, is_write, data, size);
			return;
		}
	}
	if (!is_write)
		memset(data, 0xff, size);
}
