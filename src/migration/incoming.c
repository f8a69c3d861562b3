/*
 * Destination side of a live migration (see incoming.h and
 * docs/migration-ops.md). The thread's steps mirror the source's stages:
 * setup checks (CPUID, the vCPU model on the skeleton's vCPU 0, memory,
 * disk) and the SETUP reply; memory and state from every channel;
 * READY once the state is loaded into KVM; then, only on COMMIT, take the
 * disk lock, run the vCPUs, announce each NIC (RARP; the first round
 * before RESUMED, the rest after) and send RESUMED.
 */
#include "migration/incoming.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/durable.h"
#include "common/failpoint.h"
#include "common/jsonl.h"
#include "common/log.h"
#include "common/sock.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "migration/channel.h"
#include "migration/diskcopy.h"
#include "migration/format.h"
#include "migration/postcopy.h"
#include "migration/snapshot.h"
#include "vmm/vcpu.h"
#include "vmm/x86/cpuid.h"
#include "vmm/x86/cpustate.h"

const char *incoming_stage_name(enum incoming_stage s)
{
	static const char *n[] = { "listening", "setup", "receiving", "loaded", "running", "failed" };
	return s <= IN_FAILED ? n[s] : "?";
}

static void set_stage(struct mig_incoming *in, enum incoming_stage s)
{
	pthread_mutex_lock(&in->lock);
	in->stage = s;
	pthread_mutex_unlock(&in->lock);
	log_info("incoming migration: %s", incoming_stage_name(s));
}

static void notify(struct mig_incoming *in, uint64_t ev)
{
	if (write(in->notify_fd, &ev, sizeof(ev)) < 0)
		log_warn("notifying the worker: %s", strerror(errno));
}

/* Connections waiting to prove the move's key, answered side by side: a
 * stranger that connects first and says nothing delays no one (one at a
 * time, three such held the source past its 15 s handshake limit). */
#define HS_PENDING_MAX 8

struct hs_pending {
	int fd;
	long long since_ms;
	char who[80];
	struct auth_chan_hs hs;
};

struct hs_pool {
	struct hs_pending p[HS_PENDING_MAX];
	int n;
};

static void hs_drop(struct hs_pool *pool, int i, const char *why)
{
	if (why)
		log_warn("incoming migration: refused a connection from %s: %s", pool->p[i].who, why);
	close(pool->p[i].fd);
	OPENSSL_cleanse(&pool->p[i].hs, sizeof(pool->p[i].hs));
	pool->p[i] = pool->p[--pool->n];
}

static void hs_pool_close(struct hs_pool *pool)
{
	while (pool->n)
		hs_drop(pool, pool->n - 1, NULL);
}

static void conn_options(int fd, uint32_t user_timeout_ms)
{
	unsigned int uto = user_timeout_ms;
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof(uto)) < 0)
		log_warn("socket options: %s", strerror(errno));
}

/* Take every waiting connection into the pool (the oldest pending one
 * makes room); without a key the first is the one. */
static int hs_accept(struct mig_incoming *in, struct hs_pool *pool, struct err *e)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(in->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return -1;
			return err_sys(e, "accept");
		}
		conn_options(fd, in->peer_timeout_ms);
		if (!in->key.set)
			return fd;
		if (pool->n == HS_PENDING_MAX) {
			int old = 0;
			for (int i = 1; i < pool->n; i++)
				if (pool->p[i].since_ms < pool->p[old].since_ms)
					old = i;
			hs_drop(pool, old, "pushed out by a newer connection before it authenticated");
		}
		pool->p[pool->n] = (struct hs_pending){ .fd = fd, .since_ms = sock_now_ms() };
		sock_addr_format(&ss, pool->p[pool->n].who, sizeof(pool->p[pool->n].who));
		pool->n++;
	}
}

/* The next connection that passes the handshake (when the move has a key;
 * *ac then says whether and how to seal its streams). Returned blocking. */
static int accept_one(struct mig_incoming *in, struct hs_pool *pool, uint32_t timeout_ms,
		      struct auth_chan *ac, struct err *e)
{
	long long deadline = timeout_ms ? sock_now_ms() + timeout_ms : -1;
	/* The 5 s a handshake gets count from here for those waiting: the
	 * source opens every connection at once, and their handshakes sat
	 * unserved while the setup (the VM built here, a big guest's extents
	 * walked there) took its time. */
	for (int i = 0; i < pool->n; i++)
		if (pool->p[i].since_ms < sock_now_ms())
			pool->p[i].since_ms = sock_now_ms();
	for (;;) {
		struct pollfd p[1 + HS_PENDING_MAX];
		int n = 0, fd = -1;
		long long now;
		p[n++] = (struct pollfd){ in->listen_fd, POLLIN, 0 };
		for (int i = 0; i < pool->n; i++)
			p[n++] = (struct pollfd){ pool->p[i].fd, POLLIN, 0 };
		if (poll(p, (nfds_t)n, 250) < 0 && errno != EINTR)
			return err_sys(e, "poll");
		if (p[0].revents) {
			struct err ae = { 0 };
			fd = hs_accept(in, pool, &ae);
			if (fd < 0 && ae.msg[0])
				return err_set(e, "%s", ae.msg);
		}
		/* Pending connections, newest last: a step on one that has
		 * nothing to read just returns. */
		for (int i = pool->n - 1; fd < 0 && i >= 0; i--) {
			struct err ae = { 0 };
			int rc;
			memset(ac, 0, sizeof(*ac));
			rc = auth_chan_dest_step(pool->p[i].fd, &in->key, &pool->p[i].hs, ac, &ae);
			if (rc > 0) {
				fd = pool->p[i].fd;
				OPENSSL_cleanse(&pool->p[i].hs, sizeof(pool->p[i].hs));
				pool->p[i] = pool->p[--pool->n];
			} else if (rc < 0) {
				hs_drop(pool, i, ae.msg);
			}
		}
		if (fd >= 0) {
			if (sock_set_nonblock(fd, false, e) < 0) {
				close(fd);
				return err_prefix(e, "a migration connection");
			}
			if (!in->key.set)
				memset(ac, 0, sizeof(*ac));
			return fd;
		}
		now = sock_now_ms();
		for (int i = pool->n - 1; i >= 0; i--)
			if (now - pool->p[i].since_ms >= AUTH_CHAN_TIMEOUT_MS)
				hs_drop(pool, i, "it did not authenticate within 5 s");
		if (in->cancel)
			return err_set(e, "cancelled");
		if (deadline >= 0 && now >= deadline)
			return err_set(e, "no migration connection arrived within %u s", timeout_ms / 1000);
	}
}

