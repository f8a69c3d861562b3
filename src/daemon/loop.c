/*
 * ferryd's event loop: one poll() over the listeners, the signalfd, every
 * worker's pidfd and every client. Client sockets are non-blocking with
 * per-client input and output buffers, so a slow or hostile client only
 * ever stalls itself. Requests are dispatched a line at a time; console
 * clients become a raw byte relay to the VM's console socket. A TCP client,
 * once authenticated, is sealed: input is opened frame by frame into the
 * same buffers, output is sealed as it is queued.
 */
#include "daemon/ferryd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/failpoint.h"
#include "common/jsonl.h"
#include "common/log.h"
#include "common/seal.h"
#include "common/sock.h"
#include "daemon/dispatch.h"
#include "daemon/migrate.h"
#include "daemon/peer.h"
#include "daemon/status_hold.h"

enum pfd_kind { PFD_UNIX, PFD_TCP, PFD_SIG, PFD_PEER, PFD_VM, PFD_CLIENT, PFD_CONSOLE };

/* A sealed client's request buffer: an unfinished line shorter than the
 * limit plus one whole frame, which can only be opened whole. Frames end
 * anywhere in a line, so with less room a frame behind pipelined requests
 * or a line's first part would not fit, and the line would look too long. */
#define LOOP_IN_SEALED (SOCK_LINE_MAX + SEAL_FRAME_MAX)

/* The request buffer's size for a new client (one byte more is allocated). */
static size_t loop_in_cap(const struct ferryd *d, bool tcp)
{
	return tcp && d->key.set ? LOOP_IN_SEALED : SOCK_LINE_MAX;
}

struct pfd_ref {
	enum pfd_kind kind;
	void *ptr;
};

struct client *loop_client_by_id(struct ferryd *d, uint64_t id)
{
	for (struct client *c = d->clients; c; c = c->next)
		if (c->id == id && !c->dead)
			return c;
	return NULL;
}

/* Append raw bytes to a client's output; a client that lets it grow past
 * the cap is not reading and is dropped. The cap is on what is still
 * unread, not on this reply: a history of 10000 moves (~15 MiB) is one
 * line a reading client takes in whole. */
