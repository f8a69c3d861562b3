/*
 * Held migration.status requests: a client following moves (`ferry
 * move-vm`, `ferry host evacuate`) asks with "wait_ms" and gets its answer
 * as soon as one of its moves changes state, or when the wait is up — so it
 * learns of a move's end at once without asking every few milliseconds.
 */
#ifndef FERRY_DAEMON_STATUS_HOLD_H
#define FERRY_DAEMON_STATUS_HOLD_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "daemon/ferryd.h"

#define STATUS_HOLD_MAX_MS 5000 /* the longest a client may be kept waiting */

/* Hold client_id's migration.status for keys (move ids or VM names; copied)
 * at most wait_ms, answered with a "moves" list when many, else "move". */
int status_hold_add(struct ferryd *d, uint64_t client_id, const char *const *keys, size_t n,
		    bool many, int wait_ms, struct err *e);
/* Answer the holds whose moves changed state or whose time is up; drop
 * those whose client left. Called once per loop pass, after the moves'
 * own tick, so a change made anywhere in the pass is seen in it. */
void status_hold_tick(struct ferryd *d);
/* ms until the nearest hold's time is up, -1 when none. */
int status_hold_next_timeout(const struct ferryd *d);
void status_hold_free_all(struct ferryd *d);

#endif
