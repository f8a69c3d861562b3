/*
 * Reading a kernel or initrd image into memory for the loaders, which then
 * parse it as an untrusted buffer (the same code the unit tests drive).
 */
#ifndef FERRY_X86_LOADFILE_H
#define FERRY_X86_LOADFILE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Read all of path (a regular file of at most max bytes) into a malloc'd
 * buffer the caller frees. */
int loadfile_read(const char *path, size_t max, uint8_t **buf, size_t *len, struct err *e);

#endif
