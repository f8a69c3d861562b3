/*
 * migration.* verbs (and vm.move): the source side queues moves and reports
 * on them; the destination side prepares and aborts incoming VMs at the
 * source ferryd's request. Validation happens here, up front, so that a
 * move that cannot work is refused with its reason before anything moves.
 */
#include "daemon/dispatch.h"

#include <errno.h>
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
#include "daemon/hostinfo.h"
#include "daemon/migrate.h"
#include "daemon/netaddr.h"
#include "daemon/statefile.h"
#include "daemon/status_hold.h"
#include "migration/diskcopy.h"
#include "migration/format.h"

#define MIGRATION_HISTORY_DEFAULT 50
#define MIGRATION_START_MAX_VMS 256

static enum verb_result bad_arg(struct req *r)
{
	r->code = "E_BAD_ARG";
	return VERB_FAIL;
}

/* The VMs a migration.start names: "name", "names", or "all_running". */
static int start_collect(struct req *r, struct vm **vms, int *n)
{
	struct json_object *names = NULL;
	const char *name = NULL;
	bool all = false;

	*n = 0;
	if (jsonl_get_str(r->args, "name", false, &name, &r->err) < 0 ||
	    jsonl_get_bool(r->args, "all_running", false, &all, &r->err) < 0)
		return bad_arg(r);
	if (json_object_object_get_ex(r->args, "names", &names) &&
	    !json_object_is_type(names, json_type_array))
		return req_fail(r, "E_BAD_ARG", "field 'names' must be a list of VM names");
	if (!name && !names && !all)
		return req_fail(r, "E_BAD_ARG", "which VMs? give 'name', 'names' or 'all_running'");
	if (all) {
		for (struct vm *vm = r->d->vms; vm && *n < MIGRATION_START_MAX_VMS; vm = vm->next)
			if (vm->state == VM_RUNNING && !vm->incoming &&
			    !migrate_find_active(r->d, vm->def.name))
				vms[(*n)++] = vm;
		return 0;
	}
	for (size_t i = 0; ; i++) {
		const char *nm;
		struct vm *vm;
		if (name && i == 0) {
			nm = name;
		} else {
			size_t k = name ? i - 1 : i;
			struct json_object *it;
			if (!names || k >= json_object_array_length(names))
				break;
			it = json_object_array_get_idx(names, k);
			if (!json_object_is_type(it, json_type_string))
				return req_fail(r, "E_BAD_ARG", "field 'names' must be a list of VM names");
			nm = json_object_get_string(it);
		}
		if (*n >= MIGRATION_START_MAX_VMS)
			return req_fail(r, "E_BAD_ARG", "at most %d VMs per request",
					MIGRATION_START_MAX_VMS);
		vm = req_vm_named(r, nm);
		if (!vm)
			return -1;
		for (int j = 0; j < *n; j++)
			if (vms[j] == vm)
				return req_fail(r, "E_BAD_ARG", "VM %s is named twice", nm);
		if (migrate_find_active(r->d, nm))
			return req_fail(r, "E_BUSY", "VM %s is already being moved (see: ferry migration status %s)",
					nm, nm);
		if (vm->state != VM_RUNNING || vm->incoming)
			return req_fail(r, "E_VM_NOT_RUNNING",
					"VM %s is %s: only a running VM can be live-migrated (start it first, or move it while stopped by defining it on the destination)",
					nm, registry_state_name(vm->state));
		vms[(*n)++] = vm;
	}
	return 0;
}

/* The copy of a disk in disk_dir: the image's own file name there
 * (-1 if it does not fit in cap). */