static uint64_t mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	unsigned long long kb = 0;
	if (!f)
		return UINT64_MAX;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return kb ? (uint64_t)kb << 10 : UINT64_MAX;
}

/* Can this host run the VM? Each refusal names the reason. */
static int check_host(struct stream *r, const struct vm_config *cfg, const char *host_mask,
		      uint64_t reserved, const char *prepared_copy, struct err *e)
{
	struct mig_rec rec;
	struct kvm_cpuid2 *cpuid = NULL;
	char why[400];
	uint64_t avail;
	int kvm, rc;

	if (mig_get_rec(r, &rec, e) < 0)
		return -1;
	if (rec.type != MIG_REC_CPUID)
		return err_set(e, "protocol error: expected the CPUID record, got %s", mig_rec_name(rec.type));
	if (cpuid_decode(r, rec.len, &cpuid, e) < 0)
		return err_prefix(e, "CPUID record");
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		free(cpuid);
		return err_sys(e, "this host has no usable /dev/kvm");
	}
	rc = cpuid_check_host(kvm, cpuid, why, sizeof(why));
	if (rc == 0)
		rc = cpuid_check_mask(cpuid, host_mask, why, sizeof(why));
	close(kvm);
	free(cpuid);
	if (rc < 0)
		return err_set(e, "incompatible CPU: %s", why);
	/* UINT64_MAX: this kernel does not say; the move goes ahead */
	avail = mem_available();
	if (avail != UINT64_MAX && avail + reserved < cfg->mem_size + (64ULL << 20))
		return err_set(e, "not enough memory: the VM needs %llu MiB, this host has %llu MiB available",
			       (unsigned long long)(cfg->mem_size >> 20), (unsigned long long)(avail >> 20));
	if (prepared_copy && (!cfg->disk_copy_bytes || strcmp(prepared_copy, cfg->disk) != 0))
		return err_set(e, "this destination was prepared for a copy of the disk at %s, the stream "
			       "%s%s", prepared_copy, cfg->disk_copy_bytes ? "asks for one at " : "copies no disk",
			       cfg->disk_copy_bytes ? cfg->disk
						    : " (the source's ferry-vm predates disk copies: restart the VM "
						      "there on the current build, or move it without copying the disk)");
	if (cfg->disk_copy_bytes) {
		if (diskcopy_check_target(cfg, e) < 0)
			return -1;
	} else if (cfg->disk[0] && access(cfg->disk, R_OK | (cfg->disk_readonly ? 0 : W_OK)) < 0) {
		return err_sys(e, "disk %s is not reachable from this host", cfg->disk);
	}
	if ((cfg->tap[0] || cfg->bridge[0]) && access("/dev/net/tun", R_OK | W_OK) < 0)
		return err_sys(e, "the VM's NIC needs /dev/net/tun");
	return 0;
}

/* From version 4 the CPU_MODEL record follows CPUID; an earlier source
 * sends none, and its vCPUs are held to the model only when the state is
 * applied, after all memory has moved. */
static int read_model(struct stream *r, uint32_t version, struct cpu_model *cm, bool *have,
		      struct err *e)
{
	struct mig_rec rec;

	*have = false;
	if (version < MIG_VERSION_CPU_MODEL)
		return 0;
	if (mig_get_rec(r, &rec, e) < 0)
		return -1;
	if (rec.type != MIG_REC_CPU_MODEL)
		return err_set(e, "protocol error: expected the vCPU model record, got %s",
			       mig_rec_name(rec.type));
	if (cpu_model_get(r, rec.len, cm, e) < 0)
		return err_prefix(e, "vCPU model record");
	*have = true;
	log_info("incoming migration: the guest's vCPU model: TSC %u kHz, MCG_CAP 0x%llx, %u feature MSRs",
		 cm->tsc_khz, (unsigned long long)cm->mcg_cap, cm->nmsrs);
	return 0;
}

/* The vCPU model against this host, with the rules the restore applies to
 * each vCPU (vcpu_check_host), but before the source is told to send
 * memory. They need a vCPU of this host's KVM (its TSC rate is the
 * vCPU's), so they wait for the skeleton: vCPU 0, still bare. */
static int check_model(struct machine *m, const struct cpu_model *cm, struct err *e)
{
	return cpu_model_check_host(m->vm.kvm_fd, m->vm.vcpus[0]->fd, cm, e);
}

