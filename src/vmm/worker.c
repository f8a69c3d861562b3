/*
 * ferry-vm's main thread (see worker.h): builds or restores the machine,
 * then serves the control socket (JSON lines, docs/api.md "worker
 * protocol"), the live console, device input and guest exit requests.
 */
#include "vmm/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/caplog.h"
#include "common/durable.h"
#include "common/failpoint.h"
#include "common/jsonl.h"
#include "common/log.h"
#include "common/sock.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "migration/incoming.h"
#include "migration/precopy.h"
#include "migration/ram.h"
#include "migration/snapshot.h"
#include "vmm/guestcheck.h"
#include "vmm/vcpu.h"

enum client_kind { CLIENT_CONTROL, CLIENT_CONSOLE };

/* status and migrate-status may wait this long for a move to end (ferryd
 * asks with its poll interval): the end is then told at once, not a poll
 * later. */
#define WORKER_STATUS_WAIT_MAX_MS 5000

struct client {
	int fd;
	enum client_kind kind;
	size_t len;
	char buf[8192];
	uint64_t wait_until_ms;     /* a status request held until then (0: none) */
	bool wait_migration;        /* it is migrate-status (else status) */
	bool half_closed;           /* sent all it will (EOF) while one was held */
};

struct worker {
	struct machine m;
	const struct worker_opts *o;
	enum worker_state state;
	struct caplog serial;
	int ctl_fd, con_fd, sig_fd;
	int mig_end_fd;             /* eventfd: the outgoing migration ended */
	struct client clients[WORKER_MAX_CLIENTS];
	struct timespec started;
	bool quit;
	int exit_code;
	bool ready;                 /* machine built (always true unless incoming) */
	struct mig_source ms;       /* outgoing migration */
	bool migrating_out;
	uint64_t migrated_at_ms;    /* when the outgoing move completed */
	struct mig_incoming in;     /* incoming migration */
	bool incoming;
	struct vm_config local;     /* host-local settings for an incoming VM */
	struct guest_mem reserved;  /* incoming: memory faulted in before the move (--prealloc) */
	uint64_t reserved_bytes;    /* how much of it is faulted in (--prealloc-extents: part) */
	char mark_tmp[CONFIG_PATH_MAX + 8]; /* incoming: the arrival mark, written ahead ("" none) */
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Serial output: the log file and every attached console. Called with dev_lock held. */
static void worker_serial_sink(void *opaque, const uint8_t *buf, size_t n)
{
	struct worker *w = opaque;
	if (caplog_write(&w->serial, buf, n) < 0)
		log_warn("serial log %s: %s: %s (reported once)", w->serial.path,
			 w->serial.fail_what, strerror(w->serial.fail_errno));
	for (int i = 0; i < WORKER_MAX_CLIENTS; i++) {
		struct client *c = &w->clients[i];
		/* A slow console loses output rather than stalling the guest. */
		if (c->fd >= 0 && c->kind == CLIENT_CONSOLE)
			(void)send(c->fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
}

static const char *state_name(enum worker_state s)
{
	static const char *n[] = { "running", "paused", "incoming", "stopped" };
	return n[s];
}

static void worker_pause(struct worker *w)
{
	if (w->state == WORKER_RUNNING) {
		vcpus_pause(&w->m.vm);
		w->state = WORKER_PAUSED;
	}
}

static void worker_resume(struct worker *w)
{
	if (w->state == WORKER_PAUSED) {
		vcpus_resume(&w->m.vm);
		w->state = WORKER_RUNNING;
	}
}

static int worker_save(struct worker *w, const char *path, struct json_object *resp, struct err *e)
{
	struct ram_stats st = { 0 };
	struct stream s;
	char tmp[CONFIG_PATH_MAX + 8];
	uint64_t t0 = now_ms();
	bool was_running = w->state == WORKER_RUNNING;
	int fd, rc, n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);

	/* cut short, the temporary name would be some other file, truncated
	 * and then renamed over path */
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return err_set(e, "state file path too long (at most %d bytes)", CONFIG_PATH_MAX);
	worker_pause(w);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = err_sys(e, "creating %s", tmp);
		goto failed;
	}
	stream_init_fd(&s, fd, true);
	rc = snapshot_save(&w->m, &s, &st, e);
	if (rc < 0)
		err_prefix(e, "writing %s", tmp); /* the stream's error names no file */
	if (rc == 0 && fsync(fd) < 0)
		rc = err_sys(e, "fsync %s", tmp);
	stream_destroy(&s);
	if (close(fd) < 0 && rc == 0)
		rc = err_sys(e, "closing %s", tmp);
	/* Written under a temporary name and renamed: a failed save never leaves a half file behind the real name. */
	if (rc == 0 && rename(tmp, path) < 0)
		rc = err_sys(e, "renaming %s to %s", tmp, path);
	else if (rc == 0)
		rc = durable_dir_sync(path, e);
	if (rc < 0) {
		if (unlink(tmp) < 0 && errno != ENOENT)
			log_warn("removing %s: %s", tmp, strerror(errno));
		goto failed;
	}
	jsonl_add_int(resp, "pages_raw", (int64_t)st.pages_raw);
	jsonl_add_int(resp, "pages_zero", (int64_t)st.pages_zero);
	jsonl_add_int(resp, "bytes", (int64_t)s.bytes);
	jsonl_add_int(resp, "ms", (int64_t)(now_ms() - t0));
	return 0;
failed:
	/* nothing was saved: the guest goes on as before the request (a
	 * full disk must not also stop the VM) */
	if (was_running)
		worker_resume(w);
	return -1;
}

static const uint8_t *worker_map_gpa(void *opaque, uint64_t gpa, uint64_t len)
{
	return gmem_ptr(opaque, gpa, len);
}

static int worker_verify(struct worker *w, struct json_object *resp, struct err *e)
{
	struct guestcheck_report rep;
	char why[512];
	bool was_running = w->state == WORKER_RUNNING;
	int rc;

	/* tests: a check as slow as a big VM's (tests/kvm/ferryd_basic.sh) */
	if (failpoint("worker.verify") < 0)
		return err_set(e, "failpoint worker.verify");
	worker_pause(w);
	memset(&rep, 0, sizeof(rep));
	why[0] = 0;
	rc = guestcheck_verify_map(worker_map_gpa, &w->m.vm.mem, &rep, why, sizeof(why));
	if (was_running)
		worker_resume(w);
	jsonl_add_bool(resp, "verified", rc == 0);
	jsonl_add_int(resp, "pages_checked", (int64_t)rep.pages_checked);
	jsonl_add_int(resp, "pages_never_written", (int64_t)rep.pages_never_written);
	jsonl_add_int(resp, "max_gen", rep.max_gen);
	jsonl_add_int(resp, "heartbeat", (int64_t)rep.hb);
	if (rc >= 0) { /* the fill and the vCPUs are known only from a valid control block */
		struct json_object *beats = json_object_new_array();
		jsonl_add_str(resp, "data", rep.data == FG_DATA_TEXT ? "text" : "random");
		/* each vCPU's own once-a-second counter: a vCPU a restore left
		 * dead stops it while vCPU 0's heartbeat goes on */
		for (uint32_t i = 0; i < rep.ncpus && i < FG_MAX_CPUS; i++)
			json_object_array_add(beats, json_object_new_int64((int64_t)rep.vcpu_heartbeat[i]));
		json_object_object_add(resp, "vcpu_heartbeats", beats);
	}
	jsonl_add_str(resp, "detail", rc == 0 ? "every page verified" : why);
	return 0;
}

static void status_migration(struct worker *w, struct json_object *resp)
{
	struct json_object *m = json_object_new_object();
	if (w->incoming && w->state == WORKER_INCOMING) {
		pthread_mutex_lock(&w->in.lock);
		jsonl_add_str(m, "direction", "incoming");
		jsonl_add_str(m, "stage", incoming_stage_name(w->in.stage));
		jsonl_add_int(m, "bytes_received",
			      (int64_t)__atomic_load_n(&w->in.rx_bytes, __ATOMIC_RELAXED));
		if (w->in.error[0])
			jsonl_add_str(m, "error", w->in.error);
		pthread_mutex_unlock(&w->in.lock);
	} else if (w->migrating_out) {
		struct mig_status st;
		mig_source_status(&w->ms, &st);
		jsonl_add_str(m, "direction", "outgoing");
		jsonl_add_str(m, "stage", mig_stage_name(st.stage));
		jsonl_add_str(m, "transport", st.transport);
		/* Fixed at the start: read without the lock. */
		jsonl_add_bool(m, "authenticated", w->ms.o.key.set);
		jsonl_add_bool(m, "encrypted", w->ms.o.encrypt);
		jsonl_add_bool(m, "verify_memory", w->ms.o.verify_memory);
		if (w->ms.o.check_only)
			jsonl_add_bool(m, "check_only", true);
		if (st.codec[0])
			jsonl_add_str(m, "codec", st.codec);
		jsonl_add_int(m, "pass", st.pass);
		jsonl_add_int(m, "total_pages", (int64_t)st.total_pages);
		jsonl_add_int(m, "sent_pages", (int64_t)st.sent_pages);
		/* In pass 1 what is left is what the pass has not sent: from the
		 * same snapshot as percent, not the pass's last publish (200 ms
		 * old, so "left" lagged behind the percent beside it). */
		uint64_t left = st.remaining_pages * 4096, done = st.sent_pages, all = st.total_pages;
		if (done > all)
			done = all;
		if (st.stage == MIG_STAGE_PRECOPY && st.pass == 1) {
			/* A disk copy's pass 1 goes first and may be the most of
			 * it: counted in what is done and left (later passes'
			 * remaining_pages count its owed blocks already). */
			left = (all - done) * 4096 + st.disk_dirty_bytes;
			done = done * 4096 + st.disk_sent_bytes;
			all = done + left;
		}
		jsonl_add_int(m, "remaining_pages", (int64_t)((left + 4095) / 4096));
		jsonl_add_int(m, "remaining_bytes", (int64_t)left);
		json_object_object_add(m, "percent", json_object_new_double(
			all ? 100.0 * (double)done / (double)all : 0.0));
		json_object_object_add(m, "dirty_rate_mibps", json_object_new_double(st.dirty_rate_mibps));
		json_object_object_add(m, "throughput_mibps", json_object_new_double(st.throughput_mibps));
		json_object_object_add(m, "pass1_mibps", json_object_new_double(st.pass1_mibps));
		jsonl_add_int(m, "bytes_on_wire", (int64_t)st.bytes_on_wire);
		if (w->ms.o.disk_copy_path[0]) {
			struct json_object *d = json_object_new_object();
			jsonl_add_str(d, "path", w->ms.o.disk_copy_path);
			jsonl_add_int(d, "bytes", (int64_t)st.disk_bytes);
			jsonl_add_int(d, "sent_bytes", (int64_t)st.disk_sent_bytes);
			jsonl_add_int(d, "dirty_bytes", (int64_t)st.disk_dirty_bytes);
			json_object_object_add(m, "disk_copy", d);
		}
		jsonl_add_int(m, "pages_raw", (int64_t)st.ram.pages_raw);
		jsonl_add_int(m, "pages_zero", (int64_t)st.ram.pages_zero);
		jsonl_add_int(m, "pages_compressed", (int64_t)st.ram.pages_compressed);
		jsonl_add_int(m, "elapsed_ms", (int64_t)st.elapsed_ms);
		jsonl_add_int(m, "setup_ms", (int64_t)st.setup_ms);
		jsonl_add_int(m, "downtime_ms", (int64_t)st.downtime_ms);
		if (st.downtime_parts.set) {
			const struct mig_downtime_parts *p = &st.downtime_parts;
			struct json_object *dp = json_object_new_object();
			for (int i = 0; i < MIG_DT_NPARTS; i++)
				jsonl_add_fixed(dp, mig_downtime_names[i].key, p->ms[i], 1);
			/* within destination_ready, not a part of the sum */
			jsonl_add_fixed(dp, "destination_load_ms", p->dest_load, 1);
			json_object_object_add(m, "downtime_parts", dp);
		}
		jsonl_add_int(m, "eta_ms", (int64_t)st.eta_ms);
		jsonl_add_int(m, "throttle_pct", st.throttle_pct);
		jsonl_add_int(m, "bandwidth_mibps", (int64_t)(st.bandwidth_bps >> 20));
		jsonl_add_bool(m, "committed", st.committed);
		if (w->ms.o.verify_memory)
			jsonl_add_bool(m, "memory_verified", st.memory_verified);
		if (w->ms.o.postcopy) {
			/* asked for; "used": the move switched to it */
			struct json_object *pc = json_object_new_object();
			jsonl_add_bool(pc, "used", st.postcopy);
			jsonl_add_int(pc, "pages", (int64_t)st.postcopy_pages);
			jsonl_add_int(pc, "left", (int64_t)st.postcopy_left);
			jsonl_add_int(pc, "requested", (int64_t)st.postcopy_requests);
			jsonl_add_int(pc, "ms", (int64_t)st.postcopy_ms);
			json_object_object_add(m, "postcopy", pc);
		}
		if (st.error[0])
			jsonl_add_str(m, "error", st.error);
	} else {
		/* "none" even for a VM that arrived: a source ferryd that asks
		 * before its own move began must not read an outcome here */
		jsonl_add_str(m, "stage", "none");
		if (w->incoming) { /* what came, for the destination's record */
			jsonl_add_int(m, "bytes_received",
				      (int64_t)__atomic_load_n(&w->in.rx_bytes, __ATOMIC_RELAXED));
			/* the running guest's pages still on the source (post-copy) */
			jsonl_add_int(m, "postcopy_left",
				      (int64_t)__atomic_load_n(&w->in.postcopy_left, __ATOMIC_RELAXED));
		}
	}
	json_object_object_add(resp, "migration", m);
}

static void worker_on_mig_pause(void *opaque, bool paused)
{
	struct worker *w = opaque;
	w->state = paused ? WORKER_PAUSED : WORKER_RUNNING;
}

/* Once the move completed, this copy of guest memory is garbage (no
 * command may use it: worker_moved_away). Given back to the host right
 * away, on the migration thread as it ends, so the exit ferryd waits for
 * before it calls the move done does not first free it (~0.2 s per GiB
 * touched here). */
static void worker_on_mig_end(void *opaque, enum mig_stage end)
{
	struct worker *w = opaque;
	uint64_t one = 1;
	struct err e;
	/* first, so that a held migrate-status answers now */
	if (write(w->mig_end_fd, &one, sizeof(one)) < 0)
		log_warn("migration end notify: %s", strerror(errno));
	/* a test's stand-in for a slow release (tests/e2e/move_leaving.sh) */
	if (end == MIG_STAGE_COMPLETED)
		failpoint("worker.release_memory");
	if (end == MIG_STAGE_COMPLETED && gmem_punch(&w->m.vm.mem, 0, gmem_npages(&w->m.vm.mem), &e) < 0)
		log_warn("giving back the moved VM's memory: %s", e.msg);
}

static int worker_migrate(struct worker *w, struct json_object *req, struct json_object *resp,
			  struct err *e)
{
	/* Every field the command knows: one it does not know is refused, so
	 * a caller newer than this worker learns at once that an option it
	 * asked for would be ignored (the check_only echo below guards only
	 * workers built before this list). */
	static const char *const keys[] = {
		"cmd", "uri", "transport", "compress", "bind", "codec", "downtime_ms",
		"bandwidth_mibps", "channels", "max_passes", "max_duration_s",
		"cancel_on_timeout", "key", "encrypt", "verify_memory", "check_only",
		"disk_copy_path", "postcopy", NULL
	};
	struct mig_opts o;
	const char *uri = NULL, *transport = NULL;
	int64_t v;
	char port[16];

