/*
 * Live migrations as ferryd sees them: one struct move per VM being moved,
 * on the source ("out": queue, setup with the destination ferryd, the
 * source worker's migration, the commit-point rule, completion) and on the
 * destination ("in": the skeleton worker listening and receiving). The
 * event loop calls migrate_tick; every step is a short non-blocking action
 * (a local worker control request, or a peer call whose result arrives
 * through peer.c), so many moves progress side by side. The commit-point
 * rule is in docs/migration-ops.md.
 */
#ifndef FERRY_DAEMON_MIGRATE_H
#define FERRY_DAEMON_MIGRATE_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "common/err.h"
#include "daemon/ferryd.h"
#include "daemon/peer.h"

#define MIGRATE_POLL_MS 100        /* worker migrate-status poll: a move's end is seen within it */
#define MIGRATE_RETRY_MS 1000      /* destination busy / unreachable during resolve */
#define MIGRATE_IN_RETRY_MS 10     /* an incoming worker still starting: ask again */
/* The destination's old copy of the VM still ending: asked again every
 * 20 ms for the first half second (it ends within moments, and a move back
 * at once should not wait longer than it must), then every second (one
 * that hangs is not asked 50 times a second until someone looks). */
#define MIGRATE_LEAVING_RETRY_MS 20
#define MIGRATE_LEAVING_FAST_TRIES 25
#define MIGRATE_LEAVING_RETRY_SLOW_MS 1000
/* A move waits at most this long for its VM's last copy on the destination
 * to end (a move with --max-duration waits at most that). */
#define MIGRATE_LEAVING_MAX_S 600
#define MIGRATE_RECENT_MAX 64      /* finished moves kept in memory */
#define MIGRATE_STATUS_IDS_MAX 256 /* moves one migration.status asks about */
#define MIGRATE_ABORT_REASON_MAX 256 /* migration.abort's reason, with its NUL */
#define MIGRATE_FINISH_TIMEOUT_MS 10000
#define MIGRATE_CONFIRM_TRIES 100  /* x MIGRATE_POLL_MS (10 s): destination registration */
/* An arrival re-adopted at a restart with no source connected: a source
 * connects within milliseconds of the prepare answer, so one this late
 * lost its prepare (and its abort) with the old ferryd. */
#define MIGRATE_ORPHAN_LISTEN_MS 15000

enum move_dir { MOVE_OUT, MOVE_IN };

enum move_state {
	MV_QUEUED,     /* out: waiting for a migration slot here or there */
	MV_PREPARING,  /* out: migration.prepare sent; in: worker starting */
	MV_MIGRATING,  /* the workers are moving memory and state */
	MV_RESOLVING,  /* out: commit sent, outcome unknown: asking the destination */
	MV_FINISHING,  /* out: moved; source worker ending, destination confirming */
	MV_COMPLETED,
	MV_FAILED,
	MV_CANCELLED,
	MV_CHECKED,    /* out, a check only: the destination accepted the VM; nothing moved */
};

