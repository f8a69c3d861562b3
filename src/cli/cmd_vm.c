/*
 * `ferry vm ...`: define, start, stop, list, inspect, attach to and delete
 * VMs on a host. One function per verb, reached through the table at the
 * bottom; each verb has --help with what it does, its flags and an example.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonl.h"

#define VM_CALL_TIMEOUT_MS 15000
/* vm.start waits up to 10 s for the worker; leave room. */
#define VM_START_TIMEOUT_MS 30000

struct vm_verb {
	const char *name;
	int (*run)(struct cli_opts *o, int argc, char **argv);
	const char *usage;
};

static const struct vm_verb *vm_verb_find(const char *name);

static int vm_usage(const char *verb, bool err)
{
	const struct vm_verb *v = vm_verb_find(verb);
	fputs(v ? v->usage : "", err ? stderr : stdout);
	return err ? CLI_USAGE : CLI_OK;
}

/* Every verb takes --help and --json besides its own options. */
enum { OPT_HELP = 'h', OPT_JSON = 1000 };

/* The VM name: --name NAME or the single positional argument. */
static const char *vm_name_arg(const char *verb, const char *flag_name,
			       int argc, char **argv)
{
	if (optind < argc) {
		if (flag_name) {
			fprintf(stderr, "ferry vm %s: two names, '%s' and --name %s: give the VM's name "
				"once\n", verb, argv[optind], flag_name);
			return NULL;
		}
		if (optind + 1 < argc) {
			fprintf(stderr, "ferry vm %s: unexpected argument '%s'\n", verb, argv[optind + 1]);
			return NULL;
		}
		return argv[optind];
	}
	if (!flag_name)
		fprintf(stderr, "ferry vm %s: which VM? give its name (see: ferry vm %s --help)\n",
			verb, verb);
	return flag_name;
}

static struct json_object *vm_req(const char *cmd, const char *name)
{
	struct json_object *req = json_object_new_object();
	jsonl_add_str(req, "cmd", cmd);
	if (name)
		jsonl_add_str(req, "name", name);
	return req;
}

/* A host path for ferryd: absolute as given; relative ones are made
 * absolute here only for a local ferryd (a remote one has other files). */
static void vm_add_path(const struct cli_opts *o, struct json_object *req,
			const char *key, const char *path)
{
	char buf[PATH_MAX], cwd[PATH_MAX];
	if (!path)
		return;
	if (path[0] != '/' && !o->computer && getcwd(cwd, sizeof(cwd)) &&
	    snprintf(buf, sizeof(buf), "%s/%s", cwd, path) < (int)sizeof(buf)) {
		jsonl_add_str(req, key, buf);
		return;
	}
	jsonl_add_str(req, key, path);
}

