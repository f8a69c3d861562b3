/*
 * Moves: bookkeeping shared by both directions, the outgoing queue and its
 * scheduler, and the source side's state machine (see migrate.h). The
 * destination side is in migrate_in.c.
 *
 * Source, per move: QUEUED -> (slot free) PREPARING: migration.prepare on
 * the destination ferryd -> MIGRATING: the source worker's migrate, polled
 * with migrate-status -> completed: FINISHING (source worker told to stop,
 * exits 4; its definition removed; the destination confirms it runs the
 * VM) -> COMPLETED. Failed or cancelled before the commit point: the
 * destination is told to abort, the VM keeps running here. Outcome
 * unknown: RESOLVING, the commit-point rule (docs/migration-ops.md).
 */
#include "daemon/migrate.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/failpoint.h"
#include "common/jsonl.h"
#include "common/log.h"
#include "common/sock.h"
#include "daemon/netaddr.h"
#include "daemon/vmctl.h"
#include "migration/format.h"

const char *migrate_state_name(enum move_state s)
{
	switch (s) {
	case MV_QUEUED: return "queued";
	case MV_PREPARING: return "preparing";
	case MV_MIGRATING: return "migrating";
	case MV_RESOLVING: return "resolving";
	case MV_FINISHING: return "finishing";
	case MV_COMPLETED: return "completed";
	case MV_FAILED: return "failed";
	case MV_CANCELLED: return "cancelled";
	case MV_CHECKED: return "checked";
	}
	return "unknown";
}

bool migrate_state_done(enum move_state s)
{
	return s == MV_COMPLETED || s == MV_FAILED || s == MV_CANCELLED || s == MV_CHECKED;
}

int migrate_active_count(struct ferryd *d)
{
	int n = 0;
	/* FINISHING moves have moved all memory and state: the link and the
	 * CPU time a slot stands for are free again. */
	for (struct move *m = d->moves; m; m = m->next)
		if (m->state == MV_PREPARING || m->state == MV_MIGRATING ||
		    m->state == MV_RESOLVING)
			n++;
	return n;
}

struct move *migrate_find_active(struct ferryd *d, const char *name)
{
	for (struct move *m = d->moves; m; m = m->next)
		if (strcmp(m->vm, name) == 0)
			return m;
	return NULL;
}

struct move *migrate_find(struct ferryd *d, const char *id_or_name)
{
	for (struct move *m = d->moves; m; m = m->next)
		if (strcmp(m->id, id_or_name) == 0)
			return m;
	for (struct move *m = d->recent; m; m = m->next)
		if (strcmp(m->id, id_or_name) == 0)
			return m;
	/* By VM name: the move in flight, else the newest finished one. */
	for (struct move *m = d->moves; m; m = m->next)
		if (strcmp(m->vm, id_or_name) == 0)
			return m;
	for (struct move *m = d->recent; m; m = m->next)
		if (strcmp(m->vm, id_or_name) == 0)
			return m;
	return NULL;
}

int migrate_queue_position(struct ferryd *d, struct move *m)
{
	int pos = 0;
	if (m->state != MV_QUEUED)
		return 0;
	for (struct move *q = d->moves; q; q = q->next) {
		if (q->state == MV_QUEUED)
			pos++;
		if (q == m)
			return pos;
	}
	return 0;
}

struct move *migrate_move_alloc(struct ferryd *d, enum move_dir dir,
				const char *id)
{
	struct move *m = calloc(1, sizeof(*m)), **tail;
	uint32_t rnd;

	if (!m)
		return NULL;
	if (id) {
		snprintf(m->id, sizeof(m->id), "%s", id);
	} else {
		/* Random ids stay unique across hosts and ferryd restarts
		 * without coordination. */
		if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			rnd = (uint32_t)ferryd_now_ms() ^ (uint32_t)getpid();
		snprintf(m->id, sizeof(m->id), "mv-%08x", rnd);
	}
	m->dir = dir;
	m->bw_applied = -1;
	m->created_ms = ferryd_wall_ms();
	for (tail = &d->moves; *tail; tail = &(*tail)->next)
		;
	*tail = m;
	return m;
}

static void move_unlink(struct ferryd *d, struct move *m)
{
	for (struct move **p = &d->moves; *p; p = &(*p)->next)
		if (*p == m) {
			*p = m->next;
			m->next = NULL;
			return;
		}
}

/* A move ends: out of the queue, into the recent list and the history. */
static void move_finish(struct ferryd *d, struct move *m, enum move_state st,
			const char *code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void move_finish(struct ferryd *d, struct move *m, enum move_state st,
			const char *code, const char *fmt, ...)
{
	va_list ap;

	m->state = st;
	m->ended_ms = ferryd_wall_ms();
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(m->error, sizeof(m->error), fmt, ap);
		va_end(ap);
	}
	snprintf(m->code, sizeof(m->code), "%s", code ? code : "");
	m->wait_reason[0] = '\0';
	json_object_put(m->extents);
	m->extents = NULL;
	if (st == MV_COMPLETED || st == MV_CHECKED) {
		log_info("move %s: VM %s %s %s: %s%s%s", m->id, m->vm,
			 m->dir == MOVE_OUT ? "to" : "from", m->peer, migrate_state_name(st),
			 m->error[0] ? ": " : "", m->error);
		if (st == MV_COMPLETED && m->dir == MOVE_OUT && m->copy_disk && !m->source_removed)
			log_info("move %s: VM %s runs on its copy of the disk, %s on %s; its image on "
				 "this host stays as it was at the switch-over: remove it when no "
				 "longer needed", m->id, m->vm, m->disk_path, m->peer);
	} else {
		log_warn("move %s: VM %s %s: %s", m->id, m->vm,
			 migrate_state_name(st), m->error);
	}
	move_unlink(d, m);
	migrate_history_append(d, m);
	m->next = d->recent;
	d->recent = m;
	migrate_trim_recent(d);
	if (m->dir == MOVE_OUT)
		migrate_store_save(d);
}

/* Keep the newest few for status; the history file has them all. A
 * pinned one is kept past the limit (a reply in the making points at
 * it: migration.start ends many moves in one tick). */
void migrate_trim_recent(struct ferryd *d)
{
	int n = 0;
	for (struct move **p = &d->recent; *p;) {
		struct move *x = *p;
		if (++n <= MIGRATE_RECENT_MAX || x->pinned) {
			p = &x->next;
			continue;
		}
		*p = x->next;
		migrate_move_free(x);
	}
}

void migrate_move_free(struct move *m)
{
	json_object_put(m->progress);
	json_object_put(m->extents);
	free(m);
}

void migrate_move_end(struct ferryd *d, struct move *m, enum move_state st,
		      const char *code, const char *msg)
{
	move_finish(d, m, st, code, msg ? "%s" : NULL, msg);
}

static struct vm *move_vm(struct ferryd *d, struct move *m)
{
	return registry_find(d, m->vm);
}

/* One request on the VM's worker control socket. */
struct json_object *migrate_worker_request(struct ferryd *d, struct vm *vm,
					    struct json_object *req, struct err *e)
{
	struct json_object *rep;

