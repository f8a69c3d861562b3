/*
 * vm.* verb handlers: validate the request, check the registry and the
 * host, then act (directly, or by starting a worker state machine whose
 * reply comes later).
 */
#include "daemon/dispatch.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/failpoint.h"
#include "common/jsonl.h"
#include "common/log.h"
#include "common/sock.h"
#include "daemon/hostinfo.h"
#include "daemon/migrate.h"
#include "vmm/x86/cpuid.h"

/* A VM being moved belongs to the move until it ends. */
static int vm_not_moving(struct req *r, struct vm *vm)
{
	struct move *m = migrate_find_active(r->d, vm->def.name);
	if (!m)
		return 0;
	if (m->dir == MOVE_OUT)
		return req_fail(r, "E_BUSY", "VM %s is being live-migrated (move %s, %s); "
				"cancel it first: ferry migration cancel %s",
				vm->def.name, m->id, migrate_state_name(m->state), vm->def.name);
	return req_fail(r, "E_BUSY", "VM %s is being live-migrated (move %s, %s); "
			"it is not this host's until it arrives",
			vm->def.name, m->id, migrate_state_name(m->state));
}

/* For a verb that needs the VM running (console, verify): why it is not,
 * and what to do, which depends on the state — "start it" is no advice
 * for a VM that is arriving or already starting. */
static enum verb_result vm_not_running(struct req *r, struct vm *vm)
{
	switch (vm->state) {
	case VM_INCOMING:
		if (vm_not_moving(r, vm) < 0)
			return VERB_FAIL;
		return req_fail(r, "E_VM_NOT_RUNNING",
				"VM %s is arriving by a live migration; try again once it runs here",
				vm->def.name);
	case VM_STARTING:
	case VM_STOPPING:
		return req_fail(r, "E_VM_NOT_RUNNING", "VM %s is %s; try again once it is running",
				vm->def.name, registry_state_name(vm->state));
	default:
		return req_fail(r, "E_VM_NOT_RUNNING", "VM %s is %s; start it first (ferry vm start %s)",
				vm->def.name, registry_state_name(vm->state), vm->def.name);
	}
}

enum verb_result verb_vm_new(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "name", "memory_mib", "vcpus",
		"kernel", "initrd", "cmdline", "disk", "tap", "bridge", "mac", "cpu_mask",
		"dirty_tracker", NULL };
	struct vm_def def;
	struct host_mem mem;
	struct vm *vm;

	if (req_fields(r, fields) < 0)
		return VERB_FAIL;
	if (vmdef_from_json(r->args, &def, &r->code, &r->err) < 0)
		return VERB_FAIL;
	/* checked where it is given, not at the first start (as host set
	 * --cpu-baseline is) */
	if (def.cpu_mask[0]) {
		struct cpuid_mask mask;
		if (cpuid_parse_mask(def.cpu_mask, &mask, &r->err) < 0) {
			r->code = "E_BAD_ARG";
			err_prefix(&r->err, "--cpu-mask");
			return VERB_FAIL;
		}
	}
	if (req_name_free(r, def.name) < 0)
		return VERB_FAIL;
	/* Only for new VMs: a definition from before this check still loads. */
	if (def.mac[0] && !def.tap[0] && !def.bridge[0])
		return req_fail(r, "E_BAD_ARG", "--mac %s names the address of a NIC, and VM %s has "
				"none: give it one with --bridge BR or --tap IFNAME", def.mac, def.name);
	/* refused here, not at every start */
	if (registry_name_fits(r->d, def.name, &r->err) < 0) {
		r->code = "E_BAD_NAME";
		return VERB_FAIL;
	}
	if (vmdef_check_files(&def, &r->code, &r->err) < 0)
		return VERB_FAIL;
	if (hostinfo_memory(&mem, &r->err) < 0) {
		r->code = "E_INTERNAL";
		return VERB_FAIL;
	}
	if (def.memory_mib > mem.free_mib) {
		char free_text[512];
		return req_fail(r, "E_NO_MEMORY", "not enough memory: VM needs %u MiB, host has %s",
				def.memory_mib,
				hostinfo_free_text(&mem, free_text, sizeof(free_text)));
	}
	/* A marker left by an arrival that never completed would make this
	 * new VM look like that failed arrival at the next start. */
	if (migrate_marker_clear(r->d, def.name, &r->err) < 0 ||
	    vmdef_save(r->d->vms_dir, &def, &r->err) < 0) {
		r->code = "E_INTERNAL";
		return VERB_FAIL;
	}
	vm = registry_add(r->d, &def);
	if (!vm)
		return req_fail(r, "E_INTERNAL", "out of memory");
	log_info("VM %s: defined (%u MiB, %u vCPUs)", def.name, def.memory_mib,
		 def.vcpus);
	*reply = worker_status_json(r->d, vm, false);
	return VERB_REPLY;
}

