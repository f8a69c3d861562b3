/*
 * `ferry host ...`: the host a ferryd runs on: facts and settings (info),
 * changing the settings live (set), moving every running VM off it
 * (evacuate), and making a cluster key (new-key, local: no ferryd needed).
 */
#include "cli/cli.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/auth.h"
#include "common/jsonl.h"

static void host_usage(FILE *f)
{
	fprintf(f,
		"usage: ferry [-c HOST[:PORT]] host info [--json]\n"
		"       ferry [-c HOST[:PORT]] host set [settings]\n"
		"       ferry [-c HOST[:PORT]] host evacuate -d HOST[:PORT] [move options]\n"
		"       ferry host new-key FILE\n"
		"\n"
		"info      the host's name, CPUs, memory, whether it can run VMs (KVM,\n"
		"          hardware virtualization), its VMs, its settings and its moves.\n"
		"set       change settings; they apply at once (queued moves start if the\n"
		"          limit rises) and persist across ferryd restarts:\n"
		"  --max-migrations N        live migrations at once, in and out (default 2);\n"
		"                            more wait as \"queued\" and start in order\n"
		"  --transport T             tcp, compression (default) or multichannel\n"
		"  --migration-network CIDR[,CIDR...]  networks migration traffic may use\n"
		"                            (e.g. 10.0.0.0/24); 'any' allows every network\n"
		"  --downtime-ms N           default switch-over target (default 50)\n"
		"  --bandwidth MiB/s         limit on all moves leaving this host together\n"
		"                            (0 = none): each running move gets an equal\n"
		"                            share, a move with a lower own limit (move-vm\n"
		"                            --bandwidth) keeps it and the rest is shared\n"
		"                            by the others; shares follow as moves start\n"
		"                            and end, and a change applies to running moves\n"
		"  --memory-reserve SIZE     memory never given to VMs (for the host itself),\n"
		"                            e.g. 2G (a bare number is MiB)\n"
		"  --migration-ports LOW-HIGH  ports incoming moves listen on (default 7460-7559)\n"
		"  --prealloc on|off         incoming VMs reserve (fault in) the memory their\n"
		"                            guest uses, as the source lists it, before the\n"
		"                            move starts (default off): a host short of\n"
		"                            memory refuses up front, and the transfer never\n"
		"                            waits on a first touch\n"
		"  --encrypt on|off          encrypt the connections of moves leaving this\n"
		"                            host (AES-256-GCM, keys from the cluster key;\n"
		"                            default off: authenticated but readable on the\n"
		"                            wire). Costs CPU: about 1.7x the time of a move\n"
		"                            that is CPU-bound (README, Benchmarks)\n"
		"  --verify-memory on|off    moves leaving this host have the destination check\n"
		"                            all guest memory against the source's digest\n"
		"                            before the VM runs there (default off; costs\n"
		"                            downtime: about 0.1 s per GiB the guest touched)\n"
		"  --accept-moves on|off     off: refuse every move to this host (E_NOT_ACCEPTING),\n"
		"                            e.g. while it is drained for maintenance; moves\n"
		"                            spread over several hosts (-d B,C) pass it by.\n"
		"                            Moves in flight finish. Default on\n"
		"  --cpu-baseline LIST       CPU features this host must be taken to lack for\n"
		"                            incoming VMs (e.g. -avx512f,-avx2; '' clears):\n"
		"                            a move whose guest sees one is refused at setup,\n"
		"                            so VMs that run here can move on to older hosts\n"
		"evacuate  live-migrate every running VM off the host (-c, default this\n"
		"          one) to another (-d), or spread over several (-d B,C: biggest\n"
		"          VM first to the one with the most free memory left), through\n"
		"          the same queue as move-vm; takes\n"
		"          move-vm's options (--downtime-ms, --bandwidth, --transport,\n"
		"          --codec, --encrypt, --verify-memory, --max-duration,\n"
		"          --on-timeout, --post-copy, --no-wait, --json); --copy-disk copies each VM's\n"
		"          disk to the same path there (hosts that share no storage),\n"
		"          or with --disk-dir DIR to DIR there, under its own file name,\n"
		"          and --remove-source-disk removes each image here once its VM\n"
		"          runs on the copy;\n"
		"          --check only checks that the destination would take them all.\n"
		"new-key   write a new random cluster key to FILE (mode 0600; an existing\n"
		"          file is never replaced). Start every host's ferryd with a copy\n"
		"          (ferryd --key-file FILE) and give it to remote clients (ferry\n"
		"          --key-file FILE, or FERRY_KEY_FILE). A ferryd without --key-file\n"
		"          makes its own, DIR/cluster.key, at first start.\n"
		"\n"
		"Examples:\n"
		"  ferry host info\n"
		"  ferry -c node2 host set --max-migrations 4 --migration-network 10.10.0.0/24\n"
		"  ferry host set --bandwidth 1000     # all outgoing moves: 1000 MiB/s together\n"
		"  ferry host set --cpu-baseline -avx512f   # VMs that run here can move to hosts without it\n"
		"  ferry host evacuate -c node1 -d node2\n"
		"  ferry -c node1 host set --accept-moves off   # drain node1: nothing moves in\n"
		"  ferry host evacuate -c node1 -d node2,node3\n"
		"  ferry host new-key /etc/ferry/cluster.key   # then copy it to every host\n");
}