	if (!vm || !vm->pid) {
		json_object_put(req);
		err_set(e, "the VM's worker is not running");
		return NULL;
	}
	rep = worker_request(d, vm, req, e);
	json_object_put(req);
	return rep;
}

struct json_object *migrate_worker_cmd(const char *cmd)
{
	struct json_object *o = json_object_new_object();
	jsonl_add_str(o, "cmd", cmd);
	return o;
}

struct json_object *migrate_worker_poll_cmd(const char *cmd)
{
	struct json_object *o = migrate_worker_cmd(cmd);
	jsonl_add_int(o, "wait_ms", MIGRATE_POLL_MS);
	return o;
}

/* Tell the destination to drop its half of the move, and why: the move's
 * error, which move_finish has set (why_text false: a destination from
 * before the reason field, see migrate_peer_done). Best effort: its worker
 * also gives up on its own when the source goes quiet. */
void migrate_abort_dest(struct ferryd *d, const struct move *m, bool why_text)
{
	struct json_object *req = migrate_worker_cmd("migration.abort");
	struct err e = { 0 };

	jsonl_add_str(req, "id", m->id);
	jsonl_add_str(req, "name", m->vm);
	if (why_text && m->error[0])
		jsonl_add_str(req, "reason", m->error);
	if (peer_call(d, m->peer, req, PEER_CALL_TIMEOUT_MS, m->id, PEER_ABORT, &e) < 0)
		log_warn("move %s: cannot ask %s to abort: %s", m->id, m->peer, e.msg);
}

/* A move that ends before the commit point: record it, then tell the
 * destination, with the record's words as the reason. */
static void move_abandon(struct ferryd *d, struct move *m, enum move_state st,
			 const char *code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void move_abandon(struct ferryd *d, struct move *m, enum move_state st,
			 const char *code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m->error, sizeof(m->error), fmt, ap);
	va_end(ap);
	/* m stays readable: move_finish puts it first among the recent */
	move_finish(d, m, st, code, NULL);
	migrate_abort_dest(d, m, true);
}

struct move *migrate_enqueue(struct ferryd *d, struct vm *vm,
			     const char *destination, int downtime_ms,
			     int bandwidth_mibps, const char *transport,
			     struct err *e)
{
	struct move *m = migrate_move_alloc(d, MOVE_OUT, NULL);

	if (!m) {
		err_set(e, "out of memory");
		return NULL;
	}
	m->state = MV_QUEUED;
	snprintf(m->vm, sizeof(m->vm), "%s", vm->def.name);
	snprintf(m->peer, sizeof(m->peer), "%s", destination);
	snprintf(m->transport, sizeof(m->transport), "%s", transport);
	m->downtime_ms = downtime_ms;
	m->bandwidth_mibps = bandwidth_mibps;
	m->memory_mib = vm->def.memory_mib;
	log_info("move %s: VM %s to %s queued", m->id, m->vm, m->peer);
	return m;
}

/* This host as a move's other end names it: the address its ferryd
 * listens on, as an outgoing move names its destination (so that the two
 * ends of a move read alike, and two ferryds on one machine apart), with
 * the host's name for a wildcard address; the name alone without one. */
static void migrate_self_name(const struct ferryd *d, char *buf, size_t cap)
{
	char name[256], host[256], port[32];
	struct err e = { 0 };

	if (gethostname(name, sizeof(name)) < 0)
		snprintf(name, sizeof(name), "unknown");
	name[sizeof(name) - 1] = '\0';
	if (!d->listen_addr[0] ||
	    sock_split_hostport(d->listen_addr, "7450", host, sizeof(host), port, sizeof(port), &e) < 0) {
		snprintf(buf, cap, "%s", name);
		return;
	}
	if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
		snprintf(buf, cap, "%s:%s", name, port);
	else if (strchr(host, ':'))
		snprintf(buf, cap, "[%s]:%s", host, port);
	else
		snprintf(buf, cap, "%s:%s", host, port);
}

/* QUEUED -> PREPARING, step 2: ask the destination ferryd for a skeleton
 * worker. ext is the worker's extents reply (NULL: none). */
static void move_out_prepare(struct ferryd *d, struct move *m, struct json_object *ext)
{
	struct vm *vm = move_vm(d, m);
	struct json_object *req;
	char host[300];
	struct err e = { 0 };

	if (!vm || vm->state != VM_RUNNING || m->worker_gone) {
		move_finish(d, m, MV_FAILED, "E_VM_NOT_RUNNING",
			    "VM %s stopped during setup: only a running VM can be live-migrated",
			    m->vm);
		return;
	}
	migrate_self_name(d, host, sizeof(host));
	req = migrate_worker_cmd("migration.prepare");
	if (d->key.set) {
		/* Both hosts derive the move's key from the cluster key and this
		 * salt; the salt alone is worthless to someone watching. */
		char hex[AUTH_NONCE_HEX];
		if (auth_random(m->key_salt, sizeof(m->key_salt), &e) < 0) {
			json_object_put(req);
			move_finish(d, m, MV_FAILED, "E_INTERNAL", "%s", e.msg);
			return;
		}
		auth_to_hex(m->key_salt, sizeof(m->key_salt), hex);
		jsonl_add_str(req, "key_salt", hex);
	}
	jsonl_add_str(req, "name", m->vm);
	jsonl_add_str(req, "id", m->id);
	jsonl_add_str(req, "source", host);
	/* the failpoint makes this host send a stream version from the future */
	jsonl_add_int(req, "stream_version",
		      MIG_VERSION + (failpoint("ferryd.stream_version_next") < 0 ? 1 : 0));
	if (m->copy_disk) {
		/* The destination's definition names its copy; it creates that
		 * file (never over one) with room for what the image holds. */
		struct json_object *dc = json_object_new_object(), *defj;
		struct stat st;
		int serr = stat(vm->def.disk, &st) < 0 ? errno : 0;
		if (serr || !S_ISREG(st.st_mode)) {
			json_object_put(dc);
			json_object_put(req);
			move_finish(d, m, MV_FAILED, "E_NO_DISK", "cannot copy VM %s's disk image %s: %s",
				    m->vm, vm->def.disk, serr ? strerror(serr) : "only a file can be copied");
			return;
		}
		defj = vmdef_to_json(&vm->def);
		jsonl_add_str(defj, "disk", m->disk_path);
		json_object_object_add(req, "definition", defj);
		jsonl_add_int(dc, "bytes", (int64_t)(st.st_size / 512 * 512));
		jsonl_add_int(dc, "allocated", (int64_t)st.st_blocks * 512);
		json_object_object_add(req, "disk_copy", dc);
	} else {
		json_object_object_add(req, "definition", vmdef_to_json(&vm->def));
	}
	if (ext)
		json_object_object_add(req, "extents", json_object_get(ext));
	/* The destination may reserve the guest's memory before it answers
	 * (its prealloc setting): allow for that on big guests. */
	if (peer_call(d, m->peer, req,
		      PEER_CALL_TIMEOUT_MS + (int)(m->memory_mib * FERRYD_PREALLOC_MS_PER_MIB),
		      m->id, PEER_PREPARE, &e) < 0) {
		move_finish(d, m, MV_FAILED, "E_UNREACHABLE", "%s", e.msg);
		return;
	}
	m->call_pending = true;
	if (!m->leaving_retry) /* its first ask was logged, and its waiting */
		log_info("move %s: VM %s: setting up with %s", m->id, m->vm, m->peer);
}