static int vm_new(struct cli_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "memory", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'p' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "cmdline", required_argument, NULL, 'a' },
		{ "disk", required_argument, NULL, 'd' },
		{ "tap", required_argument, NULL, 't' },
		{ "bridge", required_argument, NULL, 'B' },
		{ "mac", required_argument, NULL, 'M' },
		{ "cpu-mask", required_argument, NULL, 'C' },
		{ "dirty-tracker", required_argument, NULL, 'T' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL, *kernel = NULL, *initrd = NULL, *cmdline = NULL;
	const char *disk = NULL, *tap = NULL, *bridge = NULL, *mac = NULL, *mask = NULL, *tracker = NULL;
	int64_t mem = 512;
	long vcpus = 1;
	struct json_object *req, *rep;
	char membuf[32];
	int opt, rc;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'n': name = optarg; break;
		case 'm':
			mem = cli_parse_mib(optarg);
			if (mem < 1) {
				fprintf(stderr, "ferry vm new: --memory '%s': give a whole number of MiB "
					"(a multiple of 2M) like 512M or 2G\n", optarg);
				return CLI_USAGE;
			}
			break;
		case 'p':
			if (!cli_parse_int(optarg, 1, 1024, &vcpus)) {
				fprintf(stderr, "ferry vm new: --vcpus '%s': give a number from 1 to 8\n", optarg);
				return CLI_USAGE;
			}
			break;
		case 'k': kernel = optarg; break;
		case 'i': initrd = optarg; break;
		case 'a': cmdline = optarg; break;
		case 'd': disk = optarg; break;
		case 't': tap = optarg; break;
		case 'B': bridge = optarg; break;
		case 'M': mac = optarg; break;
		case 'C': mask = optarg; break;
		case 'T':
			if (strcmp(optarg, "bitmap") != 0 && strcmp(optarg, "ring") != 0) {
				fprintf(stderr, "ferry vm new: --dirty-tracker '%s': use bitmap or ring\n", optarg);
				return CLI_USAGE;
			}
			tracker = optarg;
			break;
		case OPT_JSON: o->json = true; break;
		case OPT_HELP: return vm_usage("new", false);
		default: return vm_usage("new", true);
		}
	}
	name = vm_name_arg("new", name, argc, argv);
	if (!name)
		return CLI_USAGE;
	if (!kernel) {
		fprintf(stderr, "ferry vm new: --kernel is required (the guest kernel or test guest image)\n");
		return CLI_USAGE;
	}
	if (tap && bridge) {
		fprintf(stderr, "ferry vm new: --tap and --bridge exclude each other: the NIC uses a tap "
			"you made, or a bridge the VM makes its own tap on\n");
		return CLI_USAGE;
	}
	req = vm_req("vm.new", name);
	jsonl_add_int(req, "memory_mib", mem);
	jsonl_add_int(req, "vcpus", vcpus);
	vm_add_path(o, req, "kernel", kernel);
	vm_add_path(o, req, "initrd", initrd);
	vm_add_path(o, req, "disk", disk);
	if (cmdline)
		jsonl_add_str(req, "cmdline", cmdline);
	if (tap)
		jsonl_add_str(req, "tap", tap);
	if (bridge)
		jsonl_add_str(req, "bridge", bridge);
	if (mac)
		jsonl_add_str(req, "mac", mac);
	if (mask)
		jsonl_add_str(req, "cpu_mask", mask);
	if (tracker)
		jsonl_add_str(req, "dirty_tracker", tracker);
	rep = cli_request(o, req, VM_CALL_TIMEOUT_MS, &rc);
	if (rep && !o->json) {
		cli_fmt_mib(cli_int(rep, "memory_mib", mem), membuf, sizeof(membuf));
		printf("VM %s defined: %s, %lld vCPU(s). Start it with: ferry vm start %s\n",
		       name, membuf, (long long)cli_int(rep, "vcpus", vcpus), name);
	}
	json_object_put(rep);
	return rc;
}

/* Arguments of a verb that takes only a name plus --json/--help. Returns
 * the name, or NULL with *rc the exit code (usage error, or 0 after --help). */
static const char *vm_simple_args(struct cli_opts *o, const char *verb,
				  int argc, char **argv, int *rc)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL;
	int opt;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'n': name = optarg; break;
		case OPT_JSON: o->json = true; break;
		case OPT_HELP: *rc = vm_usage(verb, false); return NULL;
		default: *rc = vm_usage(verb, true); return NULL;
		}
	}
	name = vm_name_arg(verb, name, argc, argv);
	*rc = CLI_USAGE;
	return name;
}

static int vm_start(struct cli_opts *o, int argc, char **argv)
{
	struct json_object *rep;
	int rc;
	const char *name = vm_simple_args(o, "start", argc, argv, &rc);

	if (!name)
		return rc;
	rep = cli_request(o, vm_req("vm.start", name), VM_START_TIMEOUT_MS, &rc);
	if (rep && !o->json)
		printf("VM %s started (worker pid %lld). Serial log: %s\n", name,
		       (long long)cli_int(rep, "pid", 0), cli_str(rep, "serial_log"));
	json_object_put(rep);
	return rc;
}

