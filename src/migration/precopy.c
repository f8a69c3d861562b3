/*
 * Source side of a live migration (see precopy.h and docs/migration-ops.md).
 *
 *   SETUP       connect, send config + CPUID + vCPU model + populated
 *               extents; the destination checks it can host the VM and
 *               answers.
 *   PRE-COPY    pass 1 sends every populated page; later passes send what
 *               the dirty log reports, each chunk re-armed just before it
 *               is read. Switch over when the rest fits the downtime target
 *               at the measured bandwidth, or after max_passes.
 *   STOP-COPY   pause vCPUs, last dirty pages, all device and CPU state;
 *               wait for the destination to say it loaded everything.
 *   STORAGE     flush the disk and release its lock.
 *   COMMIT      hand the COMMIT record to the socket: from here on the
 *               source never resumes on its own.
 *   RESUME      the destination runs the VM and says so; we are done.
 *   NETWORK     the destination announces the NICs (RARP); we report.
 * Any failure before COMMIT: tell the destination to abort, re-take the
 * disk, resume the vCPUs. After COMMIT without a RESUMED reply the outcome
 * is unknown to us: stay paused and let the operator (ferryd) resolve.
 */
#include "migration/precopy.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/failpoint.h"
#include "common/log.h"
#include "common/sock.h"
#include "devices/virtio_blk.h"
#include "migration/channel.h"
#include "migration/diskcopy.h"
#include "migration/digest.h"
#include "migration/dirty.h"
#include "migration/format.h"
#include "migration/postcopy.h"
#include "migration/throttle.h"
#include "vmm/vcpu.h"
#include "vmm/vmstate.h"
#include "vmm/x86/cpuid.h"

#define CHANNEL_SNDBUF (64ULL << 20) /* split across channels, 8 MiB at least each */
#define PACE_SECONDS 0.1             /* unsent data queued: about this long at the link's rate */
#define PACE_START (4ULL << 20)      /* ... before the rate is known (all channels together) */
#define PACE_MIN (1ULL << 20)        /* per channel, whatever the rate */
#define CHUNK_PAGES MIG_CHUNK_PAGES /* 1 MiB, a multiple of 64 as KVM's CLEAR wants */

const char *mig_stage_name(enum mig_stage s)
{
	static const char *n[] = { "none", "setup", "precopy", "stop-and-copy", "storage-handoff",
				   "resume", "postcopy", "network-cleanup", "completed", "failed",
				   "cancelled", "unknown", "checked", "lost" };
	_Static_assert(sizeof(n) / sizeof(n[0]) == MIG_STAGE_LOST + 1, "a name per stage");
	return s <= MIG_STAGE_LOST ? n[s] : "?";
}

void mig_opts_default(struct mig_opts *o)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	memset(o, 0, sizeof(*o));
	o->downtime_ms = 50;
	o->transport = MIG_TRANSPORT_COMPRESSION;
	o->compress = true;
	/* Four connections per core: each channel's threads spend much of
	 * their time blocked in socket calls, and with fewer the cores idle
	 * between them. Measured on 2 cores, 512 MiB moved at 256 MiB/s /
	 * full speed: 2 channels 340 / 316 ms, 4: 293 / 313, 8: 286 / 281,
	 * guest heartbeat gaps unchanged (bench/results/run-20261126c/channels). */
	long n = cores < 1 ? 4 : cores * 4;
	o->channels = n > CHANNEL_MAX ? CHANNEL_MAX : (int)n;
	o->max_passes = 30;
	o->peer_timeout_ms = 15000;
}

int mig_transport_parse(const char *s, enum mig_transport *t, struct err *e)
{
	if (strcmp(s, "tcp") == 0)
		*t = MIG_TRANSPORT_TCP;
	else if (strcmp(s, "compression") == 0)
		*t = MIG_TRANSPORT_COMPRESSION;
	else if (strcmp(s, "multichannel") == 0)
		*t = MIG_TRANSPORT_MULTICHANNEL;
	else
		return err_set(e, "unknown transport '%s' (tcp, compression, multichannel)", s);
	return 0;
}

static uint64_t ms_since(uint64_t t0_ns)
{
	return (channel_now_ns() - t0_ns) / 1000000ULL;
}


struct run {
	struct mig_source *ms;
	struct machine *m;
	int nch;
	struct mig_channel ch[CHANNEL_MAX];
	struct stream rd;           /* replies on the main connection */
	struct dirty d;
	bool dirty_on;
	bool paused;
	bool lock_released;
	uint64_t t0;
	uint16_t gen;
	struct throttle thr;
	uint64_t pass_t0, pass_bytes0;  /* start of the current pass: its time and delivered bytes (pass_rate) */
	uint64_t published_ns;          /* last publish() from inside a pass (publish_due) */
	bool channels_early;            /* extra channels said hello before the main one (failpoint) */
	struct ram_census census;       /* populated pages setup's extents walk found (pages 0: none) */
	bool pass1_done;                /* pass 1's rate is final (publish stops updating it) */
	/* Where the downtime went (ns, channel_now_ns): vCPUs stopped, last
	 * pages sent, state sent, destination READY; logged at the end. */
	uint64_t t_pause, t_paused, t_pages, t_digest, t_state, t_ready;
	int64_t dst_load_ms;            /* the destination's own figure, from READY */
	/* What the stop-and-copy still owes (UINT64_MAX: nothing). pass1_from:
	 * pass 1 stopped at this page (the maximum duration, policy: switch
	 * over), every populated page from it on is unsent. pending_from: the
	 * dirty bits of the bitmap from this page on are unsent — 0 from a
	 * sync until the pass after it ends, or where that pass was cut. */
	uint64_t pass1_from, pending_from;
	int pace_lowat;                 /* TCP_NOTSENT_LOWAT now set on each channel (0: off) */
	struct diskcopy dc;             /* the disk's copy, if the move makes one (dc.on) */
	/* Post-copy (o.postcopy, when pre-copy did not converge): the pages
	 * the destination gets after the guest runs there, and how many. */
	bool postcopy;
	uint64_t *owed, owed_left;
};

static void set_stage(struct run *r, enum mig_stage s)
{
	pthread_mutex_lock(&r->ms->lock);
	r->ms->st.stage = s;
	pthread_mutex_unlock(&r->ms->lock);
	log_info("migration: %s", mig_stage_name(s));
}

static uint64_t wire_bytes(struct run *r)
{
	uint64_t b = 0;
	for (int i = 0; i < r->nch; i++)
		b += r->ch[i].w.bytes;
	return b;
}

static uint64_t unsent_bytes(struct run *r)
{
	uint64_t b = 0;
	for (int i = 0; i < r->nch; i++)
		b += channel_unsent(&r->ch[i]);
	return b;
}

/* Bytes the peer has acknowledged so far (the send queue is deep, so
 * written is not sent). Not monotonic to the byte: what the stream has
 * counted may still sit in its own buffer, outside the kernel's queue. */
static uint64_t delivered_bytes(struct run *r)
{
	uint64_t w = wire_bytes(r), q = unsent_bytes(r);
	return w > q ? w - q : 0;
}

/* ... since the current pass began. A pass starts with up to the drain's
 * slack still queued from the one before: pass_bytes0 is what was
 * delivered then, not what was written, or a short pass on a slow link
 * came out negative (and, unsigned, as 10^15 MiB/s). */
static double pass_delivered(struct run *r)
{
	uint64_t d = delivered_bytes(r);
	return d > r->pass_bytes0 ? (double)(d - r->pass_bytes0) : 0;
}

/* The current pass's rate: its delivered bytes over its time. */
static double pass_rate(struct run *r)
{
	double secs = (double)(channel_now_ns() - r->pass_t0) / 1e9;
	return secs > 0.001 ? pass_delivered(r) / secs : 0;
}

/* Keep the unsent part of each send queue to ~100 ms of the link
 * (TCP_NOTSENT_LOWAT: a write blocks above it). On a fast link that is
 * more than the 64 MiB queue, and nothing changes. On a slow one, a queue
 * that deep would hold seconds of pages: writes would return at memory
 * speed, so the adaptive codec timed the queue instead of the link and
 * sent raw where compressing wins several times over (a 200 Mbit/s link,
 * compressible pages: 161 MiB on the wire for 35 MiB of guest), and pages
 * read long before they leave are stale the sooner. Until the rate is
 * measured the queue starts shallow (PACE_START), so the first probes of
 * the codec already see a slow link. bw: the delivered rate (0: unknown). */
static void pace_channels(struct run *r, double bw)
{
	uint64_t total = bw > 0 ? (uint64_t)(bw * PACE_SECONDS) : PACE_START;
	uint64_t per = total / (uint64_t)r->nch;
	int v = total >= CHANNEL_SNDBUF ? 0 : (int)(per > PACE_MIN ? per : PACE_MIN);
	if (v == r->pace_lowat)
		return;
	r->pace_lowat = v;
	for (int i = 0; i < r->nch; i++)
		/* 0 restores the system default (no limit). A socket that is not
		 * TCP has no such queue; the move goes on unpaced. */
		if (setsockopt(r->ch[i].fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof(v)) < 0)
			log_debug("migration: channel %d: TCP_NOTSENT_LOWAT %d: %s", i, v,
				  strerror(errno));
}