static int start_copy_path(const char *dir, const char *disk, char *out, size_t cap)
{
	const char *base = strrchr(disk, '/');
	size_t dl = strlen(dir);
	int n;

	base = base ? base + 1 : disk;
	while (dl > 1 && dir[dl - 1] == '/') /* "/srv/images/" as "/srv/images" */
		dl--;
	n = snprintf(out, cap, "%.*s%s%s", (int)dl, dir, dl == 1 ? "" : "/", base);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* disk_dir: each VM's copy goes there under its image's file name; two
 * images of one name would be one file, refused before any move starts. */
static int start_copy_paths(struct req *r, struct vm **vms, int n, const char *dir)
{
	char a[PATH_MAX], b[PATH_MAX];

	for (int i = 0; i < n; i++) {
		if (!vms[i]->def.disk[0])
			continue;
		if (start_copy_path(dir, vms[i]->def.disk, a, sizeof(a)) < 0 ||
		    strlen(a) >= sizeof(((struct move *)0)->disk_path))
			return req_fail(r, "E_BAD_ARG", "VM %s's copy in %.200s: the path is too long",
					vms[i]->def.name, dir);
		for (int j = 0; j < i; j++) {
			if (!vms[j]->def.disk[0])
				continue;
			start_copy_path(dir, vms[j]->def.disk, b, sizeof(b));
			if (strcmp(a, b) == 0)
				return req_fail(r, "E_BAD_ARG", "VMs %s and %s both have a disk named %s: "
						"their copies would be one file; move them apart, "
						"or one with --disk-path",
						vms[j]->def.name, vms[i]->def.name, strrchr(a, '/') + 1);
		}
	}
	return 0;
}

enum verb_result verb_migration_start(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "name", "names", "all_running",
		"destination", "downtime_ms", "bandwidth_mibps", "transport", "codec", "max_duration_s",
		"on_timeout", "encrypt", "verify_memory", "copy_disk", "disk_path", "disk_dir",
		"remove_source_disk", "check_only", "postcopy", NULL };
	struct host_settings *s = &r->d->settings;
	const char *dest = NULL, *transport = s->transport;
	/* bandwidth_mibps is the move's own limit; the host's limit is not a
	 * default for it but a budget all moves share (migrate_bw.c). */
	int64_t downtime = s->downtime_ms, bw = 0, maxdur = 0;
	const char *on_timeout = "switchover", *codec = "auto", *disk_path = NULL, *disk_dir = NULL;
	bool encrypt = s->encrypt, verify_memory = s->verify_memory, copy_disk = false, check_only = false;
	bool remove_source = false, postcopy = false;
	struct json_object *o, *arr;
	struct move *moves[MIGRATION_START_MAX_VMS];
	struct vm *vms[MIGRATION_START_MAX_VMS];
	char host[256], port[16];
	int n = 0;

	if (req_fields(r, fields) < 0)
		return VERB_FAIL;
	if (jsonl_get_str(r->args, "destination", true, &dest, &r->err) < 0 ||
	    jsonl_get_int(r->args, "downtime_ms", false, 1, 600000, &downtime, &r->err) < 0 ||
	    jsonl_get_int(r->args, "bandwidth_mibps", false, 0, 1 << 20, &bw, &r->err) < 0 ||
	    jsonl_get_str(r->args, "transport", false, &transport, &r->err) < 0 ||
	    jsonl_get_str(r->args, "codec", false, &codec, &r->err) < 0 ||
	    jsonl_get_int(r->args, "max_duration_s", false, 0, 86400, &maxdur, &r->err) < 0 ||
	    jsonl_get_str(r->args, "on_timeout", false, &on_timeout, &r->err) < 0 ||
	    jsonl_get_bool(r->args, "encrypt", false, &encrypt, &r->err) < 0 ||
	    jsonl_get_bool(r->args, "verify_memory", false, &verify_memory, &r->err) < 0 ||
	    jsonl_get_bool(r->args, "copy_disk", false, &copy_disk, &r->err) < 0 ||
	    jsonl_get_str(r->args, "disk_path", false, &disk_path, &r->err) < 0 ||
	    jsonl_get_str(r->args, "disk_dir", false, &disk_dir, &r->err) < 0 ||
	    jsonl_get_bool(r->args, "remove_source_disk", false, &remove_source, &r->err) < 0 ||
	    jsonl_get_bool(r->args, "check_only", false, &check_only, &r->err) < 0 ||
	    jsonl_get_bool(r->args, "postcopy", false, &postcopy, &r->err) < 0)
		return bad_arg(r);
	/* The host's verify_memory yields to a post-copy asked for: the
	 * digest is checked before the VM runs there, when part of its
	 * memory is still here. Both asked for is a contradiction. */
	if (postcopy && verify_memory && json_object_object_get_ex(r->args, "verify_memory", NULL))
		return req_fail(r, "E_BAD_ARG", "postcopy and verify_memory do not go together: the "
				"digest is checked before the VM runs there, and in post-copy part of its "
				"memory is still here then");
	if (postcopy)
		verify_memory = false;
	if ((disk_path || disk_dir) && !copy_disk)
		return req_fail(r, "E_BAD_ARG", "%s is where the disk's copy goes: it needs copy_disk",
				disk_path ? "disk_path" : "disk_dir");
	if (remove_source && !copy_disk)
		return req_fail(r, "E_BAD_ARG", "remove_source_disk removes the image a copy replaced: "
				"it needs copy_disk (with shared storage the image is the VM's disk there)");
	if (disk_path && disk_dir)
		return req_fail(r, "E_BAD_ARG", "disk_path names the copy, disk_dir its directory: give one");
	if (disk_dir && disk_dir[0] != '/')
		return req_fail(r, "E_BAD_ARG", "disk_dir must be an absolute path");
	if (disk_path && (disk_path[0] != '/' || strlen(disk_path) >= sizeof(((struct move *)0)->disk_path)))
		return req_fail(r, "E_BAD_ARG", "disk_path must be an absolute path of at most %zu bytes",
				sizeof(((struct move *)0)->disk_path) - 1);
	if (encrypt && !r->d->key.set)
		return req_fail(r, "E_BAD_ARG", "%s", FERRYD_ENCRYPT_NEEDS_KEY);
	if (strcmp(on_timeout, "switchover") != 0 && strcmp(on_timeout, "cancel") != 0)
		return req_fail(r, "E_BAD_ARG", "on_timeout '%.32s' is not switchover or cancel", on_timeout);
	if (strlen(dest) >= sizeof(((struct move *)0)->peer) ||
	    sock_split_hostport(dest, "7450", host, sizeof(host), port, sizeof(port), &r->err) < 0)
		return req_fail(r, "E_BAD_ARG", "destination '%.80s' is not HOST or HOST:PORT", dest);
	if (strcmp(transport, "tcp") != 0 && strcmp(transport, "compression") != 0 &&
	    strcmp(transport, "multichannel") != 0)
		return req_fail(r, "E_BAD_ARG", "transport '%.32s' is not one of tcp, compression, multichannel",
				transport);
	if (strcmp(codec, "auto") != 0 && strcmp(codec, "lz4") != 0 && strcmp(codec, "zstd") != 0)
		return req_fail(r, "E_BAD_ARG", "codec '%.32s' is not one of auto, lz4, zstd", codec);
	/* A chosen codec asks for compression: it overrides the host's tcp
	 * default, but not a tcp transport asked for in the same request. */
	if (strcmp(codec, "auto") != 0 && strcmp(transport, "tcp") == 0) {
		if (json_object_object_get_ex(r->args, "transport", NULL))
			return req_fail(r, "E_BAD_ARG", "codec %s compresses memory, and the tcp transport "
					"sends it as it is: use transport compression or multichannel", codec);
		transport = "compression";
	}
	if (start_collect(r, vms, &n) < 0)
		return VERB_FAIL;
	if (disk_path && n > 1)
		return req_fail(r, "E_BAD_ARG", "disk_path names one file: give it for one VM at a time "
				"(without it each copy goes to its disk's own path)");
	/* A VM without a disk has nothing to copy: it moves as any other
	 * (an evacuation copies the disks of those that have one). */
	if (disk_path && n == 1 && !vms[0]->def.disk[0])
		return req_fail(r, "E_BAD_ARG", "VM %s has no disk to copy to %s", vms[0]->def.name,
				disk_path);
	if (disk_dir && start_copy_paths(r, vms, n, disk_dir) < 0)
		return VERB_FAIL;
	for (int i = 0; i < n; i++) {
		moves[i] = migrate_enqueue(r->d, vms[i], dest, (int)downtime, (int)bw,
					   transport, &r->err);
		if (!moves[i])
			return req_fail(r, "E_INTERNAL", "%s", r->err.msg);
		moves[i]->max_duration_s = (int)maxdur;
		moves[i]->cancel_on_timeout = strcmp(on_timeout, "cancel") == 0;
		moves[i]->encrypt = encrypt;
		moves[i]->verify_memory = verify_memory;
		moves[i]->postcopy = postcopy;
		moves[i]->check_only = check_only;
		moves[i]->copy_disk = copy_disk && vms[i]->def.disk[0];
		if (moves[i]->copy_disk && disk_dir)
			start_copy_path(disk_dir, vms[i]->def.disk, moves[i]->disk_path,
					sizeof(moves[i]->disk_path));
		else if (moves[i]->copy_disk)
			snprintf(moves[i]->disk_path, sizeof(moves[i]->disk_path), "%s",
				 disk_path ? disk_path : vms[i]->def.disk);
		if (moves[i]->copy_disk && remove_source && !check_only)
			snprintf(moves[i]->remove_source, sizeof(moves[i]->remove_source), "%s",
				 vms[i]->def.disk);
		if (strcmp(codec, "auto") != 0)
			snprintf(moves[i]->codec, sizeof(moves[i]->codec), "%s", codec);
	}
	migrate_store_save(r->d);
	/* Start what fits now, so the reply says which moves wait. Those
	 * that end at once must outlive the tick for the reply. */
	for (int i = 0; i < n; i++)
		moves[i]->pinned = true;
	migrate_tick(r->d);
	o = reply_ok();
	arr = json_object_new_array();
	for (int i = 0; i < n; i++) {
		json_object_array_add(arr, migrate_move_json(r->d, moves[i], false));
		moves[i]->pinned = false;
	}
	migrate_trim_recent(r->d);
	json_object_object_add(o, "moves", arr);
	*reply = o;
	return VERB_REPLY;
}