static void loop_queue(struct client *c, const char *data, size_t len)
{
	size_t need = c->out_len + len;
	char *grown;

	if (c->dead)
		return;
	if (c->out_len > FERRYD_OUT_MAX || need > FERRYD_REPLY_MAX) {
		log_warn("client %s: not reading its replies; dropping it", c->peer);
		c->dead = true;
		return;
	}
	if (need > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		while (cap < need)
			cap *= 2;
		grown = realloc(c->out, cap);
		if (!grown) {
			c->dead = true;
			return;
		}
		c->out = grown;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
}

static int loop_queue_frame(void *ctx, const uint8_t *frame, size_t len, struct err *e)
{
	struct client *c = ctx;
	loop_queue(c, (const char *)frame, len);
	return c->dead ? err_set(e, "output dropped") : 0;
}

/* Queue bytes for the client: as they are, or sealed in frames. */
static void loop_out(struct client *c, const char *data, size_t len)
{
	/* one frame at a time; the loop is single-threaded */
	static uint8_t frame[SEAL_WIRE_MAX];
	struct err e = { 0 };

	if (!c->tx) {
		loop_queue(c, data, len);
		return;
	}
	if (seal_all(c->tx, (const uint8_t *)data, len, frame, loop_queue_frame, c, &e) < 0 &&
	    !c->dead) {
		log_error("client %s: %s", c->peer, e.msg);
		c->dead = true;
	}
}

void loop_send(struct client *c, struct json_object *reply)
{
	struct err e = { 0 };
	size_t n;
	/* the line with its newline: one frame when sealed */
	char *line = sock_line(jsonl_text(reply), &n, &e);

	if (line)
		loop_out(c, line, n);
	else
		c->dead = true;
	free(line);
	json_object_put(reply);
}

int loop_client_seal(struct client *c, const uint8_t cn[AUTH_NONCE_LEN],
		     const struct auth_key *key, struct err *e)
{
	c->wire = malloc(SEAL_WIRE_MAX);
	if (!c->wire)
		return err_set(e, "out of memory");
	if (auth_api_seals(key, c->nonce, cn, true, &c->tx, &c->rx, e) < 0)
		return -1;
	c->seal_switch = true;
	return 0;
}

/* A plain client's request buffer always fits the console's at once:
 * reads go straight to the console's buffer, so nothing may wait behind. */
_Static_assert(FERRYD_CONSOLE_BUF >= SOCK_LINE_MAX, "a plain client's keystrokes fit the console");

/* Bytes that followed a console request in the request buffer go to the
 * console first, as its buffer has room (a sealed client's can hold more
 * than the console's). */
static void loop_console_take(struct client *c)
{
	size_t room = FERRYD_CONSOLE_BUF - c->con_len;
	size_t n = c->in_len < room ? c->in_len : room;

	memcpy(c->con_buf + c->con_len, c->in, n);
	c->con_len += n;
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
}

/* Open the whole frames in c->wire into the request or console buffer, as
 * far as they fit. A frame that fails its check ends the client. */
static void loop_unseal(struct client *c)
{
	struct err e = { 0 };
	size_t used = 0;

	if (c->mode == CLIENT_CONSOLE && c->in_len > 0) {
		loop_console_take(c);
		if (c->in_len > 0)
			return; /* those first, in order */
	}
	while (!c->dead && c->wire_len - used >= SEAL_HDR_LEN) {
		uint8_t *f = c->wire + used;
		long len = seal_frame_len(f);
		size_t whole = (size_t)len + SEAL_HDR_LEN + SEAL_TAG_LEN;
		char *dst;
		size_t room;

		if (len < 0) {
			log_warn("client %s: a sealed frame of an impossible length; dropping it",
				 c->peer);
			c->dead = true;
			break;
		}
		if (c->wire_len - used < whole)
			break;
		if (c->mode == CLIENT_CONSOLE) {
			dst = c->con_buf + c->con_len;
			room = FERRYD_CONSOLE_BUF - c->con_len;
		} else {
			dst = c->in + c->in_len;
			room = LOOP_IN_SEALED - c->in_len;
		}
		if ((size_t)len > room)
			break; /* opened once the buffer drains */
		if (seal_open(c->rx, f, f + SEAL_HDR_LEN, (size_t)len, (uint8_t *)dst, &e) < 0) {
			log_warn("client %s: %s; dropping it", c->peer, e.msg);
			c->dead = true;
			break;
		}
		if (c->mode == CLIENT_CONSOLE)
			c->con_len += (size_t)len;
		else
			c->in_len += (size_t)len;
		used += whole;
	}
	if (used > 0) {
		memmove(c->wire, c->wire + used, c->wire_len - used);
		c->wire_len -= used;
	}
}

void loop_send_to(struct ferryd *d, uint64_t client_id,
		  struct json_object *reply)
{
	struct client *c = client_id ? loop_client_by_id(d, client_id) : NULL;
	if (!c) {
		json_object_put(reply); /* the client went away meanwhile */
		return;
	}
	c->busy = false;
	loop_send(c, reply);
}

int loop_client_console(struct client *c, int con_fd, struct err *e)
{
	if (sock_set_nonblock(con_fd, true, e) < 0)
		return -1;
	c->con_buf = malloc(FERRYD_CONSOLE_BUF);
	if (!c->con_buf)
		return err_set(e, "out of memory");
	c->con_fd = con_fd;
	c->con_len = 0;
	c->mode = CLIENT_CONSOLE;
	return 0;
}

static void loop_greet(struct ferryd *d, struct client *c)
{
	struct json_object *g = json_object_new_object();
	struct err e = { 0 };
	char hex[AUTH_NONCE_HEX];

	jsonl_add_str(g, "ferryd", FERRY_VERSION);
	/* the failpoint makes this ferryd act as a newer one its clients and
	 * peers do not understand, to test their refusal */
	if (failpoint("ferryd.api_proto_next") < 0) {
		jsonl_add_int(g, "proto_min", FERRY_API_PROTO + 1);
		jsonl_add_int(g, "proto", FERRY_API_PROTO + 1);
	} else {
		jsonl_add_int(g, "proto_min", FERRY_API_PROTO_MIN);
		jsonl_add_int(g, "proto", FERRY_API_PROTO);
	}
	if (d->key.set) {
		if (auth_random(c->nonce, sizeof(c->nonce), &e) < 0) {
			/* No nonce, no session: never fall back to a guessable one. */
			log_error("client %s: %s", c->peer, e.msg);
			json_object_put(g);
			c->closing = true;
			return;
		}
		auth_to_hex(c->nonce, sizeof(c->nonce), hex);
		jsonl_add_str(g, "auth", "hmac-sha256");
		jsonl_add_str(g, "nonce", hex);
		jsonl_add_str(g, "seal", AUTH_API_SEAL);
		{
			/* fingerprints of the keys a client may prove */
			struct json_object *keys = json_object_new_array();
			char fp[AUTH_FINGERPRINT_HEX];
			auth_fingerprint(&d->key, fp);
			json_object_array_add(keys, json_object_new_string(fp));
			if (d->prev_key.set) {
				auth_fingerprint(&d->prev_key, fp);
				json_object_array_add(keys, json_object_new_string(fp));
			}
			json_object_object_add(g, "keys", keys);
		}
	} else {
		jsonl_add_str(g, "auth", "none");
	}
	loop_send(c, g);
}

static bool loop_unauthed(const struct ferryd *d, const struct client *c)
{
	return c->tcp && d->key.set && !c->authed && !c->dead;
}

/* A new TCP connection is let in: if FERRYD_MAX_UNAUTHED are already
 * waiting to authenticate, the oldest goes (a real peer authenticates in
 * milliseconds; one that waited longest is the likeliest idle stranger). */
static void loop_make_room_unauthed(struct ferryd *d)
{
	struct client *oldest = NULL;
	int n = 0;

	for (struct client *c = d->clients; c; c = c->next)
		if (loop_unauthed(d, c)) {
			n++;
			if (!oldest || c->connected_ms <= oldest->connected_ms)
				oldest = c;
		}
	if (n >= FERRYD_MAX_UNAUTHED && oldest) {
		log_warn("client %s: closed unauthenticated to make room (%d connections waiting to authenticate)",
			 oldest->peer, n);
		oldest->auth_failed = true;
		oldest->dead = true;
	}
}

/* Close TCP connections that have not authenticated in time; the ms until
 * the next such deadline, or -1 if none. */
static int loop_expire_unauthed(struct ferryd *d)
{
	long long now = ferryd_now_ms(), next = -1;

	for (struct client *c = d->clients; c; c = c->next) {
		long long due;
		if (!loop_unauthed(d, c))
			continue;
		due = c->connected_ms + FERRYD_AUTH_TIMEOUT_MS;
		if (due <= now) {
			log_info("client %s: did not authenticate within %d s: closed", c->peer,
				 FERRYD_AUTH_TIMEOUT_MS / 1000);
			c->auth_failed = true;
			c->dead = true;
		} else if (next < 0 || due - now < next) {
			next = due - now;
		}
	}
	return (int)next;
}

static int loop_count_clients(const struct ferryd *d)
{
	int n = 0;
	for (const struct client *c = d->clients; c; c = c->next)
		n += !c->dead;
	return n;
}

static void loop_accept(struct ferryd *d, int lfd, bool tcp)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct client *c;
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		int n = 0;

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* the pending connection waits in the backlog */
				log_warn("accept: %s: taking no new clients for %d ms (%d connected)",
					 strerror(errno), FERRYD_ACCEPT_PAUSE_MS,
					 loop_count_clients(d));
				d->accept_resume_ms = ferryd_now_ms() + FERRYD_ACCEPT_PAUSE_MS;
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				log_warn("accept: %s", strerror(errno));
			}
			return;
		}
		if (tcp && d->key.set)
			loop_make_room_unauthed(d);
		n = loop_count_clients(d);
		c = n < FERRYD_MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
		if (c)
			c->in = malloc(loop_in_cap(d, tcp) + 1);
		if (!c || !c->in) {
			static const char busy[] =
				"{\"ok\":false,\"error\":\"ferryd has too many clients; try again in a moment\",\"code\":\"E_BUSY\"}\n";
			/* Best effort; the socket is fresh so this rarely blocks. */
			if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL) < 0)
				log_debug("rejecting client: %s", strerror(errno));
			close(fd);
			if (c)
				free(c);
			log_warn("rejected a client: too many clients or out of memory");
			continue;
		}
		c->id = ++d->next_client_id;
		c->connected_ms = ferryd_now_ms();
		c->fd = fd;
		c->con_fd = -1;
		c->tcp = tcp;
		if (tcp) {
			sock_addr_format(&ss, c->peer, sizeof(c->peer));
		} else {
			snprintf(c->peer, sizeof(c->peer), "local#%llu",
				 (unsigned long long)c->id);
		}
		c->next = d->clients;
		d->clients = c;
		log_debug("client %s connected", c->peer);
		/* UNIX clients are vouched for by the socket's permissions; TCP
		 * clients get a greeting that says whether to prove the key. */
		c->authed = !tcp || !d->key.set;
		if (tcp)
			loop_greet(d, c);
	}
}