/* An extra channel that finished its handshake before the main
 * connection did: its hello read, kept until the channel count is known. */
struct early_chan {
	int fd;
	bool encrypt;
	uint32_t idx, n;
	struct stream r;
};

/* A connection that passed the handshake: its stream, sealed as it chose,
 * and its first record. The first record tells the main connection
 * (CONFIG) from an extra channel (HELLO), whatever order they finished
 * their handshakes in. */
static int conn_open(struct mig_incoming *in, int fd, const struct auth_chan *ac, struct stream *r,
		     uint32_t *version, struct mig_rec *first, struct err *e)
{
	stream_init_fd(r, fd, false);
	stream_set_timeout(r, (int)in->peer_timeout_ms);
	if (ac->encrypt && stream_set_seal(r, ac->key_rx, e) < 0)
		return -1;
	if (mig_get_header(r, version, e) < 0 || mig_get_rec(r, first, e) < 0)
		return -1;
	return 0;
}

/* A HELLO just read: the channel's index and the count it was told. */
static int hello_read(struct stream *r, const struct mig_rec *rec, uint32_t *idx, uint32_t *n,
		      struct err *e)
{
	if (rec->type != MIG_REC_HELLO || rec->len != 8)
		return err_set(e, "protocol error: a memory channel began with %s", mig_rec_name(rec->type));
	*idx = stream_get_u32(r);
	*n = stream_get_u32(r);
	return stream_check(r, e);
}

struct rx;

struct in_chan {
	struct mig_incoming *in;
	struct rx *x;
	int fd;
	struct stream r;
	struct ram_recv rr;
	pthread_t thread;
	bool running;
	struct err e;
	int rc;
};

static void chan_failed(struct in_chan *c);

/* An extra channel: memory records until EOS. On an error every connection
 * is shut down, so the source learns at once instead of after a timeout. */
static void *chan_thread(void *arg)
{
	struct in_chan *c = arg;
	struct mig_rec rec;
	c->rc = -1;
	for (;;) {
		if (mig_get_rec(&c->r, &rec, &c->e) < 0)
			break;
		if (rec.type == MIG_REC_EOS) {
			ram_recv_account(&c->rr, &c->r);
			c->rc = 0;
			break;
		}
		if (rec.type != MIG_REC_MEM) {
			err_set(&c->e, "protocol error: %s record on a memory channel", mig_rec_name(rec.type));
			break;
		}
		if (ram_recv_record(&c->rr, &c->r, rec.len, &c->e) < 0)
			break;
		ram_recv_account(&c->rr, &c->r);
	}
	if (c->rc < 0)
		chan_failed(c);
	return NULL;
}

struct rx {
	struct mig_incoming *in;
	int main_fd;
	int first_fail;              /* who failed first: 0 nobody, -1 main, k channel k */
	int nch;
	struct in_chan ch[CHANNEL_MAX];
	uint64_t (*ext)[2];          /* populated extents, for the prefault thread */
	uint32_t next;
	pthread_t prefault;
	bool prefaulting;
	volatile bool stop_prefault;
	uint64_t t_state_end;        /* channel_now_ns() at the source's STATE_END (then the channels join) */
	struct hs_pool hs;           /* connections still proving the key */
	struct early_chan early[CHANNEL_MAX]; /* channels that were in before the main connection */
	int nearly;
	/* post-copy (offered at setup where the kernel can): the pages still
	 * owed, and the lock every writer of the main connection takes once
	 * the fault thread asks for pages on it */
	struct postcopy_in pc;
	bool pc_on;
	pthread_mutex_t wlock;
	/* its receiver, a thread of its own: whatever touches guest memory
	 * meanwhile on this thread (the NIC's announce) may wait on a page
	 * only a reader of the main connection can bring */
	pthread_t pc_thread;
	bool pc_thread_on;
	struct stream *pc_r, *pc_w;
	int pc_rc;
	struct err pc_e;
};

/* The pass-0 marker after the extents: how many channels the source
 * opened. It sizes x->ch's use, so it is held to 1..CHANNEL_MAX. */
static int read_channel_count(struct stream *r, int *nch, struct err *e)
{
	struct mig_rec rec;
	struct mig_sync sync0;
	if (mig_get_rec(r, &rec, e) < 0)
		return -1;
	if (rec.type != MIG_REC_SYNC)
		return err_set(e, "protocol error: expected the channel count, got %s", mig_rec_name(rec.type));
	if (mig_get_sync(r, &rec, &sync0, e) < 0)
		return -1;
	/* compared as u64: a huge count must not wrap into range */
	if (sync0.pass != 0 || sync0.value < 1 || sync0.value > CHANNEL_MAX)
		return err_set(e, "protocol error: %llu channels announced (1..%d)",
			       (unsigned long long)sync0.value, CHANNEL_MAX);
	*nch = (int)sync0.value;
	return 0;
}

/* An extra channel's hello against the move: its index one of the extra
 * channels' (1..nch-1) and not taken yet (each owns its chunks), the count
 * the main connection announced, and sealed as the main connection is (a
 * plain channel into an encrypted move is refused, not quietly accepted). */
static int hello_fits(const struct rx *x, bool enc, bool encrypted, uint32_t idx, uint32_t n,
		      struct err *e)
{
	if (enc != encrypted)
		return err_set(e, "a memory channel %s encryption, the main connection %s",
			       enc ? "uses" : "lacks", encrypted ? "uses it" : "does not");
	if (n != (uint32_t)x->nch || idx < 1 || idx >= (uint32_t)x->nch || x->ch[idx].fd)
		return err_set(e, "protocol error: bad hello on a memory channel");
	return 0;
}

