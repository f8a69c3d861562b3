/*
 * host.info: facts an administrator checks before placing VMs here, with
 * the host settings and the migrations in flight; host.set: change the
 * settings while ferryd runs (they persist in STATE_DIR/settings.json).
 */
#include "daemon/dispatch.h"

#include <unistd.h>

#include "common/jsonl.h"
#include "common/log.h"
#include "daemon/hostinfo.h"
#include "daemon/migrate.h"

enum verb_result verb_host_info(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { NULL };
	struct json_object *o, *counts;
	struct host_mem mem;
	struct err ke = { 0 };
	char host[256];
	int n[VM_NSTATES] = { 0 }, total = 0;
	long cpus;

	if (req_fields(r, fields) < 0)
		return VERB_FAIL;
	if (hostinfo_memory(&mem, &r->err) < 0) {
		r->code = "E_INTERNAL";
		return VERB_FAIL;
	}
	if (gethostname(host, sizeof(host)) < 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	cpus = sysconf(_SC_NPROCESSORS_ONLN);

	o = reply_ok();
	jsonl_add_str(o, "hostname", host);
	jsonl_add_str(o, "version", FERRY_VERSION);
	/* which ferryd this is, where a machine runs more than one */
	jsonl_add_str(o, "state_dir", r->d->state_dir);
	jsonl_add_str(o, "listen", r->d->listen_addr[0] ? r->d->listen_addr : "none");
	jsonl_add_int(o, "cpus", cpus > 0 ? cpus : 0);
	jsonl_add_int(o, "memory_total_mib", (int64_t)mem.total_mib);
	jsonl_add_int(o, "memory_free_mib", (int64_t)mem.free_mib);
	if (mem.cg.limited) {
		struct json_object *cg = json_object_new_object();
		jsonl_add_str(cg, "path", mem.cg.path);
		jsonl_add_int(cg, "limit_mib", (int64_t)mem.cg.limit_mib);
		jsonl_add_int(cg, "used_mib", (int64_t)mem.cg.used_mib);
		json_object_object_add(o, "memory_cgroup", cg);
	}
	jsonl_add_bool(o, "kvm_available", hostinfo_kvm_usable(&ke) == 0);
	if (ke.msg[0])
		jsonl_add_str(o, "kvm_error", ke.msg);
	jsonl_add_bool(o, "hardware_virt", hostinfo_hw_virt());
	json_object_object_add(o, "bridges", hostinfo_bridges());
	jsonl_add_str(o, "auth", r->d->key.set ? "hmac-sha256" : "none");
	if (r->d->key.set) {
		char fp[AUTH_FINGERPRINT_HEX];
		auth_fingerprint(&r->d->key, fp);
		jsonl_add_str(o, "key_file", r->d->key_path);
		jsonl_add_str(o, "key_fingerprint", fp);
		if (r->d->prev_key.set) {
			auth_fingerprint(&r->d->prev_key, fp);
			jsonl_add_str(o, "previous_key_file", r->d->prev_key_path);
			jsonl_add_str(o, "previous_key_fingerprint", fp);
		}
	}
	for (struct vm *vm = r->d->vms; vm; vm = vm->next) {
		if (vm->departed)
			continue; /* another host's VM now */
		if ((unsigned)vm->state < VM_NSTATES)
			n[vm->state]++;
		total++;
	}
	counts = json_object_new_object();
	jsonl_add_int(counts, "total", total);
	jsonl_add_int(counts, "running", n[VM_RUNNING]);
	jsonl_add_int(counts, "stopped", n[VM_STOPPED]);
	jsonl_add_int(counts, "crashed", n[VM_CRASHED]);
	jsonl_add_int(counts, "starting", n[VM_STARTING]);
	jsonl_add_int(counts, "stopping", n[VM_STOPPING]);
	jsonl_add_int(counts, "incoming", n[VM_INCOMING]);
	json_object_object_add(o, "vms", counts);
	json_object_object_add(o, "settings", settings_to_json(&r->d->settings));
	{
		struct json_object *mig = json_object_new_object();
		int queued = 0;
		for (struct move *m = r->d->moves; m; m = m->next)
			queued += m->state == MV_QUEUED;
		jsonl_add_int(mig, "active", migrate_active_count(r->d));
		jsonl_add_int(mig, "queued", queued);
		json_object_object_add(o, "migrations", mig);
	}
	*reply = o;
	return VERB_REPLY;
}

enum verb_result verb_host_set(struct req *r, struct json_object **reply)
{
	struct host_settings s = r->d->settings;
	struct json_object *o;

	if (settings_apply_json(&s, r->args, &r->err) < 0) {
		r->code = "E_BAD_ARG";
		return VERB_FAIL;
	}
	/* accepted, it would fail every move leaving this host */
	if (s.encrypt && !r->d->key.set)
		return req_fail(r, "E_BAD_ARG", "%s", FERRYD_ENCRYPT_NEEDS_KEY);
	/* On disk first: a setting that would not survive a restart is not
	 * reported as set. */
	if (settings_save(r->d->settings_path, &s, &r->err) < 0) {
		r->code = "E_INTERNAL";
		return VERB_FAIL;
	}
	r->d->settings = s;
	log_info("host settings changed: %s", jsonl_text(r->args));
	/* A raised limit lets queued moves start now. */
	migrate_tick(r->d);
	o = reply_ok();
	json_object_object_add(o, "settings", settings_to_json(&s));
	*reply = o;
	return VERB_REPLY;
}
