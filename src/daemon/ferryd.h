/*
 * ferryd's shared state: the daemon context, connected clients and the VM
 * registry. ferryd is one thread around one poll() loop (loop.c); long
 * operations (start, stop) are state machines on struct vm advanced by
 * timers and worker-exit events (worker.c), and reply to the waiting client
 * when they finish, so one slow VM never stalls other clients.
 */
#ifndef FERRY_DAEMON_FERRYD_H
#define FERRY_DAEMON_FERRYD_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "common/auth.h"
#include "common/err.h"
#include "common/sock.h"
#include "daemon/settings.h"
#include "daemon/vmdef.h"

#define FERRY_VERSION "0.1.0"

#define FERRYD_MAX_CLIENTS 256
/* TCP connections that have not proved the cluster key yet: at most this
 * many (a new one pushes out the oldest), each for at most this long, so
 * strangers holding connections open cannot lock out hosts and clients. */
#define FERRYD_MAX_UNAUTHED 32
#define FERRYD_AUTH_TIMEOUT_MS 10000
/* A client that stops reading its replies is dropped when a reply finds
 * this much of its output still queued, rather than letting it grow
 * ferryd's memory; one reply may be bigger (a long history), up to
 * FERRYD_REPLY_MAX. */
#define FERRYD_OUT_MAX (1024 * 1024)
#define FERRYD_REPLY_MAX SOCK_REPLY_MAX
/* Console relay buffer, per direction. */
#define FERRYD_CONSOLE_BUF (64 * 1024)
/* Out of file descriptors, the listening sockets stay readable with the
 * connection nobody can take: they are left out of poll for this long
 * rather than spinning on accept. */
#define FERRYD_ACCEPT_PAUSE_MS 250
/* Open files ferryd asks for at start (at most the hard limit). */
#define FERRYD_NOFILE_WANT 65536

#define FERRYD_START_TIMEOUT_MS 10000
/* An incoming worker that pre-allocates (host setting prealloc) may take
 * this much longer per MiB of guest memory to come up (~0.6 ms/MiB seen
 * on a nested 2-core host; generous). */
#define FERRYD_PREALLOC_MS_PER_MIB 4
#define FERRYD_STOP_GRACE_MS 10000 /* after control "stop", before SIGTERM */
#define FERRYD_STOP_TERM_MS 5000   /* after SIGTERM, before SIGKILL */
#define FERRYD_STOP_KILL_MS 5000   /* after SIGKILL, before giving up */
#define FERRYD_ENCRYPT_NEEDS_KEY "encryption needs a cluster key: this ferryd runs --no-auth " \
	"(the connections' keys derive from the cluster key)"
#define FERRYD_CTL_TIMEOUT_MS 2000 /* one request on a worker's control socket */
#define FERRYD_CTL_PROBE_MS 1000   /* a silent worker is asked again this often */
/* vm.verify reads all guest memory on the worker: 1.3 s per 2.5 GiB
 * measured here, several times that under ASan or on a loaded host. */
#define FERRYD_VERIFY_MS 10000
#define FERRYD_VERIFY_MS_PER_MIB 4
/* A move's start asks the worker which memory the guest touched: ~50 ms
 * per GiB touched here; allowed 0.25 ms per MiB of the VM on top. */
#define FERRYD_EXTENTS_MS_PER_MIB 0.25

enum vm_state {
	VM_STOPPED,
	VM_STARTING,
	VM_RUNNING,
	VM_STOPPING,
	VM_CRASHED,
	VM_INCOMING, /* a live migration is bringing it here; not ours yet */
};
#define VM_NSTATES 6

enum vm_op {
	OP_NONE,
	OP_START,      /* worker spawned, waiting for its control socket */
	OP_STOP_CTL,   /* "stop" sent on the control socket */
	OP_STOP_TERM,  /* SIGTERM sent */
	OP_STOP_KILL,  /* SIGKILL sent */
};

struct move;

struct vm {
	struct vm_def def;
	enum vm_state state;
	pid_t pid;          /* 0 when no worker */
	int pidfd;          /* -1 when no worker; polled for exit */
	bool child;         /* spawned by this ferryd (else re-adopted) */
	long long started_ms; /* CLOCK_REALTIME ms, for uptime; 0 if unknown */

	enum vm_op op;
	long long deadline; /* CLOCK_MONOTONIC ms at which op moves on */
	uint64_t waiter;    /* client id awaiting the op's reply; 0 = none */
	bool delete_after_stop;
	bool expect_exit;   /* we killed it: its exit is not a crash */

