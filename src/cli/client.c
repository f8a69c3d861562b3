/*
 * ferry's connection to ferryd: local UNIX socket by default, TCP with
 * --computer-name. Failures are reported as what the user should do next,
 * not just the errno.
 */
#include "cli/cli.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/auth.h"
#include "common/jsonl.h"

#define CLI_CONNECT_TIMEOUT_MS 5000

static void cli_unreachable(const struct cli_opts *o, const char *where,
			    const struct err *e)
{
	const char *why = e->code ? strerror(e->code) : e->msg;
	char dir[300];

	if (e->code == ECONNREFUSED || e->code == ENOENT)
		why = e->code == ENOENT ? "no such socket" : "connection refused";
	fprintf(stderr, "ferry: cannot reach ferryd at %s: %s", where, why);
	if (o->computer) {
		fprintf(stderr, " — is ferryd running on that host with --listen ADDR:PORT "
			"(it listens on 127.0.0.1:%s only by default)?\n", CLI_DEFAULT_PORT);
		return;
	}
	/* The default layout puts the socket in the state directory. */
	snprintf(dir, sizeof(dir), "%s", where);
	if (strcmp(basename(dir), "ferryd.sock") == 0) {
		snprintf(dir, sizeof(dir), "%s", where);
		fprintf(stderr, " — is ferryd running? start it with: ferryd --state-dir %s\n",
			dirname(dir));
	} else {
		fprintf(stderr, " — is ferryd running? start it with: ferryd --socket %s\n",
			where);
	}
	if (e->code == EACCES)
		fprintf(stderr, "ferry: (permission denied: run as a user that may use %s)\n",
			where);
}

/* Over TCP ferryd greets first; prove the cluster key if it asks. A key
 * named explicitly must load; the default one is used if this user can
 * read it. */
static int cli_authenticate(const struct cli_opts *o, struct cli_conn *c)
{
	struct auth_key key = { 0 };
	struct err e = { 0 };
	const char *path = o->key_file ? o->key_file : CLI_DEFAULT_KEY;
	int rc;

	if (auth_key_load(&key, path, &e) < 0 && (o->key_file || e.code != ENOENT)) {
		if (o->key_file || e.code != EACCES) {
			fprintf(stderr, "ferry: %s\n", e.msg);
			if (e.code == ENOENT)
				fprintf(stderr, "hint: give ferry a copy of the key file the ferryd at %s "
					"uses (its --key-file, or STATE/cluster.key): --key-file FILE or "
					"FERRY_KEY_FILE\n", c->where);
			return -1;
		}
	}
	{
		struct auth_keyring ring = { { &key } };
		int used;
		rc = auth_api_client(c->fd, &c->rd, &ring, CLI_CONNECT_TIMEOUT_MS, c->where, &used,
				     &e);
	}
	OPENSSL_cleanse(&key, sizeof(key));
	if (rc < 0) {
		fprintf(stderr, "ferry: %s\n", e.msg);
		return -1;
	}
	return 0;
}

static int cli_connect_rc = CLI_UNREACHABLE;

int cli_connect_failure(void)
{
	return cli_connect_rc;
}

struct cli_conn *cli_connect(const struct cli_opts *o)
{
	struct cli_conn *c = calloc(1, sizeof(*c));
	struct err e = { 0 };

	cli_connect_rc = CLI_UNREACHABLE;
	if (!c) {
		fprintf(stderr, "ferry: out of memory\n");
		return NULL;
	}
	if (o->computer) {
		char host[256], port[16];
		if (sock_split_hostport(o->computer, CLI_DEFAULT_PORT, host,
					sizeof(host), port, sizeof(port), &e) < 0) {
			fprintf(stderr, "ferry: --computer-name: %s\n", e.msg);
			cli_connect_rc = CLI_USAGE; /* a typo, not a host that is down */
			free(c);
			return NULL;
		}
		snprintf(c->where, sizeof(c->where), "%s:%s", host, port);
		c->fd = sock_tcp_connect(host, port, CLI_CONNECT_TIMEOUT_MS, &e);
	} else {
		snprintf(c->where, sizeof(c->where), "%s", o->socket);
		c->fd = sock_unix_connect(o->socket, &e);
	}
	if (c->fd < 0) {
		cli_unreachable(o, c->where, &e);
		free(c);
		return NULL;
	}
	sock_reader_init(&c->rd, c->fd);
	sock_reader_set_line_max(&c->rd, SOCK_REPLY_MAX);
	if (o->computer && cli_authenticate(o, c) < 0) {
		cli_connect_rc = CLI_FAILED; /* reached, but the keys disagree */
		sock_reader_destroy(&c->rd);
		close(c->fd);
		free(c);
		return NULL;
	}
	return c;
}

void cli_close(struct cli_conn *c)
{
	if (!c)
		return;
	sock_reader_destroy(&c->rd);
	close(c->fd);
	free(c);
}

struct json_object *cli_call(struct cli_conn *c, struct json_object *req,
			     int timeout_ms)
{
	struct json_object *rep;
	struct err e = { 0 };
	char *line;
	int rc = sock_reader_send_line(&c->rd, jsonl_text(req), timeout_ms, &e);

	json_object_put(req);
	if (rc < 0) {
		fprintf(stderr, "ferry: sending to ferryd at %s: %s\n", c->where, e.msg);
		return NULL;
	}
	line = sock_reader_line(&c->rd, timeout_ms, &e);
	if (!line) {
		fprintf(stderr, "ferry: no reply from ferryd at %s: %s\n", c->where, e.msg);
		return NULL;
	}
	rep = jsonl_parse(line, strlen(line), &e);
	if (!rep)
		fprintf(stderr, "ferry: bad reply from ferryd at %s: %s\n", c->where, e.msg);
	return rep;
}

