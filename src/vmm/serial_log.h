/*
 * The guest's serial console kept in a file that cannot fill the disk: a
 * VM runs for months and a chatty guest prints without end, so past its
 * size limit the file becomes PATH.1 (replacing the one before) and a new
 * PATH starts, as libvirt's virtlogd does. At most twice the limit is kept.
 */
#ifndef FERRY_VMM_SERIAL_LOG_H
#define FERRY_VMM_SERIAL_LOG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define SERIAL_LOG_MAX_DEFAULT (16ull << 20)

struct serial_log {
	int fd;              /* -1: no log */
	char path[PATH_MAX];
	uint64_t size;       /* bytes in the current file */
	uint64_t max;        /* 0: no limit */
	int errors;          /* failed writes or rotations, reported once */
};

/* Append to path (created if missing); max 0 keeps it whole forever. */
int serial_log_open(struct serial_log *l, const char *path, uint64_t max, struct err *e);
/* Never fails the guest: a write or rotation that fails is logged once and
 * the output goes on into the file as it is. */
void serial_log_write(struct serial_log *l, const void *buf, size_t n);
void serial_log_close(struct serial_log *l);

#endif
