/*
 * The smallest i8042 that matters to a VM: port 0x64 status reads "ready",
 * and command 0xfe (pulse reset line) resets the machine, which is how Linux
 * reboots with reboot=k. Stateless, so nothing to migrate.
 */
#ifndef FERRY_I8042_H
#define FERRY_I8042_H

#include "common/err.h"

struct vm;
int i8042_create(struct vm *vm, struct err *e);

#endif