static int vm_stop(struct cli_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL;
	struct json_object *req, *rep;
	long timeout = 10;
	int opt, rc;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'n': name = optarg; break;
		case 't':
			if (!cli_parse_int(optarg, 0, 3600, &timeout)) {
				fprintf(stderr, "ferry vm stop: --timeout '%s': give seconds, 0 to 3600\n", optarg);
				return CLI_USAGE;
			}
			break;
		case OPT_JSON: o->json = true; break;
		case OPT_HELP: return vm_usage("stop", false);
		default: return vm_usage("stop", true);
		}
	}
	name = vm_name_arg("stop", name, argc, argv);
	if (!name)
		return CLI_USAGE;
	req = vm_req("vm.stop", name);
	jsonl_add_int(req, "timeout_s", timeout);
	/* ferryd escalates to SIGTERM and SIGKILL (5 s each) after the grace. */
	rep = cli_request(o, req, (int)(timeout + 20) * 1000, &rc);
	if (rep && !o->json)
		printf("VM %s stopped (worker %s)\n", name, cli_str(rep, "exit"));
	json_object_put(rep);
	return rc;
}

static int vm_list(struct cli_opts *o, int argc, char **argv)
{
	static const char *const hdr[] = { "NAME", "STATE", "VCPUS", "MEMORY",
					   "PID", "UPTIME" };
	static const struct option opts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct json_object *req, *rep, *vms;
	struct cli_table *t;
	int opt, rc;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case OPT_JSON: o->json = true; break;
		case OPT_HELP: return vm_usage("list", false);
		default: return vm_usage("list", true);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ferry vm list: unexpected argument '%s'\n", argv[optind]);
		return CLI_USAGE;
	}
	req = vm_req("vm.list", NULL);
	rep = cli_request(o, req, VM_CALL_TIMEOUT_MS, &rc);
	if (!rep || o->json) {
		json_object_put(rep);
		return rc;
	}
	if (!json_object_object_get_ex(rep, "vms", &vms) ||
	    json_object_array_length(vms) == 0) {
		printf("No VMs defined. Create one with: ferry vm new --name NAME --kernel PATH\n");
		json_object_put(rep);
		return CLI_OK;
	}
	t = cli_table_new(6, hdr);
	for (size_t i = 0; i < json_object_array_length(vms); i++) {
		struct json_object *v = json_object_array_get_idx(vms, i);
		char vc[16], mem[32], pid[16], up[32];
		const char *cells[6];
		int64_t p = cli_int(v, "pid", 0);
		snprintf(vc, sizeof(vc), "%lld", (long long)cli_int(v, "vcpus", 0));
		cli_fmt_mib(cli_int(v, "memory_mib", 0), mem, sizeof(mem));
		if (p)
			snprintf(pid, sizeof(pid), "%lld", (long long)p);
		else
			snprintf(pid, sizeof(pid), "-");
		cli_fmt_duration(p ? cli_int(v, "uptime_ms", -1) : -1, up, sizeof(up));
		cells[0] = cli_str(v, "name");
		cells[1] = cli_str(v, "state");
		cells[2] = vc;
		cells[3] = mem;
		cells[4] = pid;
		cells[5] = up;
		cli_table_row(t, cells);
	}
	cli_table_print(t);
	json_object_put(rep);
	return CLI_OK;
}

static int vm_verify(struct cli_opts *o, int argc, char **argv)
{
	struct json_object *rep;
	int rc;
	const char *name = vm_simple_args(o, "verify", argc, argv, &rc);

	if (!name)
		return rc;
	/* ferryd bounds the check by the VM's size (10 s + 4 s per GiB); a
	 * 64 GiB VM may take minutes */
	rep = cli_request(o, vm_req("vm.verify", name), 600000, &rc);
	if (!rep)
		return rc;
	/* the exit code says whether the pages verified, with --json too */
	rc = json_object_get_boolean(json_object_object_get(rep, "verified")) ? CLI_OK : 1;
	if (!o->json)
		printf("VM %s: %s (%lld pages checked, %lld never written, heartbeat %lld)\n", name,
		       cli_str(rep, "detail"), (long long)cli_int(rep, "pages_checked", 0),
		       (long long)cli_int(rep, "pages_never_written", 0),
		       (long long)cli_int(rep, "heartbeat", 0));
	json_object_put(rep);
	return rc;
}

