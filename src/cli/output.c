/* Human output for ferry: aligned tables and "key: value" blocks. */
#include "cli/cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonl.h"
#include "migration/downtime.h"

#define CLI_TABLE_MAX_COLS 12

struct cli_table {
	int ncols;
	size_t nrows, cap;
	char **cells; /* nrows * ncols, row 0 = headers */
};

const char *cli_str(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !v)
		return NULL;
	return json_object_get_string(v);
}

double cli_num(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_double(v);
}

struct json_object *cli_progress(struct json_object *mv)
{
	struct json_object *p;
	return json_object_object_get_ex(mv, "progress", &p) ? p : NULL;
}

bool cli_downtime_over(struct json_object *mv, char *buf, size_t cap)
{
	struct json_object *p = cli_progress(mv), *dp;
	int64_t target = cli_int(mv, "downtime_target_ms", 0);
	double down = cli_num(p, "downtime_ms"), ms[MIG_DT_NPARTS];
	int most;
	if (!p || target <= 0 || down <= (double)target)
		return false;
	if (!json_object_object_get_ex(p, "downtime_parts", &dp)) {
		snprintf(buf, cap, "over the %lld ms target", (long long)target);
		return true;
	}
	for (int i = 0; i < MIG_DT_NPARTS; i++)
		ms[i] = cli_num(dp, mig_downtime_names[i].key);
	most = mig_downtime_largest(ms);
	snprintf(buf, cap, "over the %lld ms target: most of it %s (%.1f ms)", (long long)target,
		 mig_downtime_names[most].what, ms[most]);
	return true;
}

bool cli_disk_copy_text(struct json_object *mv, char *buf, size_t cap)
{
	struct json_object *dc;
	char sent[32], size[32], owed[32];
	if (!json_object_object_get_ex(cli_progress(mv), "disk_copy", &dc))
		return false;
	cli_fmt_bytes(cli_num(dc, "sent_bytes"), sent, sizeof(sent));
	cli_fmt_bytes(cli_num(dc, "bytes"), size, sizeof(size));
	cli_fmt_bytes(cli_num(dc, "dirty_bytes"), owed, sizeof(owed));
	snprintf(buf, cap, "to %s: %s sent of a %s image%s%s%s", cli_str(dc, "path") ? cli_str(dc, "path") : "?",
		 sent, size, cli_num(dc, "dirty_bytes") > 0 ? ", " : "",
		 cli_num(dc, "dirty_bytes") > 0 ? owed : "",
		 cli_num(dc, "dirty_bytes") > 0 ? " written since and owed" : "");
	return true;
}

bool cli_postcopy_text(struct json_object *mv, char *buf, size_t cap)
{
	struct json_object *pc;
	if (!json_object_object_get_ex(cli_progress(mv), "postcopy", &pc))
		return false;
	if (!cli_bool(pc, "used"))
		snprintf(buf, cap, "asked for; not needed (pre-copy converged)");
	else if (cli_num(pc, "left") > 0)
		snprintf(buf, cap, "the VM runs there; %.0f of %.0f pages still to send, %.0f asked "
			 "for by the guest", cli_num(pc, "left"), cli_num(pc, "pages"),
			 cli_num(pc, "requested"));
	else
		snprintf(buf, cap, "%.0f pages sent after the VM ran there, in %.0f ms; %.0f asked for "
			 "by the guest", cli_num(pc, "pages"), cli_num(pc, "ms"), cli_num(pc, "requested"));
	return true;
}

int64_t cli_int(struct json_object *o, const char *key, int64_t dflt)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_int))
		return dflt;
	return json_object_get_int64(v);
}

bool cli_bool(struct json_object *o, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_boolean) &&
	       json_object_get_boolean(v);
}

void cli_fmt_duration(int64_t ms, char *buf, size_t cap)
{
	int64_t s = ms / 1000;
	if (ms < 0)
		snprintf(buf, cap, "-");
	else if (s < 60)
		snprintf(buf, cap, "%" PRId64 "s", s);
	else if (s < 3600)
		snprintf(buf, cap, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, cap, "%" PRId64 "h%02" PRId64 "m", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, cap, "%" PRId64 "d%02" PRId64 "h", s / 86400, s % 86400 / 3600);
}

void cli_fmt_eta(int64_t ms, char *buf, size_t cap)
{
	/* rounded up: 0.9 s left is "1s", not "0s" while the move goes on */
	if (ms <= 0)
		snprintf(buf, cap, "-");
	else
		cli_fmt_duration((ms + 999) / 1000 * 1000, buf, cap);
}

void cli_fmt_mib(int64_t mib, char *buf, size_t cap)
{
	if (mib >= 1024 && mib % 1024 == 0)
		snprintf(buf, cap, "%" PRId64 " GiB", mib / 1024);
	else
		snprintf(buf, cap, "%" PRId64 " MiB", mib);
}

struct cli_table *cli_table_new(int ncols, const char *const *headers)
{
	struct cli_table *t = calloc(1, sizeof(*t));
	if (!t || ncols > CLI_TABLE_MAX_COLS) {
		free(t);
		return NULL;
	}
	t->ncols = ncols;
	cli_table_row(t, headers);
	return t;
}

void cli_table_row(struct cli_table *t, const char *const *cells)
{
	if (!t)
		return;
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		char **grown = realloc(t->cells, cap * (size_t)t->ncols * sizeof(char *));
		if (!grown)
			return;
		t->cells = grown;
		t->cap = cap;
	}
	for (int i = 0; i < t->ncols; i++)
		t->cells[t->nrows * (size_t)t->ncols + (size_t)i] =
			strdup(cells[i] ? cells[i] : "");
	t->nrows++;
}

void cli_table_print(struct cli_table *t)
{
	size_t width[CLI_TABLE_MAX_COLS] = { 0 };

	if (!t)
		return;
	for (size_t r = 0; r < t->nrows; r++)
		for (int i = 0; i < t->ncols; i++) {
			const char *c = t->cells[r * (size_t)t->ncols + (size_t)i];
			size_t n = c ? strlen(c) : 0;
			if (n > width[i])
				width[i] = n;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (int i = 0; i < t->ncols; i++) {
			const char *c = t->cells[r * (size_t)t->ncols + (size_t)i];
			/* No trailing padding on the last column. */
			if (i == t->ncols - 1)
				printf("%s\n", c ? c : "");
			else
				printf("%-*s  ", (int)width[i], c ? c : "");
		}
		free(t->cells[r * (size_t)t->ncols]);
		for (int i = 1; i < t->ncols; i++)
			free(t->cells[r * (size_t)t->ncols + (size_t)i]);
	}
	free(t->cells);
	free(t);
}

void cli_kv(const char *label, const char *value)
{
	char l[64];
	snprintf(l, sizeof(l), "%s:", label);
	printf("%-16s %s\n", l, value ? value : "-");
}