	if (jsonl_only_keys(req, keys, e) < 0)
		return err_prefix(e, "migrate (this ferry-vm has no such option)");
	if (w->state != WORKER_RUNNING)
		return err_set(e, "only a running VM can be live-migrated (this one is %s)", state_name(w->state));
	if (w->migrating_out && !mig_source_done(&w->ms))
		return err_set(e, "a migration of this VM is already in progress");
	if (w->incoming && __atomic_load_n(&w->in.postcopy_left, __ATOMIC_RELAXED))
		return err_set(e, "VM %s is still receiving its memory from its last move (post-copy): "
			       "move it when that is done", w->m.cfg.name);
	mig_opts_default(&o);
	if (jsonl_get_str(req, "uri", true, &uri, e) < 0)
		return -1;
	if (sock_split_hostport(uri, "7451", o.host, sizeof(o.host), port, sizeof(port), e) < 0)
		return -1;
	snprintf(o.port, sizeof(o.port), "%s", port);
	if (jsonl_get_str(req, "transport", false, &transport, e) < 0)
		return -1;
	if (transport) {
		if (mig_transport_parse(transport, &o.transport, e) < 0)
			return -1;
		o.compress = o.transport == MIG_TRANSPORT_COMPRESSION;
	}
	if (jsonl_get_bool(req, "compress", false, &o.compress, e) < 0)
		return -1;
	{
		const char *bind = NULL;
		if (jsonl_get_str(req, "bind", false, &bind, e) < 0)
			return -1;
		if (bind && strlen(bind) >= sizeof(o.bind))
			return err_set(e, "bind address too long");
		if (bind)
			snprintf(o.bind, sizeof(o.bind), "%s", bind);
	}
	{
		const char *codec = NULL;
		if (jsonl_get_str(req, "codec", false, &codec, e) < 0)
			return -1;
		if (codec && strcmp(codec, "lz4") == 0)
			o.codec = MIG_ENC_LZ4;
		else if (codec && strcmp(codec, "zstd") == 0)
			o.codec = MIG_ENC_ZSTD;
		else if (codec && strcmp(codec, "auto") != 0)
			return err_set(e, "codec must be auto, lz4 or zstd");
	}
	v = o.downtime_ms;
	if (jsonl_get_int(req, "downtime_ms", false, 1, 600000, &v, e) < 0)
		return -1;
	o.downtime_ms = (uint32_t)v;
	v = 0;
	if (jsonl_get_int(req, "bandwidth_mibps", false, 0, 1 << 30, &v, e) < 0)
		return -1;
	o.bandwidth_bps = (uint64_t)v << 20;
	v = o.channels;
	if (jsonl_get_int(req, "channels", false, 1, 8, &v, e) < 0)
		return -1;
	o.channels = (int)v;
	v = o.max_passes;
	if (jsonl_get_int(req, "max_passes", false, 2, 1000, &v, e) < 0)
		return -1;
	o.max_passes = (int)v;
	v = 0;
	if (jsonl_get_int(req, "max_duration_s", false, 0, 86400, &v, e) < 0)
		return -1;
	o.max_duration_s = (uint32_t)v;
	if (jsonl_get_bool(req, "cancel_on_timeout", false, &o.cancel_on_timeout, e) < 0)
		return -1;
	{
		const char *key = NULL;
		if (jsonl_get_str(req, "key", false, &key, e) < 0)
			return -1;
		if (key && auth_from_hex(key, o.key.k, sizeof(o.key.k)) < 0)
			return err_set(e, "key must be %d hex digits", AUTH_KEY_LEN * 2);
		o.key.set = key != NULL;
	}
	if (jsonl_get_bool(req, "encrypt", false, &o.encrypt, e) < 0)
		return -1;
	if (jsonl_get_bool(req, "verify_memory", false, &o.verify_memory, e) < 0 ||
	    jsonl_get_bool(req, "check_only", false, &o.check_only, e) < 0 ||
	    jsonl_get_bool(req, "postcopy", false, &o.postcopy, e) < 0)
		return -1;
	if (o.postcopy && o.verify_memory)
		return err_set(e, "verify_memory and postcopy do not go together: the digest is checked "
			       "before the guest runs there, and in post-copy some of its memory is "
			       "still here then");
	{
		const char *copy = NULL;
		if (jsonl_get_str(req, "disk_copy_path", false, &copy, e) < 0)
			return -1;
		if (copy && (copy[0] != '/' || strlen(copy) >= sizeof(o.disk_copy_path)))
			return err_set(e, "disk_copy_path must be an absolute path of at most %zu bytes",
				       sizeof(o.disk_copy_path) - 1);
		if (copy && !w->m.blk)
			return err_set(e, "disk_copy_path: VM %s has no disk to copy", w->m.cfg.name);
		if (copy)
			snprintf(o.disk_copy_path, sizeof(o.disk_copy_path), "%s", copy);
	}
	if (o.encrypt && !o.key.set)
		return err_set(e, "encrypt needs the move's key (\"key\"): the connections' keys derive from it");
	w->ms.on_pause = worker_on_mig_pause;
	w->ms.on_end = worker_on_mig_end;
	w->ms.opaque = w;
	if (mig_source_start(&w->ms, &w->m, &o, e) < 0)
		return -1;
	w->migrating_out = true;
	w->migrated_at_ms = 0;
	/* said back: a worker from before checks would move the VM instead,
	 * and ferryd calls such a move off at once */
	if (o.check_only)
		jsonl_add_bool(resp, "check_only", true);
	return 0;
}

/* migrate-set: a new bandwidth limit for the outgoing migration, applied
 * from now (ferryd re-divides the host's limit as moves come and go). */
static int worker_migrate_set(struct worker *w, struct json_object *req, struct err *e)
{
	static const char *const keys[] = { "cmd", "bandwidth_mibps", NULL };
	int64_t v;

	if (!w->migrating_out)
		return err_set(e, "no outgoing migration to change");
	if (jsonl_only_keys(req, keys, e) < 0 ||
	    jsonl_get_int(req, "bandwidth_mibps", true, 0, 1 << 30, &v, e) < 0)
		return -1;
	/* A migration that has ended takes it harmlessly: ferryd may learn of
	 * the end only after it sent the new limit. */
	mig_source_set_bandwidth(&w->ms, (uint64_t)v << 20);
	if (v)
		log_info("migration: bandwidth limit now %lld MiB/s", (long long)v);
	else
		log_info("migration: bandwidth limit removed");
	return 0;
}

static int worker_resolve(struct worker *w, struct json_object *req, struct err *e)
{
	struct mig_status st;
	const char *action = NULL;
	if (!w->migrating_out)
		return err_set(e, "no migration to resolve");
	mig_source_status(&w->ms, &st);
	if (st.stage != MIG_STAGE_UNKNOWN)
		return err_set(e, "the migration is %s, nothing to resolve", mig_stage_name(st.stage));
	if (jsonl_get_str(req, "action", true, &action, e) < 0)
		return -1;
	if (strcmp(action, "stop") == 0) {
		/* The destination runs the VM: this copy goes away for good. */
		w->quit = true;
		w->exit_code = 4;
		return 0;
	}
	if (strcmp(action, "resume") != 0)
		return err_set(e, "action must be 'resume' or 'stop'");
	/* Only the disk lock can prove no other copy writes the disk now. */
	if (w->m.blk && !virtio_blk_locked(w->m.blk) && virtio_blk_take_lock(w->m.blk, e) < 0)
		return err_prefix(e, "cannot resume: another copy holds the disk");
	vcpus_resume(&w->m.vm);
	w->state = WORKER_RUNNING;
	pthread_mutex_lock(&w->ms.lock);
	w->ms.st.stage = MIG_STAGE_FAILED;
	pthread_mutex_unlock(&w->ms.lock);
	return 0;
}

/* The source's populated memory as (first page, pages) pairs, merged to at
 * most 1024 ranges, for a destination that reserves memory ahead
 * (--prealloc-extents). */
static int worker_extents(struct worker *w, struct json_object *resp, struct err *e)
{
	enum { MAX = 1024 };
	uint64_t (*ext)[2];
	struct json_object *arr;
	uint64_t pages = 0, t0 = now_ms();
	size_t n;

	if (!w->ready)
		return err_set(e, "the VM is not built yet");
	/* a test's stand-in for a big guest's walk (tests/e2e/move_errors.sh) */
	if (failpoint("worker.extents") < 0)
		return err_set(e, "failpoint worker.extents");
	ext = calloc(MAX, sizeof(*ext));
	if (!ext)
		return err_set(e, "out of memory");
	n = ram_populated_extents(&w->m.vm.mem, ext, MAX, NULL);
	arr = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		struct json_object *pair = json_object_new_array();
		json_object_array_add(pair, json_object_new_int64((int64_t)ext[i][0]));
		json_object_array_add(pair, json_object_new_int64((int64_t)ext[i][1]));
		json_object_array_add(arr, pair);
		pages += ext[i][1];
	}
	free(ext);
	json_object_object_add(resp, "extents", arr);
	jsonl_add_int(resp, "pages", (int64_t)pages);
	/* the walk is on a move's setup path: its cost is worth a line */
	log_info("extents: %llu MiB in use in %zu range(s), found in %llu ms",
		 (unsigned long long)(pages >> 8), n, (unsigned long long)(now_ms() - t0));
	return 0;
}

