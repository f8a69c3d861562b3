/*
 * A log file that cannot fill the disk: a VM runs for months, a chatty
 * guest prints without end, and a worker logs every move it makes, so past
 * its size limit the file becomes PATH.1 (replacing the one before) and a
 * new PATH starts, as libvirt's virtlogd does. At most twice the limit is
 * kept. Used for the serial console and for the worker's own stderr.
 */
#ifndef FERRY_COMMON_CAPLOG_H
#define FERRY_COMMON_CAPLOG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define CAPLOG_MAX_DEFAULT (16ull << 20)

struct caplog {
	int fd;              /* -1: no log */
	char path[PATH_MAX];
	uint64_t size;       /* bytes in the current file */
	uint64_t max;        /* 0: no limit */
	bool is_stderr;      /* fd is 2: each new file is dup2()ed onto it */
	int errors;          /* failed writes or rotations */
	const char *fail_what; /* the first failure, for the caller to report */
	int fail_errno;
};

/* Append to path (created if missing); max 0 keeps it whole forever. */
int caplog_open(struct caplog *l, const char *path, uint64_t max, struct err *e);
/* The same, with the file made this process's stderr, so that whatever
 * writes there (libc, a sanitizer report) lands in it too. Only writes
 * through caplog_write count toward the limit. */
int caplog_open_stderr(struct caplog *l, const char *path, uint64_t max, struct err *e);
/* Never fails its caller's work: a write or rotation that fails leaves the
 * output going into the file as it is. Returns -1 only on the first
 * failure (fail_what and fail_errno say what), so that the caller reports
 * it once, 0 otherwise. */
int caplog_write(struct caplog *l, const void *buf, size_t n);
void caplog_close(struct caplog *l);

#endif
