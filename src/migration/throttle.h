/*
 * vCPU throttling for convergence (QEMU's auto-converge, VMware's stun
 * during vMotion): when the guest dirties memory faster than the link
 * drains it, park all vCPUs for pct% of every 20 ms period, so the dirty
 * rate falls until the rest fits the downtime target. The migration raises
 * pct step by step and always sets it back to 0 when it ends, whatever the
 * outcome.
 */
#ifndef FERRY_THROTTLE_H
#define FERRY_THROTTLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/vm.h"

#define THROTTLE_MAX_PCT 99
/* Passes at the deepest step without the rest shrinking below 90% of
 * what it was at the last headway (the first pass there, or the last to
 * get below that), after which more passes only repeat the same work: a
 * guest whose writes are paced by time (a request rate, a timer) makes up
 * at each wake-up what the throttle held back, so 1% of the CPU can be
 * enough for it to dirty as fast as the link drains. */
#define THROTTLE_FUTILE_PASSES 4

/* Follows the passes at the deepest step (throttle_watch_pass). */
struct throttle_watch {
	uint64_t mark;  /* dirty pages the last pass that made headway left */
	int stale;      /* passes since, none of which beat it by 10% */
};

struct throttle {
	struct vm *vm;
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int pct;          /* 0..99 */
	bool stop;
};

int throttle_start(struct throttle *t, struct vm *vm);
void throttle_set(struct throttle *t, int pct);
/* Undo: pct 0, thread joined, vCPUs left running. */
void throttle_stop(struct throttle *t);

void throttle_watch_init(struct throttle_watch *w);
/* A pass ended leaving dirty pages with the vCPUs throttled to pct: true
 * once THROTTLE_FUTILE_PASSES passes at THROTTLE_MAX_PCT made no headway. */
bool throttle_watch_pass(struct throttle_watch *w, int pct, uint64_t dirty);

#endif