/* The worker's answer to "extents": the memory the guest uses, which a
 * destination that reserves memory ahead (prealloc) reserves alone.
 * Optional: without it the destination reserves all of the VM's memory. */
static void move_out_extents_done(struct ferryd *d, struct move *m, struct peer_result *r)
{
	struct json_object *ext = NULL;

	/* a worker that exited meanwhile also asked for a cancel: say what happened */
	if (m->cancel_requested && !m->worker_gone) {
		move_finish(d, m, MV_CANCELLED, "E_CANCELLED", "cancelled during setup");
		return;
	}
	if (r->reply && json_object_object_get_ex(r->reply, "extents", &ext) &&
	    !json_object_is_type(ext, json_type_array))
		ext = NULL;
	if (!ext)
		log_info("move %s: no extents from the worker (%s): the destination reserves all memory",
			 m->id, r->err.msg[0] ? r->err.msg : "none in its reply");
	json_object_put(m->extents);
	m->extents = json_object_get(ext);
	move_out_prepare(d, m, ext);
}

/* QUEUED -> PREPARING, step 1: check the move can start, then ask the
 * worker for its extents off the loop (it walks all guest memory: ~50 ms
 * per GiB touched, which would hold every other client of this ferryd). */
static void move_out_begin(struct ferryd *d, struct move *m)
{
	struct vm *vm = move_vm(d, m);
	char addr[128], sock[PATH_MAX];
	struct err e = { 0 };

	if (!vm || vm->state != VM_RUNNING || vm->incoming) {
		move_finish(d, m, MV_FAILED, "E_VM_NOT_RUNNING",
			    "VM %s is %s: only a running VM can be live-migrated",
			    m->vm, vm ? registry_state_name(vm->state) : "gone");
		return;
	}
	if (d->settings.nnets > 0 &&
	    netaddr_local_in_nets(&d->settings, addr, sizeof(addr), &e) < 0) {
		move_finish(d, m, MV_FAILED, "E_NO_MIGRATION_NETWORK", "%s", e.msg);
		return;
	}
	m->state = MV_PREPARING;
	if (!m->leaving_retry) /* a retry goes on from the first ask */
		m->started_ms = ferryd_wall_ms();
	m->wait_reason[0] = '\0';
	snprintf(m->stage, sizeof(m->stage), "setup");
	migrate_store_save(d);
	if (m->leaving_retry && m->extents) {
		move_out_prepare(d, m, m->extents);
		return;
	}
	if (!m->no_extents && vm->pid &&
	    registry_path(d, vm, "sock", sock, sizeof(sock), &e) == 0 &&
	    peer_worker_call(d, sock, migrate_worker_cmd("extents"),
			     FERRYD_CTL_TIMEOUT_MS + (int)(m->memory_mib * FERRYD_EXTENTS_MS_PER_MIB),
			     0, m->vm, m->id, PEER_EXTENTS, &e) == 0) {
		m->call_pending = true;
		return;
	}
	if (!m->no_extents)
		log_info("move %s: cannot ask the worker for its extents (%s)", m->id,
			 e.msg[0] ? e.msg : "no worker");
	move_out_prepare(d, m, NULL);
}

/* A move queued before m to its destination, refused there for now: m
 * stays behind it. */
static const struct move *move_out_behind(const struct ferryd *d, const struct move *m, long long now)
{
	for (const struct move *x = d->moves; x && x != m; x = x->next)
		if (x->dir == MOVE_OUT && x->state == MV_QUEUED && x->next_ms > now &&
		    strcmp(x->peer, m->peer) == 0)
			return x;
	return NULL;
}

/* Start queued moves in order while slots are free. */
static void migrate_schedule(struct ferryd *d, long long now)
{
	int active = migrate_active_count(d), max = d->settings.max_migrations;
	bool blocked = false;
	const struct move *ahead;

	if (max < 1)
		max = 1;
	for (struct move *m = d->moves, *next; m; m = next) {
		next = m->next;
		if (m->dir != MOVE_OUT || m->state != MV_QUEUED)
			continue;
		/* Refused for now by its destination (busy, or the VM's old
		 * copy still ending there): it keeps its place ahead of later
		 * moves to that host, and holds up none to another (one
		 * destination's stuck worker must not stall an evacuation). */
		if (m->next_ms > now)
			continue;
		if ((ahead = move_out_behind(d, m, now))) {
			snprintf(m->wait_reason, sizeof(m->wait_reason),
				 "waiting for move %s, queued before it to %.200s", ahead->id, m->peer);
			continue;
		}
		/* Strict order: once one move must wait for a slot, later ones wait too. */
		if (!blocked && active < max) {
			move_out_begin(d, m);
			if (!migrate_state_done(m->state))
				active++;
			continue;
		}
		if (!blocked && active >= max)
			snprintf(m->wait_reason, sizeof(m->wait_reason),
				 "waiting for a migration slot (%d of %d in use on this host)",
				 active, max);
		else if (blocked)
			snprintf(m->wait_reason, sizeof(m->wait_reason),
				 "waiting for the moves queued before it");
		blocked = true;
	}
}

/* Choose the local address migration traffic leaves from: one in this
 * host's migration networks (the worker binds to it), preferring the one
 * the kernel would pick towards the destination. bind is "" when no
 * networks are configured (any address will do). */
static int move_check_route(struct ferryd *d, struct move *m, char *bind, size_t bindlen,
			    struct err *e)
{
	struct sockaddr_storage src;
	char host[256], port[16], srctext[64], nets[512];

	bind[0] = 0;
	if (d->settings.nnets == 0)
		return 0;
	if (sock_split_hostport(m->address, "7460", host, sizeof(host), port,
				sizeof(port), e) < 0 ||
	    netaddr_route_source(host, &src, e) < 0)
		return -1;
	netaddr_text(&src, srctext, sizeof(srctext));
	if (settings_net_allowed(&d->settings, &src)) {
		snprintf(bind, bindlen, "%s", srctext);
		return 0;
	}
	if (netaddr_local_in_nets(&d->settings, bind, bindlen, e) == 0)
		return 0;
	settings_format_nets(&d->settings, nets, sizeof(nets));
	return err_set(e, "migration traffic to %s would leave this host from %s, and no address of this host is in its migration networks (%s)",
		       host, srctext, nets);
}

void migrate_move_key_hex(const struct auth_key *cluster, const uint8_t salt[AUTH_NONCE_LEN],
			  char hex[AUTH_KEY_HEX])
{
	struct auth_key mk;
	auth_derive(cluster, "ferry-move-key", salt, AUTH_NONCE_LEN, &mk);
	auth_to_hex(mk.k, sizeof(mk.k), hex);
	OPENSSL_cleanse(&mk, sizeof(mk));
}

/* PREPARING -> MIGRATING: the destination listens; start the source worker. */
static void move_out_prepared(struct ferryd *d, struct move *m,
			      struct json_object *rep)
{
	struct vm *vm = move_vm(d, m);
	struct json_object *req;
	const char *addr = NULL;
	char bind[64];
	struct err e = { 0 };
	int bw;