/* Memory promised to moves arriving here that is not allocated yet. What
 * an incoming worker has already mapped (received pages, or all of it with
 * --prealloc) is gone from MemAvailable: counting it here too would refuse
 * a move the host can hold. */
static uint64_t prepare_promised_mib(struct ferryd *d)
{
	uint64_t sum = 0;
	for (struct move *m = d->moves; m; m = m->next) {
		const struct vm *vm;
		uint64_t mapped = 0;
		if (m->dir != MOVE_IN || migrate_state_done(m->state))
			continue;
		vm = registry_find(d, m->vm);
		if (vm && vm->incoming && vm->pid > 0)
			mapped = hostinfo_proc_shmem_mib((int)vm->pid);
		sum += m->memory_mib > mapped ? m->memory_mib - mapped : 0;
	}
	return sum;
}

static int prepare_pick_port(struct ferryd *d, const char *ip)
{
	int span = d->settings.port_max - d->settings.port_min + 1;
	uint32_t start = 0;

	if (getrandom(&start, sizeof(start), 0) != (ssize_t)sizeof(start))
		start = (uint32_t)getpid();
	/* A random first try keeps two ferryds on one machine apart. */
	for (int i = 0; i < span; i++) {
		int port = d->settings.port_min + (int)((start + (uint32_t)i) % (uint32_t)span);
		char suffix[16];
		bool ours = false;
		snprintf(suffix, sizeof(suffix), ":%d", port);
		for (struct vm *vm = d->vms; vm; vm = vm->next) {
			size_t la = strlen(vm->incoming_addr), ls = strlen(suffix);
			if (vm->incoming && la >= ls &&
			    strcmp(vm->incoming_addr + la - ls, suffix) == 0)
				ours = true;
		}
		if (!ours && netaddr_port_free(ip, port))
			return port;
	}
	return -1;
}