static void host_info_settings(struct json_object *rep)
{
	struct json_object *s, *nets, *mig;
	char line[512], buf[64];
	size_t used = 0;

	if (!json_object_object_get_ex(rep, "settings", &s))
		return;
	json_object_object_get_ex(rep, "migrations", &mig);
	snprintf(line, sizeof(line), "%lld at once (%lld running, %lld queued)",
		 (long long)cli_int(s, "max_migrations", 0), (long long)cli_int(mig, "active", 0),
		 (long long)cli_int(mig, "queued", 0));
	cli_kv("Migrations", line);
	cli_kv("Transport", cli_str(s, "transport"));
	cli_kv("Pre-allocate", cli_bool(s, "prealloc") ? "on (incoming VMs reserve their memory first)" : "off");
	cli_kv("Encrypt", cli_bool(s, "encrypt") ? "on (outgoing moves: AES-256-GCM)" : "off (authenticated, not encrypted)");
	cli_kv("Verify memory", cli_bool(s, "verify_memory") ?
	       "on (outgoing moves: the destination checks all memory against a digest)" : "off");
	line[0] = '\0';
	if (json_object_object_get_ex(s, "migration_networks", &nets))
		for (size_t i = 0; i < json_object_array_length(nets) && used < sizeof(line); i++) {
			int n = snprintf(line + used, sizeof(line) - used, "%s%s", i ? ", " : "",
					 json_object_get_string(json_object_array_get_idx(nets, i)));
			if (n > 0)
				used += (size_t)n;
		}
	cli_kv("Migration nets", line[0] ? line : "any");
	snprintf(line, sizeof(line), "%lld ms", (long long)cli_int(s, "downtime_ms", 0));
	cli_kv("Downtime target", line);
	if (cli_int(s, "bandwidth_mibps", 0))
		snprintf(line, sizeof(line), "%lld MiB/s, shared by the outgoing moves",
			 (long long)cli_int(s, "bandwidth_mibps", 0));
	else
		snprintf(line, sizeof(line), "no cap");
	cli_kv("Bandwidth", line);
	cli_fmt_mib(cli_int(s, "memory_reserve_mib", 0), buf, sizeof(buf));
	cli_kv("Memory reserve", buf);
	cli_kv("Migration ports", cli_str(s, "migration_ports"));
	cli_kv("CPU baseline", cli_str(s, "cpu_baseline") ? cli_str(s, "cpu_baseline")
							  : "none (incoming VMs may see every feature here)");
	/* absent (a ferryd from before it, or on) is on */
	cli_kv("Accept moves", !json_object_object_get_ex(s, "accept_moves", NULL) || cli_bool(s, "accept_moves")
				       ? "on"
				       : "off (moves to this host are refused: host set --accept-moves on)");
}

