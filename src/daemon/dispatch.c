/* Request envelope parsing, verb lookup and replies (see dispatch.h). */
#include "daemon/dispatch.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/jsonl.h"
#include "common/log.h"
#include "daemon/migrate.h"

struct json_object *reply_ok(void)
{
	struct json_object *o = json_object_new_object();
	jsonl_add_bool(o, "ok", true);
	return o;
}

struct json_object *reply_error(const char *code, const char *msg)
{
	struct json_object *o = json_object_new_object();
	jsonl_add_bool(o, "ok", false);
	jsonl_add_str(o, "error", msg);
	jsonl_add_str(o, "code", code);
	return o;
}

const struct verb *dispatch_find(const char *name)
{
	for (const struct verb *v = verb_table; v->name; v++)
		if (strcmp(v->name, name) == 0)
			return v;
	return NULL;
}

/* The verbs' names for an error message, from the table itself so the
 * list never falls behind it. */
static const char *dispatch_known(void)
{
	static char buf[512];
	size_t used = 0;

	if (buf[0])
		return buf;
	for (const struct verb *v = verb_table; v->name && used < sizeof(buf); v++)
		used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%s",
					 v == verb_table ? "" : ", ", v->name);
	return buf;
}

const struct verb *dispatch_parse(const char *line, size_t len,
				  struct json_object **args,
				  const char **code, struct err *e)
{
	struct json_object *o;
	const struct verb *v;
	const char *cmd = NULL;

	*args = NULL;
	o = jsonl_parse(line, len, e);
	if (!o) {
		*code = "E_BAD_JSON";
		return NULL;
	}
	if (jsonl_get_str(o, "cmd", true, &cmd, e) < 0) {
		*code = "E_BAD_REQUEST";
		json_object_put(o);
		return NULL;
	}
	v = dispatch_find(cmd);
	if (!v) {
		*code = "E_UNKNOWN_VERB";
		err_set(e, "unknown command '%.64s' (known: %s)", cmd, dispatch_known());
		json_object_put(o);
		return NULL;
	}
	*args = o;
	return v;
}

int req_fields(struct req *r, const char *const *allowed)
{
	json_object_object_foreach(r->args, key, val) {
		bool ok = strcmp(key, "cmd") == 0;
		(void)val;
		for (const char *const *a = allowed; !ok && *a; a++)
			ok = strcmp(*a, key) == 0;
		if (!ok)
			return req_fail(r, "E_BAD_ARG", "unknown field '%.64s' for %s",
					key, json_object_get_string(
						json_object_object_get(r->args, "cmd")));
	}
	return 0;
}

int req_fail(struct req *r, const char *code, const char *fmt, ...)
{
	va_list ap;
	r->code = code;
	va_start(ap, fmt);
	vsnprintf(r->err.msg, sizeof(r->err.msg), fmt, ap);
	va_end(ap);
	return -1;
}

struct vm *req_vm(struct req *r)
{
	const char *name = NULL;

	if (jsonl_get_str(r->args, "name", true, &name, &r->err) < 0) {
		r->code = "E_BAD_ARG";
		return NULL;
	}
	return req_vm_named(r, name);
}

struct vm *req_vm_named(struct req *r, const char *name)
{
	struct vm *vm = registry_find(r->d, name);

	if (vm && vm->departed) {
		req_fail(r, "E_NO_VM", "no VM named '%.80s' on this host: it moved away (the copy it "
			 "left here is ending)", name);
		return NULL;
	}
	if (!vm)
		req_fail(r, "E_NO_VM", "no VM named '%.80s' on this host (see: ferry vm list)",
			 name);
	return vm;
}

int req_name_free(struct req *r, const char *name)
{
	struct vm *vm = registry_find(r->d, name);
	struct move *out = migrate_find_active(r->d, name);

	/* Both clear up by themselves within moments: the move's source
	 * ferryd queues the move again and retries, a user is told to. */
	if (vm && vm->departed)
		return req_fail(r, "E_VM_LEAVING", "VM %s moved away from this host and the copy it "
				"left here is still ending: try again in a moment", name);
	/* Its move away from here is still finishing (the source's ferryd
	 * waits for its destination's word): the two would share a name,
	 * and that move's end act on this VM. Past the commit point
	 * (resolving, finishing) its entry is still here while its worker
	 * ends or the outcome is settled: not a name taken for good (which
	 * the source of a move back would give up on), one still leaving. */
	if (out && out->dir == MOVE_OUT &&
	    (!vm || out->state == MV_RESOLVING || out->state == MV_FINISHING))
		return req_fail(r, "E_VM_LEAVING", "VM %s's move away from this host (%s) has not "
				"finished yet (%s): try again when it has",
				name, out->id, migrate_state_name(out->state));
	if (vm)
		return req_fail(r, "E_NAME_TAKEN", "a VM named %s already exists on this host", name);
	return 0;
}

