/*
 * `ferry migration ...`: the moves a host knows about: list (queued and in
 * flight, both directions), status (one move with its figures), set (a
 * move's own bandwidth limit, live), cancel, history (finished moves, kept
 * across restarts).
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/jsonl.h"

#define MIG_CALL_TIMEOUT_MS 15000

static const char mig_usage_text[] =
	"usage: ferry [-c HOST[:PORT]] migration COMMAND [ARGS] [--json]\n"
	"\n"
	"Live migrations on a host (start them with: ferry move-vm).\n"
	"\n"
	"  list                 queued and running moves, in and out, with progress\n"
	"  status ID|VM         one move: stage, figures, bandwidth limit, error\n"
	"                       (finished ones too)\n"
	"  set ID|VM --bandwidth MiB/s\n"
	"                       change an outgoing move's own bandwidth limit while\n"
	"                       it runs (0 = none of its own). The host's limit\n"
	"                       (ferry host set --bandwidth) is shared by all moves\n"
	"                       leaving the host; a move runs at the lower of its\n"
	"                       share and its own limit, and what it leaves unused\n"
	"                       goes to the others\n"
	"  cancel ID|VM         cancel a queued move, or a running one before its\n"
	"                       commit point (the VM keeps running where it was)\n"
	"  history [--name VM] [--limit N]\n"
	"                       finished moves with total time, downtime and bytes\n"
	"\n"
	"Examples:\n"
	"  ferry migration list\n"
	"  ferry -c node1 migration status web1\n"
	"  ferry migration set web1 --bandwidth 200   # web1 at most 200 MiB/s\n"
	"  ferry migration set web1 --bandwidth 0     # back to its share of the host's\n"
	"  ferry migration cancel mv-1a2b3c4d\n"
	"  ferry migration history --name web1 --limit 5\n";

/* An incoming move's progress is what has arrived (its destination
 * cannot know how much will); else NULL. */
static struct json_object *mig_incoming_progress(struct json_object *mv)
{
	const char *dir = cli_str(mv, "direction");
	return dir && strcmp(dir, "incoming") == 0 ? cli_progress(mv) : NULL;
}

static void mig_progress_cell(struct json_object *mv, char *buf, size_t cap)
{
	const char *state = cli_str(mv, "state");
	struct json_object *p = cli_progress(mv), *in = mig_incoming_progress(mv);
	char got[32];
	if (in) {
		cli_fmt_bytes(cli_num(in, "bytes_received"), got, sizeof(got));
		snprintf(buf, cap, "%s in", got);
	} else if (state && strcmp(state, "queued") == 0)
		snprintf(buf, cap, "#%lld in queue", (long long)cli_int(mv, "position", 0));
	else if (p)
		snprintf(buf, cap, "%.0f%% pass %lld", cli_num(p, "percent"),
			 (long long)cli_int(p, "pass", 0));
	else
		snprintf(buf, cap, "-");
}

/* "120 MiB/s", or "none" for 0. */
static void mig_fmt_limit(int64_t mibps, char *buf, size_t cap)
{
	if (mibps > 0)
		snprintf(buf, cap, "%lld MiB/s", (long long)mibps);
	else
		snprintf(buf, cap, "none");
}

/* The limit an outgoing move runs at now; "-" when it is not sending. */
static void mig_limit_cell(struct json_object *mv, char *buf, size_t cap)
{
	if (cli_int(mv, "bandwidth_effective_mibps", -1) < 0)
		snprintf(buf, cap, "-");
	else
		mig_fmt_limit(cli_int(mv, "bandwidth_effective_mibps", 0), buf, cap);
}