/* An on|off setting (--prealloc, --encrypt, --verify-memory) into the request. */
static int host_set_onoff(struct json_object *req, const char *key, const char *arg)
{
	bool on;
	if (!cli_parse_onoff(arg, &on)) {
		fprintf(stderr, "ferry host set: --%s '%s': use on or off\n", key, arg);
		return -1;
	}
	jsonl_add_bool(req, key, on);
	return 0;
}

static int host_set(struct cli_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "max-migrations", required_argument, NULL, 'm' },
		{ "transport", required_argument, NULL, 't' },
		{ "migration-network", required_argument, NULL, 'n' },
		{ "downtime-ms", required_argument, NULL, 'D' },
		{ "bandwidth", required_argument, NULL, 'B' },
		{ "memory-reserve", required_argument, NULL, 'R' },
		{ "migration-ports", required_argument, NULL, 'P' },
		{ "prealloc", required_argument, NULL, 'A' },
		{ "encrypt", required_argument, NULL, 'E' },
		{ "verify-memory", required_argument, NULL, 'V' },
		{ "cpu-baseline", required_argument, NULL, 'b' },
		{ "accept-moves", required_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct json_object *req = json_object_new_object(), *rep, *nets = NULL;
	int opt, rc, nset = 0;
	long v;
	int64_t mib;

	jsonl_add_str(req, "cmd", "host.set");
	optind = 0;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		nset++;
		switch (opt) {
		case 'm':
			if (!cli_parse_int(optarg, 1, 64, &v)) {
				fprintf(stderr, "ferry host set: --max-migrations '%s': give 1 to 64\n", optarg);
				goto usage;
			}
			jsonl_add_int(req, "max_migrations", v);
			break;
		case 't': jsonl_add_str(req, "transport", optarg); break;
		case 'n': {
			char *copy = strdup(optarg), *save = NULL, *tok;
			if (!nets)
				nets = json_object_new_array();
			for (tok = copy ? strtok_r(copy, ",", &save) : NULL; tok;
			     tok = strtok_r(NULL, ",", &save)) {
				/* an empty list means every network: "none" would
				 * read as the opposite of what it does */
				if (strcmp(tok, "none") == 0) {
					fprintf(stderr, "ferry host set: --migration-network none: there is no "
						"such setting (an empty list means any network); give CIDRs, "
						"e.g. 10.0.0.0/24, or 'any'\n");
					free(copy);
					goto usage;
				}
				if (strcmp(tok, "any") != 0)
					json_object_array_add(nets, json_object_new_string(tok));
			}
			free(copy);
			break;
		}
		case 'D':
			if (!cli_parse_int(optarg, 1, 600000, &v)) {
				fprintf(stderr, "ferry host set: --downtime-ms '%s': give 1 to 600000\n", optarg);
				goto usage;
			}
			jsonl_add_int(req, "downtime_ms", v);
			break;
		case 'B':
			if (!cli_parse_int(optarg, 0, 1 << 20, &v)) {
				fprintf(stderr, "ferry host set: --bandwidth '%s': give MiB/s, 0 = no cap\n", optarg);
				goto usage;
			}
			jsonl_add_int(req, "bandwidth_mibps", v);
			break;
		case 'R':
			mib = cli_parse_mib(optarg);
			if (mib < 0 || mib > 16LL * 1024 * 1024) {
				fprintf(stderr, "ferry host set: --memory-reserve '%s': give a size like 2G, at most 16T\n",
					optarg);
				goto usage;
			}
			jsonl_add_int(req, "memory_reserve_mib", mib);
			break;
		case 'P': jsonl_add_str(req, "migration_ports", optarg); break;
		case 'A':
		case 'E':
		case 'V':
		case 'a':
			if (host_set_onoff(req, opt == 'A'   ? "prealloc"
						: opt == 'E' ? "encrypt"
						: opt == 'V' ? "verify_memory"
							     : "accept_moves",
					   optarg) < 0)
				goto usage;
			break;
		case 'b': jsonl_add_str(req, "cpu_baseline", optarg); break;
		case 'j': o->json = true; nset--; break;
		case 'h':
			json_object_put(req);
			json_object_put(nets);
			host_usage(stdout);
			return CLI_OK;
		default:
			goto usage;
		}
	}
	if (nets)
		json_object_object_add(req, "migration_networks", nets);
	if (optind < argc || nset == 0) {
		if (optind < argc)
			cli_unexpected_arg("host set", argc, argv, optind, " (see: ferry host set --help)");
		else
			fprintf(stderr, "ferry host set: nothing to set (see: ferry host set --help)\n");
		json_object_put(req);
		return CLI_USAGE;
	}
	rep = cli_request(o, req, 10000, &rc);
	if (rep && !o->json)
		printf("Settings saved and in effect. See: ferry host info\n");
	json_object_put(rep);
	return rc;