/* The outgoing move completed: the VM runs on the destination, and this
 * copy must never run, be saved or be moved again (that would be a second
 * copy of the guest). Asked of the migration itself, not of the main
 * loop's flag, which follows it by up to a poll interval. */
static bool worker_moved_away(struct worker *w)
{
	struct mig_status st;
	if (!w->migrating_out || !w->ms.thread_started)
		return false;
	mig_source_status(&w->ms, &st);
	/* lost in post-copy: the guest ran there, this copy is stale */
	return st.stage == MIG_STAGE_COMPLETED || st.stage == MIG_STAGE_LOST;
}

/* The status command's fields; migrate-status: the migration's alone. */
static void worker_status_reply(struct worker *w, bool migration_only, struct json_object *resp)
{
	struct timespec now;

	if (migration_only) {
		status_migration(w, resp);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	jsonl_add_str(resp, "name", w->ready ? w->m.cfg.name : w->local.name);
	status_migration(w, resp);
	jsonl_add_str(resp, "state", state_name(w->state));
	jsonl_add_int(resp, "vcpus", w->ready ? w->m.cfg.vcpus : 0);
	jsonl_add_int(resp, "memory_mib", w->ready ? (int64_t)(w->m.cfg.mem_size >> 20) : 0);
	jsonl_add_int(resp, "pid", getpid());
	/* the host interface the NIC uses (a bridged NIC's fyN differs per host) */
	if (w->ready && w->m.net && virtio_net_ifname(w->m.net)[0])
		jsonl_add_str(resp, "nic_tap", virtio_net_ifname(w->m.net));
	jsonl_add_int(resp, "uptime_ms", (now.tv_sec - w->started.tv_sec) * 1000 +
		      (now.tv_nsec - w->started.tv_nsec) / 1000000);
}

/* Nothing a held status waits for can change any more: an outgoing move
 * has ended (migrate-status), an incoming VM runs here or its move is off
 * (status). Then it is answered at once. */
static bool worker_status_final(struct worker *w, bool migration)
{
	if (migration)
		return !w->migrating_out || mig_source_done(&w->ms);
	return w->state != WORKER_INCOMING || w->quit;
}

static void worker_reply(struct client *c, struct json_object *resp)
{
	const char *text = jsonl_text(resp);
	struct err we;
	char *out = malloc(strlen(text) + 2);

	if (!out)
		return;
	sprintf(out, "%s\n", text);
	if (sock_write_all(c->fd, out, strlen(out), 2000, &we) < 0)
		log_warn("control reply: %s", we.msg);
	free(out);
}

static void worker_client_lines(struct worker *w, struct client *c);
static void client_close(struct client *c);

/* One control request -> one response line (a status or migrate-status
 * with wait_ms while a move goes on: later, from worker_answer_waiters). */
static void worker_control(struct worker *w, struct client *c, const char *line, size_t len)
{
	struct json_object *req, *resp = json_object_new_object();
	const char *cmd = NULL, *path = NULL;
	struct err e = { .code = 0 };
	int rc = 0;

	req = jsonl_parse(line, len, &e);
	if (!req || jsonl_get_str(req, "cmd", true, &cmd, &e) < 0) {
		rc = -1;
	} else if (strcmp(cmd, "status") == 0 || strcmp(cmd, "migrate-status") == 0) {
		bool mig = strcmp(cmd, "migrate-status") == 0;
		int64_t wait = 0;
		if (jsonl_get_int(req, "wait_ms", false, 0, WORKER_STATUS_WAIT_MAX_MS, &wait, &e) < 0) {
			rc = -1;
		} else if (wait > 0 && !worker_status_final(w, mig)) {
			c->wait_until_ms = now_ms() + (uint64_t)wait;
			c->wait_migration = mig;
		} else {
			worker_status_reply(w, mig, resp);
		}
	} else if ((strcmp(cmd, "migrate") == 0 || strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0 ||
		    strcmp(cmd, "save") == 0 || strcmp(cmd, "verify") == 0 || strcmp(cmd, "extents") == 0) &&
		   worker_moved_away(w)) {
		rc = err_set(&e, "VM %s now runs on the destination: this worker's copy is gone",
			     w->m.cfg.name);
	} else if (strcmp(cmd, "migrate") == 0) {
		rc = worker_migrate(w, req, resp, &e);
	} else if (strcmp(cmd, "migrate-set") == 0) {
		rc = worker_migrate_set(w, req, &e);
	} else if (strcmp(cmd, "migrate-cancel") == 0) {
		rc = w->migrating_out ? mig_source_cancel(&w->ms, false, &e) :
		     err_set(&e, "no outgoing migration to cancel");
	} else if (strcmp(cmd, "migrate-resolve") == 0) {
		rc = worker_resolve(w, req, &e);
	} else if ((strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0 || strcmp(cmd, "save") == 0 ||
		    strcmp(cmd, "verify") == 0) &&
		   (w->state == WORKER_INCOMING || (w->migrating_out && !mig_source_done(&w->ms)))) {
		rc = err_set(&e, "not while a migration is in progress");
	} else if (strcmp(cmd, "pause") == 0) {
		worker_pause(w);
	} else if (strcmp(cmd, "resume") == 0) {
		if (w->migrating_out && w->ms.st.stage == MIG_STAGE_UNKNOWN)
			rc = err_set(&e, "the migration's outcome is unknown: use migrate-resolve");
		else if (w->state != WORKER_PAUSED)
			rc = err_set(&e, "the VM is %s, not paused", state_name(w->state));
		else
			worker_resume(w);
	} else if (strcmp(cmd, "stop") == 0) {
		if (w->migrating_out && !mig_source_done(&w->ms)) {
			rc = err_set(&e, "a migration is in progress: cancel it first (migrate-cancel)");
		} else {
			w->quit = true;
			w->exit_code = w->migrated_at_ms ? 4 : 0;
		}
	} else if (strcmp(cmd, "save") == 0) {
		if (jsonl_get_str(req, "path", true, &path, &e) < 0)
			rc = -1;
		else
			rc = worker_save(w, path, resp, &e);
	} else if (strcmp(cmd, "verify") == 0) {
		rc = worker_verify(w, resp, &e);
	} else if (strcmp(cmd, "extents") == 0) {
		rc = worker_extents(w, resp, &e);
	} else {
		rc = err_set(&e, "unknown command '%s' (status, pause, resume, stop, save, verify, "
			     "extents, migrate, migrate-status, migrate-set, migrate-cancel, migrate-resolve)", cmd);
	}
	jsonl_add_bool(resp, "ok", rc == 0);
	if (rc < 0)
		jsonl_add_str(resp, "error", e.msg);
	if (!c->wait_until_ms)
		worker_reply(c, resp);
	if (req)
		json_object_put(req);
	json_object_put(resp);
}

/* Held status requests with news, or whose wait is over. */
static void worker_answer_waiters(struct worker *w)
{
	uint64_t now = now_ms();

	for (int i = 0; i < WORKER_MAX_CLIENTS; i++) {
		struct client *c = &w->clients[i];
		struct json_object *resp;
		if (c->fd < 0 || !c->wait_until_ms ||
		    (now < c->wait_until_ms && !worker_status_final(w, c->wait_migration)))
			continue;
		c->wait_until_ms = 0;
		resp = json_object_new_object();
		worker_status_reply(w, c->wait_migration, resp);
		jsonl_add_bool(resp, "ok", true);
		worker_reply(c, resp);
		json_object_put(resp);
		if (c->half_closed)
			client_close(c);
		else
			worker_client_lines(w, c); /* what the client sent meanwhile */
	}
}

static void client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->len = 0;
	c->wait_until_ms = 0;
	c->half_closed = false;
}

