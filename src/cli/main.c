/*
 * ferry: the command-line client for ferryd. Global options pick the host
 * (local UNIX socket by default, --computer-name for TCP) and the output
 * style; the first word picks a command group from the table below, each
 * group in its own file.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const struct cli_group groups[] = {
	{ "vm", cmd_vm, "define, start, stop, list, inspect, attach to and delete VMs" },
	{ "host", cmd_host, "show and change host settings; evacuate a host; make a cluster key" },
	{ "move-vm", cmd_move, "live-migrate running VMs to another host" },
	{ "migration", cmd_migration, "live migrations in flight and done: status, bandwidth, cancel, history" },
	{ NULL, NULL, NULL },
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ferry [-c HOST[:PORT]] [--key-file FILE] [--socket PATH] [--json]\n"
		"             GROUP COMMAND [ARGS]\n"
		"\n"
		"Manage VMs on a ferry host (through its ferryd).\n"
		"\n"
		"  -c, --computer-name HOST[:PORT]  talk to ferryd on another host over TCP\n"
		"                                   (port default 7450)\n"
		"  --key-file FILE the cluster key that host's ferryd holds, for -c\n"
		"                  (default $FERRY_KEY_FILE or " CLI_DEFAULT_KEY ")\n"
		"  --socket PATH   local ferryd socket (default $FERRY_SOCKET or\n"
		"                  " CLI_DEFAULT_SOCKET ")\n"
		"  --json          print ferryd's JSON replies instead of tables\n"
		"  --version       print the version\n"
		"\n"
		"groups:\n");
	for (const struct cli_group *g = groups; g->name; g++)
		fprintf(f, "  %-10s %s\n", g->name, g->summary);
	fprintf(f,
		"\n"
		"Examples:\n"
		"  ferry vm new --name web1 --memory 1G --vcpus 2 --kernel /srv/vmlinuz\n"
		"  ferry vm start web1\n"
		"  ferry vm list\n"
		"  ferry -c node2 host info\n"
		"  ferry move-vm -c node1 -n web1 -d node2\n"
		"\n"
		"Run 'ferry GROUP --help' or 'ferry GROUP COMMAND --help' for more.\n"
		"Exit status: 0 done, 1 refused or failed (also a cluster key ferryd does not\n"
		"accept), 2 bad command line, 3 no ferryd to talk to, 130 move-vm or host\n"
		"evacuate stopped watching at Ctrl-C (the moves go on).\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "computer-name", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct cli_opts o = { 0 };
	const char *env = getenv("FERRY_SOCKET"), *kenv = getenv("FERRY_KEY_FILE");
	int opt;

	o.socket = env && *env ? env : CLI_DEFAULT_SOCKET;
	o.key_file = kenv && *kenv ? kenv : NULL;
	/* "+": stop at the group name; later options belong to the verb. */
	while ((opt = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': o.computer = optarg; break;
		case 's': o.socket = optarg; break;
		case 'k': o.key_file = optarg; break;
		case 'j': o.json = true; break;
		case 'h': usage(stdout); return CLI_OK;
		case 'V': printf("ferry 0.1.0\n"); return CLI_OK;
		default: usage(stderr); return CLI_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return CLI_USAGE;
	}
	for (const struct cli_group *g = groups; g->name; g++)
		if (strcmp(g->name, argv[optind]) == 0) {
			cli_argv0(argv + optind, "");
			return g->run(&o, argc - optind, argv + optind);
		}
	fprintf(stderr, "ferry: unknown command group '%s'\n\n", argv[optind]);
	usage(stderr);
	return CLI_USAGE;
}