usage:
	json_object_put(req);
	json_object_put(nets);
	return CLI_USAGE;
}

static int host_evacuate(struct cli_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "computer-name", required_argument, NULL, 'c' },
		{ "destination-host", required_argument, NULL, 'd' },
		{ "downtime-ms", required_argument, NULL, 'D' },
		{ "bandwidth", required_argument, NULL, 'B' },
		{ "transport", required_argument, NULL, 'T' },
		{ "codec", required_argument, NULL, 'C' },
		{ "no-wait", no_argument, NULL, 'W' },
		{ "max-duration", required_argument, NULL, 'M' },
		{ "on-timeout", required_argument, NULL, 'O' },
		{ "encrypt", required_argument, NULL, 'E' },
		{ "verify-memory", optional_argument, NULL, 'V' },
		{ "copy-disk", no_argument, NULL, 'K' },
		{ "disk-dir", required_argument, NULL, 'G' },
		{ "remove-source-disk", no_argument, NULL, 'R' },
		{ "check", no_argument, NULL, 'X' },
		{ "post-copy", no_argument, NULL, 'Y' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct move_opts_pub mo = { .bandwidth = -1, .encrypt = -1, .verify_memory = -1 };
	struct json_object *req;
	int opt;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "c:d:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': o->computer = optarg; break;
		case 'j': o->json = true; break;
		case 'h': host_usage(stdout); return CLI_OK;
		default:
			if (opt != '?' && cli_move_parse_common(opt, optarg, "host evacuate", &mo, argc, argv) == 0)
				break;
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		cli_unexpected_arg("host evacuate", argc, argv, optind, " (see: ferry host --help)");
		return CLI_USAGE;
	}
	if (!mo.destination) {
		fprintf(stderr, "ferry host evacuate: --destination-host is required (see: ferry host --help)\n");
		return CLI_USAGE;
	}
	if (cli_move_check_common(&mo, "host evacuate") < 0)
		return CLI_USAGE;
	req = json_object_new_object();
	jsonl_add_str(req, "cmd", "migration.start");
	jsonl_add_bool(req, "all_running", true);
	return cli_start_moves(o, req, &mo);
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
	if (cli_str(rep, "listen")) { /* an earlier ferryd does not say */
		char where[PATH_MAX + 300];
		snprintf(where, sizeof(where), "listening on %s, state in %s", cli_str(rep, "listen"),
			 cli_str(rep, "state_dir") ? cli_str(rep, "state_dir") : "?");
		cli_kv("ferryd", where);
	}
	snprintf(line, sizeof(line), "%lld", (long long)cli_int(rep, "cpus", 0));
	cli_kv("CPUs", line);
	cli_fmt_mib(cli_int(rep, "memory_total_mib", 0), a, sizeof(a));
	cli_fmt_mib(cli_int(rep, "memory_free_mib", 0), b, sizeof(b));
	snprintf(line, sizeof(line), "%s total, %s free", a, b);
	cli_kv("Memory", line);
	{
		struct json_object *cg;
		if (json_object_object_get_ex(rep, "memory_cgroup", &cg)) {
			char cgl[512];
			cli_fmt_mib(cli_int(cg, "limit_mib", 0), a, sizeof(a));
			cli_fmt_mib(cli_int(cg, "used_mib", 0), b, sizeof(b));
			snprintf(cgl, sizeof(cgl), "%s, %s used (cgroup %s; VMs count against it)",
				 a, b, cli_str(cg, "path"));
			cli_kv("Memory limit", cgl);
		}
	}
	{
		struct json_object *v;
		bool kvm = json_object_object_get_ex(rep, "kvm_available", &v) &&
			   json_object_get_boolean(v);
		bool hw = json_object_object_get_ex(rep, "hardware_virt", &v) &&
			  json_object_get_boolean(v);
		cli_kv("KVM", kvm ? "available" : cli_str(rep, "kvm_error"));
		cli_kv("Hardware virt", hw ? "yes (vmx/svm)" : "no (no vmx/svm in /proc/cpuinfo)");
	}
	{
		struct json_object *br;
		size_t len = 0;
		line[0] = '\0';
		if (json_object_object_get_ex(rep, "bridges", &br) && json_object_is_type(br, json_type_array))
			for (size_t i = 0; i < json_object_array_length(br) && len < sizeof(line); i++)
				len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s", i ? ", " : "",
							json_object_get_string(json_object_array_get_idx(br, i)));
		cli_kv("Bridges", line[0] ? line : "none (VMs with --bridge cannot run here)");
	}
	if (cli_str(rep, "auth") && strcmp(cli_str(rep, "auth"), "none") == 0) {
		cli_kv("Cluster key", "none (--no-auth: TCP clients and migrations unauthenticated)");
	} else if (cli_str(rep, "key_file") && cli_str(rep, "key_fingerprint")) {
		snprintf(line, sizeof(line), "%s (fingerprint %s: must match on every host it moves VMs with)",
			 cli_str(rep, "key_file"), cli_str(rep, "key_fingerprint"));
		cli_kv("Cluster key", line);
		if (cli_str(rep, "previous_key_file") && cli_str(rep, "previous_key_fingerprint")) {
			snprintf(line, sizeof(line),
				 "%s (fingerprint %s; still accepted while the cluster changes keys)",
				 cli_str(rep, "previous_key_file"),
				 cli_str(rep, "previous_key_fingerprint"));
			cli_kv("Previous key", line);
		}
	}
	if (json_object_object_get_ex(rep, "vms", &vms)) {
		snprintf(line, sizeof(line), "%lld total, %lld running, %lld stopped, %lld crashed",
			 (long long)cli_int(vms, "total", 0), (long long)cli_int(vms, "running", 0),
			 (long long)cli_int(vms, "stopped", 0), (long long)cli_int(vms, "crashed", 0));
		cli_kv("VMs", line);
	}
	host_info_settings(rep);
	json_object_put(rep);
	return CLI_OK;
}