/* The source's used memory, [[first_page, pages], ...]: at most 1024
 * ranges, each inside the VM's npages. */
static int prepare_check_extents(struct json_object *a, uint64_t npages, struct err *e)
{
	size_t n;
	if (!json_object_is_type(a, json_type_array) || (n = json_object_array_length(a)) > 1024)
		return err_set(e, "field 'extents' must be an array of at most 1024 [first_page, pages] pairs");
	for (size_t i = 0; i < n; i++) {
		struct json_object *p = json_object_array_get_idx(a, i);
		int64_t first, len;
		if (!json_object_is_type(p, json_type_array) || json_object_array_length(p) != 2 ||
		    !json_object_is_type(json_object_array_get_idx(p, 0), json_type_int) ||
		    !json_object_is_type(json_object_array_get_idx(p, 1), json_type_int))
			return err_set(e, "extents[%zu] is not a [first_page, pages] pair", i);
		first = json_object_get_int64(json_object_array_get_idx(p, 0));
		len = json_object_get_int64(json_object_array_get_idx(p, 1));
		if (first < 0 || len < 0 || (uint64_t)first > npages || (uint64_t)len > npages - (uint64_t)first)
			return err_set(e, "extents[%zu] lies outside the VM's %llu pages", i,
				       (unsigned long long)npages);
	}
	return 0;
}

/* run/NAME.extents for ferry-vm --prealloc-extents ("FIRST NPAGES" lines),
 * from pairs prepare_check_extents has passed. */
static int prepare_write_extents(struct ferryd *d, struct vm *vm, struct json_object *a)
{
	size_t n = json_object_array_length(a), len = 0, cap = n * 44 + 1;
	char path[PATH_MAX], *text = malloc(cap);
	struct err e = { 0 };
	int rc = -1;

	if (!text) {
		log_warn("VM %s: out of memory for its extents: reserving all its memory", vm->def.name);
		return -1;
	}
	text[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		struct json_object *p = json_object_array_get_idx(a, i);
		/* two numbers of at most 20 digits, a space, a newline: 42 */
		len += (size_t)snprintf(text + len, cap - len, "%s%lld %lld", i ? "\n" : "",
					(long long)json_object_get_int64(json_object_array_get_idx(p, 0)),
					(long long)json_object_get_int64(json_object_array_get_idx(p, 1)));
	}
	if (registry_path(d, vm, "extents", path, sizeof(path), &e) == 0)
		rc = statefile_write(path, text, &e);
	free(text);
	if (rc < 0)
		log_warn("VM %s: cannot write its extents file (%s): reserving all its memory",
			 vm->def.name, e.msg);
	return rc;
}

/* The move's key for the incoming worker: a 0600 file it reads and
 * removes at start (never argv, which every user can read). */
static int prepare_write_key(struct ferryd *d, const struct auth_key *cluster, struct vm *vm,
			     const uint8_t salt[AUTH_NONCE_LEN], struct err *e)
{
	char hex[AUTH_KEY_HEX], path[PATH_MAX];
	int rc;
	migrate_move_key_hex(cluster, salt, hex);
	rc = registry_path(d, vm, "mkey", path, sizeof(path), e);
	if (rc == 0)
		rc = statefile_write_secret(path, hex, e);
	OPENSSL_cleanse(hex, sizeof(hex));
	if (rc < 0)
		return err_prefix(e, "writing the move's key for VM %s", vm->def.name);
	vm->migration_key = true;
	return 0;
}

/* A move that copies the disk: its definition names the copy, which must
 * not exist here yet and must fit (what the source's image holds). The
 * worker checks again when it creates it. */
static int prepare_check_disk_copy(struct req *r, struct json_object *dcj, const struct vm_def *def)
{
	struct vm_config c;
	int64_t bytes = 0, allocated = 0;

	memset(&c, 0, sizeof(c));
	if (!json_object_is_type(dcj, json_type_object) ||
	    jsonl_get_int(dcj, "bytes", true, 512, INT64_MAX, &bytes, &r->err) < 0 ||
	    jsonl_get_int(dcj, "allocated", true, 0, INT64_MAX, &allocated, &r->err) < 0) {
		if (!r->err.msg[0])
			err_set(&r->err, "field 'disk_copy' must be an object");
		err_prefix(&r->err, "disk_copy");
		bad_arg(r);
		return -1;
	}
	if (def->disk[0] != '/' || strlen(def->disk) >= sizeof(c.disk)) {
		req_fail(r, "E_BAD_ARG", "a disk copy needs the copy's absolute path in the definition");
		return -1;
	}
	memcpy(c.disk, def->disk, strlen(def->disk) + 1); /* its length was checked above */
	c.disk_copy_bytes = (uint64_t)bytes / 512 * 512;
	c.disk_copy_allocated = (uint64_t)allocated;
	if (diskcopy_check_target(&c, &r->err) < 0) {
		r->code = r->err.code == EEXIST ? "E_DISK_EXISTS" : "E_DISK_COPY";
		return -1;
	}
	return 0;
}