	if (jsonl_get_str(rep, "address", true, &addr, &e) < 0 ||
	    strlen(addr) >= sizeof(m->address)) {
		move_abandon(d, m, MV_FAILED, "E_INTERNAL",
			     "destination %s gave no usable migration address", m->peer);
		return;
	}
	snprintf(m->address, sizeof(m->address), "%s", addr);
	if (m->cancel_requested) {
		move_abandon(d, m, MV_CANCELLED, "E_CANCELLED", "cancelled during setup");
		return;
	}
	if (move_check_route(d, m, bind, sizeof(bind), &e) < 0) {
		move_abandon(d, m, MV_FAILED, "E_NO_MIGRATION_NETWORK", "%s", e.msg);
		return;
	}
	req = migrate_worker_cmd("migrate");
	jsonl_add_str(req, "uri", m->address);
	jsonl_add_str(req, "transport", m->transport);
	if (m->codec[0]) {
		jsonl_add_str(req, "codec", m->codec);
		/* a chosen codec asks for compression: multichannel compresses
		 * only when asked (the compression transport always does) */
		if (strcmp(m->transport, "multichannel") == 0)
			jsonl_add_bool(req, "compress", true);
	}
	jsonl_add_int(req, "downtime_ms", m->downtime_ms);
	if (bind[0])
		jsonl_add_str(req, "bind", bind);
	if (m->max_duration_s > 0) {
		jsonl_add_int(req, "max_duration_s", m->max_duration_s);
		jsonl_add_bool(req, "cancel_on_timeout", m->cancel_on_timeout);
	}
	if (m->verify_memory)
		jsonl_add_bool(req, "verify_memory", true);
	if (m->postcopy)
		jsonl_add_bool(req, "postcopy", true);
	if (m->copy_disk)
		jsonl_add_str(req, "disk_copy_path", m->disk_path);
	if (m->check_only)
		jsonl_add_bool(req, "check_only", true);
	/* Its share of the host's limit from the first byte; the moves
	 * already sending are slowed to make room after this tick. */
	bw = migrate_bw_share(d, m);
	if (bw > 0)
		jsonl_add_int(req, "bandwidth_mibps", bw);
	if (d->key.set) {
		char hex[AUTH_KEY_HEX];
		/* the key both hosts proved in migration.prepare */
		struct auth_keyring ring = ferryd_keyring(d);
		migrate_move_key_hex(ring.k[m->key_idx], m->key_salt, hex);
		jsonl_add_str(req, "key", hex);
		OPENSSL_cleanse(hex, sizeof(hex));
		jsonl_add_bool(req, "encrypt", m->encrypt);
	}
	rep = migrate_worker_request(d, vm, req, &e);
	if (!rep) {
		move_abandon(d, m, MV_FAILED, "E_MIGRATE_FAILED", "VM %s: %s", m->vm, e.msg);
		return;
	}
	if (m->check_only && !json_object_object_get_ex(rep, "check_only", NULL)) {
		/* A worker from before checks took it for a move: call it off
		 * before any memory goes (pass 1 only copies; the VM runs on). */
		json_object_put(rep);
		json_object_put(migrate_worker_request(d, vm, migrate_worker_cmd("migrate-cancel"), &e));
		move_abandon(d, m, MV_FAILED, "E_VERSION",
			     "VM %s's worker predates checks (started by an earlier ferry-vm): nothing "
			     "moved; restart the VM on this build to check it", m->vm);
		return;
	}
	json_object_put(rep);
	m->state = MV_MIGRATING;
	m->bw_applied = bw;
	/* asked at once: the worker holds the answer until the move ends or
	 * a poll interval passes (move_out_poll) */
	m->next_ms = ferryd_now_ms();
	log_info("move %s: VM %s: migrating to %s (worker address %s)%s%s", m->id,
		 m->vm, m->peer, m->address, m->copy_disk ? ", copying its disk to " : "",
		 m->copy_disk ? m->disk_path : "");
	migrate_store_save(d);
}

static void move_out_enter_finishing(struct ferryd *d, struct move *m,
				     struct vm *vm)
{
	struct err e = { 0 };
	struct json_object *rep;

	m->state = MV_FINISHING;
	m->deadline = ferryd_now_ms() + MIGRATE_FINISH_TIMEOUT_MS;
	m->next_ms = ferryd_now_ms();
	m->tries = 0;
	migrate_store_save(d);
	if (vm && vm->pid) {
		/* The worker would linger 30 s answering status; we have its
		 * final figures, so end it now (it exits 4, "migrated away"). */
		rep = migrate_worker_request(d, vm, migrate_worker_cmd("stop"), &e);
		if (!rep)
			log_warn("move %s: stopping the source worker: %s", m->id, e.msg);
		json_object_put(rep);
		vm->expect_exit = true;
	} else {
		m->worker_gone = true;
	}
}

static void move_out_release_source(struct ferryd *d, struct move *m);

/* A worker's migration stage that no cancel can change any more. */
static bool migrate_worker_stage_final(const char *stage)
{
	static const char *const final[] = { "completed", "failed", "cancelled", "unknown", "none",
					     "checked", "lost" };
	for (size_t i = 0; i < sizeof(final) / sizeof(final[0]); i++)
		if (strcmp(stage, final[i]) == 0)
			return true;
	return false;
}

/* Ask the source worker how the move goes, off the loop (PEER_POLL): a
 * worker that hangs must not hold every client of this ferryd for the
 * 2 s a call may take, ten times a second. */
static void move_out_poll(struct ferryd *d, struct move *m, long long now)
{
	struct vm *vm = move_vm(d, m);
	struct json_object *req;
	char sock[PATH_MAX];
	struct err e = { 0 };

	if (!vm || !vm->pid) {
		/* The worker is gone (crash, or it exited while ferryd was
		 * down): only the destination knows whether the VM runs. */
		m->worker_gone = true;
		m->state = MV_RESOLVING;
		m->next_ms = now;
		snprintf(m->wait_reason, sizeof(m->wait_reason),
			 "source worker gone: asking %s whether it runs the VM", m->peer);
		return;
	}
	/* The worker holds the answer up to a poll interval, and gives it at
	 * once when the move ends: the end is seen now, not up to 100 ms
	 * later. The next ask goes when this one is answered (move_out_tick:
	 * next_ms passed), so one is always out; a worker from before
	 * wait_ms answers at once, and is then asked a poll interval on. */
	if (registry_path(d, vm, "sock", sock, sizeof(sock), &e) == 0) {
		req = migrate_worker_poll_cmd("migrate-status");
		if (peer_worker_call(d, sock, req, FERRYD_CTL_TIMEOUT_MS, 0, m->vm, m->id,
				     PEER_POLL, &e) == 0) {
			m->call_pending = true;
			return;
		}
	}
	log_warn("move %s: migrate-status: %s", m->id, e.msg);
}