static void worker_accept(struct worker *w, int lfd, enum client_kind kind)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	for (int i = 0; i < WORKER_MAX_CLIENTS; i++) {
		if (w->clients[i].fd < 0) {
			w->clients[i].fd = fd;
			w->clients[i].kind = kind;
			w->clients[i].len = 0;
			return;
		}
	}
	close(fd); /* full: refuse */
}

/* Typed or pasted console input into the UART's 64-byte FIFO. What does
 * not fit waits in c->buf (the loop stops reading the client meanwhile)
 * until the guest drains the FIFO; nothing goes in while the VM is
 * paused, as for any device input (vcpus_pause). */
static void worker_console_feed(struct worker *w, struct client *c)
{
	size_t took = 0;

	pthread_mutex_lock(&w->m.vm.dev_lock);
	if (w->ready && !w->m.vm.paused)
		took = uart_feed(&w->m.uart, (const uint8_t *)c->buf, c->len);
	pthread_mutex_unlock(&w->m.vm.dev_lock);
	memmove(c->buf, c->buf + took, c->len - took);
	c->len -= took;
}

static void worker_client_input(struct worker *w, struct client *c)
{
	ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n == 0 && c->wait_until_ms) {
			/* a client that wrote its request and shut its side
			 * (socat) still gets the held answer */
			c->half_closed = true;
			return;
		}
		client_close(c);
		return;
	}
	c->len += (size_t)n;
	if (c->kind == CLIENT_CONSOLE) {
		worker_console_feed(w, c);
		return;
	}
	worker_client_lines(w, c);
}

