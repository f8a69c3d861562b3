/*
 * The source side of a live migration: the six stages as a state machine
 * run on its own thread, so the worker's control socket keeps answering
 * status and cancel. Progress is published in a struct mig_status under a
 * lock. The commit point is the moment the COMMIT record is handed to the
 * socket (docs/migration-ops.md): before it every failure resumes the VM here;
 * after it this copy never runs again.
 */
#ifndef FERRY_PRECOPY_H
#define FERRY_PRECOPY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/auth.h"
#include "common/err.h"
#include "migration/downtime.h"
#include "migration/ram.h"
#include "vmm/machine.h"

enum mig_stage {
	MIG_STAGE_NONE, MIG_STAGE_SETUP, MIG_STAGE_PRECOPY, MIG_STAGE_STOP_COPY,
	MIG_STAGE_STORAGE, MIG_STAGE_RESUME,
	MIG_STAGE_POSTCOPY, /* the guest runs there; its owed pages go (postcopy.h) */
	MIG_STAGE_NETWORK, MIG_STAGE_COMPLETED,
	MIG_STAGE_FAILED, MIG_STAGE_CANCELLED, MIG_STAGE_UNKNOWN,
	MIG_STAGE_CHECKED,  /* check_only: the destination accepted the VM; nothing moved */
	/* post-copy broke: the guest ran there on memory partly here; neither
	 * copy may run (this one is stale) */
	MIG_STAGE_LOST,
};

enum mig_transport { MIG_TRANSPORT_TCP, MIG_TRANSPORT_COMPRESSION, MIG_TRANSPORT_MULTICHANNEL };

struct mig_opts {
	char host[256];
	char port[16];
	char bind[64];                /* local address migration traffic leaves from ("" = any) */
	uint32_t downtime_ms;        /* switchover target, default 50 */
	uint64_t bandwidth_bps;      /* 0 = unlimited */
	enum mig_transport transport;
	int channels;                /* multichannel: connections (default: cores, 2..8) */
	bool compress;               /* compression on (also with multichannel) */
	int codec;                   /* 0 auto, MIG_ENC_LZ4 or MIG_ENC_ZSTD */
	int max_passes;              /* then force the switchover (throttling first) */
	uint32_t max_duration_s;     /* 0 = none */
	bool cancel_on_timeout;      /* at max_duration: cancel instead of switching over */
	uint32_t peer_timeout_ms;    /* a silent peer for this long fails the move */
	struct auth_key key;         /* the move's key: every connection proves it (unset: none) */
	bool encrypt;                /* seal every connection (needs key) */
	bool verify_memory;          /* send a digest of all RAM at stop-and-copy; the destination checks it */
	/* Copy the disk image to this path on the destination ("" = the disk
	 * is shared storage: hand it over). migration/diskcopy.h */
	char disk_copy_path[CONFIG_PATH_MAX];
	/* Only ask: setup as a move makes it (the destination's checks of
	 * the configuration, CPUID, vCPU model, memory, disk and NIC), then
	 * call it off; the VM never pauses and no memory moves. */
	bool check_only;
	/* When pre-copy does not converge, switch over anyway and send the
	 * pages still dirty after the guest runs there (postcopy.h), instead
	 * of throttling the vCPUs. */
	bool postcopy;
};

/* Where a finished move's downtime went, step by step (ms, each from the
 * end of the one before, indexed and named by downtime.h; commit and
 * resume is the rest of the downtime). dest_load is the destination's own
 * figure, within MIG_DT_DEST_READY: from the end of the stream to READY
 * (its channels' last pages, the device state into KVM). */
struct mig_downtime_parts {
	bool set;
	double ms[MIG_DT_NPARTS];
	double dest_load;
};

struct mig_status {
	enum mig_stage stage;
	uint32_t pass;
	uint64_t total_pages;        /* populated pages at the start */
	uint64_t sent_pages;         /* pages sent in pass 1 so far */
	uint64_t remaining_pages;    /* dirty pages left, as of the last sync */
	double dirty_rate_mibps;
	double throughput_mibps;
	double pass1_mibps;          /* pass 1's rate (delivered bytes / its time): the stream's throughput */
	uint64_t bytes_on_wire;
	struct ram_stats ram;
	/* a disk copy's (0 without one): image size, data sent every pass,
	 * and written since it was sent, as of the last publish */
	uint64_t disk_bytes, disk_sent_bytes, disk_dirty_bytes;
	uint64_t elapsed_ms, setup_ms, downtime_ms, eta_ms;
	struct mig_downtime_parts downtime_parts;
	uint32_t throttle_pct;
	uint64_t bandwidth_bps;      /* the limit in force now, 0 = none */
	bool committed;
	bool memory_verified;        /* the destination checked all RAM against our digest */
	/* post-copy: pages owed at the switch-over, still unsent, asked for by
	 * the guest there; its time from RESUMED to the last page (ms) */
	bool postcopy;
	uint64_t postcopy_pages, postcopy_left, postcopy_requests, postcopy_ms;
	char transport[32];
	char codec[16];              /* "lz4", "zstd" (+ " (auto)"), "" = no compression */
	char error[512];
};

struct mig_source {
	struct machine *m;
	struct mig_opts o;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	struct mig_status st;        /* guarded by lock */
	volatile bool cancel;
	/* Bandwidth limit in bytes/s (0 = none): o.bandwidth_bps at the start,
	 * changed live by mig_source_set_bandwidth; the channels read it. */
	_Atomic uint64_t bw_bps;
	int fds[8];                  /* open connections, so cancel can shut them down */
	uint64_t cancel_at_ns;       /* when cancel was asked (channel_now_ns); guarded by lock */
	bool cancel_forced;          /* the connections were shut down */
	/* Called (from the migration thread) when the VM is paused/resumed by the migration. */
	void (*on_pause)(void *opaque, bool paused);
	/* Called (from the migration thread) once its outcome is final. */
	void (*on_end)(void *opaque, enum mig_stage end);
	void *opaque;
};

const char *mig_stage_name(enum mig_stage s);
void mig_opts_default(struct mig_opts *o);
int mig_transport_parse(const char *s, enum mig_transport *t, struct err *e);

int mig_source_start(struct mig_source *ms, struct machine *m, const struct mig_opts *o,
		     struct err *e);
/* Snapshot of the status, safe from any thread. */
void mig_source_status(struct mig_source *ms, struct mig_status *out);
/* Change the limit of the running migration (bytes/s, 0 = none); every
 * channel paces at its share of the new total from now on. */
void mig_source_set_bandwidth(struct mig_source *ms, uint64_t bps);
/* Ask to cancel; refused (returns -1) once the commit point has passed.
 * The migration thread notices between 1 MiB chunks and tells the
 * destination why (ABORT) as it rolls back. One blocked on a silent peer
 * cannot: mig_source_tick shuts its connections down once the request is
 * MIG_CANCEL_GRACE_MS old, and force shuts them at once (a worker going
 * away must not wait for a peer timeout). */
#define MIG_CANCEL_GRACE_MS 250
int mig_source_cancel(struct mig_source *ms, bool force, struct err *e);
/* Called from the worker's loop (at least every 200 ms) while a move runs. */
void mig_source_tick(struct mig_source *ms);
bool mig_source_done(struct mig_source *ms);
void mig_source_join(struct mig_source *ms);

#endif