/* Dispatch the next complete line in c->in (unless a reply is pending).
 * One per call, and so per loop pass: a client that sends a burst of
 * requests at once (some wait on a worker, up to 2 s each) must not keep
 * every other client waiting until its whole burst is served. */
static void loop_client_process(struct ferryd *d, struct client *c)
{
	size_t used = 0;
	bool served = false;

	if (c->rx)
		loop_unseal(c);
	c->more = false;
	/* After a failed authentication nothing more is read: not one more
	 * line, so a burst of them cannot flood the log. */
	while (!c->dead && !c->busy && !c->auth_failed && c->mode == CLIENT_REQUESTS) {
		char *start = c->in + used;
		size_t avail = c->in_len - used;
		char *nl = memchr(start, '\n', avail);
		size_t len;

		if (!nl)
			break;
		if (served || c->served_pass == d->loop_pass) {
			c->more = true;
			break;
		}
		len = (size_t)(nl - start);
		used += len + 1;
		if (c->discarding) {
			c->discarding = false; /* end of the oversized line */
			continue;
		}
		if (len > 0 && start[len - 1] == '\r')
			len--;
		if (len == 0)
			continue; /* blank lines are harmless keep-alives */
		dispatch_line(d, c, start, len);
		served = true;
		c->served_pass = d->loop_pass;
		if (c->seal_switch) {
			/* Whatever followed the authentication line was
			 * already sealed. */
			size_t rest = c->in_len - used;
			c->seal_switch = false;
			if (rest > SEAL_WIRE_MAX) {
				c->dead = true;
				return;
			}
			memcpy(c->wire, c->in + used, rest);
			c->wire_len = rest;
			c->in_len = 0; /* the authentication line is done */
			loop_client_process(d, c);
			return;
		}
	}
	if (used > 0) {
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
	}
	if (c->mode == CLIENT_CONSOLE && c->in_len > 0)
		loop_console_take(c); /* keystrokes sent right behind the console request */
	/* Too long: an unfinished line at the limit. Whole lines waiting to be
	 * served never are, however full the buffer (a sealed one holds more). */
	if (c->mode == CLIENT_REQUESTS && !c->busy && !c->discarding &&
	    c->in_len >= SOCK_LINE_MAX && !memchr(c->in, '\n', c->in_len)) {
		char msg[96];
		snprintf(msg, sizeof(msg), "request line longer than %d bytes",
			 SOCK_LINE_MAX);
		log_warn("client %s: %s", c->peer, msg);
		if (c->tcp && !c->authed) {
			/* an authentication line is short: this is no client */
			loop_send(c, reply_error("E_AUTH", "authenticate first"));
			c->auth_failed = true;
			c->closing = true;
		} else {
			loop_send(c, reply_error("E_TOO_LONG", msg));
			c->discarding = true;
		}
		c->in_len = 0;
	}
	if (c->discarding)
		c->in_len = 0; /* keep swallowing until the newline */
	/* Frames that waited for room: there may be room now. */
	if (c->rx && c->wire_len >= SEAL_HDR_LEN && !c->dead && !c->busy &&
	    c->mode == CLIENT_REQUESTS && c->in_len < LOOP_IN_SEALED) {
		size_t before = c->wire_len;
		loop_unseal(c);
		if (c->wire_len != before)
			loop_client_process(d, c);
	}
}

