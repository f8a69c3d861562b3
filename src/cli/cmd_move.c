/*
 * `ferry move-vm`: live-migrate one or more running VMs from a host to
 * another, as Move-VM does. The source ferryd runs the moves (queue,
 * concurrency limit, setup with the destination); this command asks for
 * them and then follows them (watch.c) unless --no-wait.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonl.h"

#define MOVE_MAX_NAMES 256

static const char move_usage_text[] =
	"usage: ferry move-vm [-c HOST[:PORT]] -n VM[,VM...] -d HOST[:PORT] [options]\n"
	"\n"
	"Live-migrate running VMs from one host (-c, default: this one) to another\n"
	"while they keep running. Memory is copied while the guest works, then the\n"
	"VM pauses briefly (the downtime), its last pages and device state move, and\n"
	"it resumes on the destination. Until that switch-over the move can be\n"
	"cancelled and the VM keeps running where it was.\n"
	"\n"
	"  -c, --computer-name HOST[:PORT]   the source host's ferryd (default: local)\n"
	"  -n, --name VM[,VM...]             the VMs to move; repeat or comma-separate.\n"
	"                                    Beyond the host's migration limit they queue\n"
	"  -d, --destination-host HOST[:PORT][,HOST[:PORT]...]\n"
	"                         the destination host's ferryd (port 7450). Several: each\n"
	"                         VM goes, biggest first, to the one with the most free\n"
	"                         memory left (less its reserve), as their ferryd say\n"
	"  --downtime-ms N        switch over once the rest fits in N ms (default: host setting)\n"
	"  --bandwidth MiB/s      this move's own limit (default 0 = none of its own); the\n"
	"                         host's limit (host set --bandwidth) is shared by all its\n"
	"                         outgoing moves and applies too. Change it while the move\n"
	"                         runs: ferry migration set VM --bandwidth N\n"
	"  --transport T          tcp, compression or multichannel (default: host setting)\n"
	"  --codec C              auto (default: lz4, or zstd under a cap of 300 MiB/s or\n"
	"                         less, and only while compressing is measured to be at\n"
	"                         least as fast as sending raw), lz4 or zstd (always tried,\n"
	"                         e.g. on a metered link); for compression, and for\n"
	"                         multichannel, which compresses only with lz4 or zstd given\n"
	"  --max-duration S       give the move at most S seconds of pre-copy (default 0: no\n"
	"                         limit; checked between chunks, so a long pass does not run\n"
	"                         past it; a move waiting for the VM's last copy on the\n"
	"                         destination to end waits at most S s, or 600), then\n"
	"  --on-timeout A         switchover (default: stop and copy the rest, a longer\n"
	"                         downtime: what is left / the bandwidth; with --post-copy,\n"
	"                         post-copy) or cancel (the VM stays where it is)\n"
	"  --post-copy            when pre-copy does not converge (the guest dirties memory\n"
	"                         about as fast as the link moves it), switch over anyway and\n"
	"                         send the rest after the VM runs there, the pages it\n"
	"                         touches first on demand, instead of slowing its vCPUs or\n"
	"                         stopping it for long. Risk: until the last page is there\n"
	"                         the VM's memory is on both hosts, and if either host or\n"
	"                         the link fails meanwhile the VM is lost (it stops; start it\n"
	"                         again on the destination). A guest that converges moves\n"
	"                         as without it. Not with --verify-memory\n"
	"  --encrypt on|off       encrypt this move's connections (AES-256-GCM) or not\n"
	"                         (default: host setting, host set --encrypt). Either\n"
	"                         way both hosts prove the cluster key first\n"
	"  --verify-memory [on|off]  at the switch-over the source digests all guest\n"
	"                         memory and the destination checks its copy against it\n"
	"                         before the VM may run there; a difference fails the move\n"
	"                         and the VM runs on here. Costs downtime: about 0.1 s per\n"
	"                         GiB the guest has touched, on each side (default: host\n"
	"                         setting, host set --verify-memory, itself off)\n"
	"  --copy-disk            for hosts that share no storage: copy the VM's disk image\n"
	"                         with its memory (the guest's writes meanwhile too), to the\n"
	"                         same path on the destination, which must not exist there;\n"
	"                         the image here stays as it was at the switch-over. A VM\n"
	"                         without a disk moves as usual\n"
	"  --disk-path PATH       with --copy-disk and one VM: the copy's path there instead\n"
	"  --disk-dir DIR         with --copy-disk: each copy goes to DIR there, under its\n"
	"                         image's file name (for a host that keeps images elsewhere)\n"
	"  --remove-source-disk   with --copy-disk: remove the image here once the\n"
	"                         destination confirms the VM runs on its copy (default:\n"
	"                         keep it; a failed, cancelled or unconfirmed move keeps it)\n"
	"  --check                only check that the destination would take each VM, as\n"
	"                         the move's setup does (CPU model, memory, disk, network,\n"
	"                         versions, keys); then call it off: the VM never pauses\n"
	"                         and no memory moves. State \"checked\", exit status 0 when\n"
	"                         every VM would go\n"
	"  --no-wait              start the moves and return; follow with: ferry migration list\n"
	"  --json                 one JSON event per line instead of the progress display\n"
	"\n"
	"On a terminal each VM gets a progress line (stage, percent of memory sent, pass,\n"
	"dirty rate, throughput, data left, ETA) and the end shows total time,\n"
	"downtime, setup time, bytes on the wire and pages sent by kind. The exit\n"
	"status is 0 only if every move completed. Ctrl-C stops the watching, not the\n"
	"moves (exit 130): cancel one with ferry migration cancel VM.\n"
	"\n"
	"Examples:\n"
	"  ferry move-vm -n web1 -d node2\n"
	"  ferry move-vm -c node1 -n web1,web2,db1 -d node2:7450 --bandwidth 500\n"
	"  ferry move-vm -n web1 -d node2 --no-wait && ferry migration status web1\n"
	"  ferry move-vm -n db1 -d remote-site --bandwidth 100 --codec zstd\n"
	"  ferry move-vm -n web1 -d node3 --copy-disk --disk-path /srv/images/web1.img\n"
	"  ferry move-vm -n web1,web2 -d node3 --copy-disk --disk-dir /srv/images\n"
	"  ferry move-vm -n web1,web2 -d node2 --check    # would they go? nothing moves\n"
	"  ferry move-vm -n web1,web2,db1 -d node2,node3  # spread by free memory\n";

void cli_move_request_options(struct json_object *req, const struct move_opts_pub *mo)
{
	jsonl_add_str(req, "destination", mo->destination);
	if (mo->downtime_ms > 0)
		jsonl_add_int(req, "downtime_ms", mo->downtime_ms);
	if (mo->bandwidth >= 0)
		jsonl_add_int(req, "bandwidth_mibps", mo->bandwidth);
	if (mo->max_duration_s > 0)
		jsonl_add_int(req, "max_duration_s", mo->max_duration_s);
	if (mo->on_timeout)
		jsonl_add_str(req, "on_timeout", mo->on_timeout);
	if (mo->transport)
		jsonl_add_str(req, "transport", mo->transport);
	if (mo->codec)
		jsonl_add_str(req, "codec", mo->codec);
	if (mo->encrypt >= 0)
		jsonl_add_bool(req, "encrypt", mo->encrypt);
	if (mo->verify_memory >= 0)
		jsonl_add_bool(req, "verify_memory", mo->verify_memory);
	if (mo->copy_disk)
		jsonl_add_bool(req, "copy_disk", true);
	if (mo->disk_path)
		jsonl_add_str(req, "disk_path", mo->disk_path);
	if (mo->disk_dir)
		jsonl_add_str(req, "disk_dir", mo->disk_dir);
	if (mo->remove_source_disk)
		jsonl_add_bool(req, "remove_source_disk", true);
	if (mo->check_only)
		jsonl_add_bool(req, "check_only", true);
	if (mo->postcopy)
		jsonl_add_bool(req, "postcopy", true);
}

/* Send migration.start and follow (or list) the moves it made; with
 * several destinations, place the VMs on them first (placement.c). */
