/*
 * PCI configuration mechanism #1 and the generic config-space model (see
 * pci.h). The guest owns BAR placement: writes go through a per-byte mask,
 * and whenever the command register or BAR0 changes we recompute whether the
 * BAR decodes and, if its address changed, move the port claim with it.
 */
#include "devices/pci.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "vmm/vm.h"

#define PCI_CONF_ADDR_MASK 0x80fffffcu /* enable, bus, dev, fn, reg */
#define PCI_CONF_ENABLE    0x80000000u
#define PCI_BAR_IO_FLAG    0x1u

static void put_le(uint8_t *p, uint32_t size, uint32_t v)
{
	for (uint32_t i = 0; i < size; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le(const uint8_t *p, uint32_t size)
{
	uint32_t v = 0;
	for (uint32_t i = size; i-- > 0;)
		v = (v << 8) | p[i];
	return v;
}

void pci_dev_init(struct pci_dev *d, uint16_t vendor, uint16_t device,
		  uint32_t class_code, uint16_t subsys_vendor,
		  uint16_t subsys_id)
{
	memset(d, 0, sizeof(*d));
	le_put_u16(d->cfg + PCI_VENDOR_ID, vendor);
	le_put_u16(d->cfg + PCI_DEVICE_ID, device);
	d->cfg[PCI_CLASS_PROG] = (uint8_t)class_code;
	d->cfg[PCI_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
	d->cfg[PCI_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
	d->cfg[PCI_HEADER_TYPE] = 0x00;
	le_put_u16(d->cfg + PCI_SUBSYS_VENDOR, subsys_vendor);
	le_put_u16(d->cfg + PCI_SUBSYS_ID, subsys_id);
	/* What drivers actually toggle; status is read-only here because we
	 * never raise any of its write-1-to-clear error bits. */
	le_put_u16(d->wmask + PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY |
		   PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
	d->wmask[PCI_CACHE_LINE] = 0xff;
	d->wmask[PCI_LATENCY] = 0xff;
	d->wmask[PCI_INT_LINE] = 0xff;
}

uint16_t pci_bar_base(const struct pci_dev *d)
{
	return d->decode ? d->claim_base : 0;
}

bool pci_intx_disabled(const struct pci_dev *d)
{
	return le_get_u16(d->cfg + PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE;
}

bool pci_bus_master(const struct pci_dev *d)
{
	return le_get_u16(d->cfg + PCI_COMMAND) & PCI_COMMAND_MASTER;
}

/* Re-derive the BAR decode state after a write to COMMAND or BAR0 (or a
 * restore). The claim on the port bus cannot be removed, so a disabled or
 * invalid BAR keeps its claim and simply stops decoding. */
static int pci_update_bar(struct pci_dev *d, struct err *e)
{
	uint32_t bar, addr;
	bool enable;

	if (!d->bar_size || !d->claimed)
		return 0;
	bar = le_get_u32(d->cfg + PCI_BAR0);
	addr = bar & ~0x3u;
	/* During BAR sizing the register holds ~(size-1): an address past
	 * 64 KiB, which must not decode (Linux also turns I/O off then). */
	enable = (le_get_u16(d->cfg + PCI_COMMAND) & PCI_COMMAND_IO) &&
		 addr != 0 && addr <= 0x10000u - d->bar_size;
	if (enable && addr != d->claim_base) {
		uint16_t old = d->claim_base;
		if (iobus_move(d->bus->pio, d, old, (uint16_t)addr) < 0) {
			d->decode = false;
			return err_set(e, "pci slot %d: cannot move I/O BAR "
				       "from 0x%x to 0x%x", d->slot, old, addr);
		}
		d->claim_base = (uint16_t)addr;
		if (d->on_bar_moved)
			d->on_bar_moved(d, old, d->claim_base);
	}
	d->decode = enable;
	return 0;
}

uint32_t pci_cfg_read(struct pci_dev *d, uint32_t off, uint32_t size)
{
	uint32_t v;
	if (size == 0 || size > 4 || (off & 3) + size > 4 || off >= PCI_CFG_SIZE)
		return 0xffffffffu;
	v = get_le(d->cfg + off, size);
	/* Linux's INTx masking (uio, vfio, pci_check_and_mask_intx) reads
	 * this bit to tell whether a shared interrupt was ours. */
	if (d->intx_pending && off <= PCI_STATUS && off + size > PCI_STATUS)
		v |= (uint32_t)PCI_STATUS_INTERRUPT << (8 * (PCI_STATUS - off));
	return v;
}

void pci_cfg_write(struct pci_dev *d, uint32_t off, uint32_t size, uint32_t val)
{
	struct err e;
	uint16_t old_cmd = le_get_u16(d->cfg + PCI_COMMAND);

	if (size == 0 || size > 4 || (off & 3) + size > 4 || off >= PCI_CFG_SIZE)
		return;
	for (uint32_t i = 0; i < size; i++) {
		uint8_t m = d->wmask[off + i];
		uint8_t b = (uint8_t)(val >> (8 * i));
		d->cfg[off + i] = (uint8_t)((d->cfg[off + i] & ~m) | (b & m));
	}
	/* Only COMMAND (0x04..0x05) and BAR0 (0x10..0x13) affect decoding. */
	if ((off < PCI_COMMAND + 2 && off + size > PCI_COMMAND) ||
	    (off < PCI_BAR0 + 4 && off + size > PCI_BAR0)) {
		if (pci_update_bar(d, &e) < 0)
			log_warn("%s", e.msg);
	}
	if (off < PCI_COMMAND + 2 && off + size > PCI_COMMAND && d->on_command)
		d->on_command(d, old_cmd);
}

/* Device addressed by the latched 0xcf8 value, or NULL (reads all ones). */
static struct pci_dev *pci_addressed(struct pci_bus *bus)
{
	uint32_t a = bus->conf_addr;
	uint32_t busno = (a >> 16) & 0xff, dev = (a >> 11) & 0x1f, fn = (a >> 8) & 7;

	if (!(a & PCI_CONF_ENABLE) || busno != 0 || fn != 0 || dev >= PCI_NSLOTS)
		return NULL;
	return bus->slots[dev];
}

void pci_conf_io(void *opaque, uint16_t port, bool is_write, uint8_t *data,
		 uint32_t size)
{
	struct pci_bus *bus = opaque;
	uint32_t off = (uint32_t)(port - LAYOUT_PCI_CONF_PORT);
	struct pci_dev *d;
	uint32_t reg;

	if (size == 0 || size > 4)
		return;
	if (off < 4) {
		/* The address register is dword-only; Linux's conf1 probe
		 * pokes 0xcfb with a byte, which real chipsets ignore too. */
		if (off == 0 && size == 4) {
			if (is_write)
				bus->conf_addr = le_get_u32(data) & PCI_CONF_ADDR_MASK;
			else
				le_put_u32(data, bus->conf_addr);
		} else if (!is_write) {
			memset(data, 0xff, size);
		}
		return;
	}
	reg = (bus->conf_addr & 0xfc) + (off - 4);
	d = pci_addressed(bus);
	if (!d || (reg & 3) + size > 4) {
		if (!is_write)
			memset(data, 0xff, size);
		return;
	}
	if (is_write)
		pci_cfg_write(d, reg, size, get_le(data, size));
	else
		put_le(data, size, pci_cfg_read(d, reg, size));
}

/* Port-bus handler for every BAR: translate to an offset in the BAR. */
static void pci_bar_io(void *opaque, uint16_t port, bool is_write,
		       uint8_t *data, uint32_t size)
{
	struct pci_dev *d = opaque;

	if (!d->decode || port < d->claim_base ||
	    port - d->claim_base + size > d->bar_size) {
		if (!is_write)
			memset(data, 0xff, size);
		return;
	}
	d->bar_fn(d->bar_opaque, (uint16_t)(port - d->claim_base), is_write,
		  data, size);
}

int pci_bus_init(struct pci_bus *bus, struct iobus *pio, struct err *e)
{
	memset(bus, 0, sizeof(*bus));
	bus->pio = pio;
	/* An i440FX-style host bridge: Linux's conf1 sanity check looks for a
	 * host bridge (class 0x0600) or an Intel device on bus 0. */
	pci_dev_init(&bus->host, 0x8086, 0x1237, 0x060000, 0, 0);
	bus->host.bus = bus;
	bus->host.slot = 0;
	bus->slots[0] = &bus->host;
	if (iobus_register(pio, LAYOUT_PCI_CONF_PORT, 8, pci_conf_io, bus, e) < 0)
		return err_prefix(e, "pci host bridge");
	return 0;
}

int pci_add_device(struct pci_bus *bus, int slot, struct pci_dev *d,
		   uint16_t bar_size, iobus_fn bar_fn, void *bar_opaque,
		   struct err *e)
{
	uint32_t base;

	if (slot < 1 || slot > LAYOUT_PCI_MAX_SLOTS)
		return err_set(e, "pci slot %d out of range 1..%d", slot,
			       LAYOUT_PCI_MAX_SLOTS);
	if (bus->slots[slot])
		return err_set(e, "pci slot %d already in use", slot);
	if (bar_size && (bar_size < 4 || (bar_size & (bar_size - 1)) ||
			 bar_size > LAYOUT_PCI_IO_BAR_SIZE || !bar_fn))
		return err_set(e, "pci slot %d: bad I/O BAR size %u", slot,
			       bar_size);
	d->bus = bus;
	d->slot = slot;
	d->gsi = LAYOUT_PCI_FIRST_GSI + (uint32_t)slot - 1;
	d->cfg[PCI_INT_LINE] = (uint8_t)d->gsi;
	d->cfg[PCI_INT_PIN] = 1; /* INTA# */
	if (bar_size) {
		base = LAYOUT_PCI_IO_START +
		       (uint32_t)(slot - 1) * LAYOUT_PCI_IO_BAR_SIZE;
		d->bar_size = bar_size;
		d->bar_fn = bar_fn;
		d->bar_opaque = bar_opaque;
		le_put_u32(d->cfg + PCI_BAR0, base | PCI_BAR_IO_FLAG);
		/* Upper bits writable so sizing reads back ~(size-1)|1. */
		le_put_u32(d->wmask + PCI_BAR0, ~((uint32_t)bar_size - 1) & ~0x3u);
		if (iobus_register(bus->pio, (uint16_t)base, bar_size, pci_bar_io,
				   d, e) < 0)
			return err_prefix(e, "pci slot %d BAR0", slot);
		d->claim_base = (uint16_t)base;
		d->claimed = true;
		/* Pre-assigned and enabled, bus mastering too, as firmware
		 * would leave it, so a guest without a PCI allocator can use
		 * the device at once. */
		le_put_u16(d->cfg + PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MASTER);
		d->decode = true;
	}
	bus->slots[slot] = d;
	return 0;
}

void pci_save(const struct pci_bus *bus, struct pci_state *st)
{
	memset(st, 0, sizeof(*st));
	st->conf_addr = bus->conf_addr;
	for (int i = 0; i < PCI_NSLOTS; i++) {
		if (!bus->slots[i])
			continue;
		st->present[i] = 1;
		memcpy(st->cfg[i], bus->slots[i]->cfg, PCI_CFG_SIZE);
	}
}

int pci_restore(struct pci_bus *bus, const struct pci_state *st,
		struct err *e)
{
	/* Validate everything first so a bad state leaves the bus untouched. */
	for (int i = 0; i < PCI_NSLOTS; i++) {
		struct pci_dev *d = bus->slots[i];
		if (!!st->present[i] != !!d)
			return err_set(e, "pci slot %d: device %s in saved state "
				       "but %s here", i,
				       st->present[i] ? "present" : "absent",
				       d ? "present" : "absent");
		if (!d)
			continue;
		for (int b = 0; b < PCI_CFG_SIZE; b++) {
			if ((st->cfg[i][b] ^ d->cfg[b]) & ~d->wmask[b])
				return err_set(e, "pci slot %d: read-only config "
					       "byte 0x%02x differs (saved 0x%02x, "
					       "here 0x%02x): different device",
					       i, b, st->cfg[i][b], d->cfg[b]);
		}
	}
	bus->conf_addr = st->conf_addr & PCI_CONF_ADDR_MASK;
	for (int i = 0; i < PCI_NSLOTS; i++) {
		struct pci_dev *d = bus->slots[i];
		if (!d)
			continue;
		memcpy(d->cfg, st->cfg[i], PCI_CFG_SIZE);
		if (pci_update_bar(d, e) < 0)
			return err_prefix(e, "restoring pci state");
	}
	return 0;
}

void pci_state_encode(struct stream *w, const struct pci_state *st)
{
	stream_put_u32(w, st->conf_addr);
	stream_put_u32(w, PCI_NSLOTS);
	for (int i = 0; i < PCI_NSLOTS; i++) {
		stream_put_u8(w, st->present[i]);
		if (st->present[i])
			stream_put(w, st->cfg[i], PCI_CFG_SIZE);
	}
}

int pci_state_decode(struct stream *r, uint32_t version,
		     struct pci_state *st, struct err *e)
{
	uint32_t n;

	if (version != PCI_STATE_VERSION)
		return err_set(e, "pci state version %u not supported (want %u)",
			       version, PCI_STATE_VERSION);
	memset(st, 0, sizeof(*st));
	st->conf_addr = stream_get_u32(r);
	n = stream_get_u32(r);
	if (stream_check(r, e) < 0)
		return err_prefix(e, "pci state");
	if (n != PCI_NSLOTS)
		return err_set(e, "pci state has %u slots, this VMM has %d", n,
			       PCI_NSLOTS);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t p = stream_get_u8(r);
		if (stream_check(r, e) < 0)
			return err_prefix(e, "pci state");
		if (p > 1)
			return err_set(e, "pci state slot %u: bad present flag %u",
				       i, p);
		st->present[i] = p;
		if (p)
			stream_get(r, st->cfg[i], PCI_CFG_SIZE);
	}
	if (stream_check(r, e) < 0)
		return err_prefix(e, "pci state");
	return 0;
}

/* ---- vm_device glue ---- */

static int pci_vm_save(void *opaque, struct stream *w, struct err *e)
{
	struct pci_state *st = malloc(sizeof(*st));

	if (!st)
		return err_set(e, "pci: out of memory");
	pci_save(opaque, st);
	pci_state_encode(w, st);
	free(st);
	if (stream_check(w, e) < 0)
		return err_prefix(e, "saving pci state");
	return 0;
}

static int pci_vm_load(void *opaque, struct stream *r, uint32_t version,
		       struct err *e)
{
	struct pci_state *st = malloc(sizeof(*st));
	int rc;

	if (!st)
		return err_set(e, "pci: out of memory");
	rc = pci_state_decode(r, version, st, e);
	if (rc == 0)
		rc = pci_restore(opaque, st, e);
	free(st);
	return rc;
}

static void pci_vm_destroy(void *opaque)
{
	pci_destroy(opaque);
}

void pci_destroy(struct pci_bus *bus)
{
	free(bus);
}

int pci_create(struct vm *vm, struct err *e)
{
	struct pci_bus *bus;
	struct vm_device dev = {
		.name = "pci",
		.version = PCI_STATE_VERSION,
		.save = pci_vm_save,
		.load = pci_vm_load,
		.poll_fd = -1,
		.destroy = pci_vm_destroy,
	};

	if (pci_bus_of(vm))
		return err_set(e, "pci bus already created");
	bus = calloc(1, sizeof(*bus));
	if (!bus)
		return err_set(e, "pci: out of memory");
	if (pci_bus_init(bus, &vm->pio, e) < 0) {
		free(bus);
		return -1;
	}
	dev.opaque = bus;
	if (vm_add_device(vm, &dev, e) < 0) {
		/* The 0xcf8 claim cannot be withdrawn and still points at
		 * bus, so keep it allocated rather than leave it dangling. */
		return err_prefix(e, "registering pci bus");
	}
	return 0;
}

struct pci_bus *pci_bus_of(struct vm *vm)
{
	for (int i = 0; i < vm->ndevices; i++)
		if (vm->devices[i].name && strcmp(vm->devices[i].name, "pci") == 0)
			return vm->devices[i].opaque;
	return NULL;
}