static void publish(struct run *r)
{
	struct mig_status *st = &r->ms->st;
	pthread_mutex_lock(&r->ms->lock);
	memset(&st->ram, 0, sizeof(st->ram));
	for (int i = 0; i < r->nch; i++) {
		st->ram.pages_raw += r->ch[i].st.pages_raw;
		st->ram.pages_zero += r->ch[i].st.pages_zero;
		st->ram.pages_compressed += r->ch[i].st.pages_compressed;
		st->ram.bytes_compressed += r->ch[i].st.bytes_compressed;
		st->ram.records += r->ch[i].st.records;
	}
	st->bytes_on_wire = wire_bytes(r);
	st->elapsed_ms = ms_since(r->t0);
	if (r->dc.on) {
		st->disk_bytes = r->dc.image_bytes;
		st->disk_sent_bytes = r->dc.sent_bytes;
		st->disk_dirty_bytes = diskcopy_dirty_bytes(&r->dc);
	}
	/* During the first pass there is no dirty sync yet: show what it has
	 * left and how fast it goes, so progress and ETA mean something. */
	if (st->stage == MIG_STAGE_PRECOPY && st->pass == 1 && r->pass_t0) {
		double bw = pass_rate(r);
		st->throughput_mibps = bw / 1048576.0;
		if (!r->pass1_done)
			st->pass1_mibps = st->throughput_mibps; /* so far; final at the pass's end */
		st->remaining_pages = st->total_pages > st->sent_pages ? st->total_pages - st->sent_pages : 0;
		/* a disk copy's pass 1 goes first: what it owes is left too */
		st->eta_ms = bw > 0 ? (uint64_t)(((double)st->remaining_pages * 4096.0 +
						  (double)st->disk_dirty_bytes) / bw * 1000.0) : 0;
	}
	pthread_mutex_unlock(&r->ms->lock);
}

/* Inside a pass, whatever the link's speed: a capped move may take
 * seconds per MiB, and its progress, bytes and ETA must still move. */
#define PUBLISH_EVERY_NS 200000000ULL
static void publish_due(struct run *r)
{
	uint64_t now = channel_now_ns();
	if (now - r->published_ns >= PUBLISH_EVERY_NS) {
		r->published_ns = now;
		publish(r);
	}
}

static int tune_socket(int fd, uint32_t timeout_ms, struct err *e)
{
	int one = 1, idle = 5, intvl = 2, cnt = 3;
	unsigned int uto = timeout_ms;
	/* Keepalives and TCP_USER_TIMEOUT: a peer that vanishes (host crash,
	 * blackholed link) fails the move in seconds, not TCP's 15 minutes. */
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof(uto)) < 0 ||
	    /* We flush whole records ourselves; Nagle would hold the small
	     * COMMIT record back for a delayed ACK, adding ~40 ms of downtime. */
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		return err_sys(e, "setting TCP socket options");
	return 0;
}

/* lz4 costs little CPU and suits fast links; on a link capped below ~300
 * MiB/s, zstd's denser output wins the time back. */
static enum ram_codec_kind pick_codec(const struct mig_opts *o)
{
	if (o->codec == MIG_ENC_ZSTD || o->codec == MIG_ENC_LZ4)
		return (enum ram_codec_kind)o->codec;
	return o->bandwidth_bps && o->bandwidth_bps <= (300ULL << 20) ? RAM_CODEC_ZSTD : RAM_CODEC_LZ4;
}

static int open_channel(struct run *r, int idx, struct err *e)
{
	struct mig_channel *c = &r->ch[idx];
	const struct mig_opts *o = &r->ms->o;
	memset(c, 0, sizeof(*c));
	c->fd = sock_tcp_connect_from(o->host, o->port, o->bind, 5000, e);
	if (c->fd < 0)
		return err_prefix(e, "connecting to the destination %s:%s", o->host, o->port);
	pthread_mutex_lock(&r->ms->lock);
	r->ms->fds[idx] = c->fd;
	if (r->ms->cancel)
		shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_unlock(&r->ms->lock);
	if (tune_socket(c->fd, o->peer_timeout_ms, e) < 0)
		return -1;
	{
		/* A deep send queue rides out the scheduling hiccups of a busy
		 * host (one stream here: ~1.1 -> ~1.5 GiB/s at 64 MiB); every pass
		 * waits for it to drain (drain_all). Forcing past wmem_max needs
		 * CAP_NET_ADMIN; without it the kernel's limit applies. */
		int sz = (int)((CHANNEL_SNDBUF / (uint64_t)r->nch) > (8ULL << 20) ?
			       CHANNEL_SNDBUF / (uint64_t)r->nch : 8ULL << 20);
		if (setsockopt(c->fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) < 0 &&
		    setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) < 0)
			return err_sys(e, "sizing the send buffer");
	}
	stream_init_fd(&c->w, c->fd, true);
	stream_set_timeout(&c->w, (int)o->peer_timeout_ms);
	c->gm = &r->m->vm.mem;
	c->bitmap = NULL;
	c->st.bounce = malloc((size_t)MIG_MAX_RUN_PAGES * 4096);
	if (!c->st.bounce)
		return err_set(e, "out of memory");
	c->bw_total_bps = &r->ms->bw_bps;
	c->bw_channels = (unsigned)r->nch;
	c->cancel = &r->ms->cancel;
	if (o->compress) {
		enum ram_codec_kind k = pick_codec(o);
		/* An explicit codec is the operator's choice (a metered link, say):
		 * always tried. Auto also decides per stretch whether compressing
		 * is faster than raw at all. */
		c->codec = ram_codec_new(k, 1, o->codec == 0, e); /* zstd level 1, lz4 acceleration 1 */
		if (!c->codec)
			return -1;
	}
	return 0;
}

/* The handshake on an open channel, before its first stream byte: no VM
 * memory goes to a peer that cannot prove the move's key (auth.h); with
 * encryption its stream is sealed from here on. The extra channels' run
 * after the setup is sent (do_setup), so the destination builds the VM
 * meanwhile; it answers them side by side with the main one's. */
static int secure_channel(struct run *r, int idx, struct err *e)
{
	struct mig_channel *c = &r->ch[idx];
	const struct mig_opts *o = &r->ms->o;
	if (!o->key.set)
		return 0;
	if (auth_chan_source(c->fd, &o->key, o->encrypt, (int)o->peer_timeout_ms, &c->ac, e) < 0)
		return idx ? err_prefix(e, "memory channel %d", idx) : -1;
	if (c->ac.encrypt && stream_set_seal(&c->w, c->ac.key_tx, e) < 0)
		return -1;
	return 0;
}

/* A hello on each extra channel ties it to this migration and gives its
 * index. The destination tells the main connection by its first record,
 * not by the order handshakes finish, so these may run at any time. */
static int hello_channels(struct run *r, struct err *e)
{
	for (int i = 1; i < r->nch; i++) {
		if (secure_channel(r, i, e) < 0)
			return -1;
		mig_put_header(&r->ch[i].w);
		mig_put_rec(&r->ch[i].w, MIG_REC_HELLO, 8);
		stream_put_u32(&r->ch[i].w, (uint32_t)i);
		stream_put_u32(&r->ch[i].w, (uint32_t)r->nch);
		if (stream_flush(&r->ch[i].w) < 0)
			return stream_check(&r->ch[i].w, e);
	}
	return 0;
}

static int reply_ok(const char *text, char *why, size_t whylen)
{
	struct json_object *o = json_tokener_parse(text), *v;
	int ok = 0;
	if (!o) {
		snprintf(why, whylen, "unreadable reply from the destination");
		return 0;
	}
	/* The destination's word, typed as it sends them: json-c calls any
	 * non-empty string true ("ok":"no" would pass for a yes, and a READY
	 * so read lets COMMIT go), and gives no string for a null "error". */
	if (json_object_object_get_ex(o, "ok", &v) && json_object_is_type(v, json_type_boolean))
		ok = json_object_get_boolean(v);
	if (!ok && json_object_object_get_ex(o, "error", &v) && json_object_is_type(v, json_type_string))
		snprintf(why, whylen, "%s", json_object_get_string(v));
	else if (!ok)
		snprintf(why, whylen, "the destination refused without a reason");
	json_object_put(o);
	return ok;
}

static int64_t reply_int(const char *text, const char *key)
{
	struct json_object *o = json_tokener_parse(text), *v;
	int64_t x = 0;
	if (o && json_object_object_get_ex(o, key, &v))
		x = json_object_get_int64(v);
	if (o)
		json_object_put(o);
	return x;
}

/* A record whose payload was encoded into m (which it frees). */
static void put_encoded(struct stream *w, uint32_t type, struct stream *m)
{
	mig_put_rec(w, type, (uint32_t)stream_mem_len(m));
	stream_put(w, stream_mem_data(m), stream_mem_len(m));
	stream_destroy(m);
}

/* Setup: configuration, CPUID, the rest of the vCPU model and the
 * populated extents go first; the destination answers whether it can
 * host this VM. */
