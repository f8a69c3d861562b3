/*
 * Held migration.status requests (status_hold.h). A hold remembers the
 * state each of its moves had when the request came; the loop's pass
 * compares, and the first difference, or the end of the wait, sends the
 * same answer an immediate migration.status would have given.
 */
#include "daemon/status_hold.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/dispatch.h"
#include "daemon/migrate.h"

struct status_hold {
	uint64_t client_id;
	long long deadline_ms; /* monotonic */
	bool many;
	size_t n;
	char **keys;
	int *seen; /* each key's move state at the request, -1 = not in memory */
	struct status_hold *next;
};

/* A move's state as a hold compares it; -1 for a move only the history
 * holds, which no longer changes. A move that waits for its VM's old copy
 * to end at the destination stays queued while it asks again: its trips
 * through preparing (up to 50 a second) would answer a held status each time,
 * and its watcher would ask as fast. */
static int hold_state(struct ferryd *d, const char *key)
{
	struct move *m = migrate_find(d, key);
	if (m && m->leaving_retry && m->state == MV_PREPARING)
		return MV_QUEUED;
	return m ? (int)m->state : -1;
}

static void hold_free(struct status_hold *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->keys[i]);
	free(h->keys);
	free(h->seen);
	free(h);
}

int status_hold_add(struct ferryd *d, uint64_t client_id, const char *const *keys, size_t n,
		    bool many, int wait_ms, struct err *e)
{
	struct status_hold *h = calloc(1, sizeof(*h));

	if (!h || !(h->keys = calloc(n ? n : 1, sizeof(*h->keys))) ||
	    !(h->seen = calloc(n ? n : 1, sizeof(*h->seen)))) {
		if (h)
			hold_free(h);
		return err_set(e, "out of memory");
	}
	h->client_id = client_id;
	h->many = many;
	h->deadline_ms = ferryd_now_ms() + (wait_ms < STATUS_HOLD_MAX_MS ? wait_ms : STATUS_HOLD_MAX_MS);
	for (size_t i = 0; i < n; i++) {
		h->keys[i] = strdup(keys[i]);
		if (!h->keys[i]) {
			hold_free(h);
			return err_set(e, "out of memory");
		}
		h->n = i + 1;
		h->seen[i] = hold_state(d, keys[i]);
	}
	h->next = d->status_holds;
	d->status_holds = h;
	return 0;
}

static bool hold_due(struct ferryd *d, const struct status_hold *h, long long now)
{
	if (now >= h->deadline_ms)
		return true;
	for (size_t i = 0; i < h->n; i++)
		if (hold_state(d, h->keys[i]) != h->seen[i])
			return true;
	return false;
}

void status_hold_tick(struct ferryd *d)
{
	long long now = ferryd_now_ms();

	for (struct status_hold **p = &d->status_holds; *p;) {
		struct status_hold *h = *p;
		struct json_object *rep;
		const char *code = "E_INTERNAL";
		struct err e = { 0 };

		if (loop_client_by_id(d, h->client_id) && !hold_due(d, h, now)) {
			p = &h->next;
			continue;
		}
		*p = h->next;
		/* A client that left gets nothing: loop_send_to drops the reply. */
		rep = verb_migration_status_reply(d, (const char *const *)h->keys, h->n, h->many,
						  &code, &e);
		loop_send_to(d, h->client_id, rep ? rep : reply_error(code, e.msg));
		hold_free(h);
	}
}

int status_hold_next_timeout(const struct ferryd *d)
{
	long long now = ferryd_now_ms(), best = -1;

	for (const struct status_hold *h = d->status_holds; h; h = h->next) {
		long long t = h->deadline_ms > now ? h->deadline_ms - now : 0;
		if (best < 0 || t < best)
			best = t;
	}
	return (int)best;
}

void status_hold_free_all(struct ferryd *d)
{
	while (d->status_holds) {
		struct status_hold *h = d->status_holds;
		d->status_holds = h->next;
		hold_free(h);
	}
}
