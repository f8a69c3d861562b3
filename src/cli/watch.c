/*
 * Following moves until they end: `ferry move-vm` and `ferry host
 * evacuate` hand their move ids here. On a terminal, one progress line per
 * VM plus a total, redrawn in place, then a summary of each move's
 * figures; otherwise (or with --json) one JSON event per line, so scripts
 * get the same information without screen control codes.
 */
#include "cli/cli.h"

#include <inttypes.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/jsonl.h"

/* ferryd holds the status until a move changes state, at most this long:
 * a move's end shows at once, progress is redrawn this often. */
#define WATCH_HOLD_MS 250
#define WATCH_POLL_MS 50 /* a ferryd without held status (an earlier build) is asked this often */
#define WATCH_CALL_TIMEOUT_MS 15000
#define WATCH_BAR 20

/* What we last reported for one move, to emit events only on change. */
struct watch_seen {
	char state[16], stage[24];
	int64_t pass;
	int percent;
	bool done;
};


static bool watch_done(const char *state)
{
	return state && (strcmp(state, "completed") == 0 || strcmp(state, "failed") == 0 ||
			 strcmp(state, "cancelled") == 0 || strcmp(state, "checked") == 0);
}

/* A move that did what was asked: moved, or (--check) found it would go. */
static bool watch_ok(const char *state)
{
	return state && (strcmp(state, "completed") == 0 || strcmp(state, "checked") == 0);
}

/* "12.3 MiB", "1.2 GiB", "512 KiB". */
void cli_fmt_bytes(double b, char *buf, size_t cap)
{
	if (b >= 1024.0 * 1024 * 1024)
		snprintf(buf, cap, "%.1f GiB", b / (1024.0 * 1024 * 1024));
	else if (b >= 1024.0 * 1024)
		snprintf(buf, cap, "%.1f MiB", b / (1024.0 * 1024));
	else
		snprintf(buf, cap, "%.0f KiB", b / 1024.0);
}