static int do_setup(struct run *r, struct err *e)
{
	struct mig_channel *c = &r->ch[0];
	const struct kvm_cpuid2 *cpuid = r->m->vm.vcpus[0]->cpuid;
	struct cpu_model model = r->m->vm.cpu_model; /* kept since the vCPUs were set up: vm.h */
	struct stream m;
	char *cfg, reply[MIG_MAX_REPLY + 1], why[512];

	if (!cpuid)
		return err_set(e, "vCPU 0 has no CPUID recorded");
	if (!r->m->vm.cpu_model_known)
		return err_set(e, "vCPU 0's model was never read");
	/* A test's way to describe a guest whose TSC runs 1% faster than
	 * this host's, which a destination without TSC scaling refuses
	 * (tests/e2e/worker_refuse_model.sh). */
	if (failpoint("src.model_tsc_fast") < 0)
		model.tsc_khz += model.tsc_khz / 100;
	if (r->ms->o.disk_copy_path[0]) {
		/* the destination's copy of the disk, where it is to go there */
		struct vm_config *copy = malloc(sizeof(*copy));
		if (!copy)
			return err_set(e, "out of memory");
		if (diskcopy_describe(r->m, r->ms->o.disk_copy_path, copy, e) < 0) {
			free(copy);
			return -1;
		}
		cfg = config_to_json(copy);
		free(copy);
	} else {
		cfg = config_to_json(&r->m->cfg);
	}
	if (!cfg)
		return err_set(e, "out of memory");
	mig_put_header(&c->w);
	mig_put_config(&c->w, cfg);
	free(cfg);
	stream_init_mem_writer(&m);
	cpuid_encode(&m, cpuid);
	put_encoded(&c->w, MIG_REC_CPUID, &m);
	stream_init_mem_writer(&m);
	cpu_model_put(&m, &model);
	put_encoded(&c->w, MIG_REC_CPU_MODEL, &m);
	/* The destination checks and builds the VM from these while the
	 * extents below are found (walking a big guest's memfd takes ms). */
	if (stream_flush(&c->w) < 0)
		return stream_check(&c->w, e);
	/* Where the guest's memory is, so the destination can fault those
	 * pages in while the data is still on its way (a first touch costs
	 * ~10 us on nested hosts and would otherwise sit in the receive path). */
	failpoint("src.before_extents"); /* tests: a huge guest's walk (move_auth.sh) */
	{
		uint64_t (*ext)[2] = malloc(sizeof(*ext) * 4096);
		size_t n;
		/* per 1 MiB chunk too, so pass 1's progress counts what it sends */
		r->census.per_window = calloc(gmem_npages(&r->m->vm.mem) / CHUNK_PAGES + 1, sizeof(uint16_t));
		n = ext ? ram_populated_extents(&r->m->vm.mem, ext, 4096, &r->census) : 0;
		mig_put_rec(&c->w, MIG_REC_EXTENTS, (uint32_t)(4 + n * 16));
		stream_put_u32(&c->w, (uint32_t)n);
		for (size_t i = 0; i < n; i++) {
			stream_put_u64(&c->w, ext[i][0]);
			stream_put_u64(&c->w, ext[i][1]);
		}
		free(ext);
	}
	/* pass 0 marker: announces the channel count */
	mig_put_sync(&c->w, &(struct mig_sync){ .pass = 0, .value = (uint64_t)r->nch });
	if (stream_flush(&c->w) < 0)
		return stream_check(&c->w, e);
	if (!r->channels_early && hello_channels(r, e) < 0)
		return -1;
	if (mig_get_reply(&r->rd, MIG_REPLY_SETUP, reply, sizeof(reply), e) < 0)
		return err_prefix(e, "waiting for the destination's answer");
	if (!reply_ok(reply, why, sizeof(why)))
		return err_set(e, "the destination refused the VM: %s", why);
	/* A destination that checks each page alone lets raw runs go straight
	 * from guest memory; one that does not gets copies (the bounce). */
	if (reply_int(reply, "page_sums") == 1)
		for (int i = 0; i < r->nch; i++)
			r->ch[i].st.live_sums = true;
	else
		log_info("migrate: the destination predates per-page sums; raw runs are copied before they are sent");
	if (r->ms->o.postcopy && reply_int(reply, "postcopy") != 1)
		return err_set(e, "the destination cannot take a post-copy move (its ferry-vm predates "
			       "post-copy, or its kernel has no userfaultfd): move without post-copy, or "
			       "update the destination");
	if (r->ms->o.verify_memory && reply_int(reply, "digest") != 1)
		return err_set(e, "the destination cannot check a memory digest (its ferry-vm predates "
			       "them): move without verifying memory, or update the destination");
	return 0;
}

static int send_sync(struct run *r, uint32_t pass, uint64_t left)
{
	struct mig_channel *c = &r->ch[0];
	mig_put_sync(&c->w, &(struct mig_sync){ .pass = pass, .value = left });
	return stream_ok(&c->w) ? 0 : -1;
}

/* The end of a pass: every job written, and the send queues delivered, so
 * the pass's bandwidth counts bytes that arrived and the switchover never
 * has a queue of old pages to drain while the VM is paused. */
static int drain_all(struct run *r, struct err *e)
{
	for (int i = 0; i < r->nch; i++)
		if (channel_drain(&r->ch[i]) < 0)
			return stream_check(&r->ch[i].w, e) < 0 ? err_prefix(e, "channel %d", i) : -1;
	for (int i = 0; i < r->nch; i++)
		if (channel_wait_sent(&r->ch[i], 256 << 10, (int)r->ms->o.peer_timeout_ms) < 0)
			return stream_check(&r->ch[i].w, e) < 0 ? err_prefix(e, "channel %d", i) : -1;
	return 0;
}

static bool chunk_any(const uint64_t *bm, uint64_t first)
{
	for (int i = 0; i < CHUNK_PAGES / 64; i++)
		if (bm[first / 64 + (uint64_t)i])
			return true;
	return false;
}

/* One step up the vCPU throttle. Steps grow with how far off we are: a
 * guest dirtying at several times the link rate needs a firm hand at once
 * rather than a whole slow pass spent on each step. */
static int throttle_step(struct run *r, double rate, double bw, struct err *e)
{
	static const int steps[] = { 40, 70, 85, 95, THROTTLE_MAX_PCT };
	int pct, k = 0;
	pthread_mutex_lock(&r->ms->lock);
	pct = (int)r->ms->st.throttle_pct;
	while (k < 4 && steps[k] <= pct)
		k++;
	if (rate > bw * 8 && k < 4)
		k = 4;
	else if (rate > bw * 4 && k < 3)
		k = 3;
	else if (rate > bw * 2 && k < 1)
		k = 1;
	if (steps[k] == pct) {
		pthread_mutex_unlock(&r->ms->lock);
		return 0; /* already at the deepest step */
	}
	pct = steps[k];
	r->ms->st.throttle_pct = (uint32_t)pct;
	pthread_mutex_unlock(&r->ms->lock);
	if (!r->thr.running && throttle_start(&r->thr, &r->m->vm) < 0)
		return err_set(e, "cannot start the vCPU throttle");
	throttle_set(&r->thr, pct);
	log_info("migration: not converging (%.0f MiB/s dirtied, %.0f MiB/s sent), vCPUs throttled to %d%%",
		 rate / 1048576.0, bw / 1048576.0, pct);
	return 0;
}

/* Pass 1 over a slow link can take seconds while the guest re-dirties
 * what was already sent; noticing only at the end of the pass would send
 * most of the memory twice. So every 200 ms of pass 1, read the log of the
 * chunks already re-armed: pages written there since are a sample of the
 * guest's dirty rate, scaled to all populated memory (as if writes were
 * spread evenly). When nearly all of that region is dirty again, the
 * sample is saturated: the guest is taken to be well over twice as fast
 * as the link, which climbs one step per check. Throttling starts only if
 * the rest of pass 1 still needs over a second: short passes are left to
 * the end-of-pass rule. The link rate counts delivered bytes (the send
 * queue is deep). */
struct early_check {
	uint64_t t_last, dirty_last;
	bool off;
	bool paced;     /* the first pacing from a measured rate is done */
};

static int pass_one_check(struct run *r, struct early_check *x, uint64_t upto, struct err *e)
{
	uint64_t now = channel_now_ns(), dirty, sent, total;
	double secs, dt, bw, rate, left_s;
	struct err pe;
	/* 20 ms already tell a slow link from a fast one (100x apart): the
	 * shallow start queue lasts no longer where it is not needed. */
	if (!x->paced && now - r->pass_t0 >= 20000000ULL) {
		pace_channels(r, pass_rate(r));
		x->paced = true;
	}
	if (now - x->t_last < 200000000ULL)
		return 0;
	pace_channels(r, pass_rate(r));
	if (x->off || dirty_peek(&r->d, upto, &dirty, &pe) < 0) {
		x->off = true; /* this tracker cannot be sampled: the end-of-pass rule alone */
		x->t_last = now;
		return 0;
	}
	pthread_mutex_lock(&r->ms->lock);
	sent = r->ms->st.sent_pages;
	total = r->ms->st.total_pages;
	pthread_mutex_unlock(&r->ms->lock);
	secs = (double)(now - r->pass_t0) / 1e9;
	dt = (double)(now - x->t_last) / 1e9;
	x->t_last = now;
	if (!sent || secs < 0.1 || dirty < x->dirty_last) {
		x->dirty_last = dirty;
		return 0;
	}
	bw = pass_rate(r);
	rate = (double)(dirty - x->dirty_last) * 4096.0 / dt * ((double)total / (double)sent);
	x->dirty_last = dirty;
	if (dirty * 10 >= sent * 9 && rate < bw * 2.5)
		rate = bw * 2.5; /* saturated: at least this, so the steps keep climbing */
	left_s = bw > 0 && total > sent ? (double)(total - sent) * 4096.0 / bw : 0;
	pthread_mutex_lock(&r->ms->lock);
	r->ms->st.dirty_rate_mibps = rate / 1048576.0;
	pthread_mutex_unlock(&r->ms->lock);
	/* with post-copy the guest is never slowed: the pass ends, and the
	 * end-of-pass rule switches to post-copy */
	if (left_s > 1.0 && rate > bw * 0.5 && !r->ms->o.postcopy)
		return throttle_step(r, rate, bw, e);
	return 0;
}

