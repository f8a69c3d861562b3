/* Reset through the keyboard controller (see i8042.h). */
#include "devices/i8042.h"

#include <string.h>

#include "vmm/vm.h"

static void i8042_io(void *opaque, uint16_t port, bool is_write, uint8_t *data, uint32_t size)
{
	struct vm *vm = opaque;
	if (!is_write) {
		memset(data, 0, size); /* status 0: output buffer empty, input buffer empty */
		return;
	}
	if (port == LAYOUT_I8042_PORT + 4 && data[0] == 0xfe)
		vm_request_exit(vm, VM_EXIT_RESET, "guest reset through i8042 port 0x64");
}

int i8042_create(struct vm *vm, struct err *e)
{
	if (iobus_register(&vm->pio, LAYOUT_I8042_PORT, 1, i8042_io, vm, e) < 0)
		return -1;
	return iobus_register(&vm->pio, LAYOUT_I8042_PORT + 4, 1, i8042_io, vm, e);
}
