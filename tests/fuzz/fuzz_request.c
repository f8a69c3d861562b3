/*
 * libFuzzer harness for what ferryd reads from its clients and peers: the
 * bytes of a connection go through the real input path of the event loop
 * (loop.c, included below for its static reader: line framing, the
 * over-long line rule, sealed frames) into dispatch_line and every verb's
 * handler, against one ferryd context in a temporary state directory.
 * Byte 0 of an input picks what the bytes are:
 *   mode 0  a local (UNIX socket) client's bytes;
 *   mode 1  a TCP client's bytes to a host with a cluster key, before
 *           authentication (the auth line itself is fuzzed);
 *   mode 2  a TCP client the harness authenticates with the right proof,
 *           then records [op][len u16 LE][bytes]: op bit 0 clear, the bytes
 *           go sealed as one frame (the harness holds the client's keys);
 *           set, they go raw (hostile frame headers and tags); op bit 1:
 *           let ferryd take in what was sent before the next record;
 *   mode 3  what another host sends back when this ferryd calls it (the
 *           greeting, the authentication answer, the reply line), or what
 *           a worker answers, handed to the move waiting for it as
 *           peer.c's call thread and worker calls would (byte 1 chooses).
 * Other bits of byte 0: the host's keys (2: current, 3: previous), the
 * state of the fixture's outgoing move (4-6), and (7) whether run1's console
 * reads what it is sent (then it must get, in order, every byte the
 * client sent behind its console request); in mode 2 bit 7 also names the
 * key the client proves.
 * Nothing may crash, leak, hang or touch memory it does not own, and every
 * byte ferryd queues for a client must be a whole JSON reply (sealed ones
 * opening under the client's key): the harness aborts otherwise.
 * The context has no worker binary, no pipe for background calls and
 * workers whose pid no process has, so a verb that would spawn, connect to
 * another host or signal fails where the real one would when that fails,
 * after all the parsing and validation before it. One running VM (run1)
 * has a console socket, so vm.console attaches and the connection's later
 * bytes (sealed or not) go the console's way.
 * Each input starts from the same state: VMs, moves, settings and the
 * state directory's files are rebuilt (only the process's json-c and
 * OpenSSL internals carry over). Build with tests/fuzz/build.sh;
 * FUZZ_REQUEST_TRACE=1 prints the replies an input gets.
 * Not covered: one connection per input (never two clients at once); a
 * peer's greeting with a key is fuzzed only up to its proof, which covers
 * this side's random nonce; replies that come later (a worker starting or
 * stopping) never come; what workers and the state directory hold at a
 * restart is read by other code (tests/kvm/ferryd_state.sh).
 */
#include "daemon/loop.c"

#include <dirent.h>
#include <sys/stat.h>

#include "common/auth.h"
#include "migration/format.h"

#define FX_FAKE_PID 4194305 /* above the kernel's pid_max: no process has it */
#define FX_MAX_PASSES 4096
#define FX_OUT_MAX (4 * 1024 * 1024)

enum fx_mode { FX_LOCAL, FX_TCP_RAW, FX_TCP_SEALED, FX_PEER };

static struct ferryd fxd;
static char fx_dir[64];
static int fx_console = -1; /* run1's console socket */
/* The worker's end of a console connection, when the input has it read. */
static struct {
	bool reads;
	int fd;
	char *got;
	size_t len;
} con = { .fd = -1 };

/* What the client side of the connection has received so far. */
static struct {
	char *buf;           /* bytes not yet checked */
	size_t len;
	int plain_lines;     /* plaintext lines still expected before frames (-1: all plain) */
	bool greeting;       /* the next line is a TCP client's greeting */
	struct seal *rx;     /* the client's opener, once sealed */
	char *plain;         /* opened bytes not yet checked */
	size_t plain_len;
} out;

/* The request lines the client sent, as ferryd must see them (off once
 * raw bytes went to a sealed connection): the longest so far, so that
 * E_TOO_LONG for a stream of shorter lines is caught. */
static struct {
	bool on;
	size_t line, longest;
	char *all; /* every byte, for the console's check */
	size_t len;
} sent;