static int mig_list(struct cli_opts *o)
{
	static const char *const hdr[] = { "ID", "VM", "DIRECTION", "STATE", "STAGE",
					   "PROGRESS", "LIMIT", "PEER" };
	struct json_object *req = json_object_new_object(), *rep, *moves;
	struct cli_table *t;
	int rc;

	jsonl_add_str(req, "cmd", "migration.list");
	rep = cli_request(o, req, MIG_CALL_TIMEOUT_MS, &rc);
	if (!rep || o->json) {
		json_object_put(rep);
		return rc;
	}
	json_object_object_get_ex(rep, "moves", &moves);
	printf("%lld of %lld migration slots in use, %lld queued",
	       (long long)cli_int(rep, "active", 0), (long long)cli_int(rep, "max_migrations", 0),
	       (long long)cli_int(rep, "queued", 0));
	if (cli_int(rep, "bandwidth_mibps", 0) > 0)
		printf("; outgoing moves share %lld MiB/s",
		       (long long)cli_int(rep, "bandwidth_mibps", 0));
	printf("\n");
	if (!moves || json_object_array_length(moves) == 0) {
		printf("No moves in flight. History: ferry migration history\n");
		json_object_put(rep);
		return CLI_OK;
	}
	t = cli_table_new(8, hdr);
	for (size_t i = 0; i < json_object_array_length(moves); i++) {
		struct json_object *mv = json_object_array_get_idx(moves, i);
		const char *dir = cli_str(mv, "direction");
		bool out = dir && strcmp(dir, "outgoing") == 0;
		char prog[64], limit[32];
		const char *cells[8];
		mig_progress_cell(mv, prog, sizeof(prog));
		mig_limit_cell(mv, limit, sizeof(limit));
		cells[0] = cli_str(mv, "id");
		cells[1] = cli_str(mv, "name");
		cells[2] = out ? "out" : "in";
		cells[3] = cli_str(mv, "state");
		cells[4] = cli_str(mv, "stage");
		cells[5] = prog;
		cells[6] = limit;
		cells[7] = out ? cli_str(mv, "destination") : cli_str(mv, "source");
		cli_table_row(t, cells);
	}
	cli_table_print(t);
	json_object_put(rep);
	return CLI_OK;
}

static void mig_time(int64_t ms, char *buf, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (ms <= 0 || !localtime_r(&t, &tm) || !strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, cap, "-");
}

/* "40 MiB/s now (own limit: none)": the limit in force while the move
 * sends, and the one it asked for. */
static void mig_bandwidth_line(struct json_object *mv, char *buf, size_t cap)
{
	char now[32], own[32];

	mig_fmt_limit(cli_int(mv, "bandwidth_mibps", 0), own, sizeof(own));
	if (cli_int(mv, "bandwidth_effective_mibps", -1) < 0) {
		snprintf(buf, cap, "own limit: %s", own);
		return;
	}
	mig_fmt_limit(cli_int(mv, "bandwidth_effective_mibps", 0), now, sizeof(now));
	snprintf(buf, cap, "%s now (own limit: %s)", cli_int(mv, "bandwidth_effective_mibps", 0) ?
		 now : "no limit", own);
}