/* Requests in order, one answer each: none past a held one. */
static void worker_client_lines(struct worker *w, struct client *c)
{
	while (c->fd >= 0 && !c->wait_until_ms) {
		char *nl = memchr(c->buf, '\n', c->len);
		size_t linelen;
		if (!nl) {
			if (c->len == sizeof(c->buf))
				client_close(c); /* a line longer than any request: hostile or broken */
			return;
		}
		linelen = (size_t)(nl - c->buf);
		worker_control(w, c, c->buf, linelen);
		if (c->fd < 0)
			return;
		memmove(c->buf, nl + 1, c->len - linelen - 1);
		c->len -= linelen + 1;
	}
}

static int worker_build(struct worker *w, const struct vm_config *cfg, struct err *e)
{
	const struct worker_opts *o = w->o;
	if (o->restore_path) {
		struct vm_config scfg;
		struct ram_recv rr;
		struct stream s;
		int fd = open(o->restore_path, O_RDONLY | O_CLOEXEC), rc;
		if (fd < 0)
			return err_sys(e, "state file %s", o->restore_path);
		stream_init_fd(&s, fd, false);
		rc = snapshot_load_config(&s, &scfg, e);
		if (rc == 0) {
			/* The saved configuration wins, except where the operator placed things on this host. */
			if (cfg->name[0])
				snprintf(scfg.name, sizeof(scfg.name), "%s", cfg->name);
			config_place_nic(&scfg, cfg);
			rc = machine_build(&w->m, &scfg, true, NULL, worker_serial_sink, w, e);
			w->m.vm.host_cpu_mask = o->host_cpu_mask;
		}
		if (rc == 0)
			rc = ram_recv_init(&rr, &w->m.vm.mem, e);
		if (rc == 0) {
			struct mig_rec end;
			rc = snapshot_load_state(&s, &w->m, &rr, e);
			ram_recv_destroy(&rr);
			/* A state file is complete only with its end record: a file cut
			 * just after the state must not pass for a whole one. */
			if (rc == 0 && (mig_get_rec(&s, &end, e) < 0 || end.type != MIG_REC_EOS))
				rc = e->msg[0] ? -1 : err_set(e, "state file has no end record (truncated?)");
			/* ...and the end record is empty and last, as ferry-stream
			 * check requires: what it rejects must not restore */
			if (rc == 0 && end.len != 0)
				rc = err_set(e, "corrupt stream: the end record carries %u bytes", end.len);
			if (rc == 0) {
				uint8_t extra;
				stream_get(&s, &extra, 1);
				if (stream_ok(&s))
					rc = err_set(e, "corrupt stream: bytes follow the end record");
			}
		}
		stream_destroy(&s);
		close(fd);
		if (rc < 0)
			return err_prefix(e, "restoring from %s", o->restore_path);
		/* Storage handoff: the saved VM is not running, so the lock is ours to take. */
		if (w->m.blk && virtio_blk_take_lock(w->m.blk, e) < 0)
			return -1;
		log_info("restored %s from %s", w->m.cfg.name, o->restore_path);
		return 0;
	}
	if (machine_build(&w->m, cfg, false, NULL, worker_serial_sink, w, e) < 0)
		return -1;
	return machine_boot(&w->m, e);
}