/* The maximum duration, checked between chunks, so a long pass (a big
 * guest on a capped link) does not run past it: 0 go on, 1 switch over
 * now (policy), -1 cancelled (policy; e says so). */
static int past_deadline(struct run *r, struct err *e)
{
	const struct mig_opts *o = &r->ms->o;
	if (!o->max_duration_s || ms_since(r->t0) < (uint64_t)o->max_duration_s * 1000)
		return 0;
	if (o->cancel_on_timeout) {
		err_set(e, "did not converge within %u s (policy: cancel)", o->max_duration_s);
		e->code = ECANCELED; /* ends as cancelled, with this reason */
		return -1;
	}
	return 1;
}

/* Every populated page from page `from` on, chunk by chunk (never-touched
 * memory costs nothing): pass 1 (live: each chunk re-armed just before it
 * goes, the early convergence check, the maximum duration), or with the
 * guest stopped, what a pass 1 cut short at the maximum duration did not
 * send. Returns 1 if cut short. */
static int send_populated(struct run *r, uint64_t from, bool live, struct err *e)
{
	struct guest_mem *gm = &r->m->vm.mem;
	uint64_t npages = gmem_npages(gm);
	struct early_check x = { .t_last = r->pass_t0 };
	for (uint64_t p = from; p < npages; p += CHUNK_PAGES) {
		uint64_t n = npages - p < CHUNK_PAGES ? npages - p : CHUNK_PAGES;
		off_t data;
		struct chan_job j = { .kind = CHAN_JOB_RANGE, .first = p, .n = n, .gen = r->gen };
		if (live && r->ms->cancel)
			return err_set(e, "cancelled");
		int late = live ? past_deadline(r, e) : 0;
		if (late < 0)
			return -1;
		if (late) {
			r->pass1_from = p; /* the rest goes in the stop-and-copy */
			return drain_all(r, e) < 0 ? -1 : 1;
		}
		/* Re-arm before deciding: a write after this point is logged,
		 * a write before it is seen by the populated check below. */
		if (live && dirty_clear(&r->d, p, n, NULL, e) < 0)
			return -1;
		data = lseek(gm->memfd, (off_t)(p << 12), SEEK_DATA);
		if (data < 0 || (uint64_t)data >= (p + n) << 12) {
			if (data < 0 && errno != ENXIO)
				return err_sys(e, "SEEK_DATA on guest memory");
			continue; /* never touched: costs nothing */
		}
		/* Start at the first populated page; reading holes would allocate them. */
		j.first = (uint64_t)data >> 12;
		j.n = p + n - j.first;
		if (channel_submit(&r->ch[mig_chunk_channel(p, (uint32_t)r->nch)], &j) < 0)
			break;
		/* the chunk's populated pages, not its range from the first one:
		 * holes inside it would run the count past the total */
		uint64_t counted = j.n, first_touched = 0;
		if (r->census.pages && r->census.per_window) {
			counted = r->census.per_window[p / CHUNK_PAGES];
			/* A chunk the guest first touched after setup's walk
			 * (a guest growing while it moves): count it now, in
			 * the total too. One lseek pair, only for such chunks. */
			if (!counted)
				counted = first_touched = ram_populated_in(gm, j.first, j.n);
		}
		pthread_mutex_lock(&r->ms->lock);
		r->ms->st.sent_pages += counted;
		r->ms->st.total_pages += first_touched;
		pthread_mutex_unlock(&r->ms->lock);
		publish_due(r);
		if (live && pass_one_check(r, &x, p + n, e) < 0)
			return -1;
	}
	return drain_all(r, e);
}

/* Pass k: send the pages in the dirty bitmap, re-arming each chunk first
 * (rearm: the guest runs; then the maximum duration may cut it short: 1). */
static int pass_dirty(struct run *r, bool rearm, struct err *e)
{
	uint64_t npages = r->d.npages;
	for (int i = 0; i < r->nch; i++)
		r->ch[i].bitmap = r->d.bitmap;
	for (uint64_t p = 0; p < npages; p += CHUNK_PAGES) {
		uint64_t n = npages - p < CHUNK_PAGES ? npages - p : CHUNK_PAGES;
		struct chan_job j = { .kind = CHAN_JOB_BITMAP, .first = p, .n = n, .gen = r->gen };
		if (n < CHUNK_PAGES || chunk_any(r->d.bitmap, p)) {
			if (r->ms->cancel && rearm)
				return err_set(e, "cancelled");
			if (rearm)
				failpoint("src.dirty_chunk"); /* tests: a slow later pass */
			int late = rearm ? past_deadline(r, e) : 0;
			if (late < 0)
				return -1;
			if (late) {
				r->pending_from = p; /* its bits from here on are still owed */
				return drain_all(r, e) < 0 ? -1 : 1;
			}
			if (rearm && dirty_clear(&r->d, p, n, r->d.bitmap, e) < 0)
				return -1;
			if (channel_submit(&r->ch[mig_chunk_channel(p, (uint32_t)r->nch)], &j) < 0)
				break;
			publish_due(r);
		}
	}
	return drain_all(r, e);
}

/* Between two runs of a disk pass: the limit, and while the guest runs the
 * cancel and the maximum duration (1: switch over now). */
static int disk_between_live(void *opaque, struct err *e)
{
	struct run *r = opaque;
	channel_pace(&r->ch[0]);
	publish_due(r);
	if (r->ms->cancel)
		return err_set(e, "cancelled");
	return past_deadline(r, e);
}

static int disk_between_stopped(void *opaque, struct err *e)
{
	struct run *r = opaque;
	(void)e;
	channel_pace(&r->ch[0]);
	publish_due(r);
	return 0;
}

/* The disk's blocks written since they were last sent (at first: all
 * its allocated ones), on the main connection: one path, so a block sent
 * again always lands after its older copy. 1: cut short at the maximum
 * duration, the rest still marked for the stop-and-copy. */
static int disk_pass(struct run *r, bool live, struct err *e)
{
	if (!r->dc.on)
		return 0;
	return diskcopy_send(&r->dc, &r->ch[0].w, live ? disk_between_live : disk_between_stopped, r, e);
}

static void pause_vm(struct run *r)
{
	if (!r->paused) {
		vcpus_pause(&r->m->vm);
		r->paused = true;
		if (r->ms->on_pause)
			r->ms->on_pause(r->ms->opaque, true);
	}
}

static void resume_vm(struct run *r)
{
	if (r->paused) {
		vcpus_resume(&r->m->vm);
		r->paused = false;
		if (r->ms->on_pause)
			r->ms->on_pause(r->ms->opaque, false);
	}
}

static int deadline_switchover(struct run *r)
{
	r->postcopy = r->ms->o.postcopy;
	log_info("migration: switching over by policy at the maximum duration (%u s), in pass %u; "
		 "what is left goes %s", r->ms->o.max_duration_s, r->gen,
		 r->postcopy ? "after the guest runs there (post-copy)" : "with the guest stopped");
	return 0;
}

/* Pre-copy will not converge: switch over now and send the rest after the
 * guest runs there, rather than slow the guest down or stop it for long. */
static int postcopy_switchover(struct run *r, const char *why, uint64_t dirty_pages)
{
	r->postcopy = true;
	log_info("migration: switching to post-copy after pass %u (%s): %llu dirty pages follow "
		 "after the guest runs on the destination", r->gen, why, (unsigned long long)dirty_pages);
	return 0;
}

/* A test's stand-in for a device that writes guest memory just before a
 * pre-copy sync and not again before the pause, the case the owed bits
 * in precopy() exist for (tests/e2e/worker_verify.sh checks the destination's
 * memory against a digest): the pass number, in RAM's last page, which
 * the test guest leaves alone while its working set is smaller than RAM. */
static void failpoint_vmm_write(struct run *r)
{
	struct guest_mem *gm = &r->m->vm.mem;
	uint64_t v = r->gen;
	if (failpoint("src.vmm_write") < 0 &&
	    gmem_write(gm, ram_page_gpa(gm, gmem_npages(gm) - 1), &v, sizeof(v)) < 0)
		log_warn("failpoint src.vmm_write: RAM's last page is out of reach");
}