/* The source's verdict after READY: only an empty COMMIT lets this copy
 * run; ABORT calls the move off (e->code ECANCELED); anything else is a
 * protocol error, never taken for a yes (the source may be running the
 * guest itself). */
static int read_verdict(struct stream *r, struct err *e)
{
	struct mig_rec rec;
	if (mig_get_rec(r, &rec, e) < 0)
		return err_prefix(e, "waiting for COMMIT");
	if (rec.type == MIG_REC_ABORT)
		return mig_get_abort(r, &rec, e);
	if (rec.type != MIG_REC_COMMIT || rec.len != 0)
		return err_set(e, "protocol error: expected COMMIT, got %s", mig_rec_name(rec.type));
	return 0;
}

static void abort_connections(struct rx *x)
{
	/* Under the lock: the main thread may be closing main_fd right now. */
	pthread_mutex_lock(&x->in->lock);
	if (x->main_fd >= 0)
		shutdown(x->main_fd, SHUT_RDWR);
	pthread_mutex_unlock(&x->in->lock);
	for (int k = 1; k < x->nch; k++)
		if (x->ch[k].fd > 0)
			shutdown(x->ch[k].fd, SHUT_RDWR);
}

static void chan_failed(struct in_chan *c)
{
	int none = 0, me = (int)(c - c->x->ch);
	__atomic_compare_exchange_n(&c->x->first_fail, &none, me, false, __ATOMIC_SEQ_CST,
				    __ATOMIC_SEQ_CST);
	abort_connections(c->x);
}

/* Read the source's populated extents; each is checked against our RAM. */
static int read_extents(struct rx *x, struct stream *r, uint64_t npages, struct err *e)
{
	struct mig_rec rec;
	uint32_t n;
	if (mig_get_rec(r, &rec, e) < 0)
		return -1;
	if (rec.type != MIG_REC_EXTENTS)
		return err_set(e, "protocol error: expected extents, got %s", mig_rec_name(rec.type));
	/* the count is inside the record: one too short for it would have it
	 * read from the next record (or wait out the peer timeout) */
	if (rec.len < 4)
		return err_set(e, "corrupt stream: an extents record of %u bytes has no room for its count",
			       rec.len);
	n = stream_get_u32(r);
	if (stream_check(r, e) < 0)
		return -1;
	if (n > MIG_MAX_EXTENTS || rec.len != 4 + (uint64_t)n * 16)
		return err_set(e, "corrupt stream: %u extents in %u bytes", n, rec.len);
	x->ext = calloc(n ? n : 1, sizeof(*x->ext));
	if (!x->ext)
		return err_set(e, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		x->ext[i][0] = stream_get_u64(r);
		x->ext[i][1] = stream_get_u64(r);
		if (x->ext[i][0] > npages || x->ext[i][1] > npages - x->ext[i][0])
			return err_set(e, "corrupt stream: extent %u lies outside guest RAM", i);
	}
	x->next = n;
	return stream_check(r, e);
}

/* Fault in the populated ranges ahead of the data, 2 MiB at a time. Only
 * page tables change: the contents are the receiver's business. */
static void *prefault_thread(void *arg)
{
	struct rx *x = arg;
	struct guest_mem *gm = &x->in->m->vm.mem;
	for (uint32_t i = 0; i < x->next && !x->stop_prefault; i++)
		if (gmem_populate(gm, x->ext[i][0], x->ext[i][1], &x->stop_prefault) != 0)
			return NULL; /* an old kernel: receiving still works, only slower */
	return NULL;
}

/* Memory reserved up front (--prealloc: all of it, or the ranges the source
 * used when asked, --prealloc-extents) is populated; give back what
 * the source never touched, before any page arrives (a page punched after
 * the receiver wrote it would be lost), so this VM's idle memory stays free
 * and a later move from here still skips it. Extents from the source come
 * sorted; if they do not, memory simply stays reserved. */
static int release_untouched(struct rx *x, struct err *e)
{
	struct guest_mem *gm = &x->in->m->vm.mem;
	uint64_t at = 0;
	for (uint32_t i = 1; i < x->next; i++)
		if (x->ext[i][0] < x->ext[i - 1][0] + x->ext[i - 1][1]) {
			log_warn("incoming: extents out of order; reserved memory kept");
			return 0;
		}
	for (uint32_t i = 0; i <= x->next; i++) {
		uint64_t end = i < x->next ? x->ext[i][0] : gmem_npages(gm);
		if (end > at && gmem_punch(gm, at, end - at, e) < 0)
			return -1;
		if (i < x->next)
			at = x->ext[i][0] + x->ext[i][1];
	}
	gm->prepopulated = false;
	return 0;
}

static int join_channels(void *opaque, struct err *e)
{
	struct rx *x = opaque;
	int rc = 0;
	x->t_state_end = channel_now_ns();
	for (int i = 1; i < x->nch; i++) {
		if (x->ch[i].running) {
			pthread_join(x->ch[i].thread, NULL);
			x->ch[i].running = false;
		}
		if (x->ch[i].rc < 0 && rc == 0) {
			*e = x->ch[i].e;
			rc = err_prefix(e, "memory channel %d", i);
		}
	}
	return rc;
}