/* The arrival mark is written here, at setup, under a temporary name, and
 * only renamed at the start: a host whose disk is full refuses the move
 * now, while the source still runs the VM, instead of failing after the
 * commit point (both copies stopped until someone resolves the move).
 * The rename needs no new data block; its sync is not downtime. */
static int incoming_mark_ahead(struct worker *w, struct err *e)
{
	const char *path = w->o->resumed_file;
	int fd, n;

	if (!path)
		return 0;
	n = snprintf(w->mark_tmp, sizeof(w->mark_tmp), "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof(w->mark_tmp)) {
		w->mark_tmp[0] = '\0';
		return err_set(e, "arrival mark path too long: %s", path);
	}
	fd = open(w->mark_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		err_sys(e, "creating the arrival mark %s", w->mark_tmp);
		goto failed;
	}
	if (durable_write_all(fd, "resumed\n", 8, w->mark_tmp, e) < 0) {
		err_prefix(e, "the arrival mark");
		close(fd);
		goto failed;
	}
	if (fsync(fd) < 0) {
		err_sys(e, "fsync %s", w->mark_tmp);
		close(fd);
		goto failed;
	}
	if (close(fd) < 0) {
		err_sys(e, "closing %s", w->mark_tmp);
		goto failed;
	}
	return 0;
failed:
	if (unlink(w->mark_tmp) < 0 && errno != ENOENT)
		log_warn("removing %s: %s", w->mark_tmp, strerror(errno));
	w->mark_tmp[0] = '\0';
	return -1;
}

static int incoming_build(void *opaque, struct vm_config *cfg, struct err *e)
{
	struct worker *w = opaque;
	/* Host-local placement beats what the source used. */
	if (w->local.name[0] && strcmp(w->local.name, cfg->name) != 0)
		return err_set(e, "this destination was prepared for VM '%s', the stream carries '%s'",
			       w->local.name, cfg->name);
	/* the size this host admitted (its ferryd counted that memory) */
	if ((w->o->memory_given && cfg->mem_size != w->local.mem_size) ||
	    (w->o->vcpus_given && cfg->vcpus != w->local.vcpus))
		return err_set(e, "this destination was prepared for a VM of %llu MiB and %u vCPU(s), "
			       "the stream carries %llu MiB and %u vCPU(s)",
			       (unsigned long long)(w->local.mem_size >> 20), (unsigned)w->local.vcpus,
			       (unsigned long long)(cfg->mem_size >> 20), (unsigned)cfg->vcpus);
	config_place_nic(cfg, &w->local);
	if (machine_build(&w->m, cfg, true, &w->reserved, worker_serial_sink, w, e) < 0)
		return -1;
	w->m.vm.host_cpu_mask = w->o->host_cpu_mask;
	return incoming_mark_ahead(w, e);
}

/* --prealloc-extents: "FIRST NPAGES" lines, the memory the source uses
 * (its worker's `extents` reply). Each range must lie inside RAM. */
static int read_extents_file(const char *path, uint64_t npages, uint64_t (**out)[2], size_t *n,
			     struct err *e)
{
	FILE *f = fopen(path, "re");
	uint64_t (*r)[2] = NULL;
	unsigned long long a, b;
	size_t cap = 0, k = 0, line = 0;
	char buf[128];
	int rc = 0;

	if (!f)
		return err_sys(e, "prealloc extents %s", path);
	while (rc == 0 && fgets(buf, sizeof(buf), f)) {
		line++;
		if (buf[0] == '\n' || buf[0] == '#')
			continue;
		if (sscanf(buf, "%llu %llu", &a, &b) != 2 || a > npages || b > npages - a) {
			rc = err_set(e, "prealloc extents %s line %zu: not 'FIRST NPAGES' inside the VM's %llu pages",
				     path, line, (unsigned long long)npages);
			break;
		}
		if (k == cap) {
			uint64_t (*nr)[2];
			if (cap >= MIG_MAX_EXTENTS) {
				rc = err_set(e, "prealloc extents %s: more than %d ranges", path, MIG_MAX_EXTENTS);
				break;
			}
			cap = cap ? cap * 2 : 64;
			nr = realloc(r, cap * sizeof(*r));
			if (!nr) {
				rc = err_set(e, "out of memory");
				break;
			}
			r = nr;
		}
		r[k][0] = a;
		r[k][1] = b;
		k++;
	}
	fclose(f);
	if (rc < 0) {
		free(r);
		return -1;
	}
	*out = r;
	*n = k;
	return 0;
}

