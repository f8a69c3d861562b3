/*
 * Memory channels of one migration. Channel 0 is the main connection
 * (configuration, state, replies); with the multichannel transport, extra
 * TCP connections carry only memory. A 1 MiB chunk always travels on the
 * same channel (chunk index modulo channels), so successive copies of a page
 * arrive in order; the receiver's page generations are a second guard.
 * Extra channels have a sender thread each with a small job queue, so
 * compression and socket writes run in parallel.
 */
#ifndef FERRY_CHANNEL_H
#define FERRY_CHANNEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/auth.h"
#include "common/stream.h"
#include "migration/ram.h"
#include "migration/ram_codec.h"

#define CHANNEL_MAX 8
#define CHANNEL_QUEUE 64

enum chan_job_kind { CHAN_JOB_BITMAP, CHAN_JOB_RANGE, CHAN_JOB_END };

struct chan_job {
	enum chan_job_kind kind;
	uint64_t first, n;
	uint16_t gen;
};

struct mig_channel {
	int fd;
	struct auth_chan ac;       /* its handshake: encrypted or not, and the keys */
	struct stream w;
	struct ram_codec *codec;
	struct ram_stats st;
	/* sender thread (extra channels only) */
	pthread_t thread;
	bool threaded;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct chan_job q[CHANNEL_QUEUE];
	unsigned head, tail;       /* q[head % N] is next; tail is where to add */
	bool busy;
	struct guest_mem *gm;
	const uint64_t *bitmap;    /* the current pass's dirty bitmap */
	/* Pacing: the whole migration's limit (bytes/s, 0 = none) lives in the
	 * migration and may change while it runs; each channel takes its
	 * share of it and restarts its pacing window when it changes. */
	const _Atomic uint64_t *bw_total_bps;
	unsigned bw_channels;      /* channels sharing the total */
	uint64_t bw_seen;          /* the total the current window was started with */
	uint64_t bw_bps;           /* this channel's share of it */
	uint64_t t_start_ns;
	uint64_t bytes_start;
	/* The move's cancel request: a channel sleeping off a chunk under a
	 * low limit (1 MiB at 2 MiB/s is half a second) stops sleeping, so
	 * the migration thread can still tell the destination why before
	 * its connections are shut down (MIG_CANCEL_GRACE_MS). */
	const volatile bool *cancel;
};

/* Run a job on this channel (inline for channel 0, queued for threaded ones). */
int channel_submit(struct mig_channel *c, const struct chan_job *j);
/* Wait until every queued job of this channel has been written. */
int channel_drain(struct mig_channel *c);
/* Wait until at most `slack` bytes written to the socket are still
 * unacknowledged by the peer (the send queue is deep: see precopy.c). */
int channel_wait_sent(struct mig_channel *c, int slack, int timeout_ms);
/* Bytes written to the socket that the peer has not acknowledged yet. */
uint64_t channel_unsent(const struct mig_channel *c);
int channel_start_thread(struct mig_channel *c);
void channel_stop(struct mig_channel *c);
int channel_exec(struct mig_channel *c, const struct chan_job *j);
/* Sleep until what this channel has written fits its share of the
 * bandwidth limit: after each job, and after each record the migration
 * thread writes itself on channel 0 (a disk copy's runs). */
void channel_pace(struct mig_channel *c);
/* How long channel_pace would sleep now before its next look (ns, at most
 * PACE_SLICE_NS; 0: the budget has room), for a caller that waits on
 * something else meanwhile (post-copy: the guest's page requests). */
uint64_t channel_pace_delay(struct mig_channel *c);
uint64_t channel_now_ns(void);
/* Wall clock: compared across hosts (downtime = destination resume - source pause). */
uint64_t channel_realtime_ns(void);

#endif