enum verb_result verb_migration_prepare(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "name", "id", "source", "definition", "extents",
					      "key_salt", "stream_version", "disk_copy", NULL };
	/* What a ferryd from before the extents field accepts: the failpoint
	 * makes this one act as such a peer, to test the source's fallback. */
	static const char *const fields_pre_extents[] = { "name", "id", "source", "definition",
							  "key_salt", "stream_version", NULL };
	const char *name = NULL, *id = NULL, *source = NULL, *salt_hex = NULL;
	uint8_t salt[AUTH_NONCE_LEN];
	struct json_object *defj, *marker, *extj = NULL, *dcj = NULL;
	struct host_settings *s = &r->d->settings;
	char ip[128], path[PATH_MAX] = "";
	struct host_mem mem;
	struct vm_def def;
	struct vm *vm;
	uint64_t promised;
	int64_t stream_version;
	int port, active;

	if (req_fields(r, failpoint("ferryd.prepare_pre_extents") < 0 ? fields_pre_extents : fields) < 0)
		return VERB_FAIL;
	if (jsonl_get_str(r->args, "name", true, &name, &r->err) < 0 ||
	    jsonl_get_str(r->args, "id", true, &id, &r->err) < 0 ||
	    jsonl_get_str(r->args, "source", false, &source, &r->err) < 0)
		return bad_arg(r);
	if (strlen(id) >= sizeof(vm->move_id) || strncmp(id, "mv-", 3) != 0 || !id[3] ||
	    strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(id))
		return req_fail(r, "E_BAD_ARG", "field 'id' must be a move id like mv-0123abcd");
	for (struct move *m = r->d->moves; m; m = m->next)
		if (strcmp(m->id, id) == 0)
			/* ids are random: our own outgoing move's id means the
			 * destination address leads back to this ferryd */
			return m->dir == MOVE_OUT
				? req_fail(r, "E_SAME_HOST", "the destination is this host: its address "
					   "reaches the ferryd the VM %s already runs on", m->vm)
				: req_fail(r, "E_BAD_ARG", "move id %s is already in use on this host", id);
	if (!s->accept_moves)
		return req_fail(r, "E_NOT_ACCEPTING", "this host takes no incoming moves (ferry host set "
				"--accept-moves off: drained for maintenance): choose another destination, "
				"or turn it back on there");
	/* Both workers are built with their ferryd: a stream this host's
	 * worker cannot read is refused now, before a worker starts. */
	if (jsonl_get_int(r->args, "stream_version", true, 0, INT32_MAX, &stream_version,
			  &r->err) < 0)
		return bad_arg(r);
	if (stream_version < MIG_VERSION_MIN || stream_version > MIG_VERSION)
		return req_fail(r, "E_VERSION",
				"the source sends migration stream version %lld; this host reads versions %d to %d: upgrade the %s host",
				(long long)stream_version, MIG_VERSION_MIN, MIG_VERSION,
				stream_version > MIG_VERSION ? "destination" : "source");
	if (jsonl_get_str(r->args, "key_salt", r->d->key.set, &salt_hex, &r->err) < 0)
		return req_fail(r, "E_AUTH", "this host authenticates migrations: the source must send "
				"'key_salt' (a ferryd with the cluster key does)");
	if (salt_hex && auth_from_hex(salt_hex, salt, sizeof(salt)) < 0)
		return req_fail(r, "E_BAD_ARG", "field 'key_salt' must be %d hex digits",
				AUTH_NONCE_LEN * 2);
	if (!json_object_object_get_ex(r->args, "definition", &defj) ||
	    !json_object_is_type(defj, json_type_object))
		return req_fail(r, "E_BAD_ARG", "field 'definition' (the VM's definition) is required");
	if (vmdef_only_known_keys(defj, &r->err) < 0) {
		/* a field of a later build's definition that this one would drop */
		r->code = "E_VERSION";
		err_prefix(&r->err, "VM definition (the source is of a later build: upgrade this host)");
		return VERB_FAIL;
	}
	if (vmdef_from_json(defj, &def, &r->code, &r->err) < 0) {
		err_prefix(&r->err, "VM definition");
		return VERB_FAIL;
	}
	if (strcmp(def.name, name) != 0)
		return req_fail(r, "E_BAD_ARG", "definition names VM %s, request names %.80s",
				def.name, name);
	if (json_object_object_get_ex(r->args, "extents", &extj) &&
	    prepare_check_extents(extj, (uint64_t)def.memory_mib << 8, &r->err) < 0)
		return bad_arg(r);
	if (json_object_object_get_ex(r->args, "disk_copy", &dcj) && prepare_check_disk_copy(r, dcj, &def) < 0)
		return VERB_FAIL;
	if (req_name_free(r, name) < 0)
		return VERB_FAIL;
	/* at setup, before anything moves, not when the worker binds */
	if (registry_name_fits(r->d, name, &r->err) < 0) {
		r->code = "E_BAD_NAME";
		return VERB_FAIL;
	}
	active = migrate_active_count(r->d);
	if (active >= s->max_migrations)
		return req_fail(r, "E_MIGRATION_LIMIT",
				"this host already has %d of %d live migrations in flight",
				active, s->max_migrations);
	if (hostinfo_memory(&mem, &r->err) < 0) {
		r->code = "E_INTERNAL";
		return VERB_FAIL;
	}
	promised = prepare_promised_mib(r->d);
	if ((uint64_t)def.memory_mib + promised + (uint64_t)s->memory_reserve_mib > mem.free_mib) {
		char free_text[512];
		return req_fail(r, "E_NO_MEMORY",
				"not enough memory for VM %s: it needs %u MiB; this host has %s, %d MiB reserved for the host and %llu MiB promised to moves arriving now",
				name, def.memory_mib,
				hostinfo_free_text(&mem, free_text, sizeof(free_text)),
				s->memory_reserve_mib, (unsigned long long)promised);
	}
	if (hostinfo_kvm_usable(&r->err) < 0) {
		r->code = "E_NO_KVM";
		return VERB_FAIL;
	}
	/* refused here, before a worker starts or a byte moves */
	if (vmdef_check_nic(&def, &r->code, &r->err) < 0)
		return VERB_FAIL;
	if (s->nnets > 0) {
		if (netaddr_local_in_nets(s, ip, sizeof(ip), &r->err) < 0) {
			r->code = "E_NO_MIGRATION_NETWORK";
			return VERB_FAIL;
		}
	} else if (!r->c->tcp || netaddr_sock_local(r->c->fd, ip, sizeof(ip), &r->err) < 0) {
		/* The source reached us on this address, so it can again. */
		snprintf(ip, sizeof(ip), "127.0.0.1");
	}
	port = prepare_pick_port(r->d, ip);
	if (port < 0)
		return req_fail(r, "E_NO_PORT", "no free port in the migration port range %d-%d on %s",
				s->port_min, s->port_max, ip);

	vm = registry_add(r->d, &def);
	if (!vm)
		return req_fail(r, "E_INTERNAL", "out of memory");
	vm->incoming = true;
	vm->state = VM_INCOMING;
	vm->disk_copy = dcj != NULL;
	snprintf(vm->move_id, sizeof(vm->move_id), "%s", id);
	/* derived from the key the source proved on this connection: during
	 * a key change that may be the previous one */
	if (r->d->key.set &&
	    prepare_write_key(r->d, r->c && r->c->key ? r->c->key : &r->d->key, vm, salt,
			      &r->err) < 0) {
		registry_remove(r->d, vm);
		r->code = "E_INTERNAL";
		return VERB_FAIL;
	}
	/* Best effort: without the file the worker reserves all the memory. */
	if (extj && s->prealloc && prepare_write_extents(r->d, vm, extj) == 0)
		vm->prealloc_extents = true;
	snprintf(vm->incoming_addr, sizeof(vm->incoming_addr),
		 strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, port);
	/* A worker's mark left by an earlier arrival of this name (ferryd
	 * died between the two removals) would call this one arrived. */
	if (registry_path(r->d, vm, "resumed", path, sizeof(path), &r->err) < 0 ||
	    (unlink(path) < 0 && errno != ENOENT)) {
		if (!r->err.msg[0])
			err_sys(&r->err, "removing a stale %s", path);
		registry_remove(r->d, vm);
		r->code = "E_INTERNAL";
		return VERB_FAIL;
	}
	/* Marker first, definition second: a restart in between finds a
	 * marker without a definition, which it sweeps away. */
	marker = json_object_new_object();
	jsonl_add_str(marker, "id", id);
	jsonl_add_str(marker, "source", source ? source : "unknown");
	if (vm->disk_copy) /* a restart must still know the copy is this move's */
		jsonl_add_bool(marker, "disk_copy", true);
	if (migrate_marker_path(r->d, name, path, sizeof(path)) < 0 ||
	    statefile_write_json(path, marker, &r->err) < 0 ||
	    vmdef_save(r->d->vms_dir, &def, &r->err) < 0) {
		json_object_put(marker);
		/* the marker, the move's key and extents files too (no logs yet) */
		registry_forget(r->d, vm);
		r->code = "E_INTERNAL";
		return VERB_FAIL;
	}
	json_object_put(marker);
	if (worker_start_incoming(r->d, vm, r->c->id, &r->code, &r->err) < 0) {
		registry_forget(r->d, vm);
		return VERB_FAIL;
	}
	if (!migrate_incoming_new(r->d, vm, id, source ? source : r->c->peer))
		log_warn("VM %s: out of memory tracking the incoming move", name);
	log_info("VM %s: incoming move %s from %s; worker will listen on %s", name, id,
		 source ? source : r->c->peer, vm->incoming_addr);
	return VERB_DEFER;
}

