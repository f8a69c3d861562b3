/*
 * PCI host bridge with configuration mechanism #1 (ports 0xcf8..0xcff), one
 * bus, device 0 the host bridge, devices in slots 1..LAYOUT_PCI_MAX_SLOTS,
 * function 0 only. Each device has a 256-byte type-0 config space with a
 * writable mask and at most one I/O BAR (BAR0) whose port range is claimed on
 * the VM's port bus and moved when the guest reprograms it.
 */
#ifndef FERRY_PCI_H
#define FERRY_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/stream.h"
#include "vmm/iobus.h"
#include "vmm/x86/layout.h"

#define PCI_CFG_SIZE 256
#define PCI_NSLOTS (LAYOUT_PCI_MAX_SLOTS + 1) /* slot 0 = host bridge */

/* Config space offsets (type-0 header). */
#define PCI_VENDOR_ID      0x00
#define PCI_DEVICE_ID      0x02
#define PCI_COMMAND        0x04
#define PCI_STATUS         0x06
#define PCI_REVISION_ID    0x08
#define PCI_CLASS_PROG     0x09
#define PCI_CACHE_LINE     0x0c
#define PCI_LATENCY        0x0d
#define PCI_HEADER_TYPE    0x0e
#define PCI_BAR0           0x10
#define PCI_SUBSYS_VENDOR  0x2c
#define PCI_SUBSYS_ID      0x2e
#define PCI_INT_LINE       0x3c
#define PCI_INT_PIN        0x3d

#define PCI_COMMAND_IO      0x0001
#define PCI_COMMAND_MEMORY  0x0002
#define PCI_COMMAND_MASTER  0x0004
#define PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS_INTERRUPT 0x0008

struct pci_dev;
struct vm;

/* Called after the BAR's port range has moved (old_base -> new_base). */
typedef void (*pci_bar_moved_fn)(struct pci_dev *d, uint16_t old_base,
				 uint16_t new_base);
/* Called after the guest wrote COMMAND (old_cmd: its value before). */
typedef void (*pci_command_fn)(struct pci_dev *d, uint16_t old_cmd);

struct pci_dev {
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE]; /* 1 bits are guest-writable */
	int slot;                    /* 0 for the host bridge */
	uint32_t gsi;                /* INTx line routed here */
	/* BAR0 (I/O), size 0 when the device has none. */
	uint16_t bar_size;
	uint16_t claim_base;         /* where our range sits on the port bus */
	bool claimed;
	bool decode;                 /* I/O enabled and BAR address valid */
	iobus_fn bar_fn;             /* called with port = offset inside the BAR */
	void *bar_opaque;
	pci_bar_moved_fn on_bar_moved;
	pci_command_fn on_command;
	/* The device asserts INTx, masked by INTX_DISABLE or not: STATUS
	 * bit 3 reads it (not kept in cfg, so no restore compares it). */
	bool intx_pending;
	struct pci_bus *bus;
};

struct pci_bus {
	struct iobus *pio;
	uint32_t conf_addr;          /* latched 0xcf8 value */
	struct pci_dev host;
	struct pci_dev *slots[PCI_NSLOTS];
};

/* Saved state: the 0xcf8 latch and every present config space. */
#define PCI_STATE_VERSION 1
struct pci_state {
	uint32_t conf_addr;
	uint8_t present[PCI_NSLOTS];
	uint8_t cfg[PCI_NSLOTS][PCI_CFG_SIZE];
};

/* Set up a bus on `pio`: claims 0xcf8..0xcff and fills in the host bridge. */
int pci_bus_init(struct pci_bus *bus, struct iobus *pio, struct err *e);
/* Allocate a bus for the VM and register it as vm_device "pci". Must come
 * before any PCI device is created. */
int pci_create(struct vm *vm, struct err *e);
void pci_destroy(struct pci_bus *bus);
/* The bus registered by pci_create, or NULL. */
struct pci_bus *pci_bus_of(struct vm *vm);

/* Fill a type-0 header with ids; class_code is base<<16 | sub<<8 | prog-if. */
void pci_dev_init(struct pci_dev *d, uint16_t vendor, uint16_t device,
		  uint32_t class_code, uint16_t subsys_vendor,
		  uint16_t subsys_id);
/* Put d in `slot` (1..LAYOUT_PCI_MAX_SLOTS). If bar_size != 0 (a power of
 * two, >= 4) an I/O BAR0 is assigned from LAYOUT_PCI_IO_START and claimed
 * on the port bus with bar_fn; the interrupt line is the slot's GSI. */
int pci_add_device(struct pci_bus *bus, int slot, struct pci_dev *d,
		   uint16_t bar_size, iobus_fn bar_fn, void *bar_opaque,
		   struct err *e);

/* The iobus handler of 0xcf8..0xcff (exposed for tests). */
void pci_conf_io(void *opaque, uint16_t port, bool is_write, uint8_t *data,
		 uint32_t size);
/* Direct config access to one device (offset + size must stay in one dword). */
uint32_t pci_cfg_read(struct pci_dev *d, uint32_t off, uint32_t size);
void pci_cfg_write(struct pci_dev *d, uint32_t off, uint32_t size, uint32_t val);
/* Current BAR0 port base (0 when not decoding). */
uint16_t pci_bar_base(const struct pci_dev *d);
bool pci_intx_disabled(const struct pci_dev *d);
/* Bus mastering on: the device may read and write guest memory. */
bool pci_bus_master(const struct pci_dev *d);

void pci_save(const struct pci_bus *bus, struct pci_state *st);
/* Validate st against this bus (same devices, same read-only bits) and
 * apply it, moving BARs to their saved addresses. */
int pci_restore(struct pci_bus *bus, const struct pci_state *st,
		struct err *e);
void pci_state_encode(struct stream *w, const struct pci_state *st);
int pci_state_decode(struct stream *r, uint32_t version,
		     struct pci_state *st, struct err *e);

#endif