static void loop_client_read(struct ferryd *d, struct client *c)
{
	ssize_t n;

	if (c->rx) {
		n = read(c->fd, c->wire + c->wire_len, SEAL_WIRE_MAX - c->wire_len);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				c->dead = true;
			return;
		}
		if (n == 0) {
			if (c->mode == CLIENT_CONSOLE) {
				c->dead = true; /* console user detached */
				return;
			}
			c->closing = true;
		}
		c->wire_len += (size_t)n;
		if (c->mode == CLIENT_CONSOLE)
			loop_unseal(c);
		else
			loop_client_process(d, c);
		return;
	}
	if (c->mode == CLIENT_CONSOLE) {
		n = read(c->fd, c->con_buf + c->con_len,
			 FERRYD_CONSOLE_BUF - c->con_len);
		if (n > 0)
			c->con_len += (size_t)n;
		else if (n == 0 || (errno != EAGAIN && errno != EINTR))
			c->dead = true; /* console user detached */
		return;
	}
	n = read(c->fd, c->in + c->in_len, SOCK_LINE_MAX - c->in_len);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			log_debug("client %s: read: %s", c->peer, strerror(errno));
			c->dead = true;
		}
		return;
	}
	if (n == 0) {
		/* Half-close: answer what was sent, then close. */
		c->closing = true;
		loop_client_process(d, c);
		return;
	}
	c->in_len += (size_t)n;
	loop_client_process(d, c);
}