enum verb_result verb_migration_abort(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "name", "id", "reason", NULL };
	/* the failpoint makes this ferryd one from before the reason field */
	static const char *const fields_pre_reason[] = { "name", "id", NULL };
	const char *name = NULL, *id = NULL, *reason = NULL;

	if (req_fields(r, failpoint("ferryd.abort_pre_reason") < 0 ? fields_pre_reason : fields) < 0)
		return VERB_FAIL;
	if (jsonl_get_str(r->args, "name", false, &name, &r->err) < 0 ||
	    jsonl_get_str(r->args, "id", false, &id, &r->err) < 0 ||
	    jsonl_get_str(r->args, "reason", false, &reason, &r->err) < 0)
		return bad_arg(r);
	if (!name && !id)
		return req_fail(r, "E_BAD_ARG", "give the move's 'id' or the VM's 'name'");
	if (migrate_abort_incoming(r->d, id, name, reason, &r->code, &r->err) < 0)
		return VERB_FAIL;
	return VERB_REPLY;
}

enum verb_result verb_migration_list(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "all", NULL };
	struct json_object *o, *arr;
	bool all = false;
	int queued = 0;

	if (req_fields(r, fields) < 0)
		return VERB_FAIL;
	if (jsonl_get_bool(r->args, "all", false, &all, &r->err) < 0)
		return bad_arg(r);
	arr = json_object_new_array();
	for (struct move *m = r->d->moves; m; m = m->next) {
		json_object_array_add(arr, migrate_move_json(r->d, m, true));
		queued += m->state == MV_QUEUED;
	}
	if (all)
		for (struct move *m = r->d->recent; m; m = m->next)
			json_object_array_add(arr, migrate_move_json(r->d, m, true));
	o = reply_ok();
	jsonl_add_int(o, "max_migrations", r->d->settings.max_migrations);
	jsonl_add_int(o, "active", migrate_active_count(r->d));
	jsonl_add_int(o, "queued", queued);
	/* The budget the outgoing moves' bandwidth_effective_mibps share. */
	jsonl_add_int(o, "bandwidth_mibps", r->d->settings.bandwidth_mibps);
	json_object_object_add(o, "moves", arr);
	*reply = o;
	return VERB_REPLY;
}