static void mig_show(struct json_object *mv)
{
	struct json_object *in = mig_incoming_progress(mv), *p = in ? NULL : cli_progress(mv), *dp;
	char buf[256], a[32], b[32], over[160];

	cli_kv("Move", cli_str(mv, "id"));
	cli_kv("VM", cli_str(mv, "name"));
	snprintf(buf, sizeof(buf), "%s (%s -> %s)", cli_str(mv, "direction"),
		 cli_str(mv, "source"), cli_str(mv, "destination"));
	cli_kv("Direction", buf);
	cli_kv("State", cli_str(mv, "state"));
	if (cli_int(mv, "position", 0)) {
		snprintf(buf, sizeof(buf), "#%lld", (long long)cli_int(mv, "position", 0));
		cli_kv("Queue position", buf);
	}
	if (cli_str(mv, "waiting"))
		cli_kv("Waiting", cli_str(mv, "waiting"));
	if (cli_str(mv, "stage"))
		cli_kv("Stage", cli_str(mv, "stage"));
	if (cli_str(mv, "address"))
		cli_kv("Address", cli_str(mv, "address"));
	if (strcmp(cli_str(mv, "direction") ? cli_str(mv, "direction") : "", "outgoing") == 0) {
		mig_bandwidth_line(mv, buf, sizeof(buf));
		cli_kv("Bandwidth", buf);
	}
	mig_time(cli_int(mv, "started_ms", 0), buf, sizeof(buf));
	cli_kv("Started", buf);
	if (cli_int(mv, "ended_ms", 0)) {
		mig_time(cli_int(mv, "ended_ms", 0), buf, sizeof(buf));
		cli_kv("Ended", buf);
	}
	if (in) {
		cli_fmt_bytes(cli_num(in, "bytes_received"), a, sizeof(a));
		snprintf(buf, sizeof(buf), "%s of memory records received", a);
		cli_kv("Progress", buf);
	}
	if (p) {
		cli_fmt_bytes(cli_num(p, "remaining_bytes"), a, sizeof(a));
		snprintf(buf, sizeof(buf), "%.1f%% of memory sent, pass %lld, %s left",
			 cli_num(p, "percent"), (long long)cli_int(p, "pass", 0),
			 cli_num(p, "remaining_bytes") > 0 ? a : "nothing");
		cli_kv("Progress", buf);
		snprintf(buf, sizeof(buf), "dirty %.1f MiB/s, throughput %.1f MiB/s",
			 cli_num(p, "dirty_rate_mibps"), cli_num(p, "throughput_mibps"));
		cli_kv("Rates", buf);
		cli_fmt_bytes(cli_num(p, "bytes_on_wire"), b, sizeof(b));
		/* Two clocks: the workers' stream, and the whole move as ferryd
		 * saw it (queue, the destination's preparation, the finish). */
		{
			int64_t whole = cli_int(mv, "ended_ms", 0) - cli_int(mv, "started_ms", 0);
			int n = snprintf(buf, sizeof(buf), "worker to worker %.0f ms (setup %.0f ms), downtime %.0f ms",
					 cli_num(p, "elapsed_ms"), cli_num(p, "setup_ms"),
					 cli_num(p, "downtime_ms"));
			if (cli_int(mv, "ended_ms", 0) && cli_int(mv, "started_ms", 0) && n > 0 &&
			    (size_t)n < sizeof(buf))
				snprintf(buf + n, sizeof(buf) - (size_t)n, "; whole move %.2f s",
					 (double)whole / 1000.0);
		}
		cli_kv("Times", buf);
		if (cli_downtime_over(mv, over, sizeof(over)))
			cli_kv("Downtime", over);
		/* a finished move: where its downtime went */
		if (json_object_object_get_ex(p, "downtime_parts", &dp)) {
			char dg[48] = "";
			if (cli_bool(p, "verify_memory"))
				snprintf(dg, sizeof(dg), ", memory digest %.1f", cli_num(dp, "memory_digest_ms"));
			snprintf(buf, sizeof(buf), "stop vCPUs %.1f, last pages %.1f%s, device state %.1f, "
				 "destination ready %.1f (its load %.1f), commit and resume %.1f ms",
				 cli_num(dp, "stop_vcpus_ms"), cli_num(dp, "last_pages_ms"), dg,
				 cli_num(dp, "device_state_ms"), cli_num(dp, "destination_ready_ms"),
				 cli_num(dp, "destination_load_ms"), cli_num(dp, "commit_resume_ms"));
			cli_kv("Downtime parts", buf);
		}
		snprintf(buf, sizeof(buf), "%s on the wire (%s%s%s%s); pages %.0f raw, %.0f zero, %.0f compressed",
			 b, cli_str(p, "transport") ? cli_str(p, "transport") : "?",
			 cli_str(p, "codec") ? ", " : "", cli_str(p, "codec") ? cli_str(p, "codec") : "",
			 cli_bool(p, "encrypted") ? ", encrypted" : "",
			 cli_num(p, "pages_raw"), cli_num(p, "pages_zero"),
			 cli_num(p, "pages_compressed"));
		cli_kv("Data", buf);
		if (cli_disk_copy_text(mv, buf, sizeof(buf)))
			cli_kv("Disk copy", buf);
		if (cli_str(mv, "remove_source_disk")) {
			/* said only once the move ended */
			const char *state = cli_str(mv, "state");
			bool ended = json_object_object_get_ex(mv, "source_disk_removed", NULL);
			snprintf(buf, sizeof(buf), "%s %s", cli_str(mv, "remove_source_disk"),
				 !ended                                 ? "removed once the VM runs on its copy"
				 : cli_bool(mv, "source_disk_removed") ? "removed"
				 : state && strcmp(state, "completed") == 0
					 ? "kept (see the source's ferryd log for why)"
					 : "kept: the VM runs on it here");
			cli_kv("Source image", buf);
		}
		if (cli_postcopy_text(mv, buf, sizeof(buf)))
			cli_kv("Post-copy", buf);
		if (cli_bool(p, "verify_memory"))
			cli_kv("Memory check", cli_bool(p, "memory_verified") ?
			       "verified: the destination's copy matched the source's digest" :
			       "asked for, not (yet) passed");
	}
	if (cli_str(mv, "error"))
		cli_kv("Error", cli_str(mv, "error"));
}