enum verb_result verb_vm_start(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "name", NULL };
	struct vm *vm;

	if (req_fields(r, fields) < 0 || !(vm = req_vm(r)) || vm_not_moving(r, vm) < 0)
		return VERB_FAIL;
	if (worker_start(r->d, vm, r->c->id, &r->code, &r->err) < 0)
		return VERB_FAIL;
	return VERB_DEFER;
}

enum verb_result verb_vm_stop(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "name", "timeout_s", NULL };
	int64_t timeout_s = FERRYD_STOP_GRACE_MS / 1000;
	struct vm *vm;

	if (req_fields(r, fields) < 0)
		return VERB_FAIL;
	/* Shape of the request first, then the registry. */
	if (jsonl_get_int(r->args, "timeout_s", false, 0, 3600, &timeout_s,
			  &r->err) < 0) {
		r->code = "E_BAD_ARG";
		return VERB_FAIL;
	}
	if (!(vm = req_vm(r)) || vm_not_moving(r, vm) < 0)
		return VERB_FAIL;
	if (worker_stop(r->d, vm, r->c->id, (int)timeout_s * 1000, &r->code,
			&r->err) < 0)
		return VERB_FAIL;
	return VERB_DEFER;
}

enum verb_result verb_vm_list(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { NULL };
	struct json_object *o, *arr, *e;

	if (req_fields(r, fields) < 0)
		return VERB_FAIL;
	arr = json_object_new_array();
	for (struct vm *vm = r->d->vms; vm; vm = vm->next) {
		if (vm->departed)
			continue; /* another host's VM now */
		e = json_object_new_object();
		jsonl_add_str(e, "name", vm->def.name);
		jsonl_add_str(e, "state", registry_state_name(vm->state));
		jsonl_add_int(e, "memory_mib", vm->def.memory_mib);
		jsonl_add_int(e, "vcpus", vm->def.vcpus);
		jsonl_add_int(e, "pid", vm->pid);
		if (vm->pid && vm->started_ms)
			jsonl_add_int(e, "uptime_ms", ferryd_wall_ms() - vm->started_ms);
		json_object_array_add(arr, e);
	}
	o = reply_ok();
	json_object_object_add(o, "vms", arr);
	*reply = o;
	return VERB_REPLY;
}

enum verb_result verb_vm_status(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "name", NULL };
	struct vm *vm;

	if (req_fields(r, fields) < 0 || !(vm = req_vm(r)))
		return VERB_FAIL;
	/* a slow request on demand, for the test of one client's burst
	 * against another's request (tests/kvm/ferryd_basic.sh) */
	failpoint("ferryd.vm_status");
	*reply = worker_status_json(r->d, vm, true);
	return VERB_REPLY;
}

/* The test guest's page checker, run by the VM's worker with its vCPUs
 * paused. It reads all guest memory (1.3 s for 2.5 GiB here), so it runs
 * off the loop (peer.h) under a limit that grows with the VM: ferryd goes
 * on serving everyone else meanwhile, and a big VM is not cut off. */
