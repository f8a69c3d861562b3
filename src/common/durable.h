/*
 * Making a file's name durable: rename(), link and unlink change the
 * directory, and until the directory itself is fsynced a power loss can
 * undo them even though the file's data is on disk. Every state file
 * ferryd and the worker replace or remove goes through here after the
 * change, before the change is reported done.
 */
#ifndef FERRY_COMMON_DURABLE_H
#define FERRY_COMMON_DURABLE_H

#include <stddef.h>
#include <sys/types.h>

#include "common/err.h"

/* fsync the directory that holds path (its last component need not exist:
 * the call follows an unlink as well as a rename). */
int durable_dir_sync(const char *path, struct err *e);
/* All of buf to fd (a file being written whole, named path in errors):
 * short writes and EINTR retried, as a nearly full disk answers with a
 * short write first — the error reported is then the disk's (ENOSPC). */
int durable_write_all(int fd, const void *buf, size_t len, const char *path, struct err *e);
/* The same at offset off (pwrite); off < 0: at the file position. */
int durable_pwrite_all(int fd, const void *buf, size_t len, off_t off, const char *path,
		       struct err *e);

#endif