/* Moves by id or VM name, live or from the history (one read of it for
 * all); got[] is filled, or all freed on the first one not found. */
static int status_many(struct ferryd *d, const char *const *keys, size_t n, struct json_object **got,
		       const char **code, struct err *e)
{
	for (size_t i = 0; i < n; i++) {
		struct move *m = migrate_find(d, keys[i]);
		got[i] = m ? migrate_move_json(d, m, true) : NULL;
	}
	if (migrate_history_find(d, keys, n, got, e) < 0)
		log_warn("reading the migration history: %s", e->msg);
	for (size_t i = 0; i < n; i++)
		if (!got[i]) {
			for (size_t j = 0; j < n; j++)
				json_object_put(got[j]);
			*code = "E_NO_MIGRATION";
			err_set(e, "no move with id or VM name '%.80s' on this host (see: ferry migration list)",
				keys[i]);
			return -1;
		}
	return 0;
}

struct json_object *verb_migration_status_reply(struct ferryd *d, const char *const *keys, size_t n,
						bool many, const char **code, struct err *e)
{
	struct json_object *got[MIGRATE_STATUS_IDS_MAX], *o, *arr;

	if (n > MIGRATE_STATUS_IDS_MAX || status_many(d, keys, n, got, code, e) < 0)
		return NULL;
	o = reply_ok();
	if (!many) {
		json_object_object_add(o, "move", got[0]);
		return o;
	}
	arr = json_object_new_array();
	for (size_t i = 0; i < n; i++)
		json_object_array_add(arr, got[i]);
	json_object_object_add(o, "moves", arr);
	return o;
}

/* A held request is answered at once when none of its moves can change:
 * all ended, or known only to the history. *all_live: every key is a move
 * in memory, so the request is valid without reading the history. */
static bool status_all_done(struct ferryd *d, const char *const *keys, size_t n, bool *all_live)
{
	bool done = true;

	*all_live = true;
	for (size_t i = 0; i < n; i++) {
		struct move *m = migrate_find(d, keys[i]);
		if (!m)
			*all_live = false;
		else if (!migrate_state_done(m->state))
			done = false;
	}
	return done;
}

enum verb_result verb_migration_status(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "id", "name", "ids", "wait_ms", NULL };
	const char *id = NULL, *name = NULL, *keys[MIGRATE_STATUS_IDS_MAX];
	struct json_object *ids;
	int64_t wait_ms = 0;
	bool many = false;
	size_t n = 1;

	if (req_fields(r, fields) < 0)
		return VERB_FAIL;
	if (jsonl_get_str(r->args, "id", false, &id, &r->err) < 0 ||
	    jsonl_get_str(r->args, "name", false, &name, &r->err) < 0 ||
	    jsonl_get_int(r->args, "wait_ms", false, 0, STATUS_HOLD_MAX_MS, &wait_ms, &r->err) < 0)
		return bad_arg(r);
	if (json_object_object_get_ex(r->args, "ids", &ids)) {
		if (!json_object_is_type(ids, json_type_array))
			return req_fail(r, "E_BAD_ARG", "field 'ids' must be a list of move ids");
		n = json_object_array_length(ids);
		if (n > MIGRATE_STATUS_IDS_MAX)
			return req_fail(r, "E_BAD_ARG", "field 'ids' lists %zu moves; at most %d at once",
					n, MIGRATE_STATUS_IDS_MAX);
		for (size_t i = 0; i < n; i++) {
			struct json_object *it = json_object_array_get_idx(ids, i);
			if (!json_object_is_type(it, json_type_string))
				return req_fail(r, "E_BAD_ARG", "field 'ids' must be a list of move ids");
			keys[i] = json_object_get_string(it);
		}
		many = true;
	} else {
		if (!id && !name)
			return req_fail(r, "E_BAD_ARG", "give the move's 'id' or the VM's 'name'");
		keys[0] = id ? id : name;
	}
	bool all_live = true;
	bool hold = wait_ms > 0 && !status_all_done(r->d, keys, n, &all_live);
	/* Built now when it is the answer, or when a key not in memory must
	 * be found in the history or refused at once; a hold builds its own. */
	if (!hold || !all_live) {
		*reply = verb_migration_status_reply(r->d, keys, n, many, &r->code, &r->err);
		if (!*reply)
			return VERB_FAIL;
		if (!hold)
			return VERB_REPLY;
		json_object_put(*reply);
		*reply = NULL;
	}
	/* Known moves, some still going: the answer waits for a change. */
	if (status_hold_add(r->d, r->c->id, keys, n, many, (int)wait_ms, &r->err) < 0) {
		r->code = "E_INTERNAL";
		return VERB_FAIL;
	}
	return VERB_DEFER;
}

