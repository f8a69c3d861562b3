/*
 * Request dispatch: one JSON line in, one verb handler called, one reply
 * out (now, or later for deferred verbs like vm.start). The table of verbs
 * lives in verbs.c so adding one (e.g. migration.*) is one line there plus
 * its handler.
 */
#ifndef FERRY_DAEMON_DISPATCH_H
#define FERRY_DAEMON_DISPATCH_H

#include <stddef.h>

#include <json-c/json.h>

#include "common/err.h"
#include "daemon/ferryd.h"

/* What a handler did with the request. */
enum verb_result {
	VERB_FAIL = -1,  /* r->code and r->err say why; dispatcher replies */
	VERB_REPLY = 0,  /* *reply is set; dispatcher sends it */
	VERB_DEFER = 1,  /* a reply to r->c->id will be sent later */
	VERB_SENT = 2,   /* the handler queued its reply itself */
};

struct req {
	struct ferryd *d;
	struct client *c;
	struct json_object *args; /* the whole request object */
	const char *code;         /* API error code on VERB_FAIL */
	struct err err;
};

typedef enum verb_result (*verb_fn)(struct req *r, struct json_object **reply);

struct verb {
	const char *name;
	verb_fn fn;
	const char *summary;
};

/* verbs.c: the table, terminated by a NULL name. */
extern const struct verb verb_table[];

const struct verb *dispatch_find(const char *name);

/* Parse and validate the envelope of one request line: a JSON object with
 * a string "cmd" naming a known verb. On failure returns NULL with *code
 * and e set; else the caller owns *args. */
const struct verb *dispatch_parse(const char *line, size_t len,
				  struct json_object **args,
				  const char **code, struct err *e);

/* Handle one complete request line from client c. */
void dispatch_line(struct ferryd *d, struct client *c, const char *line,
		   size_t len);

/* Handler helpers. */
/* Allow only these fields (plus "cmd"); NULL-terminated. */
int req_fields(struct req *r, const char *const *allowed);
int req_fail(struct req *r, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The "name" field, looked up in the registry (E_NO_VM if absent). */
struct vm *req_vm(struct req *r);
/* VM name in this host's registry; E_NO_VM if absent or departed. */
struct vm *req_vm_named(struct req *r, const char *name);
/* -1 (E_NAME_TAKEN, or the retryable E_VM_LEAVING) unless name is free for
 * a new VM or an arriving one. */
int req_name_free(struct req *r, const char *name);

/* Handlers, one per verb (verbs_host.c, verbs_vm.c). */
enum verb_result verb_host_info(struct req *r, struct json_object **reply);
enum verb_result verb_vm_new(struct req *r, struct json_object **reply);
enum verb_result verb_vm_start(struct req *r, struct json_object **reply);
enum verb_result verb_vm_stop(struct req *r, struct json_object **reply);
enum verb_result verb_vm_list(struct req *r, struct json_object **reply);
enum verb_result verb_vm_status(struct req *r, struct json_object **reply);
enum verb_result verb_vm_verify(struct req *r, struct json_object **reply);
/* A vm.verify's result from its worker call (peer.h): on to the client. */
struct peer_result;
void verb_vm_verify_done(struct ferryd *d, struct peer_result *res);
enum verb_result verb_vm_delete(struct req *r, struct json_object **reply);
enum verb_result verb_vm_console(struct req *r, struct json_object **reply);
enum verb_result verb_host_set(struct req *r, struct json_object **reply);
/* verbs_migration.c */
enum verb_result verb_migration_start(struct req *r, struct json_object **reply);
enum verb_result verb_migration_prepare(struct req *r, struct json_object **reply);
enum verb_result verb_migration_abort(struct req *r, struct json_object **reply);
enum verb_result verb_migration_list(struct req *r, struct json_object **reply);
enum verb_result verb_migration_status(struct req *r, struct json_object **reply);
/* migration.status's answer for keys (a "moves" list when many, else
 * "move"); NULL with *code and e set when one is not found. */
struct json_object *verb_migration_status_reply(struct ferryd *d, const char *const *keys, size_t n,
						bool many, const char **code, struct err *e);
enum verb_result verb_migration_cancel(struct req *r, struct json_object **reply);
enum verb_result verb_migration_set(struct req *r, struct json_object **reply);
enum verb_result verb_migration_history(struct req *r, struct json_object **reply);

#endif