	/* Live migration: an incoming VM (worker started with --incoming) is
	 * not this host's until its worker runs it; its definition is on disk
	 * with an ".incoming" marker so a ferryd restart can tell. */
	bool incoming;
	char incoming_addr[300]; /* where its worker listens ("IP:PORT") */
	char move_id[32];        /* the move bringing it here */
	bool prealloc_extents;   /* run/NAME.extents holds the source's used memory (prealloc) */
	bool verifying;          /* a vm.verify is with its worker (one at a time) */
	bool migration_key;      /* run/NAME.mkey holds the move's key (the worker removes it) */
	/* the move copies the VM's disk here, to def.disk, which did not exist
	 * before it: removed if the VM does not arrive */
	bool disk_copy;
	/* Moved away, the move completed, and its worker is still ending
	 * (giving the guest's memory back). Its files are gone; the entry
	 * holds the name until worker_reap removes it. Not this host's VM:
	 * not listed, not found by name (req_vm_named). */
	bool departed;

	/* A worker whose control socket stopped answering (hung, or stopped
	 * with SIGSTOP) would hold the loop FERRYD_CTL_TIMEOUT_MS at every
	 * call: after one such timeout the calls on the loop fail at once,
	 * and a status call on a thread asks again until it answers. */
	long long ctl_silent_ms; /* monotonic ms of the timeout; 0 = answers */
	long long ctl_probe_ms;  /* when to ask again */
	bool ctl_probing;        /* that call is out */

	char last_exit[160]; /* human description of the last worker exit */
	int last_exit_code;  /* -1 unknown, else exit code or 128+signal */
	struct vm *next;
};

enum client_mode { CLIENT_REQUESTS, CLIENT_CONSOLE };

struct client {
	uint64_t id;
	int fd;
	bool tcp;
	char peer[80];
	enum client_mode mode;
	char *in;            /* request bytes not yet dispatched */
	size_t in_len;
	bool discarding;     /* skipping the rest of an oversized line */
	bool more;           /* complete request lines wait: served one per loop pass */
	uint64_t served_pass; /* the loop pass that served its last line */
	char *out;           /* bytes queued for the client */
	size_t out_len, out_cap;
	bool busy;           /* a deferred reply is pending: hold further lines */
	bool authed;         /* may send requests (UNIX clients, or proved the key) */
	bool auth_failed;    /* sent a wrong or malformed proof (logged then) */
	long long connected_ms; /* monotonic, for FERRYD_AUTH_TIMEOUT_MS */
	uint8_t nonce[AUTH_NONCE_LEN]; /* our greeting's challenge (TCP) */
	const struct auth_key *key; /* the cluster key it proved (TCP) */
	/* Sealed (TCP, after authentication): every byte either way is a
	 * sealed frame; wire holds what arrived of the next ones. */
	struct seal *tx, *rx;
	uint8_t *wire;
	size_t wire_len;
	bool seal_switch;    /* sealed by the line just dispatched */
	bool closing;        /* no more input: close once out is flushed */
	bool dead;           /* to be freed at the end of this loop pass */
	/* Console mode: the worker's console socket and the bytes headed to it. */
	int con_fd;
	char *con_buf;
	size_t con_len;
	bool con_eof;        /* console side closed: flush out, then close */
	struct client *next;
};

struct ferryd {
	char state_dir[PATH_MAX];
	char vms_dir[PATH_MAX];
	char run_dir[PATH_MAX];
	char logs_dir[PATH_MAX];
	char socket_path[PATH_MAX];
	char listen_addr[256]; /* "" when TCP is disabled */
	char vmm_path[PATH_MAX];
	struct auth_key key;   /* the cluster key (unset with --no-auth) */
	char key_path[PATH_MAX];
	/* While the cluster changes its key: the one before, still accepted
	 * and still proved to hosts that hold only it (--previous-key-file). */
	struct auth_key prev_key;
	char prev_key_path[PATH_MAX];
	int unix_fd, tcp_fd, sig_fd, lock_fd;
	struct client *clients;
	uint64_t next_client_id;
	uint64_t loop_pass;          /* counts the event loop's passes */
	long long accept_resume_ms;  /* out of fds: accept nothing before this */
	struct vm *vms;
	/* Host settings and the live migrations (migrate.c). */
	struct host_settings settings;
	char settings_path[PATH_MAX];
	int peer_pipe[2];      /* peer.c: call threads wake the loop */
	struct move *moves;    /* queued and in-flight moves, in order */
	struct move *recent;   /* finished moves, newest first */
	struct status_hold *status_holds; /* held migration.status requests (status_hold.c) */
	bool quit;
};

/* Monotonic and wall clocks in milliseconds. */
long long ferryd_now_ms(void);
long long ferryd_wall_ms(void);

/* registry.c */
int registry_load(struct ferryd *d, struct err *e);
struct vm *registry_find(struct ferryd *d, const char *name);
struct vm *registry_add(struct ferryd *d, const struct vm_def *def);
void registry_remove(struct ferryd *d, struct vm *vm);
const char *registry_state_name(enum vm_state s);
/* Path of a per-VM runtime or log file: kind is "pid", "sock", "console"
 * (under run/) or "serial", "log" (under logs/). */