static void fx_die(const char *what)
{
	fprintf(stderr, "fuzz_request: %s\n", what);
	abort();
}

static void *fx_grow(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		fx_die("out of memory");
	return q;
}

static void fx_sent(const void *data, size_t n)
{
	const uint8_t *p = data;

	sent.all = fx_grow(sent.all, sent.len + n);
	memcpy(sent.all + sent.len, data, n);
	sent.len += n;
	for (size_t i = 0; i < n; i++) {
		sent.line = p[i] == '\n' ? 0 : sent.line + 1;
		if (sent.line > sent.longest)
			sent.longest = sent.line;
	}
}

/* A reply line: one JSON object saying whether it worked. */
static void fx_check_reply(const char *line, size_t len, bool greeting)
{
	struct err e = { 0 };
	struct json_object *o = jsonl_parse(line, len, &e), *ok;

	/* FUZZ_REQUEST_TRACE=1: see what a seed gets back */
	if (getenv("FUZZ_REQUEST_TRACE"))
		fprintf(stderr, "reply: %.*s\n", (int)(len > 300 ? 300 : len), line);
	if (!o)
		fx_die("ferryd sent a reply that is not JSON");
	if (!greeting && (!json_object_object_get_ex(o, "ok", &ok) ||
			  !json_object_is_type(ok, json_type_boolean)))
		fx_die("ferryd sent a reply without a boolean \"ok\"");
	if (sent.on && sent.longest < SOCK_LINE_MAX &&
	    json_object_object_get_ex(o, "code", &ok) &&
	    strcmp(json_object_get_string(ok), "E_TOO_LONG") == 0)
		fx_die("E_TOO_LONG, though no line the client sent is that long");
	json_object_put(o);
}

static void fx_check_plain(void)
{
	char *nl;
	while ((nl = memchr(out.plain, '\n', out.plain_len))) {
		size_t n = (size_t)(nl - out.plain) + 1;
		fx_check_reply(out.plain, n - 1, false);
		memmove(out.plain, out.plain + n, out.plain_len - n);
		out.plain_len -= n;
	}
}

/* Take what ferryd queued for c and check it as its client would read it. */
static void fx_take_out(struct client *c)
{
	size_t used = 0;

	if (!c->out_len)
		return;
	if (out.len + c->out_len > FX_OUT_MAX)
		fx_die("replies pile up unread");
	out.buf = fx_grow(out.buf, out.len + c->out_len);
	memcpy(out.buf + out.len, c->out, c->out_len);
	out.len += c->out_len;
	c->out_len = 0;
	for (;;) {
		char *p = out.buf + used;
		size_t avail = out.len - used;
		if (out.plain_lines != 0) {
			char *nl = memchr(p, '\n', avail);
			if (!nl)
				break;
			fx_check_reply(p, (size_t)(nl - p), out.greeting);
			out.greeting = false;
			used += (size_t)(nl - p) + 1;
			if (out.plain_lines > 0)
				out.plain_lines--;
		} else {
			struct err e = { 0 };
			long n;
			if (avail < SEAL_HDR_LEN)
				break;
			n = seal_frame_len((const uint8_t *)p);
			if (n < 0)
				fx_die("ferryd sent a sealed frame of an impossible length");
			if (avail < (size_t)n + SEAL_HDR_LEN + SEAL_TAG_LEN)
				break;
			out.plain = fx_grow(out.plain, out.plain_len + (size_t)n);
			if (seal_open(out.rx, (const uint8_t *)p, (const uint8_t *)p + SEAL_HDR_LEN,
				      (size_t)n, (uint8_t *)out.plain + out.plain_len, &e) < 0)
				fx_die("a frame ferryd sealed does not open under the client's key");
			out.plain_len += (size_t)n;
			used += (size_t)n + SEAL_HDR_LEN + SEAL_TAG_LEN;
			fx_check_plain();
		}
	}
	memmove(out.buf, out.buf + used, out.len - used);
	out.len -= used;
}

/* ---- the state directory ---- */