struct move {
	char id[32];
	enum move_dir dir;
	enum move_state state;
	char vm[VMDEF_NAME_MAX + 1];
	char peer[300];      /* out: destination ferryd HOST:PORT; in: source */
	char address[300];   /* the destination worker's migration address */
	uint32_t memory_mib;
	/* Options for the worker's migrate command. */
	char transport[16];
	char codec[8];        /* "" = auto, "lz4", "zstd" */
	uint8_t key_salt[AUTH_NONCE_LEN]; /* out: this move's key = derive(cluster key, salt) */
	int key_idx; /* out: the key the destination's ferryd accepted (ferryd_keyring index) */
	bool encrypt;         /* out: seal the connections */
	bool verify_memory;   /* out: the destination checks all RAM against a digest at the switch-over */
	/* out: when pre-copy does not converge, switch over and send the rest
	 * after the VM runs there (postcopy.h); lost if it breaks midway */
	bool postcopy;
	/* out: copy the disk image to disk_path on the destination (hosts that
	 * share no storage) instead of handing it over */
	bool copy_disk;
	char disk_path[PATH_MAX];
	/* out: with copy_disk, the source's image, removed once the
	 * destination confirms the VM runs on the copy ("" = kept) */
	char remove_source[PATH_MAX];
	bool source_removed;  /* out: ... and it was */
	/* out: only check that the destination takes the VM (setup as a move
	 * makes it), then call the move off: the VM never pauses */
	bool check_only;
	int downtime_ms;
	int bandwidth_mibps;  /* the move's own limit, 0 = none (host's limit still applies) */
	int bw_applied;       /* out: limit its worker runs at now, 0 = none; -1 = not known */
	long long bw_retry_ms; /* monotonic: a failed migrate-set is retried from then */
	int max_duration_s;   /* 0 = none */
	bool cancel_on_timeout;
	long long created_ms, started_ms, ended_ms; /* wall clock */
	long long next_ms;   /* monotonic: next tick action for this move */
	long long deadline;  /* monotonic: FINISHING gives up waiting; in: an
			      * arrival re-adopted still listening is dropped then */
	int tries;           /* FINISHING confirmations / resolve attempts */
	bool call_pending;   /* a peer call for this move is in flight */
	bool cancel_requested, cancel_sent;
	bool recovered;      /* in flight when ferryd restarted: cancel it */
	bool orphan;         /* in: re-adopted, no source came (MIGRATE_ORPHAN_LISTEN_MS) */
	bool pinned;         /* a reply is being built from it: kept in the recent list */
	bool no_extents;     /* out: the destination predates migration.prepare's extents */
	bool abort_plain;    /* out: ... and migration.abort's reason (asked again without) */
	bool worker_gone;    /* out: the source worker has exited */
	/* out: queued again on E_VM_LEAVING (leaving_tries times so far);
	 * its prepare, retried, is no news to a held status */
	bool leaving_retry;
	unsigned leaving_tries;
	/* out: the worker's extents, kept for those asks (reading them walks
	 * all guest memory, ~50 ms per GiB touched); a reservation from
	 * moments before still fits, pages beyond it are placed anyway */
	struct json_object *extents;
	char stage[24];      /* the source/destination worker's stage */
	char wait_reason[1024];
	char error[ERR_MSG_MAX];
	char code[32];       /* API error code of a failure, for hints */
	char abort_reason[MIGRATE_ABORT_REASON_MAX]; /* in: the source's, with migration.abort */
	struct json_object *progress; /* last worker migration figures */
	struct move *next;
};

const char *migrate_state_name(enum move_state s);
/* The key of one move's migration connections, as hex (both hosts compute
 * it from the cluster key and the move's salt). */
void migrate_move_key_hex(const struct auth_key *cluster, const uint8_t salt[AUTH_NONCE_LEN],
			  char hex[AUTH_KEY_HEX]);
bool migrate_state_done(enum move_state s);

/* Moves counting against this host's limit (in + out, not queued). */
int migrate_active_count(struct ferryd *d);
/* Queued or in-flight move of VM name, or NULL. */
struct move *migrate_find_active(struct ferryd *d, const char *name);
/* Trim the finished moves kept in memory to MIGRATE_RECENT_MAX, pinned
 * ones aside (move_finish does it; a caller that pinned moves calls it
 * once it has unpinned them). */
void migrate_trim_recent(struct ferryd *d);
/* A move by id, or the newest one of VM name (in flight or recent). */
struct move *migrate_find(struct ferryd *d, const char *id_or_name);

/* Source: queue a move of vm to destination; opts are migration.start's
 * fields. The move starts on a later tick. */
struct move *migrate_enqueue(struct ferryd *d, struct vm *vm,
			     const char *destination, int downtime_ms,
			     int bandwidth_mibps, const char *transport,
			     struct err *e);
/* One request to the VM's worker (req is consumed); the reply, or NULL
 * with e set. */
struct json_object *migrate_worker_request(struct ferryd *d, struct vm *vm,
					    struct json_object *req, struct err *e);
/* {"cmd": cmd}, for migrate_worker_request. */
struct json_object *migrate_worker_cmd(const char *cmd);
/* The same for status / migrate-status, held by the worker up to a poll
 * interval and answered at once when its move ends or the VM runs. */