static int mig_one(struct cli_opts *o, const char *cmd, const char *key)
{
	struct json_object *req = json_object_new_object(), *rep, *mv;
	int rc;

	jsonl_add_str(req, "cmd", cmd);
	jsonl_add_str(req, strncmp(key, "mv-", 3) == 0 ? "id" : "name", key);
	rep = cli_request(o, req, MIG_CALL_TIMEOUT_MS, &rc);
	if (!rep || o->json) {
		json_object_put(rep);
		return rc;
	}
	if (json_object_object_get_ex(rep, "move", &mv)) {
		if (strcmp(cmd, "migration.cancel") == 0)
			printf("move %s of VM %s: %s\n", cli_str(mv, "id"), cli_str(mv, "name"),
			       strcmp(cli_str(mv, "state"), "cancelled") == 0 ? "cancelled"
				       : "cancelling (the VM keeps running here)");
		else
			mig_show(mv);
	}
	json_object_put(rep);
	return CLI_OK;
}

/* ferry migration set ID|VM --bandwidth N */
static int mig_set(struct cli_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "bandwidth", required_argument, NULL, 'B' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct json_object *req, *rep, *mv;
	const char *key = NULL;
	long bw = -1;
	char buf[256];
	int opt, rc;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'B':
			if (!cli_parse_int(optarg, 0, 1 << 20, &bw)) {
				fprintf(stderr, "ferry migration set: --bandwidth '%s': give MiB/s (0 = no limit of its own)\n",
					optarg);
				return CLI_USAGE;
			}
			break;
		case 'j': o->json = true; break;
		case 'h': fputs(mig_usage_text, stdout); return CLI_OK;
		default: fputs(mig_usage_text, stderr); return CLI_USAGE;
		}
	}
	if (optind < argc)
		key = argv[optind++];
	if (!key || optind < argc || bw < 0) {
		fprintf(stderr, "ferry migration set: give the move's id or the VM's name and --bandwidth MiB/s\n"
			"  e.g. ferry migration set web1 --bandwidth 200\n");
		return CLI_USAGE;
	}
	req = json_object_new_object();
	jsonl_add_str(req, "cmd", "migration.set");
	jsonl_add_str(req, strncmp(key, "mv-", 3) == 0 ? "id" : "name", key);
	jsonl_add_int(req, "bandwidth_mibps", bw);
	rep = cli_request(o, req, MIG_CALL_TIMEOUT_MS, &rc);
	if (!rep || o->json) {
		json_object_put(rep);
		return rc;
	}
	if (json_object_object_get_ex(rep, "move", &mv)) {
		mig_bandwidth_line(mv, buf, sizeof(buf));
		printf("move %s of VM %s: bandwidth %s\n", cli_str(mv, "id"), cli_str(mv, "name"), buf);
	}
	json_object_put(rep);
	return CLI_OK;
}