static int precopy(struct run *r, struct err *e)
{
	const struct mig_opts *o = &r->ms->o;
	uint64_t t_sync = channel_now_ns(), dirty_pages, prev_dirty = UINT64_MAX;
	uint64_t prev_dirty_before = UINT64_MAX;
	struct throttle_watch watch;
	double bw = 0, rate = 0;
	int rc;

	throttle_watch_init(&watch);

	set_stage(r, MIG_STAGE_PRECOPY);
	if (dirty_start(&r->d, &r->m->vm, e) < 0)
		return -1;
	r->dirty_on = true;
	pthread_mutex_lock(&r->ms->lock);
	/* Progress counts what setup's walk found: walking a big guest's
	 * memfd again here would hold up pass 1 by as long (~5 ms for 512
	 * MiB). Pass 1 adds the chunks first touched since then as it meets
	 * them (pages first touched inside a chunk that had some are sent
	 * but not counted). */
	r->ms->st.total_pages = r->census.pages ? r->census.pages : ram_populated_pages(&r->m->vm.mem);
	r->ms->st.pass = 1;
	pthread_mutex_unlock(&r->ms->lock);
	r->gen = 1;
	r->pass_t0 = channel_now_ns();
	r->pass_bytes0 = delivered_bytes(r);
	pace_channels(r, 0);
	rc = disk_pass(r, true, e);
	if (rc > 0)
		r->pass1_from = 0; /* cut before memory's pass 1: all of it goes stopped */
	if (rc == 0)
		rc = send_populated(r, 0, true, e);
	if (rc != 0)
		return rc < 0 ? -1 : deadline_switchover(r);
	for (;;) {
		uint64_t pass_ns = channel_now_ns() - r->pass_t0;
		bool converged, forced, futile, timed = pass_ns > 1000000ULL;
		double delivered = timed ? 0 : pass_delivered(r);
		if (timed) {
			bw = pass_rate(r); /* the pass ended drained: all of it delivered */
			/* A short pass is mostly latency: its rate says little of the link. */
			if (pass_ns >= 100000000ULL)
				pace_channels(r, bw);
		} else if (delivered > bw * 0.001)
			/* Too short to time (a nearly idle guest): the link moved the
			 * pass within 1 ms, so it is at least that fast. Without a
			 * figure such a guest ran to max_passes, a dirty-log sync of
			 * all its memory each (31 passes, 61 ms for an idle 16 GiB). */
			bw = delivered / 0.001;
		failpoint_vmm_write(r);
		if (dirty_sync(&r->d, e) < 0)
			return -1;
		/* Every bit just synced is owed until a pass sends it. The sync
		 * at stop-and-copy reloads the bitmap from KVM's log, which keeps
		 * the guest's own writes but not the VMM's (virtio rings, disk
		 * reads): harvested here and then dropped, a used-ring update made
		 * just before a switch-over never reached the destination (the
		 * guest's virtio-net TX then waited forever; tests/e2e/netlab_announce). */
		r->pending_from = 0;
		/* what the disk owes counts as pages towards the switch-over */
		dirty_pages = dirty_count(&r->d) + (diskcopy_dirty_bytes(&r->dc) + 4095) / 4096;
		rate = (double)dirty_pages * 4096.0 / ((double)(channel_now_ns() - t_sync) / 1e9);
		t_sync = channel_now_ns();
		/* Switch over when the rest can be sent within the downtime
		 * target at the bandwidth just measured. */
		/* A pass that still halves the rest is worth it even inside the
		 * target: downtime well below the target costs little total time. */
		{
			double est_ms = !dirty_pages ? 0 : bw > 0 ? (double)dirty_pages * 4096.0 / bw * 1000.0 : 1e9;
			converged = est_ms <= (double)o->downtime_ms &&
				    (est_ms <= (double)o->downtime_ms / 5.0 || dirty_pages * 2 > prev_dirty);
		}
		prev_dirty = dirty_pages;
		forced = (int)r->gen >= o->max_passes;
		if (forced && o->postcopy)
			return postcopy_switchover(r, "the pass limit", dirty_pages);
		pthread_mutex_lock(&r->ms->lock);
		futile = throttle_watch_pass(&watch, (int)r->ms->st.throttle_pct, dirty_pages);
		r->ms->st.remaining_pages = dirty_pages;
		r->ms->st.throughput_mibps = bw / 1048576.0;
		if (r->gen == 1) {
			r->ms->st.pass1_mibps = timed ? bw / 1048576.0 : 0; /* a floor is no rate */
			r->pass1_done = true;
		}
		r->ms->st.dirty_rate_mibps = rate / 1048576.0;
		r->ms->st.eta_ms = bw > 0 ? (uint64_t)((double)dirty_pages * 4096.0 / bw * 1000.0) : 0;
		pthread_mutex_unlock(&r->ms->lock);
		publish(r);
		if (failpoint("src.precopy_pass") < 0)
			return err_set(e, "failpoint src.precopy_pass");
		log_info("migration: pass %u sent, %llu pages dirty, %.0f MiB/s link, %.0f MiB/s dirtying",
			 r->gen, (unsigned long long)dirty_pages, bw / 1048576.0, rate / 1048576.0);
		if (converged)
			return 0;
		rc = past_deadline(r, e);
		if (rc != 0)
			return rc < 0 ? -1 : deadline_switchover(r);
		if (forced) {
			log_info("migration: switching over by policy after %u passes", r->gen);
			return 0;
		}
		/* Not when the user chose to cancel at a maximum duration rather
		 * than stop the guest for long: that limit decides instead. */
		if (futile && !(o->max_duration_s && o->cancel_on_timeout)) {
			/* The same downtime max_passes would end with, minutes sooner
			 * on a slow link (each pass resends the working set). */
			log_info("migration: switching over by policy after %u passes: with the vCPUs "
				 "throttled to %d%% the guest still dirties %.0f MiB/s against %.0f MiB/s "
				 "sent, %d passes without headway; what is left goes with the guest "
				 "stopped (~%.0f ms)", r->gen, THROTTLE_MAX_PCT, rate / 1048576.0,
				 bw / 1048576.0, THROTTLE_FUTILE_PASSES,
				 bw > 0 ? (double)dirty_pages * 4096.0 / bw * 1000.0 : 0.0);
			return 0;
		}
		if (r->ms->cancel)
			return err_set(e, "cancelled");
		/* Not converging (the guest dirties about as fast as we send, or
		 * the rest stopped shrinking): slow the vCPUs down, a step per
		 * pass; or, with post-copy, let the guest go on at full speed
		 * there. */
		if (rate > bw * 0.5 ||
		    (prev_dirty_before != UINT64_MAX && dirty_pages * 10 > prev_dirty_before * 8)) {
			if (o->postcopy)
				return postcopy_switchover(r, rate > bw * 0.5 ? "the guest dirties memory "
							   "faster than half the link's rate" :
							   "the rest no longer shrinks", dirty_pages);
			if (throttle_step(r, rate, bw, e) < 0)
				return -1;
		}
		prev_dirty_before = dirty_pages;
		r->gen++;
		pthread_mutex_lock(&r->ms->lock);
		r->ms->st.pass = r->gen;
		pthread_mutex_unlock(&r->ms->lock);
		if (send_sync(r, r->gen - 1u, dirty_pages) < 0)
			return stream_check(&r->ch[0].w, e);
		r->pass_bytes0 = delivered_bytes(r);
		r->pass_t0 = channel_now_ns();
		rc = pass_dirty(r, true, e);
		if (rc != 0)
			return rc < 0 ? -1 : deadline_switchover(r);
		r->pending_from = UINT64_MAX; /* the pass sent all of it */
		rc = disk_pass(r, true, e);
		if (rc != 0)
			return rc < 0 ? -1 : deadline_switchover(r);
	}
}

/* The last dirty sync, with what a pass cut short at the maximum duration
 * still owes: a later pass's unsent bits are kept (a tracker that resets
 * at sync would lose them); a pass 1 cut short leaves its rest out of the
 * bitmap (with INITIALLY_SET every page there, holes too, reads as dirty)
 * and stop_and_copy sends the rest's populated pages instead. */
static int owed_sync(struct run *r, struct err *e)
{
	size_t words = (size_t)((r->d.npages + 63) / 64);
	size_t from = r->pending_from < r->d.npages ? (size_t)(r->pending_from / 64) : words;
	uint64_t *owed = NULL;
	if (from < words) {
		owed = malloc((words - from) * 8);
		if (!owed)
			return err_set(e, "out of memory for the owed dirty bits");
		memcpy(owed, r->d.bitmap + from, (words - from) * 8);
	}
	if (dirty_sync(&r->d, e) < 0) {
		free(owed);
		return -1;
	}
	for (size_t w = from; owed && w < words; w++)
		r->d.bitmap[w] |= owed[w - from];
	free(owed);
	/* pass1_from is a chunk start, a multiple of 64 pages */
	for (size_t w = r->pass1_from < r->d.npages ? (size_t)(r->pass1_from / 64) : words; w < words; w++)
		r->d.bitmap[w] = 0;
	return 0;
}

/* With every page sent and the guest stopped: what the destination must
 * now hold, for it to check before it may run the guest (downtime: ~0.1 s
 * per GiB the guest touched, on each side, so only when asked). The time
 * is its own part of the downtime (MIG_DT_DIGEST). */
static int send_digest(struct run *r, struct err *e)
{
	struct mem_digest dg;
	uint64_t t0 = channel_now_ns();
	if (digest_compute(&r->m->vm.mem, &dg, e) < 0)
		return -1;
	digest_put(&r->ch[0].w, &dg);
	log_info("migration: memory digest of %llu MiB (%llu blocks) in %.1f ms, sent for the destination to check",
		 (unsigned long long)(dg.npages >> 8), (unsigned long long)dg.nblocks,
		 (double)(channel_now_ns() - t0) / 1e6);
	digest_free(&dg);
	return stream_check(&r->ch[0].w, e);
}

static int owed_extent(void *opaque, uint64_t first, uint64_t n)
{
	uint64_t *bm = opaque;
	for (uint64_t p = first; p < first + n; p++)
		bm[p / 64] |= 1ULL << (p % 64);
	return 0;
}

/* Post-copy's owed set: the dirty bits of the last sync, and the populated
 * pages a pass 1 cut short never reached. */
