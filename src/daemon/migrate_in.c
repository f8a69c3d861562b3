/*
 * The destination's half of a move. migration.prepare registers the VM
 * (definition on disk plus a run/NAME.incoming marker, state "incoming")
 * and starts a skeleton worker with --incoming; this file follows that
 * worker: when it runs the VM, the marker goes and the VM is this host's;
 * when it exits first (code 5: the migration failed or was aborted), the
 * VM is removed again, as if it had never come.
 */
#include "daemon/migrate.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/durable.h"
#include "common/jsonl.h"
#include "common/log.h"
#include "daemon/statefile.h"
#include "migration/format.h"

int migrate_marker_path(struct ferryd *d, const char *name, char *buf,
			size_t cap)
{
	int n = snprintf(buf, cap, "%s/%s.incoming", d->run_dir, name);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int migrate_marker_clear(struct ferryd *d, const char *name, struct err *e)
{
	char path[PATH_MAX];
	if (migrate_marker_path(d, name, path, sizeof(path)) < 0)
		return err_set(e, "path too long for VM %s's marker", name);
	if (unlink(path) < 0) {
		if (errno == ENOENT)
			return 0;
		return err_sys(e, "removing %s", path);
	}
	/* back after a power loss, it would make the VM an arrival that failed */
	return durable_dir_sync(path, e);
}

/* A marker whose VM has no definition is left from a prepare that died
 * between the two writes (or a drop that died between its two removals);
 * kept, it would claim the next VM of that name, defined later by hand,
 * as a failed arrival and delete it at a restart. A worker's "resumed"
 * mark without a marker is left from an arrival that died between its
 * two removals. */
static void migrate_marker_sweep(struct ferryd *d)
{
	DIR *dir = opendir(d->run_dir);
	struct dirent *de;
	if (!dir)
		return;
	while ((de = readdir(dir))) {
		static const char *const suffixes[] = { ".incoming", ".resumed" };
		char name[256], marker[PATH_MAX], path[PATH_MAX];
		size_t len = strlen(de->d_name), sl = 0;
		struct err e = { 0 };
		int k = -1;
		for (int i = 0; i < 2; i++) {
			sl = strlen(suffixes[i]);
			if (len > sl && strcmp(de->d_name + len - sl, suffixes[i]) == 0) {
				k = i;
				break;
			}
		}
		if (k < 0 || len - sl >= sizeof(name))
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(len - sl), de->d_name);
		if (k == 0) {
			if (registry_find(d, name))
				continue;
			log_info("removing %s/%s: no VM of that name is defined here", d->run_dir,
				 de->d_name);
			if (migrate_marker_clear(d, name, &e) < 0)
				log_warn("%s", e.msg);
			continue;
		}
		if (migrate_marker_path(d, name, marker, sizeof(marker)) < 0 ||
		    access(marker, F_OK) == 0 ||
		    snprintf(path, sizeof(path), "%s/%s", d->run_dir, de->d_name) >= (int)sizeof(path))
			continue;
		log_info("removing %s: no arrival of VM %s is under way", path, name);
		if (unlink(path) < 0)
			log_warn("removing %s: %s", path, strerror(errno));
	}
	closedir(dir);
}

static struct move *migrate_in_find(struct ferryd *d, struct vm *vm)
{
	for (struct move *m = d->moves; m; m = m->next)
		if (m->dir == MOVE_IN && strcmp(m->vm, vm->def.name) == 0)
			return m;
	return NULL;
}

struct move *migrate_incoming_new(struct ferryd *d, struct vm *vm,
				  const char *id, const char *source)
{
	struct move *m = migrate_move_alloc(d, MOVE_IN, id);
	if (!m)
		return NULL;
	m->state = MV_PREPARING;
	snprintf(m->vm, sizeof(m->vm), "%s", vm->def.name);
	snprintf(m->peer, sizeof(m->peer), "%s", source);
	snprintf(m->address, sizeof(m->address), "%s", vm->incoming_addr);
	snprintf(m->stage, sizeof(m->stage), "listening");
	m->memory_mib = vm->def.memory_mib;
	m->started_ms = m->created_ms;
	return m;
}