static void fx_clear_dir(const char *dir)
{
	DIR *dp = opendir(dir);
	struct dirent *de;
	char path[PATH_MAX + 300];

	if (!dp)
		fx_die("cannot read the state directory");
	while ((de = readdir(dp))) {
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode) && unlink(path) < 0)
			fx_die("cannot clear the state directory");
	}
	closedir(dp);
}

static void fx_forget(void);

/* At exit: the state directory goes. */
static void fx_cleanup(void)
{
	fx_forget();
	fx_clear_dir(fxd.vms_dir);
	fx_clear_dir(fxd.run_dir);
	fx_clear_dir(fxd.logs_dir);
	fx_clear_dir(fxd.state_dir);
	if (rmdir(fxd.vms_dir) < 0 || rmdir(fxd.run_dir) < 0 || rmdir(fxd.logs_dir) < 0 ||
	    rmdir(fxd.state_dir) < 0)
		fprintf(stderr, "fuzz_request: cannot remove %s: %s\n", fx_dir, strerror(errno));
}

static void fx_init(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(fx_dir, sizeof(fx_dir), "%s/ferry-fuzzreq.XXXXXX", base);
	if (!mkdtemp(fx_dir))
		fx_die("mkdtemp");
	snprintf(fxd.state_dir, sizeof(fxd.state_dir), "%s", fx_dir);
	snprintf(fxd.vms_dir, sizeof(fxd.vms_dir), "%s/vms", fx_dir);
	snprintf(fxd.run_dir, sizeof(fxd.run_dir), "%s/run", fx_dir);
	snprintf(fxd.logs_dir, sizeof(fxd.logs_dir), "%s/logs", fx_dir);
	snprintf(fxd.settings_path, sizeof(fxd.settings_path), "%s/settings.json", fx_dir);
	snprintf(fxd.socket_path, sizeof(fxd.socket_path), "%s/ferryd.sock", fx_dir);
	/* no worker binary: a verb that would spawn one fails with E_NO_VMM */
	snprintf(fxd.vmm_path, sizeof(fxd.vmm_path), "%s/no-ferry-vm", fx_dir);
	if (mkdir(fxd.vms_dir, 0755) < 0 || mkdir(fxd.run_dir, 0755) < 0 ||
	    mkdir(fxd.logs_dir, 0755) < 0)
		fx_die("mkdir");
	fxd.unix_fd = fxd.tcp_fd = fxd.sig_fd = fxd.lock_fd = -1;
	/* no pipe: background calls (peers, worker calls off the loop) fail at once */
	fxd.peer_pipe[0] = fxd.peer_pipe[1] = -1;
	memset(fxd.key.k, 0x11, sizeof(fxd.key.k));
	memset(fxd.prev_key.k, 0x22, sizeof(fxd.prev_key.k));
	log_init("fuzz_request", LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	atexit(fx_cleanup);
}

static void fx_free_moves(struct move *m)
{
	while (m) {
		struct move *next = m->next;
		migrate_move_free(m);
		m = next;
	}
}

/* What an input left in memory, freed as it ends, so a leak check sees
 * only what ferryd itself lost. */
static void fx_forget(void)
{
	fx_free_moves(fxd.moves);
	fx_free_moves(fxd.recent);
	fxd.moves = fxd.recent = NULL;
	status_hold_free_all(&fxd);
	while (fxd.vms)
		registry_remove(&fxd, fxd.vms);
	if (fx_console >= 0)
		close(fx_console);
	fx_console = -1;
	if (con.fd >= 0)
		close(con.fd);
	con.fd = -1;
	free(con.got);
	con.got = NULL;
	con.len = 0;
	free(sent.all);
	sent.all = NULL;
	sent.len = 0;
	seal_free(out.rx);
	out.rx = NULL;
	free(out.buf);
	free(out.plain);
	out.buf = out.plain = NULL;
	out.len = out.plain_len = 0;
}

/* Back to the same starting state: nothing from the last input stays. */
static void fx_reset(void)
{
	fx_forget();
	fx_clear_dir(fxd.vms_dir);
	fx_clear_dir(fxd.run_dir);
	fx_clear_dir(fxd.logs_dir);
	fx_clear_dir(fxd.state_dir);
	settings_default(&fxd.settings);
	fxd.clients = NULL;
}

static struct vm *fx_vm(const char *name, enum vm_state st)
{
	struct vm_def def = { .memory_mib = 64, .vcpus = 1 };
	struct err e = { 0 };
	struct vm *vm;

	snprintf(def.name, sizeof(def.name), "%s", name);
	snprintf(def.kernel, sizeof(def.kernel), "/bin/sh");
	if (vmdef_save(fxd.vms_dir, &def, &e) < 0)
		fx_die(e.msg);
	vm = registry_add(&fxd, &def);
	if (!vm)
		fx_die("registry_add");
	vm->state = st;
	if (st == VM_RUNNING || st == VM_INCOMING) {
		vm->pid = FX_FAKE_PID;
		vm->child = true;
		vm->started_ms = ferryd_wall_ms();
	}
	return vm;
}

/* The fixture: a stopped VM, two running ones (the second moving away,
 * in the state move_state picks, or not at all) and one arriving. */
static struct move *fx_populate(int move_state)
{
	static const enum move_state states[] = { MV_QUEUED, MV_PREPARING, MV_MIGRATING,
						  MV_RESOLVING, MV_FINISHING, MV_MIGRATING, MV_PREPARING };
	struct vm *in;
	struct move *m = NULL;
	struct err e = { 0 };
	char path[PATH_MAX];

	fx_vm("vm1", VM_STOPPED);
	/* run1 has a console to attach to (read when the input says, bit 7) */
	if (registry_path(&fxd, fx_vm("run1", VM_RUNNING), "console", path, sizeof(path), &e) < 0 ||
	    (fx_console = sock_unix_listen(path, &e)) < 0)
		fx_die(e.msg);
	if (move_state > 0) {
		m = migrate_enqueue(&fxd, fx_vm("run2", VM_RUNNING), "127.0.0.1:9", 300, 0,
				    "compression", &e);
		if (!m)
			fx_die(e.msg);
		snprintf(m->id, sizeof(m->id), "mv-0000aaaa");
		m->state = states[move_state - 1];
		m->cancel_requested = move_state >= 6;
		m->next_ms = ferryd_now_ms() + 3600 * 1000;
		snprintf(m->address, sizeof(m->address), "127.0.0.1:9");
	} else {
		fx_vm("run2", VM_RUNNING);
	}
	in = fx_vm("in1", VM_INCOMING);
	in->incoming = true;
	snprintf(in->move_id, sizeof(in->move_id), "mv-0000bbbb");
	snprintf(in->incoming_addr, sizeof(in->incoming_addr), "127.0.0.1:9");
	if (!migrate_incoming_new(&fxd, in, in->move_id, "peer-host"))
		fx_die("migrate_incoming_new");
	return m;
}

/* ---- one connection through the loop's reader ---- */

struct fx_conn {
	struct client *c;
	int peer_fd; /* the client's end */
};

static void fx_conn_open(struct fx_conn *x, bool tcp)
{
	int sv[2];
	struct client *c = calloc(1, sizeof(*c));

	if (!c || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		fx_die("socketpair");
	c->in = malloc(loop_in_cap(&fxd, tcp) + 1);
	if (!c->in)
		fx_die("out of memory");
	/* as loop_accept sets up a client */
	c->id = ++fxd.next_client_id;
	c->connected_ms = ferryd_now_ms();
	c->fd = sv[0];
	c->con_fd = -1;
	c->tcp = tcp;
	snprintf(c->peer, sizeof(c->peer), tcp ? "192.0.2.1:40000" : "local#%llu",
		 (unsigned long long)c->id);
	c->authed = !tcp || !fxd.key.set;
	fxd.clients = c;
	x->c = c;
	x->peer_fd = sv[1];
	out.greeting = tcp;
	if (tcp)
		loop_greet(&fxd, c);
}

static void fx_conn_close(struct fx_conn *x)
{
	close(x->peer_fd);
	x->c->dead = true;
	loop_free_dead(&fxd); /* ferryd's own cleanup, which a leak check then covers */
}

/* One pass of the event loop for this client, as loop_run makes it: read
 * if poll would have said so, serve a line, run the ticks. A reply that
 * would come later (a stop waiting for the worker's exit) is taken as
 * come, so later lines are served. False once nothing more happens. */
static bool fx_pass(struct fx_conn *x)
{
	struct client *c = x->c;
	struct pollfd p = { .fd = c->fd };
	bool progress = false;

	fxd.loop_pass++;
	if (c->dead)
		return false;
	/* as loop_run asks poll */
	if (c->rx ? !c->closing && c->wire_len < SEAL_WIRE_MAX
	    : c->mode == CLIENT_REQUESTS ? !c->closing && c->in_len < SOCK_LINE_MAX
					 : c->con_len < FERRYD_CONSOLE_BUF)
		p.events = POLLIN;
	if (p.events && poll(&p, 1, 0) > 0 && p.revents) {
		loop_client_read(&fxd, c);
		progress = true;
	}
	if (c->mode == CLIENT_CONSOLE && !c->con_eof && !c->dead) {
		struct pollfd q = { .fd = c->con_fd };
		if (c->out_len < FERRYD_CONSOLE_BUF)
			q.events |= POLLIN;
		if (c->con_len > 0)
			q.events |= POLLOUT;
		if (q.events && poll(&q, 1, 0) > 0 && q.revents) {
			loop_console_io(c, q.revents);
			progress = true;
		}
	}
	if (con.reads && con.fd < 0 && c->mode == CLIENT_CONSOLE)
		con.fd = accept4(fx_console, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (con.fd >= 0) {
		char buf[16384];
		ssize_t n;
		while ((n = read(con.fd, buf, sizeof(buf))) > 0) {
			con.got = fx_grow(con.got, con.len + (size_t)n);
			memcpy(con.got + con.len, buf, (size_t)n);
			con.len += (size_t)n;
			progress = true;
		}
	}
	worker_tick(&fxd);
	migrate_tick(&fxd);
	status_hold_tick(&fxd);
	if (c->busy) {
		c->busy = false;
		progress = true;
	}
	if (!c->dead && !c->busy && c->mode == CLIENT_REQUESTS)
		loop_client_process(&fxd, c);
	fx_take_out(c);
	return progress || c->more;
}

static void fx_drain(struct fx_conn *x)
{
	for (int i = 0; i < FX_MAX_PASSES && fx_pass(x);)
		i++;
}

/* Send bytes from the client's end, letting ferryd read when the socket
 * is full. */
static void fx_send(struct fx_conn *x, const void *data, size_t n)
{
	const uint8_t *p = data;
	int stuck = 0;

	while (n > 0 && !x->c->dead && stuck < FX_MAX_PASSES) {
		ssize_t w = send(x->peer_fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			stuck = 0;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return; /* ferryd's end is gone */
		if (!fx_pass(x))
			stuck++;
	}
}

/* What the console got is the end of what the client sent, from just
 * behind a request line's newline: nothing lost, repeated or reordered. */
static void fx_check_console(void)
{
	if (!sent.on || !con.reads || con.fd < 0)
		return;
	if (con.len > sent.len || memcmp(con.got, sent.all + sent.len - con.len, con.len) != 0 ||
	    (sent.len > con.len && sent.all[sent.len - con.len - 1] != '\n'))
		fx_die("the console did not get the bytes sent behind its request, in order");
}

static void fx_finish(struct fx_conn *x)
{
	fx_drain(x);
	if (!x->c->dead)
		fx_check_console();
	shutdown(x->peer_fd, SHUT_WR);
	fx_drain(x);
	if (out.plain_lines <= 0 && out.plain_len && !x->c->dead)
		fx_check_plain();
}

static void fx_out_reset(int plain_lines)
{
	sent.line = sent.longest = 0;
	out.len = out.plain_len = 0;
	out.plain_lines = plain_lines;
	seal_free(out.rx);
	out.rx = NULL;
}

static void fx_plain_client(const uint8_t *data, size_t size, bool tcp)
{
	struct fx_conn x;

	fx_out_reset(-1);
	fx_conn_open(&x, tcp);
	sent.on = !tcp;
	fx_sent(data, size);
	fx_send(&x, data, size);
	fx_finish(&x);
	fx_conn_close(&x);
}

/* Authenticate as a client holding key k (named by fingerprint when
 * name_key), then send the records. */
static void fx_sealed_client(const uint8_t *data, size_t size, const struct auth_key *k,
			     bool name_key, bool pipelined)
{
	static uint8_t frame[SEAL_WIRE_MAX];
	struct fx_conn x;
	struct seal *tx = NULL;
	struct err e = { 0 };
	uint8_t cn[AUTH_NONCE_LEN] = { 0x5a, 0xa5 }, proof[AUTH_PROOF_LEN];
	char line[512], nh[AUTH_NONCE_HEX], ph[AUTH_PROOF_HEX], fp[AUTH_FINGERPRINT_HEX];
	size_t pos = 0;

	fx_out_reset(2); /* the greeting and the answer to the auth line */
	fx_conn_open(&x, true);
	auth_proof(k, AUTH_ROLE_CLIENT, x.c->nonce, cn, proof);
	auth_to_hex(cn, sizeof(cn), nh);
	auth_to_hex(proof, sizeof(proof), ph);
	auth_fingerprint(k, fp);
	snprintf(line, sizeof(line), "{\"cmd\":\"auth\",\"nonce\":\"%s\",\"proof\":\"%s\"%s%s%s}\n",
		 nh, ph, name_key ? ",\"key\":\"" : "", name_key ? fp : "", name_key ? "\"" : "");
	if (auth_api_seals(k, x.c->nonce, cn, false, &tx, &out.rx, &e) < 0)
		fx_die(e.msg);
	sent.on = true;
	fx_sent(line, strlen(line));
	fx_send(&x, line, strlen(line));
	if (!pipelined)
		fx_drain(&x);
	while (pos + 3 <= size && !x.c->dead) {
		uint8_t op = data[pos];
		size_t n = (size_t)data[pos + 1] | (size_t)data[pos + 2] << 8;
		pos += 3;
		if (n > size - pos)
			n = size - pos;
		if (op & 1) {
			sent.on = false;
			fx_send(&x, data + pos, n);
		} else if (n > 0) {
			if (seal_frame(tx, data + pos, n, frame, &e) < 0)
				fx_die(e.msg);
			fx_sent(data + pos, n);
			fx_send(&x, frame, n + SEAL_HDR_LEN + SEAL_TAG_LEN);
		}
		pos += n;
		if (op & 2)
			fx_drain(&x);
	}
	fx_finish(&x);
	if (!x.c->authed && !x.c->dead)
		fx_die("the harness's own authentication was refused");
	seal_free(tx);
	fx_conn_close(&x);
}

/* ---- replies from other hosts and from workers ---- */

/* What a call thread (peer.c) makes of the bytes a peer sends: its
 * greeting and authentication answer, then the reply line. */
static struct json_object *fx_peer_reply(const uint8_t *data, size_t size, bool keyed,
					 struct peer_result *r)
{
	struct auth_keyring ring = { { keyed ? &fxd.key : NULL, NULL } };
	struct json_object *req = migrate_worker_cmd("migration.prepare"), *rep = NULL;
	struct sock_reader *rd = malloc(sizeof(*rd));
	const char *text = jsonl_text(req);
	char *line;
	int sv[2];

	if (!rd || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		fx_die("socketpair");
	/* the peer says everything at once and hangs up: no read waits */
	if (size > 64 * 1024)
		size = 64 * 1024; /* what one socket buffer surely holds */
	if (sock_write_all(sv[1], data, size, 1000, &r->err) < 0)
		fx_die(r->err.msg);
	shutdown(sv[1], SHUT_WR);
	sock_reader_init(rd, sv[0]);
	sock_reader_set_line_max(rd, SOCK_REPLY_MAX);
	if (auth_api_client(sv[0], rd, &ring, 1000, "192.0.2.2:7450", &r->key_idx, &r->err) < 0)
		goto done;
	if (sock_reader_send(rd, text, strlen(text), 1000, &r->err) < 0)
		goto done;
	r->reached = true;
	line = sock_reader_line(rd, 1000, &r->err);
	if (line)
		rep = jsonl_parse(line, strlen(line), &r->err);
done:
	sock_reader_destroy(rd);
	free(rd);
	close(sv[0]);
	close(sv[1]);
	json_object_put(req);
	return rep;
}

/* What vmctl_request makes of a worker's answer: its first line. */
static struct json_object *fx_worker_reply(const uint8_t *data, size_t size, struct peer_result *r)
{
	const uint8_t *nl = memchr(data, '\n', size);
	r->worker = true;
	r->reached = true;
	return jsonl_parse((const char *)data, nl ? (size_t)(nl - data) : size, &r->err);
}

static void fx_reply(const uint8_t *data, size_t size, bool keyed, struct move *out_move)
{
	static const struct {
		enum peer_purpose purpose;
		enum move_state state;
		bool worker;
	} kinds[] = {
		{ PEER_PREPARE, MV_PREPARING, false }, { PEER_ABORT, MV_FAILED, false },
		{ PEER_CONFIRM, MV_FINISHING, false }, { PEER_RESOLVE, MV_RESOLVING, false },
		{ PEER_EXTENTS, MV_PREPARING, true },  { PEER_POLL, MV_MIGRATING, true },
		{ PEER_IN_POLL, MV_MIGRATING, true },
	};
	struct peer_result *r;
	size_t k;

	if (size < 1 || !out_move)
		return;
	k = data[0] % (sizeof(kinds) / sizeof(kinds[0]));
	r = calloc(1, sizeof(*r));
	if (!r)
		fx_die("out of memory");
	r->purpose = kinds[k].purpose;
	r->key_idx = -1;
	if (kinds[k].purpose == PEER_IN_POLL) {
		snprintf(r->move_id, sizeof(r->move_id), "mv-0000bbbb");
	} else {
		snprintf(r->move_id, sizeof(r->move_id), "%s", out_move->id);
		out_move->state = kinds[k].state;
		out_move->call_pending = true;
	}
	snprintf(r->vm, sizeof(r->vm), "%s", kinds[k].purpose == PEER_IN_POLL ? "in1" : "run2");
	r->reply = kinds[k].worker ? fx_worker_reply(data + 1, size - 1, r)
				   : fx_peer_reply(data + 1, size - 1, keyed, r);
	/* as peer_drain hands it on */
	if (r->worker)
		worker_call_done(&fxd, r);
	migrate_peer_done(&fxd, r);
	json_object_put(r->reply);
	free(r);
	/* and the ticks that follow in the same loop pass */
	worker_tick(&fxd);
	migrate_tick(&fxd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t cfg;
	struct move *m;

	if (!fx_dir[0])
		fx_init();
	if (size < 1)
		return 0;
	cfg = data[0];
	data++;
	size--;
	fx_reset();
	con.reads = cfg & 128;
	fxd.key.set = (cfg & 4) || (cfg & 3) == FX_TCP_RAW || (cfg & 3) == FX_TCP_SEALED;
	fxd.prev_key.set = fxd.key.set && (cfg & 8);
	m = fx_populate((cfg >> 4) % 8);
	switch ((enum fx_mode)(cfg & 3)) {
	case FX_LOCAL:
		fx_plain_client(data, size, false);
		break;
	case FX_TCP_RAW:
		fx_plain_client(data, size, true);
		break;
	case FX_TCP_SEALED:
		/* bit 3 also: prove the previous key; bit 2: send the auth line
		 * and the first records in one go */
		fx_sealed_client(data, size, fxd.prev_key.set ? &fxd.prev_key : &fxd.key,
				 fxd.prev_key.set || (cfg & 128), (cfg & 4) != 0);
		break;
	case FX_PEER:
		if (!m)
			m = migrate_enqueue(&fxd, registry_find(&fxd, "run1"), "127.0.0.1:9", 300, 0,
					    "tcp", &(struct err){ 0 });
		fx_reply(data, size, (cfg & 4) != 0, m);
		break;
	}
	fx_forget();
	return 0;
}