static int postcopy_owed(struct run *r, struct err *e)
{
	size_t words = (size_t)((r->d.npages + 63) / 64);
	r->owed = malloc(words ? words * 8 : 8);
	if (!r->owed)
		return err_set(e, "out of memory for post-copy's owed pages");
	memcpy(r->owed, r->d.bitmap, words * 8);
	if (r->pass1_from != UINT64_MAX &&
	    ram_walk_populated(&r->m->vm.mem, r->pass1_from, r->d.npages - r->pass1_from, owed_extent,
			       r->owed) < 0)
		return err_set(e, "walking guest memory for post-copy");
	r->owed_left = 0;
	for (size_t i = 0; i < words; i++)
		r->owed_left += (uint64_t)__builtin_popcountll(r->owed[i]);
	/* Nothing owed after all (the last sync found the guest idle): the
	 * destination, offered no owed page, runs the guest as after any
	 * stop-and-copy and expects nothing after RESUMED. */
	if (!r->owed_left) {
		r->postcopy = false;
		log_info("migration: nothing dirty at the switch-over: no post-copy after all");
		return 0;
	}
	pthread_mutex_lock(&r->ms->lock);
	r->ms->st.postcopy = true;
	r->ms->st.postcopy_pages = r->ms->st.postcopy_left = r->owed_left;
	pthread_mutex_unlock(&r->ms->lock);
	return 0;
}

/* Owed pages among [p, p+n): sent now, on the main connection, and no
 * longer owed. */
static int send_owed(struct run *r, struct ram_stats *st, uint64_t p, uint64_t n, struct err *e)
{
	struct mig_channel *c = &r->ch[0];
	uint64_t end = p + n > r->d.npages ? r->d.npages : p + n, count = 0;
	for (uint64_t q = p; q < end; q++)
		count += r->owed[q / 64] >> (q % 64) & 1;
	if (!count)
		return 0;
	if (ram_send_bitmap_range(&c->w, &r->m->vm.mem, r->owed, p, end - p, (uint16_t)(r->gen + 1), NULL,
				  st) < 0 || stream_flush(&c->w) < 0)
		return stream_check(&c->w, e);
	for (uint64_t q = p; q < end; q++)
		r->owed[q / 64] &= ~(1ULL << (q % 64));
	r->owed_left -= count;
	return 0;
}

/* One reply during post-copy: a page the guest waits for (*page), or the
 * end (*done, its text in buf). */
static int postcopy_reply(struct run *r, uint64_t *page, bool *done, char *buf, size_t cap, struct err *e)
{
	struct stream *rd = &r->rd;
	uint32_t type = stream_get_u32(rd), len = stream_get_u32(rd);
	*done = false;
	if (stream_check(rd, e) < 0)
		return -1;
	if (type == MIG_REPLY_PAGE_REQ) {
		if (len != 8)
			return err_set(e, "protocol error: a page request of %u bytes", len);
		*page = stream_get_u64(rd);
		if (stream_check(rd, e) < 0)
			return -1;
		if (*page >= r->d.npages)
			return err_set(e, "protocol error: the destination asked for page %llu of %llu",
				       (unsigned long long)*page, (unsigned long long)r->d.npages);
		return 0;
	}
	if (type != MIG_REPLY_POSTCOPY_DONE)
		return err_set(e, "protocol error: reply %u during post-copy", type);
	*done = true;
	return mig_get_reply_text(rd, len, buf, cap, e);
}

/* After RESUMED: the guest runs there. Pages it waits for go first, the
 * rest in address order, until none is owed; then the destination says
 * it has them all. */
static int postcopy_serve(struct run *r, struct err *e)
{
	struct mig_channel *c = &r->ch[0];
	struct ram_stats st = { 0 };
	uint64_t cursor = 0, requests = 0, t0 = channel_now_ns(), page;
	char reply[MIG_MAX_REPLY + 1], why[512];
	bool done;

	set_stage(r, MIG_STAGE_POSTCOPY);
	/* The main connection alone now: the whole limit is its own. */
	c->bw_channels = 1;
	c->bw_seen = UINT64_MAX;
	while (r->owed_left) {
		uint64_t d;
		/* What the guest waits for goes at once, beyond the move's
		 * limit, as QEMU's post-copy does: a vCPU stalls on it. The
		 * limit is the background sweep's, whose next wait is the longer
		 * for it, in steps small enough that a request barely waits. */
		if (stream_readable_now(&r->rd)) {
			if (postcopy_reply(r, &page, &done, reply, sizeof(reply), e) < 0)
				return -1;
			if (done)
				return err_set(e, "protocol error: the destination ended post-copy with %llu "
					       "pages unsent", (unsigned long long)r->owed_left);
			requests++;
			if (send_owed(r, &st, page, POSTCOPY_PREFETCH_PAGES + 1, e) < 0)
				return -1;
			continue;
		}
		d = channel_pace_delay(c);
		if (d) {
			struct pollfd p = { c->fd, POLLIN, 0 };
			poll(&p, 1, (int)((d + 999999) / 1000000)); /* a request ends the wait */
			continue;
		}
		while (cursor < r->d.npages && !(r->owed[cursor / 64] >> (cursor % 64)))
			cursor = (cursor / 64 + 1) * 64;
		if (cursor >= r->d.npages) {
			cursor = 0; /* requests took the pages ahead; the ones behind are left */
			continue;
		}
		failpoint("src.postcopy_chunk"); /* tests: a slow sweep, the guest's requests first */
		if (send_owed(r, &st, cursor, POSTCOPY_SWEEP_PAGES, e) < 0)
			return -1;
		cursor += POSTCOPY_SWEEP_PAGES;
		pthread_mutex_lock(&r->ms->lock);
		r->ms->st.postcopy_left = r->ms->st.remaining_pages = r->owed_left;
		r->ms->st.postcopy_requests = requests;
		pthread_mutex_unlock(&r->ms->lock);
		publish_due(r);
	}
	mig_put_rec(&c->w, MIG_REC_POSTCOPY_END, 0);
	if (stream_flush(&c->w) < 0)
		return stream_check(&c->w, e);
	do {
		if (postcopy_reply(r, &page, &done, reply, sizeof(reply), e) < 0)
			return err_prefix(e, "waiting for the destination to take the last pages");
	} while (!done); /* requests for pages already on their way */
	if (!reply_ok(reply, why, sizeof(why)))
		return err_set(e, "the destination: %s", why);
	pthread_mutex_lock(&r->ms->lock);
	r->ms->st.postcopy_left = r->ms->st.remaining_pages = 0;
	r->ms->st.postcopy_requests = requests;
	r->ms->st.postcopy_ms = (channel_now_ns() - t0) / 1000000ULL;
	pthread_mutex_unlock(&r->ms->lock);
	log_info("migration: post-copy sent %llu pages in %llu ms after the guest ran there, %llu of "
		 "them asked for by it (%lld faults there)", (unsigned long long)r->ms->st.postcopy_pages,
		 (unsigned long long)r->ms->st.postcopy_ms, (unsigned long long)requests,
		 (long long)reply_int(reply, "faults"));
	return 0;
}

static int stop_and_copy(struct run *r, uint64_t *pause_ns, struct err *e)
{
	char reply[MIG_MAX_REPLY + 1], why[512];
	struct mig_channel *c = &r->ch[0];

	set_stage(r, MIG_STAGE_STOP_COPY);
	throttle_stop(&r->thr); /* leaves the vCPUs running, so the pause below is the real one */
	*pause_ns = channel_realtime_ns();
	r->t_pause = channel_now_ns();
	pause_vm(r);
	r->t_paused = channel_now_ns();
	if (owed_sync(r, e) < 0)
		return -1;
	r->gen++;
	/* with the rest of a pass 1 cut short at the maximum duration (only
	 * then is memory walked here, in the downtime the policy accepted) */
	uint64_t left = dirty_count(&r->d);
	if (r->pass1_from != UINT64_MAX)
		left += ram_populated_in(&r->m->vm.mem, r->pass1_from, r->d.npages - r->pass1_from);
	pthread_mutex_lock(&r->ms->lock);
	r->ms->st.pass = r->gen;
	r->ms->st.remaining_pages = left;
	pthread_mutex_unlock(&r->ms->lock);
	/* The guest is stopped: pages go from its memory to the socket directly. */
	for (int i = 0; i < r->nch; i++) {
		free(r->ch[i].st.bounce);
		r->ch[i].st.bounce = NULL;
	}
	if (r->postcopy) {
		/* Which pages, not the pages: they follow once it runs there. */
		if (postcopy_owed(r, e) < 0)
			return -1;
		if (send_sync(r, r->gen - 1u, 0) < 0)
			return stream_check(&c->w, e);
		postcopy_put_owed(&c->w, r->owed, r->d.npages);
	} else if (send_sync(r, r->gen - 1u, left) < 0 || pass_dirty(r, false, e) < 0 ||
		   (r->pass1_from != UINT64_MAX && send_populated(r, r->pass1_from, false, e) < 0)) {
		stream_check(&c->w, e); /* the main stream's error, if it is the one that broke */
		return -1;
	}
	/* the disk's last writes: none can come now, the vCPUs are parked */
	if (disk_pass(r, false, e) < 0)
		return -1;
	/* Extra channels end here; the destination waits for every one of
	 * them before it applies the state that follows on the main channel. */
	for (int i = 1; i < r->nch; i++)
		channel_stop(&r->ch[i]);
	for (int i = 1; i < r->nch; i++)
		if (stream_check(&r->ch[i].w, e) < 0)
			return err_prefix(e, "channel %d", i);
	if (send_sync(r, r->gen, 0) < 0)
		return stream_check(&c->w, e);
	r->t_pages = channel_now_ns();
	/* nothing is left: a finished move must not show its last pages as owed */
	pthread_mutex_lock(&r->ms->lock);
	r->ms->st.remaining_pages = r->owed_left;
	r->ms->st.eta_ms = 0;
	pthread_mutex_unlock(&r->ms->lock);
	/* (post-copy: what the guest holds there is not all of it yet) */
	if (r->ms->o.verify_memory && !r->postcopy && send_digest(r, e) < 0)
		return -1;
	r->t_digest = channel_now_ns();
	if (vmstate_save(&r->m->vm, &c->w, e) < 0)
		return -1;
	/* Stamped before the flush: the destination's load, which starts when
	 * the last bytes arrive, then falls inside our wait for READY even if
	 * this thread loses its CPU between the write and a later stamp. */
	r->t_state = channel_now_ns();
	if (stream_flush(&c->w) < 0)
		return stream_check(&c->w, e);
	publish(r);
	if (failpoint("src.after_state") < 0)
		return err_set(e, "failpoint src.after_state");
	if (mig_get_reply(&r->rd, MIG_REPLY_READY, reply, sizeof(reply), e) < 0)
		return err_prefix(e, "waiting for the destination to load the state");
	if (!reply_ok(reply, why, sizeof(why)))
		return err_set(e, "the destination could not load the VM: %s", why);
	r->t_ready = channel_now_ns();
	r->dst_load_ms = reply_int(reply, "load_ms");
	if (r->ms->o.verify_memory) {
		pthread_mutex_lock(&r->ms->lock);
		r->ms->st.memory_verified = true; /* READY comes only after the check passed */
		pthread_mutex_unlock(&r->ms->lock);
	}
	return 0;
}