/* Forget an incoming VM that did not arrive: files, marker, registry. */
static void migrate_in_drop(struct ferryd *d, struct vm *vm)
{
	/* The copy of its disk this move made (prepare saw no file there),
	 * in case its worker could not remove it: the guest never ran on it
	 * (migrate_in_arrived clears the flag of an arrival that ran here;
	 * only the marker of an arrival sets it at a restart). */
	if (vm->disk_copy && vm->def.disk[0]) {
		struct err e = { 0 };
		if (unlink(vm->def.disk) == 0) {
			log_info("VM %s did not arrive: removed the copy of its disk, %s", vm->def.name,
				 vm->def.disk);
			if (durable_dir_sync(vm->def.disk, &e) < 0)
				log_warn("%s", e.msg);
		} else if (errno != ENOENT) {
			log_warn("VM %s did not arrive: removing the copy of its disk, %s: %s",
				 vm->def.name, vm->def.disk, strerror(errno));
		}
	}
	/* registry_delete_files takes the definition before the marker: a
	 * crash between the two leaves a marker alone (swept at start), never
	 * a definition alone, which would pass for a VM of this host's while
	 * it runs on the source. Its worker's log says why it did not arrive:
	 * kept. */
	registry_forget(d, vm);
}

/* Did the incoming worker run the VM here? It creates run/NAME.resumed
 * (--resumed-file) before the vCPUs first run, so a worker that dies
 * before ferryd has seen it running still leaves the answer behind. */
static bool migrate_in_resumed(struct ferryd *d, struct vm *vm)
{
	char path[PATH_MAX];
	struct err e = { 0 };
	return registry_path(d, vm, "resumed", path, sizeof(path), &e) == 0 &&
	       access(path, F_OK) == 0;
}

/* The VM ran here: it is this host's, running or not (gone is a worker
 * that exited after it ran the VM: the VM then crashed here, and must be
 * started here again, never on the source, whose copy is older). */
static void migrate_in_arrived(struct ferryd *d, struct vm *vm, struct move *m, const char *gone)
{
	char path[PATH_MAX];
	struct err e = { 0 };

	vm->incoming = false;
	vm->disk_copy = false; /* the copy is the VM's disk now: never removed as an arrival's */
	if (!gone)
		vm->state = VM_RUNNING;
	vm->move_id[0] = '\0';
	/* Removing the marker is the moment the definition becomes ours;
	 * the worker's mark has said so meanwhile, and goes after it. */
	if (migrate_marker_clear(d, vm->def.name, &e) < 0)
		log_warn("VM %s: %s", vm->def.name, e.msg);
	if (registry_path(d, vm, "resumed", path, sizeof(path), &e) == 0 && unlink(path) < 0 &&
	    errno != ENOENT)
		log_warn("removing %s: %s", path, strerror(errno));
	if (gone)
		log_warn("VM %s arrived by live migration and ran here, then its worker %s: "
			 "it is this host's; start it again here", vm->def.name, gone);
	else
		log_info("VM %s arrived by live migration and runs here", vm->def.name);
	if (m) {
		char msg[sizeof(vm->last_exit) + 96];
		/* the last stage a poll saw may be "listening" */
		snprintf(m->stage, sizeof(m->stage), "running");
		snprintf(msg, sizeof(msg), "arrived and ran here, then its worker %s", gone ? gone : "");
		migrate_move_end(d, m, MV_COMPLETED, NULL, gone ? msg : NULL);
	}
}

/* Ask the incoming worker how it goes, off the loop (PEER_IN_POLL): a
 * worker that hangs must not hold every client of this ferryd. It holds
 * the answer up to a poll interval, and gives it as soon as the VM runs
 * here: the source, asking us whether it does, hears it at once. */
void migrate_in_tick(struct ferryd *d, struct move *m, long long now)
{
	struct vm *vm = registry_find(d, m->vm);
	struct json_object *req;
	char sock[PATH_MAX];
	struct err e = { 0 };

	if (m->call_pending || now < m->next_ms)
		return;
	m->next_ms = now + MIGRATE_POLL_MS;
	if (!vm || !vm->incoming) {
		migrate_move_end(d, m, MV_FAILED, "E_INTERNAL", "the incoming VM vanished");
		return;
	}
	if (vm->op != OP_NONE || !vm->pid) {
		/* still starting, or its exit is being handled: the first ask
		 * goes soon after the start, so that it is held when the VM
		 * begins to run here */
		m->next_ms = now + MIGRATE_IN_RETRY_MS;
		return;
	}
	if (registry_path(d, vm, "sock", sock, sizeof(sock), &e) < 0)
		return;
	req = migrate_worker_poll_cmd("status");
	if (peer_worker_call(d, sock, req, FERRYD_CTL_TIMEOUT_MS, 0, m->vm, m->id, PEER_IN_POLL,
			     &e) < 0)
		return;
	m->call_pending = true;
}

