/* host.info: facts an administrator checks before placing VMs here. */
#include "daemon/dispatch.h"

#include <unistd.h>

#include "common/jsonl.h"
#include "daemon/hostinfo.h"

enum verb_result verb_host_info(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { NULL };
	struct json_object *o, *counts;
	struct host_mem mem;
	struct err ke = { 0 };
	char host[256];
	int n[5] = { 0 }, total = 0;
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
	jsonl_add_int(o, "cpus", cpus > 0 ? cpus : 0);
	jsonl_add_int(o, "memory_total_mib", (int64_t)mem.total_mib);
	jsonl_add_int(o, "memory_free_mib", (int64_t)mem.free_mib);
	jsonl_add_bool(o, "kvm_available", hostinfo_kvm_usable(&ke) == 0);
	if (ke.msg[0])
		jsonl_add_str(o, "kvm_error", ke.msg);
	jsonl_add_bool(o, "hardware_virt", hostinfo_hw_virt());
	for (struct vm *vm = r->d->vms; vm; vm = vm->next) {
		if ((unsigned)vm->state < 5)
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
	json_object_object_add(o, "vms", counts);
	*reply = o;
	return VERB_REPLY;
}