/* Where the downtime went, for an administrator asking why a switch-over
 * took longer than its target (status and one log line). */
static void note_downtime_parts(struct run *r, double downtime_ms)
{
	struct mig_downtime_parts p = {
		.set = true,
		.ms = {
			[MIG_DT_STOP_VCPUS] = (double)(r->t_paused - r->t_pause) / 1e6,
			[MIG_DT_LAST_PAGES] = (double)(r->t_pages - r->t_paused) / 1e6,
			[MIG_DT_DIGEST] = (double)(r->t_digest - r->t_pages) / 1e6,
			[MIG_DT_DEVICE_STATE] = (double)(r->t_state - r->t_digest) / 1e6,
			[MIG_DT_DEST_READY] = (double)(r->t_ready - r->t_state) / 1e6,
		},
		.dest_load = (double)r->dst_load_ms,
	};
	/* The rest, up to the destination's own resume time (not to our
	 * reading of its reply, which may wait for a CPU its guest now uses). */
	double before = 0;
	for (int i = 0; i < MIG_DT_COMMIT_RESUME; i++)
		before += p.ms[i];
	p.ms[MIG_DT_COMMIT_RESUME] = downtime_ms > before ? downtime_ms - before : 0;
	pthread_mutex_lock(&r->ms->lock);
	r->ms->st.downtime_parts = p;
	pthread_mutex_unlock(&r->ms->lock);
	log_info("migration: downtime %.1f ms: vCPUs stopped in %.1f ms, last pages %.1f ms, "
		 "memory digest %.1f ms, device state %.1f ms, destination READY %.1f ms (its load %.0f ms), "
		 "storage handoff, commit and resume %.1f ms (the rest)",
		 downtime_ms, p.ms[MIG_DT_STOP_VCPUS], p.ms[MIG_DT_LAST_PAGES], p.ms[MIG_DT_DIGEST],
		 p.ms[MIG_DT_DEVICE_STATE], p.ms[MIG_DT_DEST_READY], p.dest_load,
		 p.ms[MIG_DT_COMMIT_RESUME]);
	/* The target is a switch-over rule (the rest fitted it at the
	 * measured bandwidth), not a promise: say so when it was missed. */
	if (r->ms->o.downtime_ms && downtime_ms > (double)r->ms->o.downtime_ms) {
		int most = mig_downtime_largest(p.ms);
		log_warn("migration: downtime %.1f ms went over the %u ms target; most of it %s (%.1f ms)",
			 downtime_ms, (unsigned)r->ms->o.downtime_ms, mig_downtime_names[most].what,
			 p.ms[most]);
	}
}

/* A destination that gives up sends its reason as a failed reply before it
 * drops the connection; our own error is then only "connection reset".
 * Look for that reply briefly and prefer its words. */
static void dest_reason(struct run *r, struct err *e)
{
	struct stream *rd = &r->rd;
	char buf[MIG_MAX_REPLY + 1], why[512];
	uint32_t type, len;
	if (r->ch[0].fd < 0 || !rd->buf || !stream_ok(rd))
		return;
	stream_set_timeout(rd, 300);
	type = stream_get_u32(rd);
	len = stream_get_u32(rd);
	if (!stream_ok(rd) || (type != MIG_REPLY_SETUP && type != MIG_REPLY_READY) || len > MIG_MAX_REPLY)
		return;
	stream_get(rd, buf, len);
	if (!stream_ok(rd))
		return;
	buf[len] = 0;
	/* a SETUP refusal reads the same whether or not our writes raced the
	 * destination closing the connection after it */
	if (!reply_ok(buf, why, sizeof(why)))
		err_set(e, type == MIG_REPLY_SETUP ? "the destination refused the VM: %s"
						    : "the destination failed: %s", why);
}

/* Undo everything: the VM goes on running here as if nothing happened. */
static void roll_back(struct run *r, const char *why)
{
	struct err e;
	struct mig_channel *c = &r->ch[0];
	throttle_stop(&r->thr);
	if (c->fd >= 0 && stream_ok(&c->w)) {
		size_t n = strlen(why);
		mig_put_rec(&c->w, MIG_REC_ABORT, (uint32_t)n);
		stream_put(&c->w, why, n);
		stream_flush(&c->w);
	}
	if (r->lock_released && r->m->blk) {
		if (virtio_blk_take_lock(r->m->blk, &e) < 0)
			log_error("cannot re-take the disk lock after a failed move: %s", e.msg);
		else
			r->lock_released = false;
	}
	if (r->dirty_on) {
		dirty_stop(&r->d);
		r->dirty_on = false;
	}
	/* The guest may run again only if it still holds its disk. */
	if (!r->lock_released)
		resume_vm(r);
}

static void *mig_thread(void *arg)
{
	struct mig_source *ms = arg;
	struct run *r = calloc(1, sizeof(*r));
	struct err e = { .code = 0 };
	uint64_t pause_ns = 0;
	char reply[MIG_MAX_REPLY + 1], why[512];
	enum mig_stage end = MIG_STAGE_FAILED;
	bool checked = false;

	if (!r) {
		pthread_mutex_lock(&ms->lock);
		ms->st.stage = MIG_STAGE_FAILED;
		snprintf(ms->st.error, sizeof(ms->st.error), "out of memory");
		pthread_mutex_unlock(&ms->lock);
		return NULL;
	}
	r->ms = ms;
	r->m = ms->m;
	r->t0 = channel_now_ns();
	r->pass1_from = r->pending_from = UINT64_MAX; /* nothing owed */
	r->nch = ms->o.transport == MIG_TRANSPORT_MULTICHANNEL ? ms->o.channels : 1;
	for (int i = 0; i < CHANNEL_MAX; i++)
		r->ch[i].fd = -1;
	set_stage(r, MIG_STAGE_SETUP);
	for (int i = 0; i < r->nch; i++)
		if (open_channel(r, i, &e) < 0)
			goto fail;
	/* tests: every extra channel is in before the main connection starts
	 * its handshake (tests/e2e/move_auth.sh), an order the destination
	 * meets now and then anyway */
	r->channels_early = r->nch > 1 && failpoint("src.channels_first") < 0;
	if (r->channels_early && hello_channels(r, &e) < 0)
		goto fail;
	if (secure_channel(r, 0, &e) < 0)
		goto fail;
	stream_init_fd(&r->rd, r->ch[0].fd, false);
	stream_set_timeout(&r->rd, (int)ms->o.peer_timeout_ms);
	if (r->ch[0].ac.encrypt && stream_set_seal(&r->rd, r->ch[0].ac.key_rx, &e) < 0)
		goto fail;
	if (do_setup(r, &e) < 0)
		goto fail;
	if (failpoint("src.after_setup") < 0) {
		err_set(&e, "failpoint src.after_setup");
		goto fail;
	}
	if (ms->o.check_only) {
		/* the reason the destination records for the move it drops */
		err_set(&e, "a check only: the destination can take the VM; nothing moved");
		checked = true;
		goto fail;
	}
	if (ms->o.disk_copy_path[0] && diskcopy_start(&r->dc, r->m, &e) < 0)
		goto fail;
	for (int i = 1; i < r->nch; i++)
		if (channel_start_thread(&r->ch[i]) < 0) {
			err_set(&e, "cannot start channel threads");
			goto fail;
		}
	pthread_mutex_lock(&ms->lock);
	ms->st.setup_ms = ms_since(r->t0);
	pthread_mutex_unlock(&ms->lock);
	if (precopy(r, &e) < 0 || ms->cancel || stop_and_copy(r, &pause_ns, &e) < 0)
		goto fail;
	if (ms->cancel) {
		err_set(&e, "cancelled");
		goto fail;
	}
	set_stage(r, MIG_STAGE_STORAGE);
	if (r->m->blk) {
		if (virtio_blk_flush(r->m->blk, &e) < 0 || virtio_blk_release_lock(r->m->blk, &e) < 0)
			goto fail;
		r->lock_released = true;
	}
	/* A connection the peer already closed cannot carry COMMIT: finding
	 * that out now keeps the move on the safe side of the commit point. */
	{
		struct pollfd p = { r->ch[0].fd, POLLRDHUP, 0 };
		if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
			err_set(&e, "the destination closed the connection before the commit point");
			goto fail;
		}
	}
	/* The commit point. Once the record may have left, never resume here. */
	pthread_mutex_lock(&ms->lock);
	if (ms->cancel) {
		pthread_mutex_unlock(&ms->lock);
		err_set(&e, "cancelled");
		goto fail;
	}
	ms->st.committed = true;
	pthread_mutex_unlock(&ms->lock);
	failpoint("src.before_commit");
	mig_put_rec(&r->ch[0].w, MIG_REC_COMMIT, 0);
	stream_flush(&r->ch[0].w);
	failpoint("src.after_commit");
	set_stage(r, MIG_STAGE_RESUME);
	if (mig_get_reply(&r->rd, MIG_REPLY_RESUMED, reply, sizeof(reply), &e) < 0 ||
	    !reply_ok(reply, why, sizeof(why))) {
		if (!e.msg[0])
			err_set(&e, "%s", why);
		err_prefix(&e, "after the commit point the destination did not confirm");
		end = MIG_STAGE_UNKNOWN;
		goto out;
	}
	{
		int64_t resumed = reply_int(reply, "resumed_ns");
		pthread_mutex_lock(&ms->lock);
		uint64_t dt_ns = resumed > (int64_t)pause_ns ? (uint64_t)resumed - pause_ns : 0;
		ms->st.downtime_ms = dt_ns / 1000000ULL;
		pthread_mutex_unlock(&ms->lock);
		note_downtime_parts(r, (double)dt_ns / 1e6);
	}
	/* The guest runs there from here on: a break in post-copy loses it
	 * (this copy is stale), never resumes it here. */
	if (r->postcopy && postcopy_serve(r, &e) < 0) {
		err_prefix(&e, "post-copy broke with %llu pages still here; the VM ran on the destination "
			   "and cannot run on without them",
			   (unsigned long long)r->owed_left);
		end = MIG_STAGE_LOST;
		pthread_mutex_lock(&ms->lock);
		ms->st.postcopy_left = ms->st.remaining_pages = r->owed_left;
		pthread_mutex_unlock(&ms->lock);
		goto out;
	}
	set_stage(r, MIG_STAGE_NETWORK);
	end = MIG_STAGE_COMPLETED;
	goto out;