enum verb_result verb_vm_verify(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "name", NULL };
	char sock[PATH_MAX];
	struct vm *vm;
	int limit_ms;

	(void)reply;
	if (req_fields(r, fields) < 0 || !(vm = req_vm(r)))
		return VERB_FAIL;
	if (!vm->pid || vm->state != VM_RUNNING)
		return vm_not_running(r, vm);
	/* One at a time: each pauses the guest to read all its memory, and
	 * a pile of them filled the worker's backlog ("queue is full"), so
	 * that a move of the VM failed at once. */
	if (vm->verifying)
		return req_fail(r, "E_BUSY", "VM %s is being checked already; try again when that "
				"check is done", vm->def.name);
	if (registry_path(r->d, vm, "sock", sock, sizeof(sock), &r->err) < 0)
		return req_fail(r, "E_WORKER", "VM %s: %s", vm->def.name, r->err.msg);
	limit_ms = FERRYD_VERIFY_MS + (int)(vm->def.memory_mib * FERRYD_VERIFY_MS_PER_MIB);
	if (peer_worker_call(r->d, sock, migrate_worker_cmd("verify"), limit_ms, r->c->id,
			     vm->def.name, NULL, PEER_VM_VERIFY, &r->err) < 0)
		return req_fail(r, "E_INTERNAL", "VM %s: %s", vm->def.name, r->err.msg);
	vm->verifying = true;
	return VERB_DEFER;
}

void verb_vm_verify_done(struct ferryd *d, struct peer_result *res)
{
	struct json_object *rep = res->reply;
	struct vm *vm = registry_find(d, res->vm);

	if (vm)
		vm->verifying = false;
	if (!rep) {
		char msg[sizeof(res->err.msg) + 96];
		snprintf(msg, sizeof(msg), "VM %s: %s", res->vm, res->err.msg);
		loop_send_to(d, res->client_id, reply_error("E_WORKER", msg));
		return;
	}
	res->reply = NULL; /* sent on: the caller puts only what is left */
	loop_send_to(d, res->client_id, rep);
}

enum verb_result verb_vm_delete(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "name", "force", NULL };
	bool force = false;
	struct vm *vm;
	struct json_object *o;

	if (req_fields(r, fields) < 0)
		return VERB_FAIL;
	if (jsonl_get_bool(r->args, "force", false, &force, &r->err) < 0) {
		r->code = "E_BAD_ARG";
		return VERB_FAIL;
	}
	if (!(vm = req_vm(r)) || vm_not_moving(r, vm) < 0)
		return VERB_FAIL;
	if (vm->op != OP_NONE)
		return req_fail(r, "E_BUSY", "VM %s is %s; wait for that to finish",
				vm->def.name, registry_state_name(vm->state));
	if (vm->pid) {
		if (!force)
			return req_fail(r, "E_VM_RUNNING",
					"VM %s is running; stop it first (ferry vm stop %s) or delete with --force",
					vm->def.name, vm->def.name);
		if (worker_stop(r->d, vm, r->c->id, FERRYD_STOP_GRACE_MS,
				&r->code, &r->err) < 0)
			return VERB_FAIL;
		vm->delete_after_stop = true;
		return VERB_DEFER;
	}
	if (registry_delete_files(r->d, vm, false, &r->err) < 0) {
		r->code = "E_INTERNAL";
		return VERB_FAIL;
	}
	o = reply_ok();
	jsonl_add_str(o, "name", vm->def.name);
	jsonl_add_bool(o, "deleted", true);
	log_info("VM %s: deleted", vm->def.name);
	registry_remove(r->d, vm);
	*reply = o;
	return VERB_REPLY;
}

enum verb_result verb_vm_console(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "name", NULL };
	char path[PATH_MAX];
	struct json_object *o;
	struct vm *vm;
	int fd;

	if (req_fields(r, fields) < 0 || !(vm = req_vm(r)))
		return VERB_FAIL;
	if (vm->state != VM_RUNNING)
		return vm_not_running(r, vm);
	if (registry_path(r->d, vm, "console", path, sizeof(path), &r->err) < 0) {
		r->code = "E_INTERNAL";
		return VERB_FAIL;
	}
	fd = sock_unix_connect_nowait(path, &r->err);
	if (fd < 0) {
		r->code = "E_NO_CONSOLE";
		err_prefix(&r->err, "VM %s has no console", vm->def.name);
		return VERB_FAIL;
	}
	o = reply_ok();
	jsonl_add_str(o, "name", vm->def.name);
	jsonl_add_bool(o, "console", true);
	/* Reply first, then every later byte on this connection is console. */
	loop_send(r->c, o);
	if (loop_client_console(r->c, fd, &r->err) < 0) {
		close(fd);
		r->c->closing = true;
		log_warn("console for %s: %s", vm->def.name, r->err.msg);
	}
	return VERB_SENT;
}
