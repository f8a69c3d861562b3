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

#include "vmm/vm.h"

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

#endif