fail:
	if (ms->cancel) {
		end = MIG_STAGE_CANCELLED;
		err_set(&e, "cancelled by request");
	} else if (checked) {
		end = MIG_STAGE_CHECKED;
	} else if (e.code == ECANCELED) {
		end = MIG_STAGE_CANCELLED; /* by the move's own policy (past_deadline) */
	} else {
		dest_reason(r, &e);
	}
	for (int i = 1; i < r->nch; i++)
		channel_stop(&r->ch[i]);
	roll_back(r, e.msg);
	if (r->lock_released) /* could not re-take the disk: keep the VM paused, say so */
		end = MIG_STAGE_UNKNOWN;
out:
	throttle_stop(&r->thr);
	pthread_mutex_lock(&ms->lock);
	ms->st.throttle_pct = 0; /* undone, whatever the outcome */
	pthread_mutex_unlock(&ms->lock);
	publish(r);
	for (int i = 1; i < r->nch; i++)
		channel_stop(&r->ch[i]);
	if (r->dirty_on)
		dirty_stop(&r->d);
	diskcopy_stop(&r->dc);
	pthread_mutex_lock(&ms->lock);
	for (int i = 0; i < CHANNEL_MAX; i++)
		ms->fds[i] = -1;
	pthread_mutex_unlock(&ms->lock);
	for (int i = 0; i < r->nch; i++) {
		free(r->ch[i].st.bounce);
		ram_codec_free(r->ch[i].codec);
		stream_destroy(&r->ch[i].w);
		if (r->ch[i].fd >= 0)
			close(r->ch[i].fd);
	}
	stream_destroy(&r->rd);
	free(r->census.per_window);
	free(r->owed);
	pthread_mutex_lock(&ms->lock);
	ms->st.stage = end;
	ms->st.elapsed_ms = ms_since(r->t0);
	if (end != MIG_STAGE_COMPLETED && end != MIG_STAGE_CHECKED)
		snprintf(ms->st.error, sizeof(ms->st.error), "%s", e.msg);
	pthread_mutex_unlock(&ms->lock);
	log_info("migration %s after %llu ms%s%s", mig_stage_name(end),
		 (unsigned long long)ms->st.elapsed_ms, e.msg[0] ? ": " : "", e.msg);
	free(r);
	if (ms->on_end)
		ms->on_end(ms->opaque, end);
	return NULL;
}

int mig_source_start(struct mig_source *ms, struct machine *m, const struct mig_opts *o,
		     struct err *e)
{
	if (ms->thread_started && !mig_source_done(ms))
		return err_set(e, "a migration of this VM is already in progress");
	if (ms->thread_started)
		mig_source_join(ms);
	pthread_mutex_init(&ms->lock, NULL);
	memset(&ms->st, 0, sizeof(ms->st));
	ms->m = m;
	ms->o = *o;
	if (ms->o.transport != MIG_TRANSPORT_MULTICHANNEL)
		ms->o.channels = 1;
	if (ms->o.channels < 1 || ms->o.channels > CHANNEL_MAX)
		return err_set(e, "channels must be 1..%d", CHANNEL_MAX);
	snprintf(ms->st.transport, sizeof(ms->st.transport), "%s%s",
		 o->transport == MIG_TRANSPORT_TCP ? "tcp" :
		 o->transport == MIG_TRANSPORT_COMPRESSION ? "compression" : "multichannel",
		 o->transport == MIG_TRANSPORT_MULTICHANNEL && o->compress ? "+compression" : "");
	if (ms->o.compress)
		snprintf(ms->st.codec, sizeof(ms->st.codec), "%s%s",
			 pick_codec(&ms->o) == RAM_CODEC_ZSTD ? "zstd" : "lz4", o->codec ? "" : " (auto)");
	ms->cancel = false;
	ms->cancel_forced = false;
	atomic_store(&ms->bw_bps, o->bandwidth_bps);
	for (int i = 0; i < CHANNEL_MAX; i++)
		ms->fds[i] = -1;
	ms->st.stage = MIG_STAGE_SETUP;
	if (pthread_create(&ms->thread, NULL, mig_thread, ms) != 0)
		return err_set(e, "cannot start the migration thread");
	ms->thread_started = true;
	return 0;
}

void mig_source_status(struct mig_source *ms, struct mig_status *out)
{
	pthread_mutex_lock(&ms->lock);
	*out = ms->st;
	pthread_mutex_unlock(&ms->lock);
	out->bandwidth_bps = atomic_load(&ms->bw_bps);
}

void mig_source_set_bandwidth(struct mig_source *ms, uint64_t bps)
{
	/* A single word the channels poll: no lock, so a sender never waits
	 * on a status reader to learn its new pace. */
	atomic_store(&ms->bw_bps, bps);
}

/* Caller holds the lock. Wakes the thread out of any blocking send or
 * receive; the destination then sees the stream end without a reason. */
static void cancel_force_locked(struct mig_source *ms)
{
	if (ms->cancel_forced)
		return;
	ms->cancel_forced = true;
	for (int i = 0; i < CHANNEL_MAX; i++)
		if (ms->fds[i] > 0)
			shutdown(ms->fds[i], SHUT_RDWR);
}

int mig_source_cancel(struct mig_source *ms, bool force, struct err *e)
{
	int rc = 0;
	if (!ms->thread_started)
		return err_set(e, "no migration is in progress");
	pthread_mutex_lock(&ms->lock);
	if (ms->st.committed)
		rc = err_set(e, "too late to cancel: the VM has been committed to the destination");
	else if (ms->st.stage >= MIG_STAGE_COMPLETED)
		rc = err_set(e, "the migration has already ended (%s)", mig_stage_name(ms->st.stage));
	else {
		if (!ms->cancel)
			ms->cancel_at_ns = channel_now_ns();
		ms->cancel = true;
		if (force)
			cancel_force_locked(ms);
	}
	pthread_mutex_unlock(&ms->lock);
	return rc;
}

void mig_source_tick(struct mig_source *ms)
{
	pthread_mutex_lock(&ms->lock);
	if (ms->cancel && !ms->st.committed && ms->st.stage < MIG_STAGE_COMPLETED &&
	    channel_now_ns() - ms->cancel_at_ns >= MIG_CANCEL_GRACE_MS * 1000000ULL)
		cancel_force_locked(ms);
	pthread_mutex_unlock(&ms->lock);
}

bool mig_source_done(struct mig_source *ms)
{
	bool done;
	if (!ms->thread_started)
		return true;
	pthread_mutex_lock(&ms->lock);
	done = ms->st.stage >= MIG_STAGE_COMPLETED;
	pthread_mutex_unlock(&ms->lock);
	return done;
}

void mig_source_join(struct mig_source *ms)
{
	if (ms->thread_started) {
		pthread_join(ms->thread, NULL);
		ms->thread_started = false;
	}
}
