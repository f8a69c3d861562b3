/* `ferry host ...`: questions about the host a ferryd runs on. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#include "common/jsonl.h"

static void host_usage(FILE *f)
{
	fprintf(f,
		"usage: ferry [-c HOST[:PORT]] host info\n"
		"\n"
		"Show the host's name, CPUs, memory, whether it can run VMs (KVM, hardware\n"
		"virtualization), the ferry version and how many VMs it has.\n"
		"\n"
		"Examples:\n"
		"  ferry host info\n"
		"  ferry -c node2 host info --json\n");
}

static int host_info(const struct cli_opts *o)
{
	struct json_object *req = json_object_new_object(), *rep, *vms;
	char a[64], b[64], line[160];
	int rc;

	jsonl_add_str(req, "cmd", "host.info");
	rep = cli_request(o, req, 10000, &rc);
	if (!rep || o->json) {
		json_object_put(rep);
		return rc;
	}
	cli_kv("Hostname", cli_str(rep, "hostname"));
	cli_kv("ferry version", cli_str(rep, "version"));
	snprintf(line, sizeof(line), "%lld", (long long)cli_int(rep, "cpus", 0));
	cli_kv("CPUs", line);
	cli_fmt_mib(cli_int(rep, "memory_total_mib", 0), a, sizeof(a));
	cli_fmt_mib(cli_int(rep, "memory_free_mib", 0), b, sizeof(b));
	snprintf(line, sizeof(line), "%s total, %s free", a, b);
	cli_kv("Memory", line);
	{
		struct json_object *v;
		bool kvm = json_object_object_get_ex(rep, "kvm_available", &v) &&
			   json_object_get_boolean(v);
		bool hw = json_object_object_get_ex(rep, "hardware_virt", &v) &&
			  json_object_get_boolean(v);
		cli_kv("KVM", kvm ? "available" : cli_str(rep, "kvm_error"));
		cli_kv("Hardware virt", hw ? "yes (vmx/svm)" : "no (no vmx/svm in /proc/cpuinfo)");
	}
	if (json_object_object_get_ex(rep, "vms", &vms)) {
		snprintf(line, sizeof(line), "%lld total, %lld running, %lld stopped, %lld crashed",
			 (long long)cli_int(vms, "total", 0), (long long)cli_int(vms, "running", 0),
			 (long long)cli_int(vms, "stopped", 0), (long long)cli_int(vms, "crashed", 0));
		cli_kv("VMs", line);
	}
	json_object_put(rep);
	return CLI_OK;
}

int cmd_host(struct cli_opts *o, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		host_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_USAGE : CLI_OK;
	}
	if (strcmp(argv[1], "info") == 0) {
		for (int i = 2; i < argc; i++) {
			if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
				host_usage(stdout);
				return CLI_OK;
			}
			if (strcmp(argv[i], "--json") == 0) {
				o->json = true;
				continue;
			}
			fprintf(stderr, "ferry host info: unexpected argument '%s'\n", argv[i]);
			return CLI_USAGE;
		}
		return host_info(o);
	}
	fprintf(stderr, "ferry host: unknown command '%s'\n\n", argv[1]);
	host_usage(stderr);
	return CLI_USAGE;
}