static int vm_status(struct cli_opts *o, int argc, char **argv)
{
	static const struct { const char *key, *label; } strs[] = {
		{ "kernel", "Kernel" }, { "initrd", "Initrd" },
		{ "cmdline", "Cmdline" }, { "disk", "Disk" }, { "tap", "Tap" },
		{ "bridge", "Bridge" }, { "nic_tap", "NIC tap" },
		{ "mac", "MAC" }, { "cpu_mask", "CPU mask" }, { "dirty_tracker", "Dirty tracker" },
		{ "serial_log", "Serial log" }, { "worker_log", "Worker log" },
		{ "last_exit", "Last exit" }, { "worker_error", "Worker error" },
	};
	struct json_object *rep, *v;
	char buf[64];
	int rc;
	const char *name = vm_simple_args(o, "status", argc, argv, &rc);
	const char *tail, *ws;

	if (!name)
		return rc;
	rep = cli_request(o, vm_req("vm.status", name), VM_CALL_TIMEOUT_MS, &rc);
	if (!rep || o->json) {
		json_object_put(rep);
		return rc;
	}
	cli_kv("Name", cli_str(rep, "name"));
	ws = cli_str(rep, "worker_state");
	if (ws && strcmp(ws, cli_str(rep, "state")) != 0) {
		snprintf(buf, sizeof(buf), "%s (guest %s)", cli_str(rep, "state"), ws);
		cli_kv("State", buf);
	} else {
		cli_kv("State", cli_str(rep, "state"));
	}
	snprintf(buf, sizeof(buf), "%lld", (long long)cli_int(rep, "vcpus", 0));
	cli_kv("vCPUs", buf);
	cli_fmt_mib(cli_int(rep, "memory_mib", 0), buf, sizeof(buf));
	cli_kv("Memory", buf);
	if (cli_int(rep, "pid", 0)) {
		snprintf(buf, sizeof(buf), "%lld%s", (long long)cli_int(rep, "pid", 0),
			 json_object_object_get_ex(rep, "adopted", &v) &&
			 json_object_get_boolean(v) ? " (re-adopted)" : "");
		cli_kv("Worker pid", buf);
		cli_fmt_duration(cli_int(rep, "uptime_ms", -1), buf, sizeof(buf));
		cli_kv("Uptime", buf);
	}
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		const char *s = cli_str(rep, strs[i].key);
		if (s && *s)
			cli_kv(strs[i].label, s);
	}
	tail = cli_str(rep, "log_tail");
	if (tail && *tail) {
		printf("Worker log (last lines):\n");
		for (const char *p = tail; *p;) {
			const char *nl = strchr(p, '\n');
			int len = nl ? (int)(nl - p) : (int)strlen(p);
			printf("  | %.*s\n", len, p);
			p += len + (nl ? 1 : 0);
		}
	}
	json_object_put(rep);
	return CLI_OK;
}

static int vm_delete(struct cli_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "force", no_argument, NULL, 'f' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL;
	struct json_object *req, *rep;
	bool force = false;
	int opt, rc;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "hf", opts, NULL)) != -1) {
		switch (opt) {
		case 'n': name = optarg; break;
		case 'f': force = true; break;
		case OPT_JSON: o->json = true; break;
		case OPT_HELP: return vm_usage("delete", false);
		default: return vm_usage("delete", true);
		}
	}
	name = vm_name_arg("delete", name, argc, argv);
	if (!name)
		return CLI_USAGE;
	req = vm_req("vm.delete", name);
	if (force)
		jsonl_add_bool(req, "force", true);
	rep = cli_request(o, req, 40000, &rc);
	if (rep && !o->json)
		printf("VM %s deleted%s\n", name,
		       cli_str(rep, "exit") ? " (it was stopped first)" : "");
	json_object_put(rep);
	return rc;
}

