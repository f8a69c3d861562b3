/*
 * Persistence of moves: the outgoing queue and in-flight moves in
 * STATE_DIR/migrations.json (rewritten atomically on every state change),
 * so a ferryd restart keeps the queue and can cancel what was in flight
 * cleanly; and every finished move, with its figures, appended to
 * STATE_DIR/migration-history.jsonl.
 */
#include "daemon/migrate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonl.h"
#include "common/log.h"
#include "daemon/statefile.h"

#define HISTORY_LINE_MAX (64 * 1024)
/* The history keeps the last several thousand moves (an entry is 0.5 to
 * 2 KiB): past 16 MiB it is cut to its newest 8 MiB. */
#define HISTORY_MAX_BYTES (16u << 20)
#define HISTORY_KEEP_BYTES (8u << 20)

static int store_path(struct ferryd *d, const char *file, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s/%s", d->state_dir, file);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

void migrate_store_save(struct ferryd *d)
{
	struct json_object *o = json_object_new_object(), *arr = json_object_new_array();
	char path[PATH_MAX];
	struct err e = { 0 };

	for (struct move *m = d->moves; m; m = m->next) {
		struct json_object *j;
		if (m->dir != MOVE_OUT)
			continue;
		j = json_object_new_object();
		jsonl_add_str(j, "id", m->id);
		jsonl_add_str(j, "name", m->vm);
		jsonl_add_str(j, "destination", m->peer);
		jsonl_add_str(j, "state", migrate_state_name(m->state));
		jsonl_add_str(j, "transport", m->transport);
		if (m->codec[0])
			jsonl_add_str(j, "codec", m->codec);
		jsonl_add_bool(j, "encrypt", m->encrypt);
		jsonl_add_bool(j, "verify_memory", m->verify_memory);
		if (m->postcopy)
			jsonl_add_bool(j, "postcopy", true);
		if (m->copy_disk)
			jsonl_add_str(j, "disk_copy_path", m->disk_path);
		if (m->remove_source[0])
			jsonl_add_str(j, "remove_source_disk", m->remove_source);
		if (m->check_only)
			jsonl_add_bool(j, "check_only", true);
		jsonl_add_int(j, "downtime_ms", m->downtime_ms);
		jsonl_add_int(j, "max_duration_s", m->max_duration_s);
		jsonl_add_bool(j, "cancel_on_timeout", m->cancel_on_timeout);
		jsonl_add_int(j, "bandwidth_mibps", m->bandwidth_mibps);
		jsonl_add_int(j, "memory_mib", m->memory_mib);
		jsonl_add_int(j, "created_ms", m->created_ms);
		jsonl_add_int(j, "started_ms", m->started_ms);
		if (m->address[0])
			jsonl_add_str(j, "address", m->address);
		json_object_array_add(arr, j);
	}
	json_object_object_add(o, "moves", arr);
	if (store_path(d, "migrations.json", path, sizeof(path)) < 0 ||
	    statefile_write_json(path, o, &e) < 0)
		log_error("saving the migration queue: %s", e.msg[0] ? e.msg : "path too long");
	json_object_put(o);
}

/* -1 for a state this ferryd does not know: such a move is skipped, not
 * queued (a queued move starts by itself). */
static int store_state(const char *s)
{
	for (int i = MV_QUEUED; i <= MV_CANCELLED; i++)
		if (strcmp(migrate_state_name((enum move_state)i), s) == 0)
			return i;
	return -1;
}

/* One stored move back into the list; in-flight ones are marked so the
 * tick cancels them (before the commit point) or finishes them (after). */
static void store_load_one(struct ferryd *d, struct json_object *j)
{
	const char *id = NULL, *name = NULL, *dest = NULL, *state = NULL,
		   *transport = NULL, *address = NULL, *codec = NULL, *disk_copy = NULL,
		   *remove_source = NULL;
	int64_t dt = 50, bw = 0, mem = 0, created = 0, started = 0, maxdur = 0;
	int st = -1;
	bool cancel_on_timeout = false, encrypt = false, verify_memory = false, check_only = false;
	bool postcopy = false;
	struct err e = { 0 };
	struct move *m;

	if (jsonl_get_str(j, "id", true, &id, &e) < 0 ||
	    jsonl_get_str(j, "name", true, &name, &e) < 0 ||
	    jsonl_get_str(j, "destination", true, &dest, &e) < 0 ||
	    jsonl_get_str(j, "state", true, &state, &e) < 0 ||
	    jsonl_get_str(j, "transport", false, &transport, &e) < 0 ||
	    jsonl_get_str(j, "address", false, &address, &e) < 0 ||
	    jsonl_get_str(j, "codec", false, &codec, &e) < 0 ||
	    jsonl_get_str(j, "disk_copy_path", false, &disk_copy, &e) < 0 ||
	    jsonl_get_str(j, "remove_source_disk", false, &remove_source, &e) < 0 ||
	    jsonl_get_int(j, "downtime_ms", false, 1, 600000, &dt, &e) < 0 ||
	    jsonl_get_int(j, "bandwidth_mibps", false, 0, 1 << 20, &bw, &e) < 0 ||
	    jsonl_get_int(j, "max_duration_s", false, 0, 86400, &maxdur, &e) < 0 ||
	    jsonl_get_bool(j, "cancel_on_timeout", false, &cancel_on_timeout, &e) < 0 ||
	    jsonl_get_bool(j, "encrypt", false, &encrypt, &e) < 0 ||
	    jsonl_get_bool(j, "verify_memory", false, &verify_memory, &e) < 0 ||
	    jsonl_get_bool(j, "check_only", false, &check_only, &e) < 0 ||
	    jsonl_get_bool(j, "postcopy", false, &postcopy, &e) < 0 ||
	    jsonl_get_int(j, "memory_mib", false, 0, INT32_MAX, &mem, &e) < 0 ||
	    jsonl_get_int(j, "created_ms", false, 0, INT64_MAX, &created, &e) < 0 ||
	    jsonl_get_int(j, "started_ms", false, 0, INT64_MAX, &started, &e) < 0 ||
	    strlen(id) >= sizeof(m->id) || !vmdef_name_valid(name) ||
	    strlen(dest) >= sizeof(m->peer) || (st = store_state(state)) < 0 ||
	    (disk_copy && (disk_copy[0] != '/' || strlen(disk_copy) >= sizeof(m->disk_path))) ||
	    (remove_source && (!disk_copy || remove_source[0] != '/' ||
			       strlen(remove_source) >= sizeof(m->remove_source)))) {
		log_error("skipping a stored move (%.300s): %s", jsonl_text(j),
			  e.msg[0] ? e.msg : "bad field or unknown state");
		return;
	}
	m = migrate_move_alloc(d, MOVE_OUT, id);
	if (!m)
		return;
	snprintf(m->vm, sizeof(m->vm), "%s", name);
	snprintf(m->peer, sizeof(m->peer), "%s", dest);
	snprintf(m->transport, sizeof(m->transport), "%s", transport ? transport : "compression");
	m->encrypt = encrypt;
	m->verify_memory = verify_memory;
	m->postcopy = postcopy;
	/* a queued copy must stay a copy: started as a handover it would run
	 * the VM on a disk the destination does not have */
	m->copy_disk = disk_copy != NULL;
	m->check_only = check_only; /* likewise, a check must never become a move */
	if (disk_copy)
		snprintf(m->disk_path, sizeof(m->disk_path), "%s", disk_copy);
	if (remove_source)
		snprintf(m->remove_source, sizeof(m->remove_source), "%s", remove_source);
	if (address)
		snprintf(m->address, sizeof(m->address), "%s", address);
	if (codec && (strcmp(codec, "lz4") == 0 || strcmp(codec, "zstd") == 0))
		snprintf(m->codec, sizeof(m->codec), "%s", codec);
	m->downtime_ms = (int)dt;
	m->bandwidth_mibps = (int)bw;
	m->max_duration_s = (int)maxdur;
	m->cancel_on_timeout = cancel_on_timeout;
	m->memory_mib = (uint32_t)mem;
	m->created_ms = created;
	m->started_ms = started;
	m->state = (enum move_state)st;
	switch (m->state) {
	case MV_QUEUED:
		log_info("move %s: VM %s to %s still queued", m->id, m->vm, m->peer);
		break;
	case MV_PREPARING:
		/* The destination may hold a skeleton worker for it. */
		migrate_move_end(d, m, MV_CANCELLED, "E_CANCELLED",
				 "ferryd restarted during setup; the move was cancelled and the VM keeps running on the source");
		break;
	case MV_MIGRATING:
		m->recovered = true;
		log_info("move %s: VM %s was migrating when ferryd stopped; cancelling it",
			 m->id, m->vm);
		break;
	default:
		/* RESOLVING / FINISHING go on where they were; a source
		 * worker still ending gets its time again (FINISHING kills
		 * it past the deadline: from 0, at once, logged as one
		 * that would not exit). */
		m->deadline = ferryd_now_ms() + MIGRATE_FINISH_TIMEOUT_MS;
		log_info("move %s: VM %s: resuming '%s'", m->id, m->vm, state);
		break;
	}
}

int migrate_store_load(struct ferryd *d, struct err *e)
{
	char path[PATH_MAX];
	struct json_object *o, *arr;
	bool missing;

	if (store_path(d, "migrations.json", path, sizeof(path)) < 0)
		return err_set(e, "state directory path too long");
	o = statefile_read_json(path, &missing, e);
	if (!o && !missing)
		err_prefix(e, "%s records the moves in flight and cannot be read; repair it, or move "
			   "it aside (its queued and unfinished moves are then forgotten), and start "
			   "ferryd again", path);
	if (!o)
		return missing ? 0 : -1;
	if (json_object_object_get_ex(o, "moves", &arr) &&
	    json_object_is_type(arr, json_type_array))
		for (size_t i = 0; i < json_object_array_length(arr); i++)
			store_load_one(d, json_object_array_get_idx(arr, i));
	json_object_put(o);
	/* Cancelled-at-restart moves must tell their destination. */
	for (struct move *m = d->recent; m; m = m->next)
		if (m->dir == MOVE_OUT && m->state == MV_CANCELLED && m->ended_ms != 0)
			migrate_abort_dest(d, m, true);
	migrate_store_save(d);
	return 0;
}

void migrate_history_append(struct ferryd *d, struct move *m)
{
	struct json_object *o = migrate_move_json(d, m, true);
	char path[PATH_MAX];
	struct err e = { 0 };

	if (store_path(d, "migration-history.jsonl", path, sizeof(path)) < 0 ||
	    statefile_append_line(path, jsonl_text(o), &e) < 0)
		log_error("recording move %s in the history: %s", m->id, e.msg);
	else if (statefile_trim_lines(path, HISTORY_MAX_BYTES, HISTORY_KEEP_BYTES, &e) < 0)
		log_warn("trimming the migration history: %s", e.msg);
	json_object_put(o);
}

static bool history_entry_ok(struct json_object *o)
{
	struct json_object *v;
	return json_object_is_type(o, json_type_object) &&
	       json_object_object_get_ex(o, "id", &v) && json_object_is_type(v, json_type_string) &&
	       json_object_object_get_ex(o, "name", &v) && json_object_is_type(v, json_type_string);
}

struct history_walk {
	bool (*fn)(struct json_object *o, void *ctx);
	void *ctx;
};

static bool history_line(char *line, size_t n, void *ctx)
{
	struct history_walk *w = ctx;
	struct json_object *o;
	struct err pe;
	bool more;

	while (n > 0 && line[n - 1] == '\r')
		n--;
	/* A torn line (crash mid-append) or one without a string id and
	 * name (edited by hand) is skipped, not fatal: the readers below
	 * take those two as strings. */
	o = jsonl_parse(line, n, &pe);
	if (!o)
		return true;
	more = !history_entry_ok(o) || w->fn(o, w->ctx);
	json_object_put(o);
	return more;
}

/* Walk the history file, newest entry first, calling fn on each until it
 * returns false: the usual questions (the last few moves, a move that
 * just ended) are answered from the end without parsing all of it. */
static int history_each(struct ferryd *d,
			bool (*fn)(struct json_object *o, void *ctx), void *ctx,
			struct err *e)
{
	struct history_walk w = { .fn = fn, .ctx = ctx };
	char path[PATH_MAX];

	if (store_path(d, "migration-history.jsonl", path, sizeof(path)) < 0)
		return err_set(e, "state directory path too long");
	return statefile_lines_newest_first(path, HISTORY_LINE_MAX, history_line, &w, e);
}

struct history_ctx {
	const char *vm;
	int limit;
	struct json_object *arr;
};

static bool history_collect(struct json_object *o, void *ctx)
{
	struct history_ctx *h = ctx;
	struct json_object *name;
	if (h->vm && (!json_object_object_get_ex(o, "name", &name) ||
		      strcmp(json_object_get_string(name), h->vm) != 0))
		return true;
	json_object_array_add(h->arr, json_object_get(o));
	return (int)json_object_array_length(h->arr) < h->limit;
}

struct json_object *migrate_history_read(struct ferryd *d, const char *vm,
					 int limit, struct err *e)
{
	struct history_ctx h = { .vm = vm, .limit = limit };

	struct json_object *oldest_first;
	size_t n;

	h.arr = json_object_new_array();
	if (history_each(d, history_collect, &h, e) < 0) {
		json_object_put(h.arr);
		return NULL;
	}
	/* the reply lists them in the order they ended, as the file does */
	n = json_object_array_length(h.arr);
	oldest_first = json_object_new_array_ext((int)n);
	for (size_t i = n; i-- > 0;)
		json_object_array_add(oldest_first,
				      json_object_get(json_object_array_get_idx(h.arr, i)));
	json_object_put(h.arr);
	return oldest_first;
}

struct history_find {
	const char *const *ids;
	struct json_object **found;
	bool *want;
	size_t n;
};

static bool history_match(struct json_object *o, void *ctx)
{
	struct history_find *h = ctx;
	struct json_object *id;
	if (!json_object_object_get_ex(o, "id", &id))
		return true;
	bool more = false;

	for (size_t i = 0; i < h->n; i++) {
		/* newest first: the first entry of an id is its latest word */
		if (h->want[i] && strcmp(json_object_get_string(id), h->ids[i]) == 0) {
			h->found[i] = json_object_get(o);
			h->want[i] = false;
		}
		more |= h->want[i];
	}
	return more;
}

int migrate_history_find(struct ferryd *d, const char *const *ids, size_t n,
			 struct json_object **found, struct err *e)
{
	bool want[MIGRATE_STATUS_IDS_MAX];
	struct history_find h = { .ids = ids, .found = found, .want = want, .n = n };
	bool any = false;

	if (n > MIGRATE_STATUS_IDS_MAX)
		return err_set(e, "at most %d moves at once", MIGRATE_STATUS_IDS_MAX);
	for (size_t i = 0; i < n; i++)
		any |= want[i] = !found[i];
	/* one pass over the file, however many ids */
	return any ? history_each(d, history_match, &h, e) : 0;
}