/* A TCP client's first line when this host has a cluster key: the answer
 * to our greeting's nonce (auth.h). Anything else, or a wrong proof, gets
 * E_AUTH and the connection ends, so a stranger learns nothing and runs
 * nothing. */
static void dispatch_auth(struct ferryd *d, struct client *c, const char *line, size_t len)
{
	struct err e = { 0 };
	struct json_object *o = jsonl_parse(line, len, &e), *rep;
	const char *cmd = NULL, *nonce = NULL, *proof = NULL, *why = NULL, *fp = NULL;
	struct auth_keyring ring = ferryd_keyring(d);
	const struct auth_key *key = &d->key;
	uint8_t cn[AUTH_NONCE_LEN], p[AUTH_PROOF_LEN];
	char hex[AUTH_PROOF_HEX];
	int k = 0;

	if (!o || jsonl_get_str(o, "cmd", false, &cmd, &e) < 0 || !cmd || strcmp(cmd, "auth") != 0)
		why = "this ferryd requires authentication first: connect with the cluster key "
		      "(ferry --key-file FILE)";
	else if (jsonl_get_str(o, "nonce", true, &nonce, &e) < 0 ||
		 jsonl_get_str(o, "proof", true, &proof, &e) < 0 ||
		 jsonl_get_str(o, "key", false, &fp, &e) < 0 ||
		 auth_from_hex(nonce, cn, sizeof(cn)) < 0)
		why = "malformed authentication request";
	/* "key" names which of our keys the client proves (a client that
	 * does not say proves the current one) */
	else if (fp && (k = auth_keyring_find(&ring, fp)) < 0)
		why = "wrong cluster key (the client proves a key this host does not hold)";
	else if (!auth_proof_ok(fp ? ring.k[k] : key, AUTH_ROLE_CLIENT, c->nonce, cn, proof))
		why = "wrong cluster key (this host's key file is not the one the client holds)";
	if (!why && fp)
		key = ring.k[k];
	if (why) {
		log_warn("client %s: authentication failed: %s", c->peer, why);
		c->auth_failed = true;
		loop_send(c, reply_error("E_AUTH", why));
		c->closing = true;
		json_object_put(o);
		return;
	}
	c->authed = true;
	c->key = key;
	auth_proof(key, AUTH_ROLE_SERVER, c->nonce, cn, p);
	auth_to_hex(p, sizeof(p), hex);
	rep = reply_ok();
	jsonl_add_str(rep, "proof", hex);
	loop_send(c, rep);
	/* The reply above is the last plaintext either way. */
	if (loop_client_seal(c, cn, key, &e) < 0) {
		log_error("client %s: sealing the connection: %s", c->peer, e.msg);
		c->closing = true;
		c->authed = false;
		c->auth_failed = true; /* logged: no more lines from it */
	}
	log_debug("client %s: authenticated", c->peer);
	json_object_put(o);
}

void dispatch_line(struct ferryd *d, struct client *c, const char *line,
		   size_t len)
{
	struct req r = { .d = d, .c = c, .code = "E_INTERNAL" };
	struct json_object *reply = NULL;
	const struct verb *v;
	enum verb_result res;

	if (!c->authed) {
		dispatch_auth(d, c, line, len);
		return;
	}

	v = dispatch_parse(line, len, &r.args, &r.code, &r.err);
	if (!v) {
		log_debug("client %s: rejected request: %s", c->peer, r.err.msg);
		loop_send(c, reply_error(r.code, r.err.msg));
		return;
	}
	res = v->fn(&r, &reply);
	switch (res) {
	case VERB_REPLY:
		loop_send(c, reply ? reply : reply_ok());
		break;
	case VERB_DEFER:
		/* Hold this client's later lines until the reply goes out, so
		 * replies stay in request order. */
		c->busy = true;
		break;
	case VERB_SENT:
		break;
	case VERB_FAIL:
	default:
		json_object_put(reply);
		log_debug("client %s: %s failed: %s", c->peer, v->name, r.err.msg);
		loop_send(c, reply_error(r.code, r.err.msg));
		break;
	}
	json_object_put(r.args);
}