int registry_path(const struct ferryd *d, const struct vm *vm,
		  const char *kind, char *buf, size_t cap, struct err *e);
/* Whether a VM of this name can run here: its worker's sockets under
 * run/ must fit a UNIX socket path (E_BAD_NAME, with the longest name that
 * does, when not). */
int registry_name_fits(const struct ferryd *d, const char *name, struct err *e);
/* Remove a VM's definition and runtime files, and its logs (serial
 * console, worker log) unless keep_logs: a VM that moved away leaves them
 * behind as a record; `ferry vm delete` takes them too. */
int registry_delete_files(struct ferryd *d, struct vm *vm, bool keep_logs, struct err *e);
/* A VM that is not (or no longer) this host's: its files go but for its
 * logs, a failure only logged (nothing is left to undo), and it leaves the
 * registry — vm is freed. */
void registry_forget(struct ferryd *d, struct vm *vm);

/* The keys this host proves and accepts: the cluster key, then the
 * previous one while the cluster changes keys. */
static inline struct auth_keyring ferryd_keyring(const struct ferryd *d)
{
	return (struct auth_keyring){ { &d->key, &d->prev_key } };
}

/* loop.c */
int loop_run(struct ferryd *d, struct err *e);
struct client *loop_client_by_id(struct ferryd *d, uint64_t id);
/* Queue a reply line (the object is consumed). */
void loop_send(struct client *c, struct json_object *reply);
/* Reply to the client waiting on a deferred request, if still connected. */
void loop_send_to(struct ferryd *d, uint64_t client_id,
		  struct json_object *reply);
/* Seal c from now on (its authentication reply already queued): keys from
 * our greeting's nonce, the client's cn and the cluster key. */
int loop_client_seal(struct client *c, const uint8_t cn[AUTH_NONCE_LEN],
		     const struct auth_key *key, struct err *e);
/* Switch c to console relay mode over con_fd (reply already queued). */
int loop_client_console(struct client *c, int con_fd, struct err *e);

/* dispatch.c: replies. */
struct json_object *reply_ok(void);
struct json_object *reply_error(const char *code, const char *msg);

/* worker.c */
int worker_start(struct ferryd *d, struct vm *vm, uint64_t waiter,
		 const char **code, struct err *e);
int worker_stop(struct ferryd *d, struct vm *vm, uint64_t waiter,
		int grace_ms, const char **code, struct err *e);
/* Spawn ferry-vm --incoming ADDR for an incoming VM (vm->incoming set,
 * vm->incoming_addr chosen); the waiter gets the migration.prepare reply. */
int worker_start_incoming(struct ferryd *d, struct vm *vm, uint64_t waiter,
			  const char **code, struct err *e);
/* SIGKILL through the pidfd; the exit is expected, not a crash. */
void worker_kill(struct vm *vm);
/* Called when the worker's pidfd is readable (it exited). */
void worker_reap(struct ferryd *d, struct vm *vm);
/* Advance start/stop state machines whose deadline or poll tick is due. */
void worker_tick(struct ferryd *d);
/* Milliseconds until the next worker_tick is needed (-1 = none). */
int worker_next_timeout(struct ferryd *d);
/* On startup: re-adopt a worker left running by a previous ferryd. */
void worker_adopt(struct ferryd *d, struct vm *vm);
/* A VM that moved away, its worker still ending: run/NAME.pid becomes
 * run/NAME.departed, by which a restarted ferryd knows that worker. */
void worker_mark_departed(struct ferryd *d, struct vm *vm);
/* On startup, after the definitions: the workers of VMs that moved away
 * and were still ending (run/NAME.departed) hold their names again until
 * they exit (a definition a crash left beside one, with no worker of its
 * own, goes); the files of those that ended meanwhile go. */
void worker_adopt_departed(struct ferryd *d);
/* Last lines of the worker's stderr log (NAME.log), for error messages. */
void worker_log_tail(struct ferryd *d, struct vm *vm, int lines, char *buf,
		     size_t cap);
/* One request (not consumed) on the VM's worker control socket, on the
 * loop: at once an error (e->code ETIMEDOUT) while the worker is silent. */
struct json_object *worker_request(struct ferryd *d, struct vm *vm, struct json_object *req,
				   struct err *e);
/* A call to the worker made off the loop came back: reply or error. */
struct peer_result;
void worker_call_done(struct ferryd *d, const struct peer_result *res);
/* Live state, pid, uptime etc. from the worker's control socket. */
struct json_object *worker_status_json(struct ferryd *d, struct vm *vm,
				       bool live);

#endif