static void loop_flush(struct client *c)
{
	while (c->out_len > 0) {
		ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				c->dead = true;
			return;
		}
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
}

static void loop_console_io(struct client *c, short revents)
{
	ssize_t n;

	if (revents & POLLIN && c->out_len < FERRYD_CONSOLE_BUF) {
		char buf[4096];
		size_t room = FERRYD_CONSOLE_BUF - c->out_len;
		n = read(c->con_fd, buf, room < sizeof(buf) ? room : sizeof(buf));
		if (n > 0) {
			loop_out(c, buf, (size_t)n);
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			c->con_eof = true;
			c->closing = true;
		}
	} else if (revents & (POLLHUP | POLLERR)) {
		c->con_eof = true;
		c->closing = true;
	}
	if (revents & POLLOUT && c->con_len > 0) {
		n = send(c->con_fd, c->con_buf, c->con_len, MSG_NOSIGNAL);
		if (n > 0) {
			memmove(c->con_buf, c->con_buf + n, c->con_len - (size_t)n);
			c->con_len -= (size_t)n;
			if (c->rx)
				loop_unseal(c); /* frames that waited for room */
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			c->con_eof = true;
			c->closing = true;
		}
	}
}

static void loop_free_dead(struct ferryd *d)
{
	struct client **p = &d->clients;
	while (*p) {
		struct client *c = *p;
		/* a half-closed client's lines are all answered first (one a
		 * pass: lines may still wait) */
		if (!c->dead && c->closing && c->out_len == 0 && !c->busy && !c->more)
			c->dead = true;
		if (!c->dead) {
			p = &c->next;
			continue;
		}
		*p = c->next;
		/* A client that holds none of our keys sees so in the
		 * greeting and leaves without trying: say so here too. */
		if (c->tcp && d->key.set && !c->authed && !c->auth_failed)
			log_info("client %s left without authenticating (a host or client holding "
				 "another cluster key?)", c->peer);
		log_debug("client %s disconnected", c->peer);
		close(c->fd);
		if (c->con_fd >= 0)
			close(c->con_fd);
		free(c->in);
		free(c->out);
		free(c->con_buf);
		seal_free(c->tx);
		seal_free(c->rx);
		free(c->wire);
		free(c);
	}
}