/* lost_hook: the SETUP answer may offer post-copy (incoming_hooks.lost) */
static void reply_ex(struct stream *w, uint32_t type, bool ok, const char *error, const char *key,
		     int64_t v, bool lost_hook)
{
	struct json_object *o = json_object_new_object();
	struct err e;
	jsonl_add_bool(o, "ok", ok);
	if (ok && key)
		jsonl_add_int(o, key, v);
	/* What this receiver reads beyond the encodings every version-2
	 * reader knows: a source sends MIG_ENC_RAW_SUMS only when told. The
	 * failpoint makes this receiver answer as one from before them. */
	if (ok && type == MIG_REPLY_SETUP && failpoint("dst.setup_pre_page_sums") == 0)
		jsonl_add_int(o, "page_sums", 1);
	/* ...and it checks a memory digest the source sends (digest.h). */
	if (ok && type == MIG_REPLY_SETUP)
		jsonl_add_int(o, "digest", 1);
	/* ...and takes post-copy, where this kernel has userfaultfd (the
	 * failpoint: a destination without, or from before post-copy) */
	if (ok && type == MIG_REPLY_SETUP && lost_hook && postcopy_supported() &&
	    failpoint("dst.setup_no_postcopy") == 0)
		jsonl_add_int(o, "postcopy", 1);
	if (!ok)
		jsonl_add_str(o, "error", error);
	if (mig_put_reply(w, type, jsonl_text(o), &e) < 0)
		log_warn("reply to the source: %s", e.msg);
	json_object_put(o);
}

static void reply(struct stream *w, uint32_t type, bool ok, const char *error, const char *key, int64_t v)
{
	reply_ex(w, type, ok, error, key, v, false);
}

/* One RARP round for the NIC (if any), so switches learn its new port. */
static void announce_round(struct machine *m)
{
	struct err e;
	if (!m->net)
		return;
	pthread_mutex_lock(&m->vm.dev_lock);
	if (virtio_net_announce(m->net, &e) < 0)
		log_warn("announce: %s", e.msg);
	pthread_mutex_unlock(&m->vm.dev_lock);
}

/* The rounds after the first (which goes out before RESUMED), with growing
 * gaps, as QEMU's announce does: one lost frame must not leave the switch
 * pointing at the old port. */
static void announce_rest(struct machine *m)
{
	static const int gaps_ms[] = { 50, 100, 150, 200 };
	if (!m->net)
		return;
	for (size_t i = 0; i < sizeof(gaps_ms) / sizeof(gaps_ms[0]); i++) {
		struct timespec ts = { 0, gaps_ms[i] * 1000000L };
		nanosleep(&ts, NULL);
		announce_round(m);
	}
	log_info("announced the NIC's MAC (RARP, %zu rounds)", sizeof(gaps_ms) / sizeof(gaps_ms[0]) + 1);
}

/* After RESUMED: the owed pages as they come (asked for or not), until
 * POSTCOPY_END; then the source hears that the guest needs it no more. */
static int postcopy_receive(struct rx *x, struct stream *r, struct stream *w, struct err *e)
{
	struct postcopy_in *pc = &x->pc;
	struct mig_rec rec;
	uint64_t t0 = channel_now_ns();
	for (;;) {
		if (mig_get_rec(r, &rec, e) < 0)
			return -1;
		ram_recv_account(&x->ch[0].rr, r);
		if (rec.type == MIG_REC_POSTCOPY_END && rec.len == 0)
			break;
		if (rec.type != MIG_REC_MEM)
			return err_set(e, "protocol error: a %s record in post-copy", mig_rec_name(rec.type));
		if (postcopy_in_recv(pc, r, rec.len, e) < 0)
			return -1;
		__atomic_store_n(&x->in->postcopy_left, pc->owed_count - pc->arrived_count,
				 __ATOMIC_RELAXED);
	}
	if (postcopy_in_finish(pc, e) < 0)
		return -1;
	__atomic_store_n(&x->in->postcopy_left, 0, __ATOMIC_RELAXED);
	pthread_mutex_lock(&x->wlock);
	reply(w, MIG_REPLY_POSTCOPY_DONE, true, NULL, "faults", (int64_t)pc->faults);
	pthread_mutex_unlock(&x->wlock);
	log_info("post-copy: %llu pages came in %.0f ms after the guest started here; it waited for "
		 "%llu of them, and %llu pages it never wrote were filled with zeros",
		 (unsigned long long)pc->owed_count, (double)(channel_now_ns() - t0) / 1e6,
		 (unsigned long long)pc->faults, (unsigned long long)pc->zero_fills);
	return stream_check(w, e);
}

/* Post-copy broke after the guest ran here: the worker's lost hook ends
 * it with the reason (post-copy is offered only where there is one). */
static void postcopy_lost(struct rx *x, const struct err *e)
{
	char why[sizeof(x->in->error)];
	snprintf(why, sizeof(why),
		 "post-copy broke with %llu of %llu pages still on the source (%.250s); the VM "
		 "ran here on memory that is not all here and was stopped: start it again (it "
		 "boots from its disk)",
		 (unsigned long long)(x->pc.owed_count - x->pc.arrived_count),
		 (unsigned long long)x->pc.owed_count, e->msg);
	x->in->hooks.lost(x->in->hooks.opaque, why);
}

static void *pc_rx_thread(void *arg)
{
	struct rx *x = arg;
	x->pc_rc = postcopy_receive(x, x->pc_r, x->pc_w, &x->pc_e);
	if (x->pc_rc < 0)
		postcopy_lost(x, &x->pc_e);
	return NULL;
}

