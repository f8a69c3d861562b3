/*
 * Small JSON files in the state directory (settings, the migration queue):
 * written whole and atomically (temp file, fsync, rename) so a crash leaves
 * the old or the new file, never half of one; read back with a size cap
 * because a file that big is not ours.
 */
#ifndef FERRY_DAEMON_STATEFILE_H
#define FERRY_DAEMON_STATEFILE_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "common/err.h"

#define STATEFILE_MAX (4 * 1024 * 1024)

int statefile_write(const char *path, const char *text, struct err *e);
/* The same, readable by the owner only (keys). */
int statefile_write_secret(const char *path, const char *text, struct err *e);
int statefile_write_json(const char *path, struct json_object *o,
			 struct err *e);
/* The object stored at path; NULL with *missing = true if there is none,
 * NULL with e set if it is unreadable or not one JSON object. */
struct json_object *statefile_read_json(const char *path, bool *missing,
					struct err *e);
/* Append one line (O_APPEND, fsync); for logs such as migration history. */
int statefile_append_line(const char *path, const char *line, struct err *e);
/* Past max_bytes, cut such a log down to its newest whole lines within
 * keep_bytes. */
int statefile_trim_lines(const char *path, size_t max_bytes, size_t keep_bytes, struct err *e);
/* Call fn on each line of such a log (without its newline, NUL-terminated,
 * writable), the newest first, until fn returns false; lines longer than
 * max_line are skipped. A missing file has no lines. */
int statefile_lines_newest_first(const char *path, size_t max_line,
				 bool (*fn)(char *line, size_t len, void *ctx), void *ctx,
				 struct err *e);

#endif
