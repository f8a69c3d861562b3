/*
 * Calls that may take long, made without stalling the event loop: to
 * another host's ferryd (migration.prepare, migration.abort, vm.status)
 * over TCP, and to a local worker for work that runs for seconds (vm
 * verify reads all guest memory). Each call runs on a short-lived thread
 * that connects, sends one request line and reads one reply line, every
 * step under a timeout, and hands the result back through a pipe the loop
 * polls. The thread touches nothing but its own call record, so the loop
 * stays the only owner of ferryd's state.
 */
#ifndef FERRY_DAEMON_PEER_H
#define FERRY_DAEMON_PEER_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "common/err.h"

struct ferryd;

#define PEER_CONNECT_TIMEOUT_MS 5000
#define PEER_CALL_TIMEOUT_MS 20000

/* What the result is for: the migration purposes (PEER_EXTENTS and
 * PEER_POLL ask the source's own worker, PEER_IN_POLL an arriving VM's)
 * go to migrate_peer_done, PEER_VM_VERIFY to verb_vm_verify_done,
 * PEER_CTL_PROBE (a silent worker asked again) only to worker_call_done,
 * which sees every worker call's result first. */
enum peer_purpose { PEER_PREPARE, PEER_ABORT, PEER_CONFIRM, PEER_RESOLVE, PEER_EXTENTS,
		    PEER_POLL, PEER_IN_POLL, PEER_VM_VERIFY, PEER_CTL_PROBE };

struct peer_result {
	char move_id[32];
	enum peer_purpose purpose;
	uint64_t client_id;        /* worker calls: the client waiting for the reply */
	char vm[64];               /* worker calls: the VM's name */
	struct json_object *reply; /* NULL when the call failed */
	bool reached;              /* connected and sent (reply may still be missing) */
	bool worker;               /* a call to a local worker (peer_worker_call) */
	int key_idx;               /* the key proved to the peer (ferryd_keyring index), -1 none */
	struct err err;
	struct peer_result *next;
};

/* Create the wake-up pipe; -1 if the system refuses. */
int peer_init(struct ferryd *d, struct err *e);
/* Start a call to the ferryd at hostport ("HOST[:PORT]", default port
 * 7450); req is consumed. The result arrives later through peer_drain. */
int peer_call(struct ferryd *d, const char *hostport, struct json_object *req,
	      int timeout_ms, const char *move_id, enum peer_purpose purpose,
	      struct err *e);
/* Start a call to a local worker's control socket at path (vmctl.h; an
 * "ok":false reply comes back as the error); req is consumed. The result
 * names client_id and vm, and move_id unless it is NULL. */
int peer_worker_call(struct ferryd *d, const char *path, struct json_object *req, int timeout_ms,
		     uint64_t client_id, const char *vm, const char *move_id,
		     enum peer_purpose purpose, struct err *e);
/* Fd the loop polls; readable when results are waiting (-1 if none). */
int peer_wake_fd(const struct ferryd *d);
/* Hand every finished call to the code waiting for it. */
void peer_drain(struct ferryd *d);

#endif