enum verb_result verb_migration_cancel(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "id", "name", NULL };
	const char *id = NULL, *name = NULL;
	struct move *m = NULL;
	struct json_object *o;

	if (req_fields(r, fields) < 0)
		return VERB_FAIL;
	if (jsonl_get_str(r->args, "id", false, &id, &r->err) < 0 ||
	    jsonl_get_str(r->args, "name", false, &name, &r->err) < 0)
		return bad_arg(r);
	if (!id && !name)
		return req_fail(r, "E_BAD_ARG", "give the move's 'id' or the VM's 'name'");
	for (struct move *x = r->d->moves; x && !m; x = x->next)
		if (strcmp(x->id, id ? id : name) == 0 || (!id && strcmp(x->vm, name) == 0))
			m = x;
	if (!m)
		return req_fail(r, "E_NO_MIGRATION", "no queued or running move of '%.80s' on this host (see: ferry migration list)",
				id ? id : name);
	if (migrate_cancel(r->d, m, &r->code, &r->err) < 0)
		return VERB_FAIL;
	o = reply_ok();
	json_object_object_add(o, "move", migrate_move_json(r->d, m, false));
	*reply = o;
	return VERB_REPLY;
}

/* A queued or in-flight move by id, or by its VM's name. */
static struct move *find_live(struct ferryd *d, const char *id, const char *name)
{
	for (struct move *x = d->moves; x; x = x->next)
		if (strcmp(x->id, id ? id : name) == 0 || (!id && strcmp(x->vm, name) == 0))
			return x;
	return NULL;
}

/* migration.set: change a move's own bandwidth limit, live. */
enum verb_result verb_migration_set(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "id", "name", "bandwidth_mibps", NULL };
	const char *id = NULL, *name = NULL;
	int64_t bw = 0;
	struct move *m;
	struct json_object *o;

	if (req_fields(r, fields) < 0)
		return VERB_FAIL;
	if (jsonl_get_str(r->args, "id", false, &id, &r->err) < 0 ||
	    jsonl_get_str(r->args, "name", false, &name, &r->err) < 0 ||
	    jsonl_get_int(r->args, "bandwidth_mibps", true, 0, 1 << 20, &bw, &r->err) < 0)
		return bad_arg(r);
	if (!id && !name)
		return req_fail(r, "E_BAD_ARG", "give the move's 'id' or the VM's 'name'");
	m = find_live(r->d, id, name);
	if (!m)
		return req_fail(r, "E_NO_MIGRATION", "no queued or running move of '%.80s' on this host (see: ferry migration list)",
				id ? id : name);
	if (m->dir == MOVE_IN)
		return req_fail(r, "E_BAD_ARG", "move %s brings VM %s here from %s: change it on the source host",
				m->id, m->vm, m->peer);
	if (m->state == MV_RESOLVING || m->state == MV_FINISHING)
		return req_fail(r, "E_TOO_LATE", "the move of VM %s has sent all its memory (%s): nothing left to limit",
				m->vm, migrate_state_name(m->state));
	m->bandwidth_mibps = (int)bw;
	if (bw)
		log_info("move %s: VM %s: own bandwidth limit set to %lld MiB/s", m->id, m->vm,
			 (long long)bw);
	else
		log_info("move %s: VM %s: own bandwidth limit removed", m->id, m->vm);
	migrate_store_save(r->d);
	/* Now, not on the next tick: the reply shows the limit in force. */
	migrate_bw_rebalance(r->d);
	o = reply_ok();
	json_object_object_add(o, "move", migrate_move_json(r->d, m, false));
	*reply = o;
	return VERB_REPLY;
}

enum verb_result verb_migration_history(struct req *r, struct json_object **reply)
{
	static const char *const fields[] = { "name", "limit", NULL };
	const char *name = NULL;
	int64_t limit = MIGRATION_HISTORY_DEFAULT;
	struct json_object *o, *arr;

	if (req_fields(r, fields) < 0)
		return VERB_FAIL;
	if (jsonl_get_str(r->args, "name", false, &name, &r->err) < 0 ||
	    jsonl_get_int(r->args, "limit", false, 1, 10000, &limit, &r->err) < 0)
		return bad_arg(r);
	arr = migrate_history_read(r->d, name, (int)limit, &r->err);
	if (!arr) {
		r->code = "E_INTERNAL";
		return VERB_FAIL;
	}
	o = reply_ok();
	json_object_object_add(o, "moves", arr);
	*reply = o;
	return VERB_REPLY;
}