int cli_start_moves(struct cli_opts *o, struct json_object *req,
		    const struct move_opts_pub *mo)
{
	struct json_object *rep, *moves, *names = NULL;
	int rc;
	bool json = o->json;

	if (strchr(mo->destination, ',')) {
		if (json_object_object_get_ex(req, "names", &names))
			json_object_get(names);
		json_object_put(req);
		rc = cli_start_placed(o, names, mo);
		json_object_put(names);
		return rc;
	}
	cli_move_request_options(req, mo);
	/* The start reply is ours to interpret; --json events come after. */
	o->json = false;
	rep = cli_request(o, req, 30000, &rc);
	o->json = json;
	if (!rep)
		return rc;
	if (!json_object_object_get_ex(rep, "moves", &moves) ||
	    json_object_array_length(moves) == 0) {
		cli_say_nothing_to_move(json);
		json_object_put(rep);
		return CLI_OK;
	}
	rc = cli_follow_moves(o, moves, mo);
	json_object_put(rep);
	return rc;
}

void cli_say_nothing_to_move(bool json)
{
	if (json)
		printf("{\"event\":\"done\",\"completed\":0,\"failed\":0}\n");
	else
		printf("Nothing to move: no running VMs.\n");
}

int cli_follow_moves(struct cli_opts *o, struct json_object *moves, const struct move_opts_pub *mo)
{
	bool json = o->json;
	/* Events whenever the moves are followed without a terminal, as the
	 * progress after them; --no-wait alone prints lines for people. */
	bool events = json || (!mo->no_wait && !isatty(STDOUT_FILENO));
	if (mo->no_wait || events) {
		for (size_t i = 0; i < json_object_array_length(moves); i++) {
			struct json_object *mv = json_object_array_get_idx(moves, i);
			if (events) {
				struct json_object *ev = json_object_new_object();
				jsonl_add_str(ev, "event", "started");
				json_object_object_foreach(mv, k, v)
					json_object_object_add(ev, k, json_object_get(v));
				printf("%s\n", jsonl_text(ev));
				json_object_put(ev);
			} else {
				printf("move %s: VM %s to %s: %s", cli_str(mv, "id"), cli_str(mv, "name"),
				       cli_str(mv, "destination"), cli_str(mv, "state"));
				if (cli_int(mv, "position", 0))
					printf(" (#%lld in the queue)", (long long)cli_int(mv, "position", 0));
				printf("\n");
			}
		}
		if (mo->no_wait) {
			if (!json)
				printf("Follow with: ferry%s%s migration list\n",
				       o->computer ? " -c " : "", o->computer ? o->computer : "");
			return CLI_OK;
		}
	}
	return cli_watch_moves(o, moves);
}