/* --prealloc: fault the guest's memory in before listening, so a host
 * short of memory says so before any move starts and the transfer itself
 * never waits on a first touch. With --prealloc-extents only the memory
 * the source uses is faulted in (an idle 16 GiB guest costs nothing here
 * either). Pages the source never touched are given back when the
 * stream's extents arrive (incoming.c), so the VM's idle memory stays free
 * on a later move. */
static int reserve_memory(struct worker *w, uint64_t size, const char *extents, struct err *e)
{
	uint64_t t0 = now_ms(), pages = 0, all[1][2] = { { 0, size >> 12 } };
	uint64_t (*ranges)[2] = all, (*listed)[2] = NULL;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = 1;
	int rc;

	if (extents) {
		if (read_extents_file(extents, size >> 12, &listed, &n, e) < 0)
			return -1;
		ranges = listed;
	}
	for (size_t i = 0; i < n; i++)
		pages += ranges[i][1];
	rc = gmem_init(&w->reserved, size, e);
	if (rc == 0) {
		rc = gmem_populate_ranges(&w->reserved, (const uint64_t (*)[2])ranges, n,
					  ncpu > 0 ? (int)ncpu : 1, e);
		if (rc < 0)
			gmem_destroy(&w->reserved);
	}
	free(listed);
	if (rc < 0)
		return err_prefix(e, "reserving memory for the incoming VM");
	w->reserved_bytes = pages << 12;
	log_info("reserved %llu MiB for the incoming VM in %llu ms%s",
		 (unsigned long long)(pages >> 8), (unsigned long long)(now_ms() - t0),
		 extents ? " (the memory its source uses)" : "");
	return 0;
}

/* Post-copy lost the VM after it ran here (incoming.h): nothing may run
 * on, and a vCPU, a device or the NIC's announce may wait forever on a
 * page that never comes, so the worker ends here, as a failed arrival
 * (5). ferryd finds the VM ran here (run/NAME.resumed) and keeps it,
 * stopped, to be started again. The one place a worker exits outside
 * main: no orderly way out can wait for those threads. */
static void incoming_lost(void *opaque, const char *why)
{
	struct worker *w = opaque;
	log_error("VM %s lost: %s", w->m.cfg.name, why);
	fprintf(stderr, "ferry-vm: incoming migration failed: %s\n", why);
	fflush(stderr);
	_exit(5);
}

/* Past COMMIT: the VM runs here from now on. The mark goes down before
 * the vCPUs start (a guest that ran here, even briefly, may have written
 * its disk: the source's paused copy must never run after it), and is
 * synced before the source hears RESUMED and lets its copy go (a power
 * loss here must not lose the VM either); the sync is not downtime. */
static int incoming_start_vcpus(void *opaque, struct err *e)
{
	struct worker *w = opaque;
	const char *path = w->o->resumed_file;

	if (path && rename(w->mark_tmp, path) < 0)
		return err_sys(e, "recording the arrival: renaming %s to %s", w->mark_tmp, path);
	if (vcpus_start(&w->m.vm, e) < 0) {
		if (path && unlink(path) < 0) /* it never ran here */
			log_warn("removing %s: %s", path, strerror(errno));
		return -1;
	}
	if (path) {
		struct err se = { 0 };
		if (durable_dir_sync(path, &se) < 0)
			log_warn("%s", se.msg);
	}
	return 0;
}