/* What to do about each API error, in the user's terms: per code, and
 * where the command matters, per command (NULL: any); NAME becomes the
 * request's VM name. Codes whose message already says what to do (E_NO_VM
 * names `ferry vm list`, E_NO_VMM `--vmm`, E_VM_NOT_RUNNING says what to do in
 * the VM's state, each E_BUSY what it waits for) have none: the hint would
 * repeat it, or contradict it. */
#define VM_FILE_GONE_HINT \
	"the VM's definition names that file: put it back, or define the VM again " \
	"(ferry vm delete NAME, then ferry vm new)"

static const char *cli_hint(const char *code, const char *cmd)
{
	static const struct { const char *code, *cmd, *hint; } hints[] = {
		{ "E_NAME_TAKEN", NULL, "pick another --name, or remove the old VM first: ferry vm delete NAME" },
		{ "E_NO_KERNEL", "vm.new", "--kernel must name a readable file on the host that runs ferryd (absolute path)" },
		{ "E_NO_INITRD", "vm.new", "--initrd must name a readable file on the host that runs ferryd (absolute path)" },
		{ "E_NO_DISK", "vm.new", "create the disk image first (e.g. truncate -s 1G /path/disk.img) or fix --disk" },
		/* at a start the file is the definition's: there is no option to fix */
		{ "E_NO_KERNEL", "vm.start", VM_FILE_GONE_HINT },
		{ "E_NO_INITRD", "vm.start", VM_FILE_GONE_HINT },
		{ "E_NO_DISK", "vm.start", VM_FILE_GONE_HINT },
		{ "E_NO_MEMORY", "vm.new", "use a smaller --memory, or stop other VMs (see: ferry host info)" },
		{ "E_NO_MEMORY", "vm.start", "stop other VMs, or lower the host's reserve (ferry host set --memory-reserve SIZE; see: ferry host info)" },
		{ "E_NO_KVM", NULL, "this host cannot run VMs: check that /dev/kvm exists and that ferryd may open it" },
		{ "E_START_FAILED", NULL, "the worker's whole log is the file on the 'Worker log:' line of: ferry vm status NAME" },
		{ "E_TOO_LATE", NULL, "the move passed its commit point; the VM runs on the destination (see: ferry migration status)" },
		{ "E_NO_MIGRATION", NULL, "list moves with: ferry migration list, or finished ones: ferry migration history" },
		{ "E_AUTH", NULL, "every host must hold the same cluster key: copy one host's key file (its ferryd --key-file, default /var/lib/ferry/cluster.key) to the others, restart their ferryd, and give ferry -c the same file (--key-file or FERRY_KEY_FILE)" },
		{ "E_NO_MIGRATION_NETWORK", NULL, "check the migration networks: ferry host info; change them: ferry host set --migration-network CIDR" },
		{ NULL, NULL, NULL },
	};
	for (int i = 0; code && hints[i].code; i++)
		if (strcmp(hints[i].code, code) == 0 &&
		    (!hints[i].cmd || (cmd && strcmp(hints[i].cmd, cmd) == 0)))
			return hints[i].hint;
	return NULL;
}

void cli_print_error(struct json_object *reply, const char *cmd, const char *name)
{
	const char *msg = cli_str(reply, "error");
	const char *hint = cli_hint(cli_str(reply, "code"), cmd);

	fprintf(stderr, "ferry: error: %s\n", msg ? msg : "(no reason given)");
	if (!hint)
		return;
	fputs("hint: ", stderr);
	for (const char *p = hint; *p; p++) {
		if (name && strncmp(p, "NAME", 4) == 0) {
			fputs(name, stderr);
			p += 3;
		} else {
			fputc(*p, stderr);
		}
	}
	fputc('\n', stderr);
}

struct json_object *cli_request(const struct cli_opts *o,
				struct json_object *req, int timeout_ms,
				int *rc)
{
	struct json_object *rep, *okv;
	struct cli_conn *c = cli_connect(o);
	/* for the hint: the request is gone once sent */
	char cmd[64], name[128];
	const char *cs = cli_str(req, "cmd"), *ns = cli_str(req, "name");

	snprintf(cmd, sizeof(cmd), "%s", cs ? cs : "");
	snprintf(name, sizeof(name), "%s", ns ? ns : "");
	if (!c) {
		json_object_put(req);
		*rc = cli_connect_failure();
		return NULL;
	}
	rep = cli_call(c, req, timeout_ms);
	cli_close(c);
	if (!rep) {
		*rc = CLI_UNREACHABLE;
		return NULL;
	}
	if (o->json)
		printf("%s\n", jsonl_text(rep));
	if (!json_object_object_get_ex(rep, "ok", &okv) ||
	    !json_object_get_boolean(okv)) {
		if (!o->json)
			cli_print_error(rep, cmd, name[0] ? name : NULL);
		json_object_put(rep);
		*rc = CLI_FAILED;
		return NULL;
	}
	*rc = CLI_OK;
	return rep;
}