/* The source worker's migrate-status answer (NULL: none within the limit). */
static void move_out_polled(struct ferryd *d, struct move *m, struct peer_result *r)
{
	struct vm *vm = move_vm(d, m);
	struct json_object *rep = r->reply, *mig;
	const char *stage = NULL, *error = NULL;
	long long now = ferryd_now_ms();
	struct err e = { 0 };

	/* the worker may have exited meanwhile: its exit decides */
	if (m->state != MV_MIGRATING || !vm || !vm->pid)
		return;
	if (!rep) {
		log_warn("move %s: migrate-status: %s", m->id, r->err.msg);
		return;
	}
	json_object_get(rep); /* the result's, freed by peer_drain */
	if (!json_object_object_get_ex(rep, "migration", &mig) ||
	    jsonl_get_str(mig, "stage", true, &stage, &e) < 0) {
		json_object_put(rep);
		return;
	}
	if (jsonl_get_str(mig, "error", false, &error, &e) < 0)
		error = NULL;
	if ((m->recovered || m->cancel_requested) && !m->cancel_sent &&
	    !migrate_worker_stage_final(stage)) {
		/* Asked only of a move still going: one that ended while this
		 * ferryd was down keeps its own outcome (and its reason). */
		json_object_put(migrate_worker_request(d, vm, migrate_worker_cmd("migrate-cancel"), &e));
		m->cancel_sent = true;
		json_object_put(rep);
		return;
	}
	json_object_put(m->progress);
	m->progress = json_object_get(mig);
	snprintf(m->stage, sizeof(m->stage), "%s", stage);
	if (strcmp(stage, "completed") == 0) {
		move_out_enter_finishing(d, m, vm);
	} else if (strcmp(stage, "checked") == 0) {
		/* the worker has already told the destination to drop it */
		/* (its words, which the destination's history keeps, say "a
		 * check only" as the worker's own ABORT does: either may land
		 * there first) */
		move_abandon(d, m, MV_CHECKED, NULL,
			     "a check only: %s can take VM %s (its CPU, memory, disk and network "
			     "checked as for a move); nothing moved", m->peer, m->vm);
	} else if (strcmp(stage, "lost") == 0) {
		/* Post-copy broke: the VM ran there, on memory partly still
		 * here. It is the destination's (the commit-point rule), which
		 * keeps it stopped; this stale copy must never run. */
		move_out_release_source(d, m);
		move_finish(d, m, MV_FAILED, "E_MIGRATE_LOST",
			    "%s; VM %s is stopped and defined on %s now: start it again there (it "
			    "boots from its disk)", error ? error : "post-copy broke", m->vm, m->peer);
	} else if (strcmp(stage, "unknown") == 0) {
		m->state = MV_RESOLVING;
		m->next_ms = now;
		snprintf(m->wait_reason, sizeof(m->wait_reason),
			 "commit sent but not confirmed: asking %s whether it runs the VM (the VM is paused here meanwhile)",
			 m->peer);
		log_warn("move %s: VM %s: outcome unknown after the commit point; resolving with %s",
			 m->id, m->vm, m->peer);
		migrate_store_save(d);
	} else if (strcmp(stage, "cancelled") == 0 || strcmp(stage, "none") == 0 ||
		   (strcmp(stage, "failed") == 0 && m->cancel_sent)) {
		if (m->recovered)
			move_abandon(d, m, MV_CANCELLED, "E_CANCELLED",
				     "ferryd restarted during the move; the move was cancelled and VM %s keeps running on the source",
				     m->vm);
		else if (!m->cancel_sent && error) /* by its own policy: --on-timeout cancel */
			move_abandon(d, m, MV_CANCELLED, "E_CANCELLED",
				     "cancelled: %s; VM %s keeps running on the source", error, m->vm);
		else
			move_abandon(d, m, MV_CANCELLED, "E_CANCELLED",
				     "cancelled; VM %s keeps running on the source", m->vm);
	} else if (strcmp(stage, "failed") == 0) {
		move_abandon(d, m, MV_FAILED, "E_MIGRATE_FAILED",
			     "%s%s; VM %s keeps running on the source",
			     error ? error : "migration failed",
			     m->recovered ? " (while ferryd was not running)" : "", m->vm);
	}
	json_object_put(rep);
}

static void move_out_drop_source(struct ferryd *d, struct move *m);

static void move_out_tick(struct ferryd *d, struct move *m, long long now)
{
	struct json_object *req;
	struct vm *vm;
	struct err e = { 0 };

	if (m->call_pending || now < m->next_ms)
		return;
	switch (m->state) {
	case MV_MIGRATING:
		m->next_ms = now + MIGRATE_POLL_MS;
		move_out_poll(d, m, now);
		break;
	case MV_FINISHING:
		vm = move_vm(d, m);
		if (!m->worker_gone && (!vm || !vm->pid || vm->incoming)) {
			/* Gone without this ferryd seeing it exit (it was down
			 * then): the destination has the VM, the copy here goes.
			 * An incoming VM of that name is another move's. */
			m->worker_gone = true;
			if (vm && !vm->incoming)
				move_out_drop_source(d, m);
			migrate_store_save(d);
		}
		if (!m->worker_gone && now >= m->deadline && vm->pid) {
			log_warn("move %s: source worker did not exit after the move; killing it",
				 m->id);
			worker_kill(vm);
			m->deadline = now + MIGRATE_FINISH_TIMEOUT_MS;
		}
		/* Ask the destination whether it runs the VM now, while the
		 * source worker ends: its exit gives the guest's memory back
		 * (~0.12 s per GiB touched here), which the move need not
		 * wait for (move_out_release_source). A test holds the
		 * question back to see a destination worker that died
		 * right after the VM ran (tests/e2e/move_commit.sh). */
		failpoint("ferryd.confirm");
		__attribute__((fallthrough));
	case MV_RESOLVING:
		req = migrate_worker_cmd("vm.status");
		jsonl_add_str(req, "name", m->vm);
		if (peer_call(d, m->peer, req, 5000, m->id,
			      m->state == MV_RESOLVING ? PEER_RESOLVE : PEER_CONFIRM, &e) < 0) {
			log_warn("move %s: %s", m->id, e.msg);
			m->next_ms = now + MIGRATE_RETRY_MS;
			break;
		}
		m->call_pending = true;
		break;
	default:
		break;
	}
}

/* The destination runs the VM: what is left of it here goes, now if its
 * worker has exited, else as the worker ends (worker_reap). */
static void move_out_release_source(struct ferryd *d, struct move *m)
{
	struct vm *vm = move_vm(d, m);
	struct err e = { 0 };

	if (!vm || vm->incoming || vm->departed)
		return;
	if (!vm->pid) {
		move_out_drop_source(d, m);
		return;
	}
	/* The worker handed the VM over and was told to stop; no command
	 * can run this copy again. Its definition goes at once, so that
	 * nothing (a ferryd restart included) starts it here; the entry
	 * keeps the name until the exit, and its stop is seen through as
	 * any other (SIGTERM, then SIGKILL, if it hangs). */
	worker_mark_departed(d, vm); /* first: a restart from here on takes the worker back */
	/* a test's window to kill this ferryd between the two (tests/e2e/move_departed_crash.sh) */
	failpoint("ferryd.departed");
	if (registry_delete_files(d, vm, true, &e) < 0)
		log_warn("move %s: removing VM %s here: %s", m->id, m->vm, e.msg);
	vm->departed = true;
	vm->expect_exit = true;
	vm->state = VM_STOPPING;
	if (vm->op == OP_NONE) {
		vm->op = OP_STOP_CTL;
		vm->deadline = ferryd_now_ms() + MIGRATE_FINISH_TIMEOUT_MS;
	}
	log_info("move %s: VM %s now lives on %s; its copy here is ending", m->id, m->vm, m->peer);
}