/* One progress line for a move, without a newline. */
void cli_watch_line(struct json_object *mv, char *buf, size_t cap)
{
	const char *name = cli_str(mv, "name"), *state = cli_str(mv, "state");
	const char *stage = cli_str(mv, "stage");
	struct json_object *p = cli_progress(mv);
	char bar[WATCH_BAR + 1], left[32], eta[32];
	double pct = cli_num(p, "percent");
	int fill;

	if (state && strcmp(state, "queued") == 0) {
		snprintf(buf, cap, "%-12s queued #%lld  %s", name,
			 (long long)cli_int(mv, "position", 0),
			 cli_str(mv, "waiting") ? cli_str(mv, "waiting") : "");
		return;
	}
	if (watch_done(state)) {
		snprintf(buf, cap, "%-12s %s%s%s", name, state,
			 cli_str(mv, "error") ? ": " : "",
			 cli_str(mv, "error") ? cli_str(mv, "error") : "");
		return;
	}
	if (pct < 0)
		pct = 0;
	if (pct > 100)
		pct = 100;
	fill = (int)(pct * WATCH_BAR / 100.0);
	for (int i = 0; i < WATCH_BAR; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[WATCH_BAR] = '\0';
	/* before pass 1 (setup) nothing is counted yet: not "left 0 KiB" */
	if (cli_int(p, "pass", 0) > 0)
		cli_fmt_bytes(cli_num(p, "remaining_bytes"), left, sizeof(left));
	else
		snprintf(left, sizeof(left), "-");
	cli_fmt_eta((int64_t)cli_num(p, "eta_ms"), eta, sizeof(eta));
	snprintf(buf, cap,
		 "%-12s %-15s [%s] %3.0f%%  pass %lld  dirty %.1f MiB/s  %.1f MiB/s  left %s  ETA %s",
		 name, stage ? stage : state, bar, pct, (long long)cli_int(p, "pass", 0),
		 cli_num(p, "dirty_rate_mibps"), cli_num(p, "throughput_mibps"), left, eta);
}

/* A JSON event line for a move whose state, stage, pass or percent moved. */
static void watch_event(struct json_object *mv, struct watch_seen *seen)
{
	const char *state = cli_str(mv, "state"), *stage = cli_str(mv, "stage");
	struct json_object *p = cli_progress(mv), *ev;
	int64_t pass = cli_int(p, "pass", 0);
	int pct = (int)cli_num(p, "percent");

	if (seen->done)
		return;
	if (state && strcmp(seen->state, state) == 0 && stage &&
	    strcmp(seen->stage, stage) == 0 && pass == seen->pass && pct == seen->percent)
		return;
	snprintf(seen->state, sizeof(seen->state), "%s", state ? state : "");
	snprintf(seen->stage, sizeof(seen->stage), "%s", stage ? stage : "");
	seen->pass = pass;
	seen->percent = pct;
	ev = json_object_new_object();
	jsonl_add_str(ev, "event", watch_done(state) ? state : "progress");
	json_object_object_foreach(mv, key, val)
		json_object_object_add(ev, key, json_object_get(val));
	printf("%s\n", jsonl_text(ev));
	fflush(stdout);
	json_object_put(ev);
	seen->done = watch_done(state);
}

/* After the end: the figures an administrator wants from a move. */
static void watch_summary(struct json_object *mv)
{
	const char *state = cli_str(mv, "state");
	struct json_object *p = cli_progress(mv);
	char total[32], wire[32], over[160];
	int64_t t = cli_int(mv, "ended_ms", 0) - cli_int(mv, "started_ms", 0);

	if (state && strcmp(state, "checked") == 0) {
		printf("VM %s can move to %s (check %s): %s\n", cli_str(mv, "name"),
		       cli_str(mv, "destination"), cli_str(mv, "id"),
		       cli_str(mv, "error") ? cli_str(mv, "error") : "nothing moved");
		return;
	}
	if (!state || strcmp(state, "completed") != 0) {
		fprintf(stderr, "ferry: VM %s: move %s %s: %s\n", cli_str(mv, "name"),
			cli_str(mv, "id"), state ? state : "?",
			cli_str(mv, "error") ? cli_str(mv, "error") : "(no reason given)");
		return;
	}
	cli_fmt_bytes(cli_num(p, "bytes_on_wire"), wire, sizeof(wire));
	snprintf(total, sizeof(total), "%.2f s", (double)t / 1000.0);
	printf("VM %s moved to %s (move %s)\n", cli_str(mv, "name"),
	       cli_str(mv, "destination"), cli_str(mv, "id"));
	printf("  total time %s (worker to worker %.0f ms), downtime %.0f ms, setup %.0f ms, %s on the "
	       "wire (%s%s)\n",
	       total, cli_num(p, "elapsed_ms"), cli_num(p, "downtime_ms"), cli_num(p, "setup_ms"), wire,
	       cli_str(p, "transport") ? cli_str(p, "transport") : "?",
	       cli_bool(p, "encrypted") ? ", encrypted" : "");
	if (cli_downtime_over(mv, over, sizeof(over)))
		printf("  downtime %s; `ferry migration status %s` lists every part\n", over,
		       cli_str(mv, "id"));
	printf("  pages sent: %.0f raw, %.0f zero, %.0f compressed; %.0f passes\n",
	       cli_num(p, "pages_raw"), cli_num(p, "pages_zero"),
	       cli_num(p, "pages_compressed"), cli_num(p, "pass"));
	if (cli_bool(p, "memory_verified"))
		printf("  memory verified: the destination's copy matched the source's digest\n");
	{
		char dc[PATH_MAX + 160];
		if (cli_disk_copy_text(mv, dc, sizeof(dc)))
			printf("  disk copied %s; %s\n", dc,
			       cli_bool(mv, "source_disk_removed")
				       ? "the image here was removed"
				       : "the image here stays as it was at the switch-over");
	}
	{
		char pc[256];
		if (cli_postcopy_text(mv, pc, sizeof(pc)))
			printf("  post-copy: %s\n", pc);
	}
	if (cli_str(mv, "error"))
		printf("  note: %s\n", cli_str(mv, "error"));
}

/* An earlier ferryd refuses the field it does not know: then it is polled. */
static bool watch_hold_refused(struct json_object *rep)
{
	const char *code = cli_str(rep, "code"), *msg = cli_str(rep, "error");
	return code && strcmp(code, "E_BAD_ARG") == 0 && msg && strstr(msg, "'wait_ms'");
}

/* Ctrl-C while watching: the moves are ferryd's and go on; only the
 * watching stops, and says so (a user could take it for a cancel). */
static volatile sig_atomic_t watch_interrupted;

static void watch_on_sigint(int sig)
{
	(void)sig;
	watch_interrupted = 1;
}

static void watch_sleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

int cli_watch_moves(const struct cli_opts *o, struct json_object *moves)
{
	size_t n = json_object_array_length(moves);
	struct watch_seen *seen = calloc(n ? n : 1, sizeof(*seen));
	bool tty = !o->json && isatty(STDOUT_FILENO);
	struct json_object *last = NULL;
	struct cli_conn *c;
	int drawn = 0, rc = CLI_OK;
	bool hold = true;

	if (!seen) {
		fprintf(stderr, "ferry: out of memory\n");
		return CLI_FAILED;
	}
	c = cli_connect(o);
	if (!c) {
		free(seen);
		return cli_connect_failure();
	}
	/* not SA_RESTART: a wait on ferryd ends at once; a SIGINT ignored
	 * by whoever started us stays ignored */
	{
		struct sigaction sa = { .sa_handler = watch_on_sigint }, prev;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGINT, NULL, &prev) == 0 && prev.sa_handler != SIG_IGN)
			sigaction(SIGINT, &sa, NULL);
	}
	for (;;) {
		struct json_object *req, *ids, *rep, *list;
		size_t done = 0, failed = 0, queued = 0;
		double pct_sum = 0;

		if (watch_interrupted) {
			char at[300] = "";
			if (o->computer)
				snprintf(at, sizeof(at), "-c %s ", o->computer);
			fprintf(stderr, "\nferry: stopped watching; the move%s go%s on: follow with "
				"ferry %smigration list, or stop %s with ferry %smigration cancel %s\n",
				n > 1 ? "s" : "", n > 1 ? "" : "es", at, n > 1 ? "one" : "it", at,
				n > 1 ? "VM" : cli_str(json_object_array_get_idx(moves, 0), "name"));
			rc = CLI_INTERRUPTED;
			break;
		}
		req = json_object_new_object();

		jsonl_add_str(req, "cmd", "migration.status");
		ids = json_object_new_array();
		for (size_t i = 0; i < n; i++)
			json_object_array_add(ids, json_object_new_string(
						      cli_str(json_object_array_get_idx(moves, i), "id")));
		json_object_object_add(req, "ids", ids);
		if (hold)
			jsonl_add_int(req, "wait_ms", WATCH_HOLD_MS);
		rep = cli_call(c, req, WATCH_CALL_TIMEOUT_MS);
		if (!rep && watch_interrupted)
			continue; /* the call was cut short by Ctrl-C: say so above */
		if (!rep) {
			fprintf(stderr, "ferry: lost contact with ferryd; the moves go on: see ferry migration list\n");
			rc = CLI_UNREACHABLE;
			break;
		}
		if (hold && watch_hold_refused(rep)) {
			hold = false;
			json_object_put(rep);
			continue;
		}
		if (!json_object_object_get_ex(rep, "moves", &list)) {
			cli_print_error(rep, "migration.status", NULL);
			json_object_put(rep);
			rc = CLI_FAILED;
			break;
		}
		if (tty && drawn)
			printf("\033[%dA", drawn);
		drawn = 0;
		for (size_t i = 0; i < n && i < json_object_array_length(list); i++) {
			struct json_object *mv = json_object_array_get_idx(list, i);
			const char *st = cli_str(mv, "state");
			char line[512];
			if (watch_done(st)) {
				done++;
				failed += !watch_ok(st);
				pct_sum += 100;
			} else {
				queued += st && strcmp(st, "queued") == 0;
				pct_sum += cli_num(cli_progress(mv), "percent");
			}
			if (tty) {
				cli_watch_line(mv, line, sizeof(line));
				printf("\r\033[K%s\n", line);
				drawn++;
			} else {
				watch_event(mv, &seen[i]);
			}
		}
		if (tty && n > 1) {
			printf("\r\033[Ktotal: %zu of %zu done (%zu failed), %zu moving, %zu queued  %3.0f%%\n",
			       done, n, failed, n - done - queued, queued, pct_sum / (double)n);
			drawn++;
		}
		fflush(stdout);
		json_object_put(last);
		last = rep;
		if (done == n) {
			if (failed)
				rc = CLI_FAILED;
			break;
		}
		if (!hold)
			watch_sleep(WATCH_POLL_MS);
	}
	if (last && rc != CLI_UNREACHABLE && rc != CLI_INTERRUPTED) {
		struct json_object *list;
		if (json_object_object_get_ex(last, "moves", &list)) {
			if (tty) {
				printf("\n");
				for (size_t i = 0; i < json_object_array_length(list); i++)
					watch_summary(json_object_array_get_idx(list, i));
			} else {
				size_t ok = 0, checked = 0;
				struct json_object *ev = json_object_new_object();
				for (size_t i = 0; i < json_object_array_length(list); i++) {
					const char *st = cli_str(json_object_array_get_idx(list, i), "state");
					ok += st && strcmp(st, "completed") == 0;
					checked += st && strcmp(st, "checked") == 0;
				}
				jsonl_add_str(ev, "event", "done");
				jsonl_add_int(ev, "completed", (int64_t)ok);
				if (checked) /* --check: would go, and nothing moved */
					jsonl_add_int(ev, "checked", (int64_t)checked);
				jsonl_add_int(ev, "failed", (int64_t)(n - ok - checked));
				printf("%s\n", jsonl_text(ev));
				json_object_put(ev);
				/* Failures also go to stderr, in words. */
				for (size_t i = 0; i < json_object_array_length(list); i++) {
					struct json_object *mv = json_object_array_get_idx(list, i);
					const char *st = cli_str(mv, "state");
					if (!watch_ok(st))
						fprintf(stderr, "ferry: VM %s: move %s: %s\n", cli_str(mv, "name"),
							st, cli_str(mv, "error") ? cli_str(mv, "error") : "?");
				}
			}
		}
	}
	json_object_put(last);
	cli_close(c);
	free(seen);
	return rc;
}