static int vm_console(struct cli_opts *o, int argc, char **argv)
{
	struct json_object *rep, *okv;
	struct cli_conn *c;
	struct err e = { 0 };
	int rc;
	const char *name = vm_simple_args(o, "console", argc, argv, &rc);

	if (!name)
		return rc;
	c = cli_connect(o);
	if (!c)
		return cli_connect_failure();
	rep = cli_call(c, vm_req("vm.console", name), VM_CALL_TIMEOUT_MS);
	if (!rep) {
		cli_close(c);
		return CLI_UNREACHABLE;
	}
	if (!json_object_object_get_ex(rep, "ok", &okv) || !json_object_get_boolean(okv)) {
		cli_print_error(rep, "vm.console", name);
		json_object_put(rep);
		cli_close(c);
		return CLI_FAILED;
	}
	json_object_put(rep);
	rc = cli_console_relay(c, name, &e) < 0 ? CLI_FAILED : CLI_OK;
	if (rc != CLI_OK)
		fprintf(stderr, "ferry: console: %s\n", e.msg);
	cli_close(c);
	return rc;
}

static const struct vm_verb vm_verbs[] = {
	{ "new", vm_new,
	  "usage: ferry vm new --name NAME --kernel PATH [options]\n"
	  "\n"
	  "Define a VM on the host (it is not started). ferryd checks the name is free,\n"
	  "the kernel (and initrd, disk) exist on that host, and the memory fits.\n"
	  "\n"
	  "  --name NAME        1-64 characters from a-z A-Z 0-9 . _ -, not starting with\n"
	  "                     . or -  (or give NAME alone)\n"
	  "  --kernel PATH      guest kernel: a bzImage, a vmlinux ELF or a multiboot kernel\n"
	  "                     such as the test guest (required)\n"
	  "  --memory SIZE      guest RAM, e.g. 512M, 2G (default 512M, at least 16M, a multiple of 2M)\n"
	  "  --vcpus N          virtual CPUs, 1-8 (default 1)\n"
	  "  --initrd PATH      initial ramdisk\n"
	  "  --cmdline STR      kernel command line\n"
	  "  --disk PATH        raw disk image (virtio-blk); must exist\n"
	  "  --bridge BR        a virtio-net NIC on host bridge BR: the VM's worker makes\n"
	  "                     its own tap on it wherever the VM runs (each host it may\n"
	  "                     move to needs a bridge of that name, checked at the move)\n"
	  "  --tap IFNAME       or: a host tap interface you made and bridged (the same\n"
	  "                     name must exist, unused, on every host the VM moves to)\n"
	  "  --mac MAC          the NIC's MAC address, xx:xx:xx:xx:xx:xx, with --bridge or\n"
	  "                     --tap (default with --bridge: 52:54:00 and a hash of the\n"
	  "                     VM's name)\n"
	  "  --cpu-mask LIST    CPUID features to hide, e.g. \"-avx2,-avx512f\"\n"
	  "  --dirty-tracker T  how live migration finds the pages the guest dirties:\n"
	  "                     bitmap (default: KVM's dirty log; the faster on our\n"
	  "                     measurements) or ring (KVM's per-vCPU dirty rings)\n"
	  "  --json             print ferryd's JSON reply\n"
	  "\n"
	  "Paths are on the host that runs ferryd; relative ones are made absolute\n"
	  "for a local ferryd only.\n"
	  "\n"
	  "Example:\n"
	  "  ferry vm new --name web1 --memory 1G --vcpus 2 --kernel /srv/vmlinuz \\\n"
	  "      --initrd /srv/initrd.img --cmdline \"console=ttyS0\" --disk /srv/web1.img\n" },
	{ "start", vm_start,
	  "usage: ferry vm start NAME\n"
	  "\n"
	  "Start a defined VM: ferryd checks /dev/kvm and free memory, launches its\n"
	  "ferry-vm worker and waits (up to 10 s) until the worker answers. If the\n"
	  "worker fails, the error shows the last lines of its log.\n"
	  "\n"
	  "Example:\n"
	  "  ferry vm start web1\n"
	  "  ferry -c node2:7450 vm start web1\n" },
	{ "stop", vm_stop,
	  "usage: ferry vm stop NAME [--timeout SECONDS]\n"
	  "\n"
	  "Stop a running VM: the worker is asked to stop (flushing its disks); if it\n"
	  "has not exited after --timeout seconds (default 10) it gets SIGTERM, then\n"
	  "SIGKILL 5 s later.\n"
	  "\n"
	  "Example:\n"
	  "  ferry vm stop web1\n"
	  "  ferry vm stop web1 --timeout 60\n" },
	{ "list", vm_list,
	  "usage: ferry vm list [--json]\n"
	  "\n"
	  "List the host's VMs with state (stopped, starting, running, stopping,\n"
	  "crashed, or incoming: arriving by a live migration, not yet this host's),\n"
	  "vCPUs, memory, worker pid and uptime.\n"
	  "\n"
	  "Example:\n"
	  "  ferry vm list\n"
	  "  ferry -c node2 vm list --json\n" },
	{ "status", vm_status,
	  "usage: ferry vm status NAME [--json]\n"
	  "\n"
	  "Show one VM in detail: its definition, worker pid and uptime, log file\n"
	  "paths, how its worker last exited, and for a crashed VM the end of the\n"
	  "worker's log.\n"
	  "\n"
	  "Example:\n"
	  "  ferry vm status web1\n" },
	{ "verify", vm_verify,
	  "usage: ferry vm verify NAME [--json]\n"
	  "\n"
	  "For a VM running the project's test guest: pause it for a moment and\n"
	  "check every page of its working set against the stamp the guest wrote\n"
	  "(stale, misplaced or torn pages are reported). Exit 0 if every page\n"
	  "verifies. Used after a move to prove nothing was lost.\n"
	  "\n"
	  "Example:\n"
	  "  ferry -c node2 vm verify demo\n" },
	{ "console", vm_console,
	  "usage: ferry vm console NAME\n"
	  "\n"
	  "Attach the terminal to the VM's serial console (also through a remote\n"
	  "ferryd with -c). The terminal is raw while attached; press Ctrl-] to\n"
	  "detach. The VM keeps running.\n"
	  "\n"
	  "Example:\n"
	  "  ferry vm console web1\n" },
	{ "delete", vm_delete,
	  "usage: ferry vm delete NAME [--force]\n"
	  "\n"
	  "Remove a VM's definition, runtime files and logs. Its disk image is kept.\n"
	  "The VM must be stopped; --force stops it first.\n"
	  "\n"
	  "Example:\n"
	  "  ferry vm delete web1\n"
	  "  ferry vm delete web1 --force\n" },
	{ NULL, NULL, NULL },
};