void migrate_in_polled(struct ferryd *d, struct move *m, struct peer_result *r)
{
	struct vm *vm = registry_find(d, m->vm);
	struct json_object *st = r->reply, *mig;
	const char *state = NULL, *stage = NULL;
	long long now = ferryd_now_ms();
	struct err e = { 0 };

	m->call_pending = false;
	/* its exit, if it came meanwhile, has decided already */
	if (!st || !vm || !vm->incoming || !vm->pid || vm->op != OP_NONE)
		return;
	if (json_object_object_get_ex(st, "migration", &mig) &&
	    jsonl_get_str(mig, "stage", false, &stage, &e) == 0 && stage) {
		/* what has arrived, for migration list/status/history here */
		json_object_put(m->progress);
		m->progress = json_object_get(mig);
	}
	if (jsonl_get_str(st, "state", false, &state, &e) == 0 && state &&
	    strcmp(state, "running") == 0) {
		migrate_in_arrived(d, vm, m, NULL);
		return;
	}
	if (stage)
		snprintf(m->stage, sizeof(m->stage), "%s", stage);
	m->state = MV_MIGRATING;
	if (m->deadline && now >= m->deadline && strcmp(m->stage, "listening") == 0 &&
	    !m->cancel_requested) {
		/* Re-adopted at a restart with no source connected since: the
		 * prepare died with this ferryd, and the source's abort with it.
		 * Held, it would keep the name (refusing the next try) and the
		 * memory until the worker's own 120 s limit. */
		m->cancel_requested = m->orphan = true;
		snprintf(m->abort_reason, sizeof(m->abort_reason),
			 "no source connected within %d s of this ferryd's restart",
			 MIGRATE_ORPHAN_LISTEN_MS / 1000);
		log_info("VM %s: %s; removing it", vm->def.name, m->abort_reason);
		worker_kill(vm);
	}
}

bool migrate_in_worker_exited(struct ferryd *d, struct vm *vm, int exit_code,
			      uint64_t start_waiter)
{
	struct move *m = migrate_in_find(d, vm);
	char tail[1024], msg[2048], *last;

	if (migrate_in_resumed(d, vm)) {
		/* Past the point of no return before ferryd saw it running:
		 * the VM is ours, and crashed (the caller records the exit). */
		migrate_in_arrived(d, vm, m, vm->last_exit);
		return false;
	}
	worker_log_tail(d, vm, 3, tail, sizeof(tail));
	/* The worker's last line carries its reason. */
	last = strrchr(tail, '\n');
	last = last ? last + 1 : tail;
	if (start_waiter) {
		snprintf(msg, sizeof(msg), "could not start the incoming worker for VM %s (%s): %s",
			 vm->def.name, vm->last_exit, tail);
		loop_send_to(d, start_waiter, reply_error("E_START_FAILED", msg));
	}
	snprintf(msg, sizeof(msg), "incoming worker %s: %s", vm->last_exit,
		 last[0] ? last : "(no log)");
	log_info("VM %s: incoming migration ended without the VM: %s", vm->def.name, msg);
	if (m) {
		/* Called off by the source either way: its worker's ABORT
		 * reached ours first (6, the reason in its last line), or its
		 * ferryd's migration.abort did (the reason in the request; none
		 * from a ferryd before that field). */
		if (exit_code == 6) {
			/* the source's own words follow mig_get_abort's phrase */
			const char *why = strstr(last, MIG_ABORT_PHRASE);
			snprintf(msg, sizeof(msg), "called off by the source host: %s",
				 why ? why + strlen(MIG_ABORT_PHRASE) : last);
			migrate_move_end(d, m, MV_CANCELLED, "E_CANCELLED", msg);
		} else if (m->cancel_requested) {
			snprintf(msg, sizeof(msg), "%s%s%s",
				 m->orphan ? "given up here" : "called off by the source host",
				 m->abort_reason[0] ? ": " : "", m->abort_reason);
			migrate_move_end(d, m, MV_CANCELLED, "E_CANCELLED", msg);
		} else {
			migrate_move_end(d, m, MV_FAILED,
					 exit_code == 5 ? "E_MIGRATE_FAILED" : "E_INTERNAL", msg);
		}
	}
	migrate_in_drop(d, vm);
	return true;
}

int migrate_abort_incoming(struct ferryd *d, const char *id, const char *name,
			   const char *reason, const char **code, struct err *e)
{
	struct vm *vm = name ? registry_find(d, name) : NULL;
	struct move *m = NULL;

	for (struct move *x = d->moves; x; x = x->next)
		if (x->dir == MOVE_IN && ((id && strcmp(x->id, id) == 0) ||
					  (!id && name && strcmp(x->vm, name) == 0)))
			m = x;
	if (m && !vm)
		vm = registry_find(d, m->vm);
	/* Nothing left to abort (never came, already gone), or the VM already
	 * runs here, which no abort may undo: aborting is idempotent. */
	if (!vm || !vm->incoming)
		return 0;
	if (id && vm->move_id[0] && strcmp(vm->move_id, id) != 0) {
		*code = "E_NO_MIGRATION";
		return err_set(e, "VM %s is arriving through another move (%s)", vm->def.name,
			       vm->move_id);
	}
	if (m) {
		m->cancel_requested = true;
		snprintf(m->abort_reason, sizeof(m->abort_reason), "%s", reason ? reason : "");
		/* it ends up in the history, one line per move */
		log_text_clean(m->abort_reason);
	}
	log_info("VM %s: incoming migration called off by the source%s%s", vm->def.name,
		 reason ? ": " : "", reason ? reason : "");
	if (vm->pid)
		worker_kill(vm);
	else
		migrate_in_drop(d, vm);
	return 0;
}

