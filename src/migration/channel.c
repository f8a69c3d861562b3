/* Memory channels (see channel.h). */
#include "migration/channel.h"

#include <errno.h>
#include <linux/sockios.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "migration/format.h"

uint64_t channel_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#define PACE_BURST_NS 5000000ULL /* 5 ms */
/* A limit lowered or raised live should take effect within this long,
 * even while the channel sleeps off a chunk sent under the old one. */
#define PACE_SLICE_NS 50000000ULL

/* Pick up a changed limit: a new pacing window from now, so the new rate
 * applies from here on instead of being averaged with the time before. */
static void channel_pace_reload(struct mig_channel *c)
{
	uint64_t total = c->bw_total_bps ?
		atomic_load_explicit(c->bw_total_bps, memory_order_relaxed) : 0;
	unsigned n = c->bw_channels ? c->bw_channels : 1;

	if (total == c->bw_seen)
		return;
	c->bw_seen = total;
	c->bw_bps = total / n;
	if (total && !c->bw_bps)
		c->bw_bps = 1; /* a tiny limit is still a limit, never "none" */
	c->t_start_ns = 0;
}

uint64_t channel_pace_delay(struct mig_channel *c)
{
	uint64_t sent, due_ns, now, d;

	channel_pace_reload(c);
	if (!c->bw_bps || (c->cancel && *c->cancel))
		return 0;
	if (!c->t_start_ns) {
		c->t_start_ns = channel_now_ns();
		c->bytes_start = c->w.bytes;
		return 0;
	}
	sent = c->w.bytes - c->bytes_start;
	due_ns = (uint64_t)((double)sent * 1e9 / (double)c->bw_bps);
	now = channel_now_ns() - c->t_start_ns;
	/* Time spent not sending (compressing, waiting for work) is not
	 * saved up as credit beyond a short burst: the cap holds over any
	 * window, and the compressor's raw-vs-compressed timing stays
	 * honest. */
	if (now > due_ns + PACE_BURST_NS) {
		c->t_start_ns += now - due_ns - PACE_BURST_NS;
		now = due_ns + PACE_BURST_NS;
	}
	if (due_ns <= now)
		return 0;
	d = due_ns - now;
	return d > PACE_SLICE_NS ? PACE_SLICE_NS : d;
}

/* Bandwidth limit: sleep until the bytes sent fit the budget. */
void channel_pace(struct mig_channel *c)
{
	uint64_t d;
	while ((d = channel_pace_delay(c)) != 0) {
		struct timespec ts = { (time_t)(d / 1000000000ULL), (long)(d % 1000000000ULL) };
		/* An early wake-up (signal) just goes round the loop again. */
		nanosleep(&ts, NULL);
	}
}

uint64_t channel_realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int channel_exec(struct mig_channel *c, const struct chan_job *j)
{
	int rc = 0;
	switch (j->kind) {
	case CHAN_JOB_RANGE:
		rc = ram_send_pages(&c->w, c->gm, j->first, j->n, j->gen, c->codec, &c->st);
		break;
	case CHAN_JOB_BITMAP:
		rc = ram_send_bitmap_range(&c->w, c->gm, c->bitmap, j->first, j->n, j->gen, c->codec, &c->st);
		break;
	case CHAN_JOB_END:
		mig_put_rec(&c->w, MIG_REC_EOS, 0);
		rc = stream_flush(&c->w);
		break;
	}
	channel_pace(c);
	return rc;
}

static void *channel_thread(void *arg)
{
	struct mig_channel *c = arg;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct chan_job j;
		while (c->head == c->tail)
			pthread_cond_wait(&c->cond, &c->lock);
		j = c->q[c->head % CHANNEL_QUEUE];
		c->busy = true;
		pthread_mutex_unlock(&c->lock);
		if (stream_ok(&c->w))
			channel_exec(c, &j); /* errors are sticky in c->w */
		pthread_mutex_lock(&c->lock);
		c->head++;
		c->busy = false;
		pthread_cond_broadcast(&c->cond);
		if (j.kind == CHAN_JOB_END)
			break;
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

int channel_start_thread(struct mig_channel *c)
{
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->head = c->tail = 0;
	if (pthread_create(&c->thread, NULL, channel_thread, c) != 0)
		return -1;
	c->threaded = true;
	return 0;
}

int channel_submit(struct mig_channel *c, const struct chan_job *j)
{
	if (!c->threaded)
		return channel_exec(c, j);
	pthread_mutex_lock(&c->lock);
	while (c->tail - c->head >= CHANNEL_QUEUE)
		pthread_cond_wait(&c->cond, &c->lock);
	c->q[c->tail % CHANNEL_QUEUE] = *j;
	c->tail++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return stream_ok(&c->w) ? 0 : -1;
}

int channel_drain(struct mig_channel *c)
{
	if (c->threaded) {
		pthread_mutex_lock(&c->lock);
		while (c->head != c->tail)
			pthread_cond_wait(&c->cond, &c->lock);
		pthread_mutex_unlock(&c->lock);
	}
	if (stream_ok(&c->w))
		stream_flush(&c->w);
	return stream_ok(&c->w) ? 0 : -1;
}

uint64_t channel_unsent(const struct mig_channel *c)
{
	int q = 0;
	if (ioctl(c->fd, SIOCOUTQ, &q) < 0 || q < 0)
		return 0; /* not a TCP socket: nothing is queued in the kernel */
	return (uint64_t)q;
}

int channel_wait_sent(struct mig_channel *c, int slack, int timeout_ms)
{
	uint64_t t0 = channel_now_ns(), last = UINT64_MAX;
	for (;;) {
		uint64_t q = channel_unsent(c);
		struct timespec ts = { 0, 200000 };
		if (!stream_ok(&c->w))
			return -1;
		if (q <= (uint64_t)slack)
			return 0;
		/* A slow link drains slowly; only a queue that stops shrinking fails. */
		if (q < last) {
			last = q;
			t0 = channel_now_ns();
		} else if (channel_now_ns() - t0 > (uint64_t)timeout_ms * 1000000ULL) {
			return stream_fail(&c->w, "the destination stopped reading: %llu bytes unsent for %d ms",
					   (unsigned long long)q, timeout_ms);
		}
		nanosleep(&ts, NULL);
	}
}

void channel_stop(struct mig_channel *c)
{
	if (c->threaded) {
		struct chan_job end = { .kind = CHAN_JOB_END };
		/* A failed stream still consumes jobs, so the END job always lets the thread exit. */
		channel_submit(c, &end);
		pthread_join(c->thread, NULL);
		c->threaded = false;
	}
}
