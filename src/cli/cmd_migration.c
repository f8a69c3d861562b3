/*
 * `ferry migration ...`: the moves a host knows about: list (queued and in
 * flight, both directions), status (one move with its figures), cancel,
 * history (finished moves, kept across restarts).
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
	"  status ID|VM         one move: stage, figures, error (finished ones too)\n"
	"  cancel ID|VM         cancel a queued move, or a running one before its\n"
	"                       commit point (the VM keeps running where it was)\n"
	"  history [--name VM] [--limit N]\n"
	"                       finished moves with total time, downtime and bytes\n"
	"\n"
	"Examples:\n"
	"  ferry migration list\n"
	"  ferry -c node1 migration status web1\n"
	"  ferry migration cancel mv-1a2b3c4d\n"
	"  ferry migration history --name web1 --limit 5\n";

static double mig_num(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_double(v);
}

static struct json_object *mig_progress(struct json_object *mv)
{
	struct json_object *p;
	return json_object_object_get_ex(mv, "progress", &p) ? p : NULL;
}

static void mig_progress_cell(struct json_object *mv, char *buf, size_t cap)
{
	const char *state = cli_str(mv, "state");
	struct json_object *p = mig_progress(mv);
	if (state && strcmp(state, "queued") == 0)
		snprintf(buf, cap, "#%lld in queue", (long long)cli_int(mv, "position", 0));
	else if (p)
		snprintf(buf, cap, "%.0f%% pass %lld", mig_num(p, "percent"),
			 (long long)cli_int(p, "pass", 0));
	else
		snprintf(buf, cap, "-");
}

static int mig_list(struct cli_opts *o)
{
	static const char *const hdr[] = { "ID", "VM", "DIRECTION", "STATE", "STAGE",
					   "PROGRESS", "PEER" };
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
	printf("%lld of %lld migration slots in use, %lld queued\n",
	       (long long)cli_int(rep, "active", 0), (long long)cli_int(rep, "max_migrations", 0),
	       (long long)cli_int(rep, "queued", 0));
	if (!moves || json_object_array_length(moves) == 0) {
		printf("No moves in flight. History: ferry migration history\n");
		json_object_put(rep);
		return CLI_OK;
	}
	t = cli_table_new(7, hdr);
	for (size_t i = 0; i < json_object_array_length(moves); i++) {
		struct json_object *mv = json_object_array_get_idx(moves, i);
		const char *dir = cli_str(mv, "direction");
		bool out = dir && strcmp(dir, "outgoing") == 0;
		char prog[64];
		const char *cells[7];
		mig_progress_cell(mv, prog, sizeof(prog));
		cells[0] = cli_str(mv, "id");
		cells[1] = cli_str(mv, "name");
		cells[2] = out ? "out" : "in";
		cells[3] = cli_str(mv, "state");
		cells[4] = cli_str(mv, "stage");
		cells[5] = prog;
		cells[6] = out ? cli_str(mv, "destination") : cli_str(mv, "source");
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

static void mig_show(struct json_object *mv)
{
	struct json_object *p = mig_progress(mv);
	char buf[256], a[32], b[32];

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
	mig_time(cli_int(mv, "started_ms", 0), buf, sizeof(buf));
	cli_kv("Started", buf);
	if (cli_int(mv, "ended_ms", 0)) {
		mig_time(cli_int(mv, "ended_ms", 0), buf, sizeof(buf));
		cli_kv("Ended", buf);
	}
	if (p) {
		cli_fmt_bytes(mig_num(p, "remaining_bytes"), a, sizeof(a));
		snprintf(buf, sizeof(buf), "%.1f%% of memory sent, pass %lld, %s left",
			 mig_num(p, "percent"), (long long)cli_int(p, "pass", 0), a);
		cli_kv("Progress", buf);
		snprintf(buf, sizeof(buf), "dirty %.1f MiB/s, throughput %.1f MiB/s",
			 mig_num(p, "dirty_rate_mibps"), mig_num(p, "throughput_mibps"));
		cli_kv("Rates", buf);
		cli_fmt_bytes(mig_num(p, "bytes_on_wire"), b, sizeof(b));
		snprintf(buf, sizeof(buf), "total %.0f ms, setup %.0f ms, downtime %.0f ms",
			 mig_num(p, "elapsed_ms"), mig_num(p, "setup_ms"), mig_num(p, "downtime_ms"));
		cli_kv("Times", buf);
		snprintf(buf, sizeof(buf), "%s on the wire (%s); pages %.0f raw, %.0f zero, %.0f compressed",
			 b, cli_str(p, "transport") ? cli_str(p, "transport") : "?",
			 mig_num(p, "pages_raw"), mig_num(p, "pages_zero"),
			 mig_num(p, "pages_compressed"));
		cli_kv("Data", buf);
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
		printf("No finished moves recorded on this host.\n");
		json_object_put(rep);
		return CLI_OK;
	}
	t = cli_table_new(9, hdr);
	for (size_t i = 0; i < json_object_array_length(moves); i++) {
		struct json_object *mv = json_object_array_get_idx(moves, i);
		struct json_object *p = mig_progress(mv);
		const char *dir = cli_str(mv, "direction");
		bool out = dir && strcmp(dir, "outgoing") == 0;
		char total[32], down[32], wire[32], ended[32];
		const char *cells[9];
		snprintf(total, sizeof(total), "%.2f s",
			 (double)(cli_int(mv, "ended_ms", 0) - cli_int(mv, "started_ms", 0)) / 1000.0);
		if (p)
			snprintf(down, sizeof(down), "%.0f ms", mig_num(p, "downtime_ms"));
		else
			snprintf(down, sizeof(down), "-");
		if (p)
			cli_fmt_bytes(mig_num(p, "bytes_on_wire"), wire, sizeof(wire));
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
	if (strcmp(sub, "history") == 0)
		return mig_history(o, argc - 1, argv + 1);
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