struct json_object *migrate_worker_poll_cmd(const char *cmd);
/* Cancel a queued or in-flight outgoing move; code on failure. */
int migrate_cancel(struct ferryd *d, struct move *m, const char **code,
		   struct err *e);

/* Destination: an incoming move for vm (already in the registry). */
struct move *migrate_incoming_new(struct ferryd *d, struct vm *vm,
				  const char *id, const char *source);
/* Source: ask the destination to drop its half of move m (migration.abort),
 * giving m's error as the reason when why_text (false only for a
 * destination that refused the field). */
void migrate_abort_dest(struct ferryd *d, const struct move *m, bool why_text);
/* Destination: kill an incoming VM's worker; cleanup follows its exit.
 * reason (may be NULL): the source's words, kept for the move's record. */
int migrate_abort_incoming(struct ferryd *d, const char *id, const char *name,
			   const char *reason, const char **code, struct err *e);

/* Called by worker_reap once the worker's exit is recorded. Returns true
 * when the VM was removed from the registry (moved away, or an incoming
 * VM that never arrived): the caller must not touch it any more. */
bool migrate_worker_exited(struct ferryd *d, struct vm *vm, int exit_code,
			   uint64_t start_waiter);

/* migrate_in.c: the destination's half. */
bool migrate_in_worker_exited(struct ferryd *d, struct vm *vm, int exit_code,
			      uint64_t start_waiter);
void migrate_in_tick(struct ferryd *d, struct move *m, long long now);
/* An incoming worker's status answer, for the move (PEER_IN_POLL). */
void migrate_in_polled(struct ferryd *d, struct move *m, struct peer_result *r);
/* Unlink m from the in-flight list and record its end (both directions). */
void migrate_move_end(struct ferryd *d, struct move *m, enum move_state st,
		      const char *code, const char *msg);
struct move *migrate_move_alloc(struct ferryd *d, enum move_dir dir,
				const char *id);
/* A move no list holds any more, with what it owns. */
void migrate_move_free(struct move *m);

void migrate_tick(struct ferryd *d);
int migrate_next_timeout(struct ferryd *d);
void migrate_peer_done(struct ferryd *d, struct peer_result *r);

/* migrate_bw.c: the host's bandwidth limit shared by its outgoing moves. */
/* The limit move m gets when it starts sending beside the moves that
 * already do (MiB/s, 0 = none). */
int migrate_bw_share(struct ferryd *d, const struct move *m);
/* Recompute the running outgoing moves' limits and tell each worker whose
 * limit changed (migrate-set). Runs after every tick, so a move starting
 * or ending, host.set and migration.set take effect at once. */
void migrate_bw_rebalance(struct ferryd *d);

/* JSON of one move: summary for lists, or with the worker's figures. */
struct json_object *migrate_move_json(struct ferryd *d, struct move *m,
				      bool full);
/* Position in the queue (1 = next), 0 if not queued. */
int migrate_queue_position(struct ferryd *d, struct move *m);

/* migrate_store.c: the queue and in-flight moves in STATE_DIR/migrations.json,
 * finished moves appended to STATE_DIR/migration-history.jsonl. */
void migrate_store_save(struct ferryd *d);
int migrate_store_load(struct ferryd *d, struct err *e);
void migrate_history_append(struct ferryd *d, struct move *m);
/* Up to limit newest history entries (optionally of one VM), oldest first. */
struct json_object *migrate_history_read(struct ferryd *d, const char *vm,
					 int limit, struct err *e);
/* The newest history entry of each ids[i] whose found[i] is NULL, in one
 * pass over the file (n at most MIGRATE_STATUS_IDS_MAX); those not in it
 * stay NULL. */
int migrate_history_find(struct ferryd *d, const char *const *ids, size_t n,
			 struct json_object **found, struct err *e);
/* Destination restart: turn adopted incoming VMs back into moves. */
void migrate_recover_incoming(struct ferryd *d);
/* Marker of an incoming VM: run/NAME.incoming. */
int migrate_marker_path(struct ferryd *d, const char *name, char *buf,
			size_t cap);
/* Remove it for good (directory synced); no marker is no error. */
int migrate_marker_clear(struct ferryd *d, const char *name, struct err *e);

#endif