/* remove_source_disk: the destination has confirmed the VM runs (or ran)
 * on its copy, so the image here is no VM's disk any more. Only then: a
 * move whose outcome is unconfirmed keeps it. Another VM of this host
 * defined on the same file keeps it too. */
static void move_out_remove_source_disk(struct ferryd *d, struct move *m)
{
	if (!m->remove_source[0])
		return;
	for (struct vm *v = d->vms; v; v = v->next)
		if (strcmp(v->def.name, m->vm) != 0 && strcmp(v->def.disk, m->remove_source) == 0) {
			log_warn("move %s: VM %s's image %s is kept: VM %s here is defined on it too",
				 m->id, m->vm, m->remove_source, v->def.name);
			return;
		}
	if (unlink(m->remove_source) < 0 && errno != ENOENT) {
		log_warn("move %s: removing VM %s's image %s here: %s; remove it by hand", m->id,
			 m->vm, m->remove_source, strerror(errno));
		return;
	}
	m->source_removed = true;
	log_info("move %s: VM %s runs on its copy of the disk, %s on %s; its image here, %s, "
		 "was removed", m->id, m->vm, m->disk_path, m->peer, m->remove_source);
}

/* The source has no copy any more: its definition goes. */
static void move_out_drop_source(struct ferryd *d, struct move *m)
{
	struct vm *vm = move_vm(d, m);

	if (!vm || vm->pid)
		return;
	/* The logs stay, as a record of the VM's time here (appended to if
	 * it comes back); only `ferry vm delete` removes them. A marker it
	 * still has goes with the rest, after the definition. */
	registry_forget(d, vm);
	log_info("move %s: VM %s now lives on %s; removed here", m->id, m->vm, m->peer);
}