static int mig_history(struct cli_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "limit", required_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const hdr[] = { "ID", "VM", "DIR", "RESULT", "TOTAL",
					   "DOWNTIME", "ON WIRE", "PEER", "ENDED" };
	struct json_object *req, *rep, *moves;
	const char *name = NULL;
	struct cli_table *t;
	long limit = 20;
	int opt, rc;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "n:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'n': name = optarg; break;
		case 'l':
			if (!cli_parse_int(optarg, 1, 10000, &limit)) {
				fprintf(stderr, "ferry migration history: --limit '%s': give 1 to 10000\n", optarg);
				return CLI_USAGE;
			}
			break;
		case 'j': o->json = true; break;
		case 'h': fputs(mig_usage_text, stdout); return CLI_OK;
		default: fputs(mig_usage_text, stderr); return CLI_USAGE;
		}
	}
	if (optind < argc) {
		/* not taken for a VM name: that is --name */
		fprintf(stderr, "ferry migration history: unexpected argument '%s' "
			"(one VM's moves: --name %s)\n", argv[optind], argv[optind]);
		return CLI_USAGE;
	}
	req = json_object_new_object();
	jsonl_add_str(req, "cmd", "migration.history");
	jsonl_add_int(req, "limit", limit);
	if (name)
		jsonl_add_str(req, "name", name);
	rep = cli_request(o, req, MIG_CALL_TIMEOUT_MS, &rc);
	if (!rep || o->json) {
		json_object_put(rep);
		return rc;
	}
	json_object_object_get_ex(rep, "moves", &moves);
	if (!moves || json_object_array_length(moves) == 0) {
		if (name)
			printf("No finished moves of VM %s recorded on this host.\n", name);
		else
			printf("No finished moves recorded on this host.\n");
		json_object_put(rep);
		return CLI_OK;
	}
	t = cli_table_new(9, hdr);
	for (size_t i = 0; i < json_object_array_length(moves); i++) {
		struct json_object *mv = json_object_array_get_idx(moves, i);
		const char *dir = cli_str(mv, "direction");
		bool out = dir && strcmp(dir, "outgoing") == 0;
		struct json_object *in = mig_incoming_progress(mv), *p = in ? NULL : cli_progress(mv);
		char total[32], down[32], wire[32], ended[32];
		const char *cells[9];
		/* a move refused before it started (no migration network, or
		 * cancelled while queued) has no start: no total, not the
		 * end's own time since 1970 */
		if (cli_int(mv, "started_ms", 0) && cli_int(mv, "ended_ms", 0))
			snprintf(total, sizeof(total), "%.2f s",
				 (double)(cli_int(mv, "ended_ms", 0) - cli_int(mv, "started_ms", 0)) /
					 1000.0);
		else
			snprintf(total, sizeof(total), "-");
		if (p)
			snprintf(down, sizeof(down), "%.0f ms", cli_num(p, "downtime_ms"));
		else
			snprintf(down, sizeof(down), "-");
		if (p)
			cli_fmt_bytes(cli_num(p, "bytes_on_wire"), wire, sizeof(wire));
		else if (in) /* what arrived: the same bytes, seen from here */
			cli_fmt_bytes(cli_num(in, "bytes_received"), wire, sizeof(wire));
		else
			snprintf(wire, sizeof(wire), "-");
		mig_time(cli_int(mv, "ended_ms", 0), ended, sizeof(ended));
		cells[0] = cli_str(mv, "id");
		cells[1] = cli_str(mv, "name");
		cells[2] = out ? "out" : "in";
		cells[3] = cli_str(mv, "state");
		cells[4] = total;
		cells[5] = down;
		cells[6] = wire;
		cells[7] = out ? cli_str(mv, "destination") : cli_str(mv, "source");
		cells[8] = ended;
		cli_table_row(t, cells);
	}
	cli_table_print(t);
	json_object_put(rep);
	return CLI_OK;
}

int cmd_migration(struct cli_opts *o, int argc, char **argv)
{
	const char *sub = argc >= 2 ? argv[1] : NULL;
	const char *key = NULL;

	if (!sub || strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
		fputs(mig_usage_text, sub ? stdout : stderr);
		return sub ? CLI_OK : CLI_USAGE;
	}
	cli_argv0(argv + 1, "migration"); /* sub keeps the bare name */
	if (strcmp(sub, "history") == 0)
		return mig_history(o, argc - 1, argv + 1);
	if (strcmp(sub, "set") == 0)
		return mig_set(o, argc - 1, argv + 1);
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			o->json = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(mig_usage_text, stdout);
			return CLI_OK;
		} else if (!key && argv[i][0] != '-') {
			key = argv[i];
		} else {
			fprintf(stderr, "ferry migration %s: unexpected argument '%s'\n", sub, argv[i]);
			return CLI_USAGE;
		}
	}
	if (strcmp(sub, "list") == 0) {
		if (key) {
			fprintf(stderr, "ferry migration list: unexpected argument '%s'\n", key);
			return CLI_USAGE;
		}
		return mig_list(o);
	}
	if (strcmp(sub, "status") == 0 || strcmp(sub, "cancel") == 0) {
		if (!key) {
			fprintf(stderr, "ferry migration %s: which move? give its id or the VM's name\n", sub);
			return CLI_USAGE;
		}
		return mig_one(o, strcmp(sub, "status") == 0 ? "migration.status" : "migration.cancel", key);
	}
	fprintf(stderr, "ferry migration: unknown command '%s'\n\n", sub);
	fputs(mig_usage_text, stderr);
	return CLI_USAGE;
}
