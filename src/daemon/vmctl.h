/*
 * Client for a ferry-vm control socket: connect, send one JSON request,
 * read one JSON reply, with a short timeout. Synchronous on purpose: the
 * worker is local and answers in microseconds; the timeout bounds how long
 * a wedged worker can hold up ferryd's loop.
 */
#ifndef FERRY_DAEMON_VMCTL_H
#define FERRY_DAEMON_VMCTL_H

#include <json-c/json.h>

#include "common/err.h"

/* Send {"cmd":cmd} to the control socket at path. Returns the parsed reply
 * (caller puts it), or NULL with e set (e->code = errno of a failed
 * connect, so callers can tell "not listening yet" from other failures).
 * A reply with "ok":false is returned as an error carrying its text. */
struct json_object *vmctl_call(const char *path, const char *cmd,
			       int timeout_ms, struct err *e);
/* Same with a whole request object (not consumed), e.g. migrate with its
 * options. */
struct json_object *vmctl_request(const char *path, struct json_object *req,
				  int timeout_ms, struct err *e);

#endif