int worker_main(const struct vm_config *cfg, const struct worker_opts *o, struct err *e)
{
	static struct worker wk;
	struct worker *w = &wk;
	struct err le;
	sigset_t sigs;
	int rc = 1;

	memset(w, 0, sizeof(*w));
	w->o = o;
	w->serial.fd = w->ctl_fd = w->con_fd = w->sig_fd = w->mig_end_fd = -1;
	for (int i = 0; i < WORKER_MAX_CLIENTS; i++)
		w->clients[i].fd = -1;
	w->reserved.memfd = -1;
	clock_gettime(CLOCK_MONOTONIC, &w->started);

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	w->sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (w->sig_fd < 0)
		return err_sys(e, "signalfd");
	w->mig_end_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->mig_end_fd < 0)
		return err_sys(e, "eventfd");

	if (o->serial_path) {
		if (caplog_open(&w->serial, o->serial_path, o->serial_max, e) < 0)
			return -1;
	}
	w->local = *cfg;
	if (o->incoming) {
		struct incoming_hooks h = { .build = incoming_build, .start = incoming_start_vcpus,
					    .lost = incoming_lost, .opaque = w,
					    .disk_copy = o->disk_copy };
		w->incoming = true;
		w->state = WORKER_INCOMING;
		if (o->prealloc && reserve_memory(w, cfg->mem_size, o->prealloc_extents, e) < 0)
			goto out;
		/* Only what is faulted in counts as already ours in the free-memory check. */
		h.reserved_bytes = w->reserved_bytes;
		if (incoming_start(&w->in, o->incoming, o->host_cpu_mask, &o->migration_key, &w->m, &h, e) < 0)
			goto out;
		log_info("waiting for an incoming migration on %s", o->incoming);
	} else {
		if (worker_build(w, cfg, e) < 0)
			goto out;
		w->ready = true;
	}
	if (o->control_path && (w->ctl_fd = sock_unix_listen(o->control_path, e)) < 0)
		goto out;
	if (o->console_path && (w->con_fd = sock_unix_listen(o->console_path, e)) < 0)
		goto out;
	if (!o->incoming) {
		w->state = WORKER_RUNNING;
		if (o->start_paused) {
			w->m.vm.pause_req = 1;
			w->m.vm.paused = true;
			w->state = WORKER_PAUSED;
		}
		if (vcpus_start(&w->m.vm, e) < 0)
			goto out;
		log_info("VM %s %s: %d vCPUs, %llu MiB", w->m.cfg.name, state_name(w->state), w->m.cfg.vcpus,
			 (unsigned long long)(w->m.cfg.mem_size >> 20));
	}

	while (!w->quit) {
		if (w->migrating_out && w->ms.thread_started) {
			struct mig_status st;
			mig_source_tick(&w->ms); /* a cancel the migration thread has not seen */
			mig_source_status(&w->ms, &st);
			if (st.stage == MIG_STAGE_COMPLETED) {
				struct timespec ts;
				clock_gettime(CLOCK_MONOTONIC, &ts);
				uint64_t t = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
				if (!w->migrated_at_ms) {
					w->migrated_at_ms = t;
					w->state = WORKER_STOPPED;
					log_info("VM %s now runs on the destination; this worker exits soon",
						 w->m.cfg.name);
				} else if (t - w->migrated_at_ms > 30000) {
					/* Results stay readable for 30 s, then the husk goes. */
					w->quit = true;
					w->exit_code = 4;
					break;
				}
			}
		}
		struct pollfd pfd[4 + WORKER_MAX_CLIENTS + VM_MAX_DEVICES];
		int map[4 + WORKER_MAX_CLIENTS + VM_MAX_DEVICES];
		int n = 0;
		pfd[n] = (struct pollfd){ w->sig_fd, POLLIN, 0 }; map[n++] = -1;
		if (w->ready) {
			pfd[n] = (struct pollfd){ w->m.vm.event_fd, POLLIN, 0 };
			map[n++] = -2;
		}
		if (w->incoming && w->in.notify_fd >= 0) {
			pfd[n] = (struct pollfd){ w->in.notify_fd, POLLIN, 0 };
			map[n++] = -5;
		}
		if (w->migrating_out) {
			pfd[n] = (struct pollfd){ w->mig_end_fd, POLLIN, 0 };
			map[n++] = -6;
		}
		if (w->ctl_fd >= 0) { pfd[n] = (struct pollfd){ w->ctl_fd, POLLIN, 0 }; map[n++] = -3; }
		if (w->con_fd >= 0) { pfd[n] = (struct pollfd){ w->con_fd, POLLIN, 0 }; map[n++] = -4; }
		int wait_ms = w->migrating_out ? 200 : 1000;
		uint64_t now = now_ms();
		for (int i = 0; i < WORKER_MAX_CLIENTS; i++) {
			struct client *c = &w->clients[i];
			if (c->fd < 0)
				continue;
			if (c->wait_until_ms)
				wait_ms = c->wait_until_ms <= now ? 0
					  : (int)(c->wait_until_ms - now) < wait_ms ? (int)(c->wait_until_ms - now)
					  : wait_ms;
			if (c->half_closed)
				continue; /* its EOF would wake poll for nothing */
			if (c->kind == CLIENT_CONSOLE && c->len) {
				/* input waiting for room in the FIFO: retry soon, read no more */
				worker_console_feed(w, c);
				if (c->len) {
					wait_ms = 20;
					continue;
				}
			}
			pfd[n] = (struct pollfd){ c->fd, POLLIN, 0 };
			map[n++] = i;
		}
		/* Device input only while running: a paused VM's memory must not change. */
		if (w->ready && w->state == WORKER_RUNNING && !w->m.vm.paused)
			for (int i = 0; i < w->m.vm.ndevices; i++)
				if (w->m.vm.devices[i].poll_fd >= 0 && w->m.vm.devices[i].on_readable) {
					pfd[n] = (struct pollfd){ w->m.vm.devices[i].poll_fd, POLLIN, 0 };
					map[n++] = 1000 + i;
				}
		if (poll(pfd, (nfds_t)n, wait_ms) < 0) {
			if (errno == EINTR)
				continue;
			err_sys(e, "poll");
			goto out;
		}
		for (int i = 0; i < n && !w->quit; i++) {
			if (!pfd[i].revents)
				continue;
			if (map[i] == -1) {
				struct signalfd_siginfo si;
				if (read(w->sig_fd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGPIPE) {
					log_info("signal %u: stopping", si.ssi_signo);
					w->quit = true;
					w->exit_code = 0;
				}
			} else if (map[i] == -2) {
				uint64_t v;
				if (read(w->m.vm.event_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					log_warn("event fd: %s", strerror(errno));
				if (w->m.vm.exit_reason != VM_EXIT_NONE) {
					log_info("guest exit: %s", w->m.vm.exit_detail);
					w->quit = true;
					w->exit_code = w->m.vm.exit_reason == VM_EXIT_ERROR ? 1 : 3;
					if (w->m.vm.exit_reason == VM_EXIT_ERROR)
						err_set(e, "%s", w->m.vm.exit_detail);
				}
			} else if (map[i] == -5) {
				uint64_t v = 0;
				if (read(w->in.notify_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					log_warn("incoming notify: %s", strerror(errno));
				/* eventfd adds values up: decode the highest event seen */
				if (v >= IN_EV_FAILED || w->in.stage == IN_FAILED) {
					bool off;
					w->quit = true;
					pthread_mutex_lock(&w->in.lock);
					off = w->in.abandoned;
					err_set(e, "incoming migration %s: %s", off ? "called off" : "failed",
						w->in.error);
					pthread_mutex_unlock(&w->in.lock);
					/* ferryd records the move as cancelled, not failed */
					w->exit_code = off ? 6 : 5;
				} else {
					w->ready = true;
					if (w->in.stage == IN_RUNNING || v >= IN_EV_RUNNING)
						w->state = WORKER_RUNNING;
				}
			} else if (map[i] == -6) {
				uint64_t v;
				if (read(w->mig_end_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					log_warn("migration end notify: %s", strerror(errno));
			} else if (map[i] == -3) {
				worker_accept(w, w->ctl_fd, CLIENT_CONTROL);
			} else if (map[i] == -4) {
				worker_accept(w, w->con_fd, CLIENT_CONSOLE);
			} else if (map[i] >= 1000) {
				struct vm_device *d = &w->m.vm.devices[map[i] - 1000];
				/* The VM may have been paused (stop-and-copy, on the
				 * migration thread) while poll waited: then the frame
				 * stays in the tap, as vcpus_pause promises. */
				pthread_mutex_lock(&w->m.vm.dev_lock);
				if (!w->m.vm.paused)
					d->on_readable(d->opaque);
				pthread_mutex_unlock(&w->m.vm.dev_lock);
			} else {
				worker_client_input(w, &w->clients[map[i]]);
			}
		}
		worker_answer_waiters(w);
	}
	rc = w->exit_code;
out:
	if (w->incoming)
		incoming_join(&w->in);
	if (w->migrating_out) {
		/* Never leave the migration thread running while the VM is torn down. */
		if (!mig_source_done(&w->ms)) {
			struct err ce;
			mig_source_cancel(&w->ms, true, &ce);
		}
		mig_source_join(&w->ms);
	}
	/* an arrival that never started: its mark written ahead goes (once
	 * renamed, the name is free and this finds nothing) */
	if (w->mark_tmp[0] && unlink(w->mark_tmp) < 0 && errno != ENOENT)
		log_warn("removing %s: %s", w->mark_tmp, strerror(errno));
	if (w->reserved.host)
		gmem_destroy(&w->reserved);
	if (w->m.built) {
		vcpus_stop(&w->m.vm);
		/* Nothing lost: flush the disk before the worker goes. */
		if (w->m.blk && virtio_blk_flush(w->m.blk, &le) < 0)
			log_warn("flushing disk: %s", le.msg);
		machine_destroy(&w->m);
	}
	for (int i = 0; i < WORKER_MAX_CLIENTS; i++)
		client_close(&w->clients[i]);
	if (w->ctl_fd >= 0) {
		close(w->ctl_fd);
		unlink(o->control_path);
	}
	if (w->con_fd >= 0) {
		close(w->con_fd);
		unlink(o->console_path);
	}
	caplog_close(&w->serial);
	if (w->sig_fd >= 0)
		close(w->sig_fd);
	if (w->mig_end_fd >= 0)
		close(w->mig_end_fd);
	return rc;
}