int cli_move_parse_common(int opt, const char *arg, const char *cmd,
			  struct move_opts_pub *mo, int argc, char **argv)
{
	bool on;

	switch (opt) {
	case 'd': {
		/* checked here as -c is: a typo is a bad command line (2); a
		 * list ("hostB,hostC") places the VMs on them (placement.c) */
		char host[256], port[16], one[300];
		struct err e = { 0 };
		const char *p = arg;
		do {
			size_t len = strcspn(p, ",");
			if (len == 0 || len >= sizeof(one)) {
				fprintf(stderr, "ferry %s: --destination-host '%s': give HOST[:PORT], or "
					"several separated by commas\n", cmd, arg);
				return -1;
			}
			memcpy(one, p, len);
			one[len] = '\0';
			if (sock_split_hostport(one, CLI_DEFAULT_PORT, host, sizeof(host), port,
						sizeof(port), &e) < 0) {
				fprintf(stderr, "ferry %s: --destination-host: %s\n", cmd, e.msg);
				return -1;
			}
			p += len;
		} while (*p++ == ',');
		mo->destination = arg;
		return 0;
	}
	case 'D':
		if (!cli_parse_int(arg, 1, 600000, &mo->downtime_ms)) {
			fprintf(stderr, "ferry %s: --downtime-ms '%s': give milliseconds, 1 to 600000\n",
				cmd, arg);
			return -1;
		}
		return 0;
	case 'B':
		if (!cli_parse_int(arg, 0, 1 << 20, &mo->bandwidth)) {
			fprintf(stderr, "ferry %s: --bandwidth '%s': give MiB/s (0 = no cap)\n", cmd, arg);
			return -1;
		}
		return 0;
	case 'T':
		if (strcmp(arg, "tcp") != 0 && strcmp(arg, "compression") != 0 &&
		    strcmp(arg, "multichannel") != 0) {
			fprintf(stderr, "ferry %s: --transport '%s': use tcp, compression or multichannel\n",
				cmd, arg);
			return -1;
		}
		mo->transport = arg;
		return 0;
	case 'C':
		if (strcmp(arg, "auto") != 0 && strcmp(arg, "lz4") != 0 && strcmp(arg, "zstd") != 0) {
			fprintf(stderr, "ferry %s: --codec '%s': use auto, lz4 or zstd\n", cmd, arg);
			return -1;
		}
		mo->codec = arg;
		return 0;
	case 'W':
		mo->no_wait = true;
		return 0;
	case 'K':
		mo->copy_disk = true;
		return 0;
	case 'G':
		if (arg[0] != '/') {
			fprintf(stderr, "ferry %s: --disk-dir '%s': give the absolute path of a directory "
				"on the destination\n", cmd, arg);
			return -1;
		}
		mo->disk_dir = arg;
		return 0;
	case 'R':
		mo->remove_source_disk = true;
		return 0;
	case 'X':
		mo->check_only = true;
		return 0;
	case 'Y':
		mo->postcopy = true;
		return 0;
	case 'V':
		/* --verify-memory off, as host set and --encrypt take it (an
		 * optional argument is otherwise only --verify-memory=off) */
		if (!arg && optind < argc && cli_parse_onoff(argv[optind], &on))
			arg = argv[optind++];
		if (arg && !cli_parse_onoff(arg, &on)) {
			fprintf(stderr, "ferry %s: --verify-memory='%s': use on or off\n", cmd, arg);
			return -1;
		}
		mo->verify_memory = !arg || on;
		return 0;
	case 'E':
		if (!cli_parse_onoff(arg, &on)) {
			fprintf(stderr, "ferry %s: --encrypt '%s': use on or off\n", cmd, arg);
			return -1;
		}
		mo->encrypt = on ? 1 : 0;
		return 0;
	case 'M':
		if (!cli_parse_int(arg, 0, 86400, &mo->max_duration_s)) {
			fprintf(stderr, "ferry %s: --max-duration '%s': give seconds, 0 to 86400\n", cmd, arg);
			return -1;
		}
		return 0;
	case 'O':
		if (strcmp(arg, "switchover") != 0 && strcmp(arg, "cancel") != 0) {
			fprintf(stderr, "ferry %s: --on-timeout '%s': use switchover or cancel\n", cmd, arg);
			return -1;
		}
		mo->on_timeout = arg;
		return 0;
	}
	return -1;
}