static void *in_thread(void *arg)
{
	struct mig_incoming *in = arg;
	struct rx *x = calloc(1, sizeof(*x));
	struct stream r, w;
	struct auth_chan ac;
	bool encrypted;              /* the main connection's choice; every channel follows it */
	struct vm_config cfg;
	struct mig_rec rec;
	uint32_t version = 0; /* the main connection's, the last conn_open below */
	struct err e = { .code = 0 };
	bool have_streams = false, setup_replied = false, loaded = false, reserved;
	bool disk_created = false; /* the disk copy this move made, removed if it fails */
	bool postcopy = false;
	int fd = -1;
	struct cpu_model model = { 0 };
	bool have_model = false;

	if (!x) {
		err_set(&e, "out of memory");
		goto fail;
	}
	x->in = in;
	x->main_fd = -1;
	pthread_mutex_init(&x->wlock, NULL);
	/* The main connection is the one that sends the configuration. The
	 * pool answers handshakes side by side, and the source starts a
	 * channel's handshake right after it sent its setup: a channel can
	 * finish first (the destination answers its hello, and the source's
	 * proof is back before the main connection's proof is read). */
	for (;;) {
		uint32_t idx, n;
		fd = accept_one(in, &x->hs, in->accept_timeout_ms, &ac, &e);
		if (fd < 0)
			goto fail;
		if (conn_open(in, fd, &ac, &r, &version, &rec, &e) < 0) {
			stream_destroy(&r);
			close(fd);
			fd = -1;
			goto fail;
		}
		if (rec.type == MIG_REC_CONFIG)
			break;
		if (x->nearly == CHANNEL_MAX - 1 || hello_read(&r, &rec, &idx, &n, &e) < 0) {
			if (x->nearly == CHANNEL_MAX - 1)
				err_set(&e, "protocol error: %d memory channels before the main connection",
					x->nearly + 1);
			stream_destroy(&r);
			close(fd);
			fd = -1;
			goto fail;
		}
		log_debug("incoming migration: memory channel %u was in before the main connection", idx);
		x->early[x->nearly++] = (struct early_chan){ .fd = fd, .encrypt = ac.encrypt, .idx = idx,
							     .n = n, .r = r }; /* buffered bytes move with it */
		fd = -1;
	}
	x->main_fd = fd;
	stream_init_fd(&w, fd, true);
	stream_set_timeout(&w, (int)in->peer_timeout_ms);
	have_streams = true;
	encrypted = ac.encrypt;
	if (in->key.set)
		log_info("incoming migration: source authenticated%s",
			 ac.encrypt ? "; its connections are encrypted (AES-256-GCM)" : "");
	if (ac.encrypt && stream_set_seal(&w, ac.key_tx, &e) < 0)
		goto fail;
	set_stage(in, IN_SETUP);
	/* An earlier source's version is worth a line: a rolling upgrade's
	 * moves, and what to suspect first if one of them fails. */
	log_info("incoming migration: stream version %u%s", version,
		 version < MIG_VERSION ? " (from an earlier ferry)" : "");
	/* Build as soon as the configuration is checked: the source sends it
	 * ahead of the extents, which take it a while to find. */
	if (snapshot_config_from_rec(&r, version, &rec, &cfg, &e) < 0 ||
	    check_host(&r, &cfg, in->host_cpu_mask, in->hooks.reserved_bytes, in->hooks.disk_copy, &e) < 0 ||
	    read_model(&r, version, &model, &have_model, &e) < 0)
		goto fail;
	/* The copy's empty image, for the disk to open: from here on, a
	 * failure removes it (the source's image stays the VM's disk). */
	if (cfg.disk_copy_bytes) {
		if (diskcopy_create_image(&cfg, &e) < 0)
			goto fail;
		disk_created = true;
		log_info("incoming migration: copying the disk (%llu MiB, %llu MiB allocated) to %s",
			 (unsigned long long)(cfg.disk_copy_bytes >> 20),
			 (unsigned long long)(cfg.disk_copy_allocated >> 20), cfg.disk);
	}
	if (in->hooks.build(in->hooks.opaque, &cfg, &e) < 0 ||
	    (have_model && check_model(in->m, &model, &e) < 0))
		goto fail;
	notify(in, IN_EV_BUILT);
	if (read_extents(x, &r, cfg.mem_size >> 12, &e) < 0)
		goto fail;
	if (read_channel_count(&r, &x->nch, &e) < 0)
		goto fail;
	if (ram_recv_init(&x->ch[0].rr, &in->m->vm.mem, &e) < 0)
		goto fail;
	ram_recv_set_channel(&x->ch[0].rr, 0, (uint32_t)x->nch);
	x->ch[0].rr.rx_bytes = &in->rx_bytes; /* the other channels' share it (init_shared) */
	if (postcopy_in_init(&x->pc, &in->m->vm.mem, &e) < 0)
		goto fail;
	x->pc_on = true;
	x->ch[0].rr.postcopy = &x->pc; /* a POSTCOPY record lands there */
	ram_recv_account(&x->ch[0].rr, &r); /* the setup: configuration, extents */
	/* Extra channels: each must say hello with a valid, unused index. */
	for (int k = 1; k < x->nch; k++) {
		uint32_t idx, n, chver;
		struct stream hs;
		bool enc;
		int cfd;
		if (x->nearly) {
			struct early_chan *ec = &x->early[--x->nearly];
			cfd = ec->fd;
			hs = ec->r;
			enc = ec->encrypt;
			idx = ec->idx;
			n = ec->n;
		} else {
			cfd = accept_one(in, &x->hs, 10000, &ac, &e);
			if (cfd < 0)
				goto fail;
			enc = ac.encrypt;
			if (conn_open(in, cfd, &ac, &hs, &chver, &rec, &e) < 0 ||
			    hello_read(&hs, &rec, &idx, &n, &e) < 0) {
				stream_destroy(&hs);
				close(cfd);
				goto fail;
			}
		}
		if (hello_fits(x, enc, encrypted, idx, n, &e) < 0) {
			stream_destroy(&hs);
			close(cfd);
			goto fail;
		}
		x->ch[idx].fd = cfd;
		x->ch[idx].r = hs; /* buffered bytes move with it */
		x->ch[idx].in = in;
		x->ch[idx].x = x;
		ram_recv_init_shared(&x->ch[idx].rr, &x->ch[0].rr);
		ram_recv_set_channel(&x->ch[idx].rr, idx, (uint32_t)x->nch);
	}
	hs_pool_close(&x->hs); /* every channel is in: the rest are strangers */
	/* Before any channel reads a page: a page written and then punched
	 * would be lost (its generation saying it arrived). */
	reserved = in->m->vm.mem.prepopulated;
	if (reserved && release_untouched(x, &e) < 0)
		goto fail;
	for (int k = 1; k < x->nch; k++) {
		if (pthread_create(&x->ch[k].thread, NULL, chan_thread, &x->ch[k]) != 0) {
			err_set(&e, "cannot start channel threads");
			goto fail;
		}
		x->ch[k].running = true;
	}
	if (!reserved && pthread_create(&x->prefault, NULL, prefault_thread, x) == 0)
		x->prefaulting = true;
	reply_ex(&w, MIG_REPLY_SETUP, true, NULL, "channels", x->nch, in->hooks.lost != NULL);
	setup_replied = true;
	set_stage(in, IN_RECEIVING);
	if (snapshot_load_state_ex(&r, in->m, &x->ch[0].rr, join_channels, x, &e) < 0)
		goto fail;
	{
		uint64_t torn = 0;
		for (int k = 0; k < x->nch; k++)
			torn += x->ch[k].rr.st.pages_torn;
		if (torn)
			log_info("incoming: %llu page(s) arrived while the guest wrote them; each came again",
				 (unsigned long long)torn);
	}
	x->stop_prefault = true;
	if (x->prefaulting) {
		pthread_join(x->prefault, NULL);
		x->prefaulting = false;
	}
	if (failpoint("dst.before_ready") < 0) {
		err_set(&e, "failpoint dst.before_ready");
		goto fail;
	}
	loaded = true;
	set_stage(in, IN_LOADED);
	/* load_ms: from the end of the stream to READY (the extra channels'
	 * last pages, then the device state into KVM), downtime spent here. */
	reply(&w, MIG_REPLY_READY, true, NULL, "load_ms",
	      (int64_t)((channel_now_ns() - x->t_state_end) / 1000000));
	if (read_verdict(&r, &e) < 0)
		goto fail;
	ram_recv_account(&x->ch[0].rr, &r); /* the COMMIT: the last byte the source sends */
	/* Past the commit point: this copy is the VM now. */
	failpoint("dst.after_commit");
	if (in->m->blk && virtio_blk_take_lock(in->m->blk, &e) < 0) {
		err_prefix(&e, "storage handoff");
		reply(&w, MIG_REPLY_RESUMED, false, e.msg, NULL, 0);
		goto fail;
	}
	/* Post-copy: from the first vCPU instruction on, a missing page
	 * waits for the fault thread (it asks the source after RESUMED). A
	 * failure here leaves the source's copy whole: it may resume. */
	postcopy = x->pc.owed_count > 0;
	if (postcopy && postcopy_in_arm(&x->pc, &w, &x->wlock, &e) < 0) {
		reply(&w, MIG_REPLY_RESUMED, false, e.msg, NULL, 0);
		goto fail;
	}
	if (postcopy)
		__atomic_store_n(&in->postcopy_left, x->pc.owed_count, __ATOMIC_RELAXED);
	if (in->hooks.start(in->hooks.opaque, &e) < 0) {
		reply(&w, MIG_REPLY_RESUMED, false, e.msg, NULL, 0);
		goto fail;
	}
	{
		int64_t resumed_ns = (int64_t)channel_realtime_ns();
		/* The first announce goes out before RESUMED: once the source
		 * calls the move completed, the switches have been told where
		 * the VM is (a client's next frame must not go to the old port).
		 * The downtime ends at resumed_ns, before it. In post-copy it
		 * goes after: the NIC's ring may be on a page still owed, which
		 * only comes once the source hears RESUMED. */
		if (!postcopy)
			announce_round(in->m);
		pthread_mutex_lock(&x->wlock);
		reply(&w, MIG_REPLY_RESUMED, true, NULL, "resumed_ns", resumed_ns);
		pthread_mutex_unlock(&x->wlock);
	}
	if (postcopy) {
		postcopy_in_may_ask(&x->pc);
		x->pc_r = &r;
		x->pc_w = &w;
		if (pthread_create(&x->pc_thread, NULL, pc_rx_thread, x) != 0) {
			err_set(&e, "cannot start the post-copy receiver");
			goto lost;
		}
		x->pc_thread_on = true;
		announce_round(in->m);
	}
	set_stage(in, IN_RUNNING);
	notify(in, IN_EV_RUNNING);
	failpoint("dst.after_resumed"); /* tests: only the first announce round is out yet */
	if (x->pc_thread_on) {
		pthread_join(x->pc_thread, NULL);
		x->pc_thread_on = false;
		if (x->pc_rc < 0) {
			e = x->pc_e;
			goto lost;
		}
	}
	pthread_mutex_lock(&in->lock);
	in->bytes = r.bytes;
	pthread_mutex_unlock(&in->lock);
	announce_rest(in->m);
	goto out;
lost:
	postcopy_lost(x, &e); /* does not return */
	goto out;
fail:
	if (x) {
		/* The first failure is the cause; the others are its echoes
		 * (a channel that broke shuts every connection down). */
		int none = 0;
		__atomic_compare_exchange_n(&x->first_fail, &none, -1, false, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST);
		/* ...except the source's ABORT: its connections close right
		 * after it, which an extra channel may notice first */
		if (x->first_fail > 0 && e.code != ECANCELED) {
			struct in_chan *c = &x->ch[x->first_fail];
			if (c->running) {
				pthread_join(c->thread, NULL);
				c->running = false;
			}
			e = c->e;
			err_prefix(&e, "memory channel %d", x->first_fail);
		}
	}
	log_error("incoming migration %s: %s", e.code == ECANCELED ? "called off" : "failed", e.msg);
	if (have_streams && !setup_replied)
		reply(&w, MIG_REPLY_SETUP, false, e.msg, NULL, 0);
	else if (have_streams && !loaded && stream_ok(&w))
		reply(&w, MIG_REPLY_READY, false, e.msg, NULL, 0);
	if (have_streams) {
		/* Reset (not just close) the main connection: the source is most
		 * likely blocked writing pages and must fail now, not after its
		 * timeout. The reason already went out in the reply above. */
		struct linger lg = { 1, 0 };
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		stream_destroy(&r);
		stream_destroy(&w);
		have_streams = false;
		pthread_mutex_lock(&in->lock);
		if (x)
			x->main_fd = -1;
		close(fd);
		fd = -1;
		pthread_mutex_unlock(&in->lock);
	}
	if (x) {
		/* Unblock the channel threads, then wait for them. */
		abort_connections(x);
		struct err je;
		join_channels(x, &je);
		x->stop_prefault = true;
		if (x->prefaulting) {
			pthread_join(x->prefault, NULL);
			x->prefaulting = false;
		}
	}
	/* The guest never ran here (start is the last step that can fail):
	 * the copy of its disk is no one's. */
	if (disk_created) {
		struct err de = { 0 };
		if (unlink(cfg.disk) < 0 && errno != ENOENT)
			log_warn("removing the disk copy %s: %s", cfg.disk, strerror(errno));
		else if (durable_dir_sync(cfg.disk, &de) < 0)
			log_warn("%s", de.msg);
		else
			log_info("incoming migration: removed the disk copy %s", cfg.disk);
	}
	pthread_mutex_lock(&in->lock);
	in->stage = IN_FAILED;
	in->abandoned = e.code == ECANCELED;
	snprintf(in->error, sizeof(in->error), "%s", e.msg);
	pthread_mutex_unlock(&in->lock);
	notify(in, IN_EV_FAILED);
out:
	if (x) {
		for (int k = 1; k < x->nch; k++) {
			stream_destroy(&x->ch[k].r);
			ram_recv_destroy(&x->ch[k].rr);
			if (x->ch[k].fd > 0)
				close(x->ch[k].fd);
		}
		ram_recv_destroy(&x->ch[0].rr);
		if (x->pc_on)
			postcopy_in_destroy(&x->pc);
		pthread_mutex_destroy(&x->wlock);
		while (x->nearly) {
			struct early_chan *ec = &x->early[--x->nearly];
			stream_destroy(&ec->r);
			close(ec->fd);
		}
		hs_pool_close(&x->hs);
		free(x->ext);
		free(x);
	}
	if (have_streams) {
		stream_destroy(&r);
		stream_destroy(&w);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

int incoming_start(struct mig_incoming *in, const char *listen, const char *host_cpu_mask,
		   const struct auth_key *key, struct machine *m, const struct incoming_hooks *h,
		   struct err *e)
{
	memset(in, 0, sizeof(*in));
	in->host_cpu_mask = host_cpu_mask;
	if (key)
		in->key = *key;
	pthread_mutex_init(&in->lock, NULL);
	snprintf(in->listen, sizeof(in->listen), "%s", listen);
	in->m = m;
	in->hooks = *h;
	in->accept_timeout_ms = 120000;
	in->peer_timeout_ms = 15000;
	in->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (in->notify_fd < 0)
		return err_sys(e, "eventfd");
	in->listen_fd = sock_tcp_listen(listen, e);
	if (in->listen_fd < 0)
		return err_prefix(e, "incoming migration");
	in->stage = IN_LISTENING;
	if (pthread_create(&in->thread, NULL, in_thread, in) != 0)
		return err_set(e, "cannot start the incoming migration thread");
	in->started = true;
	return 0;
}

void incoming_join(struct mig_incoming *in)
{
	if (in->started) {
		in->cancel = true;
		pthread_join(in->thread, NULL);
		in->started = false;
	}
	if (in->listen_fd > 0)
		close(in->listen_fd);
	if (in->notify_fd > 0)
		close(in->notify_fd);
	in->listen_fd = in->notify_fd = -1;
}
