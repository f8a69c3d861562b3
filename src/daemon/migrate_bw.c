/*
 * The host's bandwidth limit (host.set bandwidth_mibps) as one budget for
 * all outgoing moves: the moves whose workers are sending share it
 * (bwshare.c decides how), and whenever the shares change — a move starts
 * or ends, the host limit or a move's own limit changes — the workers
 * whose share changed are told at once (migrate-set), so the host's total
 * stays under its limit while no move is slowed more than it must be.
 */
#include "daemon/migrate.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/jsonl.h"
#include "common/log.h"
#include "daemon/bwshare.h"

/* The outgoing moves sharing the host's limit, their own limits and their
 * shares, in queue order. */
struct bw_plan {
	int n;
	struct move **mv;
	int *caps, *shares;
};

static void bw_plan_free(struct bw_plan *p)
{
	free(p->mv);
	free(p->caps);
	free(p->shares);
}

/* A move shares the limit while its worker sends (MIGRATING); joining is a
 * move about to start sending, counted as if it already were. */
static bool bw_member(const struct move *m, const struct move *joining)
{
	return m->dir == MOVE_OUT && (m->state == MV_MIGRATING || m == joining);
}

static int bw_plan_make(struct ferryd *d, const struct move *joining,
			struct bw_plan *p, struct err *e)
{
	int n = 0;

	p->n = 0;
	p->mv = NULL;
	p->caps = p->shares = NULL;
	for (struct move *m = d->moves; m; m = m->next)
		n += bw_member(m, joining);
	if (n == 0)
		return 0;
	p->mv = calloc((size_t)n, sizeof(*p->mv));
	p->caps = calloc((size_t)n, sizeof(*p->caps));
	p->shares = calloc((size_t)n, sizeof(*p->shares));
	if (!p->mv || !p->caps || !p->shares) {
		bw_plan_free(p);
		return err_set(e, "out of memory sharing the bandwidth limit among %d moves", n);
	}
	for (struct move *m = d->moves; m; m = m->next) {
		if (!bw_member(m, joining))
			continue;
		p->mv[p->n] = m;
		p->caps[p->n] = m->bandwidth_mibps;
		p->n++;
	}
	bwshare_compute(d->settings.bandwidth_mibps, p->caps, p->n, p->shares);
	return 0;
}

int migrate_bw_share(struct ferryd *d, const struct move *m)
{
	struct bw_plan p;
	struct err e = { 0 };
	int share = m->bandwidth_mibps;

	if (bw_plan_make(d, m, &p, &e) < 0) {
		/* Its own limit, or the host's whole limit: never unlimited
		 * when the host has a limit. */
		log_warn("move %s: %s", m->id, e.msg);
		if (d->settings.bandwidth_mibps > 0 &&
		    (share <= 0 || share > d->settings.bandwidth_mibps))
			share = d->settings.bandwidth_mibps;
		return share;
	}
	for (int i = 0; i < p.n; i++)
		if (p.mv[i] == m)
			share = p.shares[i];
	bw_plan_free(&p);
	return share;
}

/* migrate-set on the move's source worker. */
static int bw_push(struct ferryd *d, struct move *m, int mibps, struct err *e)
{
	struct json_object *req = migrate_worker_cmd("migrate-set"), *rep;

	jsonl_add_int(req, "bandwidth_mibps", mibps);
	rep = migrate_worker_request(d, registry_find(d, m->vm), req, e);
	if (!rep)
		return -1;
	json_object_put(rep);
	return 0;
}

/* Why a move runs at this limit, for the log. */
static void bw_reason(struct ferryd *d, const struct bw_plan *p, int i,
		      char *buf, size_t cap)
{
	if (p->shares[i] == 0)
		snprintf(buf, cap, "no limit");
	else if (d->settings.bandwidth_mibps <= 0 || p->shares[i] == p->caps[i])
		snprintf(buf, cap, "its own limit");
	else if (p->n == 1)
		snprintf(buf, cap, "the host's whole limit: no other move is sending");
	else
		snprintf(buf, cap, "its share of the host's %d MiB/s among %d moves",
			 d->settings.bandwidth_mibps, p->n);
}

void migrate_bw_rebalance(struct ferryd *d)
{
	long long now = ferryd_now_ms();
	struct err e = { 0 };
	struct bw_plan p;
	char why[128];

	if (bw_plan_make(d, NULL, &p, &e) < 0) {
		log_warn("bandwidth limit: %s", e.msg);
		return;
	}
	for (int i = 0; i < p.n; i++) {
		struct move *m = p.mv[i];
		if (m->bw_applied == p.shares[i] || m->worker_gone || now < m->bw_retry_ms)
			continue;
		if (bw_push(d, m, p.shares[i], &e) < 0) {
			/* Try again shortly; meanwhile the worker keeps its old limit,
			 * which is what bandwidth_effective_mibps goes on showing. */
			log_warn("move %s: VM %s: cannot set its bandwidth limit to %d MiB/s: %s",
				 m->id, m->vm, p.shares[i], e.msg);
			m->bw_retry_ms = now + MIGRATE_POLL_MS;
			continue;
		}
		bw_reason(d, &p, i, why, sizeof(why));
		if (p.shares[i])
			log_info("move %s: VM %s: bandwidth limit now %d MiB/s (%s)", m->id, m->vm,
				 p.shares[i], why);
		else
			log_info("move %s: VM %s: bandwidth limit removed", m->id, m->vm);
		m->bw_applied = p.shares[i];
	}
	bw_plan_free(&p);
}