static void loop_signal(struct ferryd *d)
{
	struct signalfd_siginfo si;
	ssize_t n = read(d->sig_fd, &si, sizeof(si));

	if (n != (ssize_t)sizeof(si))
		return;
	switch (si.ssi_signo) {
	case SIGTERM:
	case SIGINT:
		log_info("signal %u: exiting; VM workers keep running", si.ssi_signo);
		d->quit = true;
		break;
	case SIGHUP:
	case SIGUSR1:
	case SIGUSR2:
		log_info("signal %u (from pid %u) ignored: SIGTERM stops ferryd", si.ssi_signo,
			 si.ssi_pid);
		break;
	case SIGCHLD:
		/* Children are normally noticed through their pidfds; this
		 * covers a worker whose pidfd_open failed. */
		for (struct vm *vm = d->vms, *next; vm; vm = next) {
			next = vm->next;
			if (vm->pid && vm->child)
				worker_reap(d, vm);
		}
		break;
	default:
		break;
	}
}

int loop_run(struct ferryd *d, struct err *e)
{
	struct pollfd *pfds = NULL;
	struct pfd_ref *refs = NULL;
	size_t cap = 0;
	int auth_next = -1; /* ms until a stranger's authentication deadline */

	while (!d->quit) {
		size_t n = 0, want = 4;
		long long accept_wait;
		int timeout, rc;

		for (struct vm *vm = d->vms; vm; vm = vm->next)
			want++;
		for (struct client *c = d->clients; c; c = c->next)
			want += 2;
		if (want > cap) {
			struct pollfd *np = realloc(pfds, want * sizeof(*pfds));
			struct pfd_ref *nr;
			if (!np) {
				free(refs);
				free(pfds);
				return err_set(e, "out of memory");
			}
			pfds = np;
			nr = realloc(refs, want * sizeof(*refs));
			if (!nr) {
				free(refs);
				free(pfds);
				return err_set(e, "out of memory");
			}
			refs = nr;
			cap = want;
		}
#define ADD(fd_, ev_, kind_, ptr_)                                      \
	do {                                                            \
		pfds[n] = (struct pollfd){ .fd = (fd_), .events = (ev_) }; \
		refs[n] = (struct pfd_ref){ (kind_), (ptr_) };           \
		n++;                                                    \
	} while (0)
		accept_wait = d->accept_resume_ms - ferryd_now_ms();
		if (d->unix_fd >= 0 && accept_wait <= 0)
			ADD(d->unix_fd, POLLIN, PFD_UNIX, NULL);
		if (d->tcp_fd >= 0 && accept_wait <= 0)
			ADD(d->tcp_fd, POLLIN, PFD_TCP, NULL);
		ADD(d->sig_fd, POLLIN, PFD_SIG, NULL);
		if (peer_wake_fd(d) >= 0)
			ADD(peer_wake_fd(d), POLLIN, PFD_PEER, NULL);
		for (struct vm *vm = d->vms; vm; vm = vm->next)
			if (vm->pidfd >= 0)
				ADD(vm->pidfd, POLLIN, PFD_VM, vm);
		for (struct client *c = d->clients; c; c = c->next) {
			short ev = 0;
			if (c->rx) {
				if (!c->closing && c->wire_len < SEAL_WIRE_MAX)
					ev |= POLLIN;
			} else if (c->mode == CLIENT_REQUESTS) {
				if (!c->closing && c->in_len < SOCK_LINE_MAX)
					ev |= POLLIN;
			} else if (c->con_len < FERRYD_CONSOLE_BUF) {
				ev |= POLLIN;
			}
			if (c->out_len > 0)
				ev |= POLLOUT;
			ADD(c->fd, ev, PFD_CLIENT, c);
			if (c->mode == CLIENT_CONSOLE && !c->con_eof) {
				ev = 0;
				if (c->out_len < FERRYD_CONSOLE_BUF)
					ev |= POLLIN;
				if (c->con_len > 0)
					ev |= POLLOUT;
				ADD(c->con_fd, ev, PFD_CONSOLE, c);
			}
		}
#undef ADD
		timeout = worker_next_timeout(d);
		rc = migrate_next_timeout(d);
		if (rc >= 0 && (timeout < 0 || rc < timeout))
			timeout = rc;
		rc = status_hold_next_timeout(d);
		if (rc >= 0 && (timeout < 0 || rc < timeout))
			timeout = rc;
		if (auth_next >= 0 && (timeout < 0 || auth_next < timeout))
			timeout = auth_next;
		if (accept_wait > 0 && (timeout < 0 || accept_wait < timeout))
			timeout = (int)accept_wait;
		for (struct client *c = d->clients; c; c = c->next)
			if (c->more && !c->busy && !c->dead)
				timeout = 0; /* lines wait: look, then serve the next */
		rc = poll(pfds, n, timeout);
		d->loop_pass++;
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			free(refs);
			free(pfds);
			return err_sys(e, "poll");
		}
		/* Workers first: a reaped VM may be deleted, and nothing
		 * later in this pass holds a pointer to it. */
		for (size_t i = 0; i < n; i++)
			if (refs[i].kind == PFD_VM && pfds[i].revents)
				worker_reap(d, refs[i].ptr);
		for (size_t i = 0; i < n; i++) {
			short re = pfds[i].revents;
			struct client *c = refs[i].ptr;
			if (!re)
				continue;
			switch (refs[i].kind) {
			case PFD_UNIX:
				loop_accept(d, d->unix_fd, false);
				break;
			case PFD_TCP:
				loop_accept(d, d->tcp_fd, true);
				break;
			case PFD_SIG:
				loop_signal(d);
				break;
			case PFD_PEER:
				peer_drain(d);
				break;
			case PFD_VM:
				break;
			case PFD_CLIENT:
				if (c->dead)
					break;
				if (re & POLLOUT)
					loop_flush(c);
				/* A closing client is no longer read; its hang-up
				 * would otherwise wake poll() forever. */
				if (c->closing && re & (POLLHUP | POLLERR))
					c->dead = true;
				else if (re & (POLLIN | POLLHUP | POLLERR) && !c->dead)
					loop_client_read(d, c);
				break;
			case PFD_CONSOLE:
				if (!c->dead)
					loop_console_io(c, re);
				break;
			}
		}
		worker_tick(d);
		migrate_tick(d);
		status_hold_tick(d); /* after every change this pass made */
		/* Replies produced by ticks, reaps or unblocked clients. */
		for (struct client *c = d->clients; c; c = c->next) {
			if (!c->dead && !c->busy && c->mode == CLIENT_REQUESTS)
				loop_client_process(d, c);
			if (!c->dead && c->out_len > 0)
				loop_flush(c);
		}
		/* before the free: a client closed here must not wait for poll */
		auth_next = loop_expire_unauthed(d);
		loop_free_dead(d);
	}
	status_hold_free_all(d);
	free(refs);
	free(pfds);
	return 0;
}