/* At start: an arrival that ended while ferryd was down, into the
 * history with the rest. */
static void migrate_in_recovered(struct ferryd *d, struct vm *vm, const char *id,
				 const char *source, const char *gone)
{
	struct move *m = migrate_incoming_new(d, vm, id ? id : "mv-unknown",
					      source ? source : "unknown");
	migrate_in_arrived(d, vm, m, gone);
}

void migrate_recover_incoming(struct ferryd *d)
{
	migrate_marker_sweep(d);
	for (struct vm *vm = d->vms, *next; vm; vm = next) {
		char marker[PATH_MAX];
		struct json_object *mk, *st;
		const char *id = NULL, *source = NULL, *state = NULL;
		struct err e = { 0 };
		bool missing = false;

		next = vm->next;
		if (migrate_marker_path(d, vm->def.name, marker, sizeof(marker)) < 0)
			continue;
		mk = statefile_read_json(marker, &missing, &e);
		if (!mk && missing)
			continue;
		if (mk) {
			if (jsonl_get_str(mk, "id", false, &id, &e) < 0)
				id = NULL;
			if (jsonl_get_str(mk, "source", false, &source, &e) < 0)
				source = NULL;
			if (jsonl_get_bool(mk, "disk_copy", false, &vm->disk_copy, &e) < 0)
				vm->disk_copy = false;
		}
		/* a worker worker_adopt found silent is not waited on again */
		st = vm->pid ? migrate_worker_request(d, vm, migrate_worker_cmd("status"), &e) : NULL;
		if (st && jsonl_get_str(st, "state", false, &state, &e) == 0 && state &&
		    strcmp(state, "running") == 0) {
			migrate_in_recovered(d, vm, id, source, NULL);
		} else if (migrate_in_resumed(d, vm) && vm->pid) {
			/* ran here; its worker is alive but does not answer
			 * (worker_adopt's verdict stands: watched, not running) */
			enum vm_state adopted = vm->state;
			migrate_in_recovered(d, vm, id, source, NULL);
			vm->state = adopted;
		} else if (migrate_in_resumed(d, vm)) {
			/* ran here, then its worker ended while ferryd was down */
			vm->state = VM_CRASHED;
			snprintf(vm->last_exit, sizeof(vm->last_exit),
				 "exited while ferryd was not running");
			migrate_in_recovered(d, vm, id, source, vm->last_exit);
		} else if (st && state && strcmp(state, "incoming") == 0) {
			struct json_object *mig;
			const char *stage = NULL;
			struct move *m;
			vm->incoming = true;
			vm->state = VM_INCOMING;
			snprintf(vm->move_id, sizeof(vm->move_id), "%s", id ? id : "");
			m = migrate_incoming_new(d, vm, id ? id : "mv-unknown",
						 source ? source : "unknown");
			if (m) {
				m->state = MV_MIGRATING;
				/* no source yet: one is due at once after a prepare */
				if (json_object_object_get_ex(st, "migration", &mig) &&
				    jsonl_get_str(mig, "stage", false, &stage, &e) == 0 && stage &&
				    strcmp(stage, "listening") == 0)
					m->deadline = ferryd_now_ms() + MIGRATE_ORPHAN_LISTEN_MS;
			}
			log_info("VM %s: still arriving (move %s); following it again",
				 vm->def.name, id ? id : "?");
		} else {
			struct move *m = migrate_incoming_new(d, vm, id ? id : "mv-unknown",
							      source ? source : "unknown");
			log_info("VM %s: its incoming migration ended while ferryd was down; removing it",
				 vm->def.name);
			if (m)
				migrate_move_end(d, m, MV_FAILED, "E_MIGRATE_FAILED",
						 "the incoming worker ended while ferryd was not running, "
						 "before the VM ran here");
			if (vm->pid)
				worker_kill(vm);
			vm->pid = 0;
			migrate_in_drop(d, vm);
		}
		json_object_put(st);
		json_object_put(mk);
	}
}