static const struct vm_verb *vm_verb_find(const char *name)
{
	for (const struct vm_verb *v = vm_verbs; v->name; v++)
		if (strcmp(v->name, name) == 0)
			return v;
	return NULL;
}

static void vm_group_usage(FILE *f)
{
	fprintf(f, "usage: ferry [-c HOST[:PORT]] [--json] vm COMMAND [ARGS]\n\ncommands:\n");
	for (const struct vm_verb *v = vm_verbs; v->name; v++) {
		/* First line after "usage: " is the synopsis. */
		const char *syn = v->usage + strlen("usage: ");
		int len = (int)(strchr(syn, '\n') - syn);
		fprintf(f, "  %.*s\n", len, syn);
	}
	fprintf(f, "\nRun 'ferry vm COMMAND --help' for details and examples.\n");
}

int cmd_vm(struct cli_opts *o, int argc, char **argv)
{
	const struct vm_verb *v;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		vm_group_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_USAGE : CLI_OK;
	}
	v = vm_verb_find(argv[1]);
	if (!v) {
		fprintf(stderr, "ferry vm: unknown command '%s'\n\n", argv[1]);
		vm_group_usage(stderr);
		return CLI_USAGE;
	}
	cli_argv0(argv + 1, "vm");
	return v->run(o, argc - 1, argv + 1);
}