int cli_move_check_common(const struct move_opts_pub *mo, const char *cmd)
{
	if (mo->postcopy && mo->verify_memory == 1) {
		fprintf(stderr, "ferry %s: --post-copy and --verify-memory do not go together: the "
			"digest is checked before the VM runs there, and in post-copy part of its "
			"memory is still here then\n", cmd);
		return -1;
	}
	if ((mo->disk_path || mo->disk_dir) && !mo->copy_disk) {
		fprintf(stderr, "ferry %s: --%s is where the disk's copy goes: give --copy-disk too\n",
			cmd, mo->disk_path ? "disk-path" : "disk-dir");
		return -1;
	}
	if (mo->remove_source_disk && !mo->copy_disk) {
		fprintf(stderr, "ferry %s: --remove-source-disk removes the image a copy replaced: "
			"give --copy-disk too\n", cmd);
		return -1;
	}
	if (mo->disk_path && mo->disk_dir) {
		fprintf(stderr, "ferry %s: --disk-path names the copy, --disk-dir its directory: give one\n",
			cmd);
		return -1;
	}
	return 0;
}

int cmd_move(struct cli_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "computer-name", required_argument, NULL, 'c' },
		{ "name", required_argument, NULL, 'n' },
		{ "destination-host", required_argument, NULL, 'd' },
		{ "downtime-ms", required_argument, NULL, 'D' },
		{ "bandwidth", required_argument, NULL, 'B' },
		{ "transport", required_argument, NULL, 'T' },
		{ "codec", required_argument, NULL, 'C' },
		{ "max-duration", required_argument, NULL, 'M' },
		{ "on-timeout", required_argument, NULL, 'O' },
		{ "encrypt", required_argument, NULL, 'E' },
		{ "verify-memory", optional_argument, NULL, 'V' },
		{ "copy-disk", no_argument, NULL, 'K' },
		{ "disk-path", required_argument, NULL, 'P' },
		{ "disk-dir", required_argument, NULL, 'G' },
		{ "remove-source-disk", no_argument, NULL, 'R' },
		{ "check", no_argument, NULL, 'X' },
		{ "post-copy", no_argument, NULL, 'Y' },
		{ "no-wait", no_argument, NULL, 'W' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct move_opts_pub mo = { .bandwidth = -1, .encrypt = -1, .verify_memory = -1 };
	struct json_object *names = json_object_new_array(), *req;
	int opt;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "c:n:d:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': o->computer = optarg; break;
		case 'n': {
			char *copy = strdup(optarg), *save = NULL, *tok;
			if (!copy)
				break;
			for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
				if (*tok && json_object_array_length(names) < MOVE_MAX_NAMES)
					json_object_array_add(names, json_object_new_string(tok));
			free(copy);
			break;
		}
		case 'j': o->json = true; break;
		case 'P':
			if (optarg[0] != '/') {
				fprintf(stderr, "ferry move-vm: --disk-path '%s': give the copy's absolute path "
					"on the destination\n", optarg);
				json_object_put(names);
				return CLI_USAGE;
			}
			mo.disk_path = optarg;
			break;
		case 'h':
			fputs(move_usage_text, stdout);
			json_object_put(names);
			return CLI_OK;
		default:
			if (opt != '?' && cli_move_parse_common(opt, optarg, "move-vm", &mo, argc, argv) == 0)
				break;
			if (opt == '?')
				fputs(move_usage_text, stderr);
			json_object_put(names);
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		cli_unexpected_arg("move-vm", argc, argv, optind, " (name VMs with -n)");
		json_object_put(names);
		return CLI_USAGE;
	}
	if (json_object_array_length(names) == 0 || !mo.destination) {
		fprintf(stderr, "ferry move-vm: %s is required (see: ferry move-vm --help)\n",
			!mo.destination && json_object_array_length(names) ? "--destination-host"
									    : "--name");
		json_object_put(names);
		return CLI_USAGE;
	}
	if (cli_move_check_common(&mo, "move-vm") < 0) {
		json_object_put(names);
		return CLI_USAGE;
	}
	if (mo.disk_path && (json_object_array_length(names) > 1 || strchr(mo.destination, ','))) {
		fprintf(stderr, "ferry move-vm: --disk-path names one file: move one VM with it\n");
		json_object_put(names);
		return CLI_USAGE;
	}
	req = json_object_new_object();
	jsonl_add_str(req, "cmd", "migration.start");
	json_object_object_add(req, "names", names);
	return cli_start_moves(o, req, &mo);
}