static const char *move_reply_error(struct json_object *rep)
{
	struct json_object *v;
	if (json_object_object_get_ex(rep, "error", &v) &&
	    json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return "(no reason given)";
}

/* A refusal's code (E_INTERNAL if none) and message. */
static void move_reply_refusal(struct json_object *rep, const char **code, const char **msg)
{
	struct json_object *v;
	*code = json_object_object_get_ex(rep, "code", &v) &&
			json_object_is_type(v, json_type_string)
		? json_object_get_string(v)
		: "E_INTERNAL";
	*msg = move_reply_error(rep);
}

/* The commit-point rule: the destination's answer decides. */
static void move_out_resolved(struct ferryd *d, struct move *m,
			      struct peer_result *r)
{
	struct vm *vm = move_vm(d, m);
	const char *state = NULL, *code = NULL;
	struct json_object *rep = r->reply, *req;
	struct err e = { 0 };
	bool ok = false;
	long long now = ferryd_now_ms();

	m->next_ms = now + MIGRATE_RETRY_MS;
	if (!rep) {
		snprintf(m->wait_reason, sizeof(m->wait_reason),
			 "outcome unknown and %s does not answer (%.120s); the VM stays paused here until it does",
			 m->peer, r->err.msg);
		return;
	}
	if (jsonl_get_bool(rep, "ok", true, &ok, &e) < 0)
		return;
	if (ok && jsonl_get_str(rep, "state", false, &state, &e) == 0 && state &&
	    strcmp(state, "incoming") != 0) {
		/* The destination runs it, or ran it (its worker then ended:
		 * crashed, and to be started there): this copy is older than
		 * what the guest did there and must never run again. */
		if (strcmp(state, "running") != 0)
			log_warn("move %s: VM %s ran on %s and is %s there now; it is that host's",
				 m->id, m->vm, m->peer, state);
		if (vm && vm->pid && !m->worker_gone) {
			req = migrate_worker_cmd("migrate-resolve");
			jsonl_add_str(req, "action", "stop");
			json_object_put(migrate_worker_request(d, vm, req, &e));
			vm->expect_exit = true;
		}
		log_info("move %s: %s runs VM %s: the move completed", m->id, m->peer, m->vm);
		m->wait_reason[0] = '\0';
		m->state = MV_FINISHING;
		m->deadline = now + MIGRATE_FINISH_TIMEOUT_MS;
		m->next_ms = now;
		if (m->worker_gone)
			move_out_drop_source(d, m);
		migrate_store_save(d);
		return;
	}
	if (ok && state && strcmp(state, "incoming") == 0) {
		snprintf(m->wait_reason, sizeof(m->wait_reason),
			 "outcome unknown: %s is still deciding (its worker is alive); asking again",
			 m->peer);
		return;
	}
	if (!ok && (jsonl_get_str(rep, "code", false, &code, &e) < 0 || !code ||
		    strcmp(code, "E_NO_VM") != 0)) {
		snprintf(m->wait_reason, sizeof(m->wait_reason),
			 "outcome unknown; %s answered: %.120s", m->peer,
			 move_reply_error(rep));
		return;
	}
	/* The destination has no running copy and no worker for it. */
	if (m->worker_gone || !vm || !vm->pid) {
		move_finish(d, m, MV_FAILED, "E_MIGRATE_FAILED",
			    "the source worker exited during the move and %s does not run VM %s; start it again here",
			    m->peer, m->vm);
		return;
	}
	req = migrate_worker_cmd("migrate-resolve");
	jsonl_add_str(req, "action", "resume");
	rep = migrate_worker_request(d, vm, req, &e);
	if (!rep) {
		snprintf(m->wait_reason, sizeof(m->wait_reason),
			 "destination does not run the VM, but resuming here failed: %.120s", e.msg);
		return;
	}
	json_object_put(rep);
	move_finish(d, m, MV_FAILED, "E_MIGRATE_FAILED",
		    "the commit was not confirmed and %s does not run VM %s: resumed here",
		    m->peer, m->vm);
}

/* The destination's answer to migrate_abort_dest. One from before the
 * reason field refuses it as unknown: ask again without. */
static void abort_dest_done(struct ferryd *d, const struct peer_result *r)
{
	const char *code = NULL, *msg = NULL;
	struct err e = { 0 };
	bool ok = false;

	if (!r->reply) {
		log_warn("move %s: abort on the destination: %s", r->move_id, r->err.msg);
		return;
	}
	if (jsonl_get_bool(r->reply, "ok", true, &ok, &e) == 0 && ok)
		return;
	move_reply_refusal(r->reply, &code, &msg);
	if (strcmp(code, "E_BAD_ARG") == 0 && strstr(msg, "unknown field 'reason'")) {
		struct move *m = migrate_find(d, r->move_id);
		/* once: a peer refusing the plain abort too is not asked forever */
		if (m && m->dir == MOVE_OUT && strcmp(m->id, r->move_id) == 0 && !m->abort_plain) {
			m->abort_plain = true;
			log_info("move %s: %s predates the abort reason; asking again without it",
				 m->id, m->peer);
			migrate_abort_dest(d, m, false);
			return;
		}
	}
	log_warn("move %s: the destination refused the abort: %s: %s", r->move_id, code, msg);
}

/* A move the destination refused for now (why: its reason, or NULL to
 * keep the last) back in the queue, asked again after delay_ms. Queued on
 * disk too: its ask saved it 'preparing', which a restart cancels (a
 * skeleton may wait there), and a refusal leaves no skeleton. */
static void move_out_requeue(struct ferryd *d, struct move *m, long long delay_ms, const char *why)
{
	m->state = MV_QUEUED;
	m->next_ms = ferryd_now_ms() + delay_ms;
	snprintf(m->stage, sizeof(m->stage), "queued");
	if (why)
		snprintf(m->wait_reason, sizeof(m->wait_reason), "destination %.60s: %.160s", m->peer,
			 why);
	migrate_store_save(d);
}

void migrate_peer_done(struct ferryd *d, struct peer_result *r)
{
	struct move *m = NULL;
	const char *code = NULL, *msg = NULL;
	struct err e = { 0 };
	bool ok = false;

	if (r->purpose == PEER_ABORT) {
		abort_dest_done(d, r);
		return;
	}
	if (r->purpose == PEER_IN_POLL) {
		for (struct move *x = d->moves; x; x = x->next)
			if (x->dir == MOVE_IN && strcmp(x->id, r->move_id) == 0) {
				migrate_in_polled(d, x, r);
				break;
			}
		return;
	}
	for (struct move *x = d->moves; x; x = x->next)
		if (x->dir == MOVE_OUT && strcmp(x->id, r->move_id) == 0)
			m = x;
	if (!m)
		return; /* finished meanwhile */
	m->call_pending = false;
	if (r->purpose == PEER_RESOLVE) {
		move_out_resolved(d, m, r);
		return;
	}
	if (r->purpose == PEER_POLL) {
		move_out_polled(d, m, r);
		return;
	}
	if (r->purpose == PEER_EXTENTS) {
		move_out_extents_done(d, m, r);
		return;
	}
	if (r->purpose == PEER_CONFIRM) {
		const char *state = NULL;
		if (r->reply && jsonl_get_bool(r->reply, "ok", true, &ok, &e) == 0 && ok &&
		    jsonl_get_str(r->reply, "state", false, &state, &e) == 0 && state &&
		    strcmp(state, "running") == 0) {
			move_out_release_source(d, m);
			move_out_remove_source_disk(d, m);
			move_finish(d, m, MV_COMPLETED, NULL, NULL);
		} else if (ok && state && strcmp(state, "incoming") != 0) {
			/* it ran there, and its worker has ended since */
			move_out_release_source(d, m);
			move_out_remove_source_disk(d, m);
			move_finish(d, m, MV_COMPLETED, NULL,
				    "moved, but VM %s is %s on %s now (its worker there ended after "
				    "the VM ran): start it there", m->vm, state, m->peer);
		} else if (++m->tries >= MIGRATE_CONFIRM_TRIES) {
			/* The worker confirmed the commit; only the registration
			 * on the destination is unconfirmed. Its own "no such
			 * VM" is worth saying apart from silence: the VM runs
			 * there (its worker said so) but that ferryd knows no
			 * definition for it. */
			const char *why = NULL;
			bool no_vm = r->reply && !ok &&
				     jsonl_get_str(r->reply, "code", false, &why, &e) == 0 && why &&
				     strcmp(why, "E_NO_VM") == 0;
			move_out_release_source(d, m);
			if (m->remove_source[0])
				log_warn("move %s: VM %s's image %s is kept: %s has not confirmed the VM "
					 "runs on its copy", m->id, m->vm, m->remove_source, m->peer);
			move_finish(d, m, MV_COMPLETED, NULL,
				    no_vm ? "moved (its worker there confirmed it runs VM %s), but %s "
					    "answers it has no such VM: check that host"
					  : "moved, but %s did not confirm it registered VM %s",
				    no_vm ? m->vm : m->peer, no_vm ? m->peer : m->vm);
		} else {
			m->next_ms = ferryd_now_ms() + MIGRATE_POLL_MS;
		}
		return;
	}
	/* PEER_PREPARE */
	m->leaving_retry = false; /* set again below if the name is still leaving */
	if (!r->reply) {
		move_finish(d, m, MV_FAILED,
			    r->err.code == EACCES   ? "E_AUTH"
			    : r->err.code == EPROTO ? "E_VERSION"
						    : "E_UNREACHABLE",
			    "%s", r->err.msg);
		if (r->reached) /* it may hold a half-made VM for the move */
			migrate_abort_dest(d, m, true);
		return;
	}
	if (jsonl_get_bool(r->reply, "ok", true, &ok, &e) < 0) {
		move_finish(d, m, MV_FAILED, "E_INTERNAL", "destination %s: %s", m->peer, e.msg);
		return;
	}
	if (ok) {
		m->key_idx = r->key_idx > 0 ? r->key_idx : 0;
		move_out_prepared(d, m, r->reply);
		return;
	}
	move_reply_refusal(r->reply, &code, &msg);
	if (strcmp(code, "E_BAD_ARG") == 0 && strstr(msg, "unknown field 'extents'") &&
	    !m->no_extents && !m->cancel_requested) {
		/* A ferryd from before the field: ask again without it (it then
		 * reserves all the VM's memory, if it reserves any). */
		log_info("move %s: %s predates the extents field; preparing again without it",
			 m->id, m->peer);
		m->no_extents = true;
		move_out_requeue(d, m, 0, NULL);
		return;
	}
	if (strcmp(code, "E_BAD_ARG") == 0 && strstr(msg, "unknown field 'disk_copy'")) {
		move_finish(d, m, MV_FAILED, "E_VERSION",
			    "destination %s cannot take a copy of the disk (its ferryd predates disk "
			    "copies): upgrade it, or move without --copy-disk if both hosts share the "
			    "disk's storage", m->peer);
		return;
	}
	if (strcmp(code, "E_VM_LEAVING") == 0 && !m->cancel_requested) {
		/* The VM's last move away from there is still ending (its
		 * worker exiting, or its outcome being settled): moments. A
		 * copy that never ends (a hung worker there) must not keep
		 * this move queued for ever: it gives up after its own
		 * --max-duration, or MIGRATE_LEAVING_MAX_S without one. */
		long long waited = ferryd_wall_ms() - m->started_ms;
		long long limit = 1000LL * (m->max_duration_s > 0 ? m->max_duration_s
								   : MIGRATE_LEAVING_MAX_S);
		if (waited >= limit) {
			move_finish(d, m, MV_FAILED, "E_VM_LEAVING",
				    "gave up after %lld s (%s) waiting for %s, which answers: %s",
				    waited / 1000,
				    m->max_duration_s > 0 ? "the move's --max-duration" : "the longest wait",
				    m->peer, msg);
			return;
		}
		if (m->leaving_tries == 0)
			log_info("move %s: %s: %s; asking again", m->id, m->peer, msg);
		else if (m->leaving_tries == MIGRATE_LEAVING_FAST_TRIES)
			log_info("move %s: VM %s is still ending on %s; asking every %d ms", m->id,
				 m->vm, m->peer, MIGRATE_LEAVING_RETRY_SLOW_MS);
		m->leaving_retry = true;
		move_out_requeue(d, m,
				 m->leaving_tries++ < MIGRATE_LEAVING_FAST_TRIES ? MIGRATE_LEAVING_RETRY_MS
										 : MIGRATE_LEAVING_RETRY_SLOW_MS,
				 msg);
		return;
	}
	if (strcmp(code, "E_MIGRATION_LIMIT") == 0 && !m->cancel_requested) {
		/* The destination is busy: wait our turn, keep our place. */
		move_out_requeue(d, m, MIGRATE_RETRY_MS / 3, msg);
		return;
	}
	if (m->cancel_requested)
		move_finish(d, m, MV_CANCELLED, "E_CANCELLED", "cancelled during setup");
	else
		move_finish(d, m, MV_FAILED, code, "destination %s refused: %s", m->peer, msg);
}

int migrate_cancel(struct ferryd *d, struct move *m, const char **code,
		   struct err *e)
{
	struct json_object *rep;
	struct err we = { 0 };

	if (migrate_state_done(m->state)) {
		*code = "E_BAD_ARG";
		return err_set(e, "move %s of VM %s has already %s", m->id, m->vm,
			       migrate_state_name(m->state));
	}
	if (m->dir == MOVE_IN) {
		*code = "E_BAD_ARG";
		return err_set(e, "move %s brings VM %s here from %s: cancel it on the source host",
			       m->id, m->vm, m->peer);
	}
	switch (m->state) {
	case MV_QUEUED:
		move_finish(d, m, MV_CANCELLED, "E_CANCELLED", "cancelled while queued");
		return 0;
	case MV_PREPARING:
		m->cancel_requested = true;
		return 0;
	case MV_MIGRATING:
		rep = migrate_worker_request(d, move_vm(d, m), migrate_worker_cmd("migrate-cancel"), &we);
		if (!rep) {
			*code = strstr(we.msg, "too late") ? "E_TOO_LATE" : "E_INTERNAL";
			return err_set(e, "cannot cancel the move of VM %s: %s", m->vm, we.msg);
		}
		json_object_put(rep);
		m->cancel_requested = m->cancel_sent = true;
		return 0;
	default:
		*code = "E_TOO_LATE";
		return err_set(e, "the move of VM %s is past its commit point (%s): too late to cancel",
			       m->vm, migrate_state_name(m->state));
	}
}

bool migrate_worker_exited(struct ferryd *d, struct vm *vm, int exit_code,
			   uint64_t start_waiter)
{
	struct move *m;

	if (vm->incoming)
		return migrate_in_worker_exited(d, vm, exit_code, start_waiter);
	m = migrate_find_active(d, vm->def.name);
	if (!m || m->dir != MOVE_OUT)
		return false;
	m->worker_gone = true;
	m->next_ms = ferryd_now_ms();
	if (m->state == MV_FINISHING || exit_code == 4) {
		/* Exit 4: the worker handed the VM over ("migrated away"). */
		m->state = MV_FINISHING;
		move_out_drop_source(d, m);
		migrate_store_save(d);
		return true;
	}
	if (m->state == MV_MIGRATING) {
		m->state = MV_RESOLVING;
		snprintf(m->wait_reason, sizeof(m->wait_reason),
			 "source worker %s: asking %s whether it runs the VM", vm->last_exit, m->peer);
		migrate_store_save(d);
	} else if (m->state == MV_PREPARING) {
		m->cancel_requested = true; /* abort when the prepare answer comes */
	}
	return false;
}

void migrate_tick(struct ferryd *d)
{
	long long now = ferryd_now_ms();

	migrate_schedule(d, now);
	for (struct move *m = d->moves, *next; m; m = next) {
		next = m->next;
		if (m->dir == MOVE_OUT)
			move_out_tick(d, m, now);
		else
			migrate_in_tick(d, m, now);
	}
	migrate_bw_rebalance(d);
}

int migrate_next_timeout(struct ferryd *d)
{
	long long now = ferryd_now_ms(), best = -1;
	for (struct move *m = d->moves; m; m = m->next) {
		long long t = m->next_ms - now;
		if (m->call_pending)
			continue;
		if (m->state == MV_QUEUED && m->next_ms <= now)
			t = MIGRATE_POLL_MS; /* waiting for a slot: re-check now and then */
		if (t < 0)
			t = 0;
		if (best < 0 || t < best)
			best = t;
	}
	return (int)best;
}

struct json_object *migrate_move_json(struct ferryd *d, struct move *m,
				      bool full)
{
	struct json_object *o = json_object_new_object();
	char host[300];

	migrate_self_name(d, host, sizeof(host));
	jsonl_add_str(o, "id", m->id);
	jsonl_add_str(o, "name", m->vm);
	jsonl_add_str(o, "direction", m->dir == MOVE_OUT ? "outgoing" : "incoming");
	jsonl_add_str(o, "state", migrate_state_name(m->state));
	jsonl_add_str(o, "source", m->dir == MOVE_OUT ? host : m->peer);
	jsonl_add_str(o, "destination", m->dir == MOVE_OUT ? m->peer : host);
	if (m->state == MV_QUEUED)
		jsonl_add_int(o, "position", migrate_queue_position(d, m));
	if (m->wait_reason[0])
		jsonl_add_str(o, "waiting", m->wait_reason);
	if (m->stage[0])
		jsonl_add_str(o, "stage", m->stage);
	if (m->address[0])
		jsonl_add_str(o, "address", m->address);
	jsonl_add_int(o, "memory_mib", m->memory_mib);
	if (m->dir == MOVE_OUT) {
		jsonl_add_str(o, "transport", m->transport);
		jsonl_add_str(o, "codec", m->codec[0] ? m->codec : "auto");
		jsonl_add_bool(o, "encrypt", m->encrypt);
		jsonl_add_bool(o, "verify_memory", m->verify_memory);
		jsonl_add_bool(o, "postcopy", m->postcopy);
		if (m->copy_disk)
			jsonl_add_str(o, "disk_copy_path", m->disk_path);
		if (m->remove_source[0]) {
			jsonl_add_str(o, "remove_source_disk", m->remove_source);
			if (migrate_state_done(m->state))
				jsonl_add_bool(o, "source_disk_removed", m->source_removed);
		}
		if (m->check_only)
			jsonl_add_bool(o, "check_only", true);
		jsonl_add_int(o, "downtime_target_ms", m->downtime_ms);
		jsonl_add_int(o, "bandwidth_mibps", m->bandwidth_mibps);
		if (m->state == MV_MIGRATING && m->bw_applied >= 0)
			jsonl_add_int(o, "bandwidth_effective_mibps", m->bw_applied);
	}
	jsonl_add_int(o, "created_ms", m->created_ms);
	if (m->started_ms)
		jsonl_add_int(o, "started_ms", m->started_ms);
	if (m->ended_ms)
		jsonl_add_int(o, "ended_ms", m->ended_ms);
	if (m->error[0])
		jsonl_add_str(o, "error", m->error);
	if (m->code[0])
		jsonl_add_str(o, "code", m->code);
	if (full && m->progress)
		json_object_object_add(o, "progress", json_object_get(m->progress));
	return o;
}
