/* vCPU duty-cycle throttle (see throttle.h). */
#include "migration/throttle.h"

#include <time.h>

#include "vmm/vcpu.h"

#define THROTTLE_PERIOD_NS 20000000L

static void sleep_ns(long ns)
{
	struct timespec ts = { ns / 1000000000L, ns % 1000000000L };
	nanosleep(&ts, NULL);
}

static void *throttle_thread(void *arg)
{
	struct throttle *t = arg;
	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		int pct = t->pct;
		if (pct <= 0) {
			pthread_cond_wait(&t->cond, &t->lock);
			continue;
		}
		pthread_mutex_unlock(&t->lock);
		vcpus_pause(t->vm);
		sleep_ns(THROTTLE_PERIOD_NS / 100 * pct);
		vcpus_resume(t->vm);
		sleep_ns(THROTTLE_PERIOD_NS / 100 * (100 - pct));
		pthread_mutex_lock(&t->lock);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int throttle_start(struct throttle *t, struct vm *vm)
{
	t->vm = vm;
	t->pct = 0;
	t->stop = false;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	if (pthread_create(&t->thread, NULL, throttle_thread, t) != 0)
		return -1;
	t->running = true;
	return 0;
}

void throttle_set(struct throttle *t, int pct)
{
	if (!t->running)
		return;
	pthread_mutex_lock(&t->lock);
	t->pct = pct < 0 ? 0 : pct > 99 ? 99 : pct;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

void throttle_stop(struct throttle *t)
{
	if (!t->running)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	t->pct = 0;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	/* The thread resumes the vCPUs before it looks at stop again. */
	pthread_join(t->thread, NULL);
	t->running = false;
}

void throttle_watch_init(struct throttle_watch *w)
{
	w->mark = UINT64_MAX;
	w->stale = 0;
}

bool throttle_watch_pass(struct throttle_watch *w, int pct, uint64_t dirty)
{
	if (pct < THROTTLE_MAX_PCT) {
		/* still climbing: the steps below the last one get their pass */
		throttle_watch_init(w);
		return false;
	}
	if (w->mark == UINT64_MAX || dirty * 10 < w->mark * 9) {
		w->mark = dirty;
		w->stale = 0;
		return false;
	}
	/* The mark stays where the last headway left it: moved down by every
	 * smaller pass, a guest shrinking 5% a pass (a third in 8 passes)
	 * would never beat it by a tenth and be cut short. */
	return ++w->stale >= THROTTLE_FUTILE_PASSES;
}