static int host_new_key(int argc, char **argv)
{
	struct err e = { 0 };
	bool created = false;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		host_usage(stdout);
		return CLI_OK;
	}
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: ferry host new-key FILE\n");
		return CLI_USAGE;
	}
	if (auth_key_create(argv[1], &created, &e) < 0) {
		fprintf(stderr, "ferry host new-key: %s\n", e.msg);
		return CLI_FAILED;
	}
	if (!created) {
		fprintf(stderr, "ferry host new-key: %s exists already; not replacing a key "
			"(remove it first if you mean to)\n", argv[1]);
		return CLI_FAILED;
	}
	{
		struct auth_key key;
		char fp[AUTH_FINGERPRINT_HEX];
		if (auth_key_load(&key, argv[1], &e) < 0) {
			fprintf(stderr, "ferry host new-key: %s\n", e.msg);
			return CLI_FAILED;
		}
		auth_fingerprint(&key, fp);
		printf("Wrote a new cluster key to %s (mode 0600, fingerprint %s). Copy it to every "
		       "ferry host (ferryd --key-file %s) and to remote clients; ferry host info "
		       "shows each host's fingerprint.\n", argv[1], fp, argv[1]);
	}
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
	{
		const char *sub = argv[1];
		cli_argv0(argv + 1, "host");
		if (strcmp(sub, "set") == 0)
			return host_set(o, argc - 1, argv + 1);
		if (strcmp(sub, "evacuate") == 0)
			return host_evacuate(o, argc - 1, argv + 1);
		if (strcmp(sub, "new-key") == 0)
			return host_new_key(argc - 1, argv + 1);
		fprintf(stderr, "ferry host: unknown command '%s'\n\n", sub);
	}
	host_usage(stderr);
	return CLI_USAGE;
}
