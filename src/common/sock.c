/* Socket helpers (see sock.h). */
#include "common/sock.h"
#include "common/seal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

long long sock_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left before deadline (-1 deadline = wait forever). */
static int sock_left_ms(long long deadline)
{
	long long left;
	if (deadline < 0)
		return -1;
	left = deadline - sock_now_ms();
	if (left < 0)
		return 0;
	return left > 1000000 ? 1000000 : (int)left;
}

static int sock_unix_addr(const char *path, struct sockaddr_un *sa,
			  struct err *e)
{
	size_t n = strlen(path);
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	/* sun_path is ~108 bytes; a silently truncated path would bind or
	 * connect to the wrong file. */
	if (n == 0 || n >= sizeof(sa->sun_path))
		return err_set(e, "socket path too long (%zu bytes, limit %zu): %s",
			       n, sizeof(sa->sun_path) - 1, path);
	memcpy(sa->sun_path, path, n + 1);
	return 0;
}

int sock_set_nonblock(int fd, bool on, struct err *e)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return err_sys(e, "fcntl(F_GETFL)");
	fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
	if (fcntl(fd, F_SETFL, fl) < 0)
		return err_sys(e, "fcntl(F_SETFL)");
	return 0;
}

int sock_unix_listen(const char *path, struct err *e)
{
	struct sockaddr_un sa;
	int fd;

	if (sock_unix_addr(path, &sa, e) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return err_sys(e, "socket(AF_UNIX)");
	if (unlink(path) < 0 && errno != ENOENT) {
		err_sys(e, "removing stale socket %s", path);
		close(fd);
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 64) < 0) {
		err_sys(e, "listening on %s", path);
		close(fd);
		return -1;
	}
	return fd;
}

static int sock_unix_connect_as(const char *path, bool wait, struct err *e)
{
	struct sockaddr_un sa;
	int fd;

	if (sock_unix_addr(path, &sa, e) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (wait ? 0 : SOCK_NONBLOCK), 0);
	if (fd < 0)
		return err_sys(e, "socket(AF_UNIX)");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EAGAIN)
			err_set(e, "connecting to %s: it accepts no connections (its queue is full)", path);
		else
			err_sys(e, "connecting to %s", path);
		close(fd);
		return -1;
	}
	/* connected (a UNIX connect never completes later): blocking from here */
	if (!wait && sock_set_nonblock(fd, false, e) < 0) {
		err_prefix(e, "%s", path);
		close(fd);
		return -1;
	}
	return fd;
}

int sock_unix_connect(const char *path, struct err *e)
{
	return sock_unix_connect_as(path, true, e);
}

int sock_unix_connect_nowait(const char *path, struct err *e)
{
	return sock_unix_connect_as(path, false, e);
}

int sock_split_hostport(const char *s, const char *defport, char *host,
			size_t hostlen, char *port, size_t portlen,
			struct err *e)
{
	const char *h = s, *p = NULL, *colon;
	size_t hl;

	if (s[0] == '[') {
		const char *close_br = strchr(s, ']');
		if (!close_br)
			return err_set(e, "bad address '%s': missing ']'", s);
		h = s + 1;
		hl = (size_t)(close_br - h);
		if (close_br[1] == ':')
			p = close_br + 2;
		else if (close_br[1] != '\0')
			return err_set(e, "bad address '%s'", s);
	} else {
		colon = strrchr(s, ':');
		/* More than one colon without brackets is a bare IPv6 address. */
		if (colon && strchr(s, ':') == colon) {
			hl = (size_t)(colon - s);
			p = colon + 1;
		} else {
			hl = strlen(s);
		}
	}
	if (!p)
		p = defport;
	if (hl == 0)
		return err_set(e, "bad address '%s': empty host", s);
	if (hl >= hostlen)
		return err_set(e, "bad address '%s': host name too long", s);
	if (!*p || strlen(p) >= portlen || strspn(p, "0123456789") != strlen(p))
		return err_set(e, "bad address '%s': port must be a number", s);
	/* getaddrinfo would take 99999 as 34463 */
	if (strlen(p) > 5 || atoi(p) < 1 || atoi(p) > 65535)
		return err_set(e, "bad address '%s': port must be 1-65535", s);
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, portlen, "%s", p);
	return 0;
}

int sock_tcp_listen(const char *hostport, struct err *e)
{
	struct addrinfo hints = { 0 }, *res, *ai;
	char host[256], port[16];
	int fd = -1, rc, one = 1, saved = 0;

	if (sock_split_hostport(hostport, "7450", host, sizeof(host), port,
				sizeof(port), e) < 0)
		return -1;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		return err_set(e, "resolving %s: %s", hostport, gai_strerror(rc));
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		/* A restarted ferryd must be able to rebind while old
		 * connections linger in TIME_WAIT. */
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
		    bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 64) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		errno = saved;
		return err_sys(e, "listening on %s", hostport);
	}
	return fd;
}

/* Finish a non-blocking connect within timeout_ms. */
static int sock_connect_wait(int fd, int timeout_ms, struct err *e)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	int rc, soerr = 0;
	socklen_t sl = sizeof(soerr);

	do
		rc = poll(&pfd, 1, timeout_ms);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return err_sys(e, "poll");
	if (rc == 0) {
		errno = ETIMEDOUT;
		return err_sys(e, "connect");
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		return err_sys(e, "getsockopt(SO_ERROR)");
	if (soerr) {
		errno = soerr;
		return err_sys(e, "connect");
	}
	return 0;
}

int sock_tcp_connect(const char *host, const char *port, int timeout_ms,
		     struct err *e)
{
	return sock_tcp_connect_from(host, port, NULL, timeout_ms, e);
}

/* Bind the local end to `from` (an address of this host, port 0). */
static int sock_bind_local(int fd, int family, const char *from, struct err *e)
{
	struct addrinfo hints = { 0 }, *res;
	int rc;
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
	rc = getaddrinfo(from, "0", &hints, &res);
	if (rc != 0)
		return err_set(e, "source address %s: %s", from, gai_strerror(rc));
	rc = bind(fd, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	if (rc < 0)
		return err_sys(e, "binding to source address %s", from);
	return 0;
}

int sock_tcp_connect_from(const char *host, const char *port, const char *from, int timeout_ms,
			  struct err *e)
{
	struct addrinfo hints = { 0 }, *res, *ai;
	struct err last = { .msg = "no addresses" };
	int fd = -1, rc;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		return err_set(e, "resolving %s: %s", host, gai_strerror(rc));
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			err_sys(&last, "socket");
			continue;
		}
		if (from && *from && sock_bind_local(fd, ai->ai_family, from, &last) < 0) {
			close(fd);
			fd = -1;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
		    (errno == EINPROGRESS &&
		     sock_connect_wait(fd, timeout_ms, &last) == 0)) {
			if (sock_set_nonblock(fd, false, &last) == 0)
				break;
		} else if (errno != EINPROGRESS) {
			err_sys(&last, "connect");
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		*e = last;
		errno = last.code;
		return -1;
	}
	return fd;
}

int sock_write_all(int fd, const void *buf, size_t len, int timeout_ms,
		   struct err *e)
{
	const char *p = buf;
	long long deadline = timeout_ms < 0 ? -1 : sock_now_ms() + timeout_ms;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			int rc = poll(&pfd, 1, sock_left_ms(deadline));
			if (rc < 0 && errno != EINTR)
				return err_sys(e, "poll");
			if (rc == 0) {
				errno = ETIMEDOUT;
				return err_sys(e, "write");
			}
			continue;
		}
		return err_sys(e, "write");
	}
	return 0;
}

char *sock_line(const char *text, size_t *n, struct err *e)
{
	size_t len = strlen(text);
	char *buf = malloc(len + 1);
	if (!buf) {
		err_set(e, "out of memory");
		return NULL;
	}
	memcpy(buf, text, len);
	buf[len] = '\n';
	*n = len + 1;
	return buf;
}

int sock_write_line(int fd, const char *text, int timeout_ms, struct err *e)
{
	size_t n;
	char *buf = sock_line(text, &n, e);
	int rc = buf ? sock_write_all(fd, buf, n, timeout_ms, e) : -1;
	free(buf);
	return rc;
}

void sock_addr_format(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN];
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
		snprintf(buf, cap, "%s:%u", a, ntohs(sin->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
		snprintf(buf, cap, "[%s]:%u", a, ntohs(sin6->sin6_port));
	} else {
		snprintf(buf, cap, "local");
	}
}

int sock_read_all(int fd, void *buf, size_t len, int timeout_ms, struct err *e)
{
	char *p = buf;
	long long deadline = timeout_ms < 0 ? -1 : sock_now_ms() + timeout_ms;

	while (len > 0) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int rc = poll(&pfd, 1, sock_left_ms(deadline));
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return err_sys(e, "poll");
		if (rc == 0) {
			errno = ETIMEDOUT;
			return err_sys(e, "read");
		}
		n = read(fd, p, len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return err_sys(e, "read");
		if (n == 0)
			return err_set(e, "connection closed by the peer");
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void sock_reader_init(struct sock_reader *r, int fd)
{
	r->fd = fd;
	r->len = 0;
	r->start = 0;
	r->rx = r->tx = NULL;
	r->wire = NULL;
	r->buf = NULL;
	r->cap = 0;
	r->line_max = SOCK_LINE_MAX;
}

void sock_reader_set_line_max(struct sock_reader *r, size_t max)
{
	r->line_max = max;
}

void sock_reader_destroy(struct sock_reader *r)
{
	seal_free(r->rx);
	seal_free(r->tx);
	free(r->wire);
	free(r->buf);
	r->rx = r->tx = NULL;
	r->wire = NULL;
	r->buf = NULL;
	r->cap = r->len = r->start = 0;
}

/* Room for more bytes after the held ones: a sealed frame's worth (or all
 * that line_max still allows), so a frame never has to be split. Returns
 * how much there is, 0 when the line is at its limit, -1 out of memory. */
static ssize_t sock_reader_room(struct sock_reader *r, struct err *e)
{
	size_t limit = r->line_max + 1, want = r->len + SEAL_FRAME_MAX + 1, cap;
	char *grown;

	if (want > limit)
		want = limit;
	if (r->cap < want) {
		cap = r->cap ? r->cap : 4096;
		while (cap < want)
			cap *= 2;
		if (cap > limit)
			cap = limit;
		grown = realloc(r->buf, cap);
		if (!grown) {
			err_set(e, "out of memory for a reply line");
			return -1;
		}
		r->buf = grown;
		r->cap = cap;
	}
	return (ssize_t)(r->cap - 1 - r->len);
}

int sock_reader_seal(struct sock_reader *r, struct seal *tx, struct seal *rx, struct err *e)
{
	const char *why = NULL;

	if (r->len > r->start)
		why = "unexpected bytes from the peer before the connection was sealed";
	else if (r->rx || r->tx)
		why = "the connection is sealed already";
	else if (!(r->wire = malloc(SEAL_WIRE_MAX)))
		why = "out of memory";
	if (why) {
		seal_free(tx);
		seal_free(rx);
		return err_set(e, "%s", why);
	}
	r->tx = tx;
	r->rx = rx;
	return 0;
}

struct sock_frame_out {
	int fd, timeout_ms;
};

static int sock_write_frame(void *ctx, const uint8_t *frame, size_t len, struct err *e)
{
	struct sock_frame_out *o = ctx;
	return sock_write_all(o->fd, frame, len, o->timeout_ms, e);
}

int sock_reader_send(struct sock_reader *r, const void *p, size_t n, int timeout_ms,
		     struct err *e)
{
	struct sock_frame_out o = { r->fd, timeout_ms };

	if (!r->tx)
		return sock_write_all(r->fd, p, n, timeout_ms, e);
	/* the reader's frame buffer: a connection is used by one thread, and
	 * sending and receiving never overlap in it */
	return seal_all(r->tx, p, n, r->wire, sock_write_frame, &o, e);
}

int sock_reader_send_line(struct sock_reader *r, const char *text, int timeout_ms,
			  struct err *e)
{
	size_t n;
	char *buf = sock_line(text, &n, e);
	int rc = buf ? sock_reader_send(r, buf, n, timeout_ms, e) : -1;
	free(buf);
	return rc;
}

/* One sealed frame into buf + len (at most room bytes of plaintext). */
static ssize_t sock_reader_frame(struct sock_reader *r, char *out, size_t room,
				 int timeout_ms, struct err *e)
{
	long len;

	if (sock_read_all(r->fd, r->wire, SEAL_HDR_LEN, timeout_ms, e) < 0)
		return -1;
	len = seal_frame_len(r->wire);
	if (len < 0) {
		err_set(e, "the peer sent a sealed frame of an impossible length");
		return -1;
	}
	if ((size_t)len > room) {
		err_set(e, "reply line longer than %zu bytes", r->line_max);
		return -1;
	}
	if (sock_read_all(r->fd, r->wire + SEAL_HDR_LEN, (size_t)len + SEAL_TAG_LEN, timeout_ms,
			  e) < 0 ||
	    seal_open(r->rx, r->wire, r->wire + SEAL_HDR_LEN, (size_t)len, (uint8_t *)out, e) < 0)
		return -1;
	return len;
}

char *sock_reader_line(struct sock_reader *r, int timeout_ms, struct err *e)
{
	long long deadline = timeout_ms < 0 ? -1 : sock_now_ms() + timeout_ms;
	size_t scanned = 0;
	ssize_t room;

	/* Drop the line handed out last time. */
	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->len - r->start);
		r->len -= r->start;
		r->start = 0;
	}
	for (;;) {
		char *nl = r->len > scanned ? memchr(r->buf + scanned, '\n', r->len - scanned)
					    : NULL;
		struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
		ssize_t n;
		int rc;

		if (nl) {
			*nl = '\0';
			r->start = (size_t)(nl - r->buf) + 1;
			return r->buf;
		}
		scanned = r->len;
		room = sock_reader_room(r, e);
		if (room < 0)
			return NULL;
		if (room == 0) {
			err_set(e, "reply line longer than %zu bytes", r->line_max);
			return NULL;
		}
		rc = poll(&pfd, 1, sock_left_ms(deadline));
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			err_sys(e, "poll");
			return NULL;
		}
		if (rc == 0) {
			err_set(e, "timed out after %d ms waiting for a reply",
				timeout_ms);
			e->code = ETIMEDOUT;
			return NULL;
		}
		if (r->rx)
			n = sock_reader_frame(r, r->buf + r->len, (size_t)room,
					      sock_left_ms(deadline), e);
		else
			n = read(r->fd, r->buf + r->len, (size_t)room);
		if (n < 0 && r->rx)
			return NULL;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			err_sys(e, "read");
			return NULL;
		}
		if (n == 0) {
			err_set(e, "connection closed before a reply arrived");
			return NULL;
		}
		r->len += (size_t)n;
	}
}

size_t sock_reader_pending(const struct sock_reader *r, const char **data)
{
	if (!r->buf) {
		*data = "";
		return 0;
	}
	*data = r->buf + r->start;
	return r->len - r->start;
}

ssize_t sock_reader_some(struct sock_reader *r, void *buf, size_t cap, struct err *e)
{
	ssize_t n;

	if (r->len > r->start) {
		size_t k = r->len - r->start < cap ? r->len - r->start : cap;
		memcpy(buf, r->buf + r->start, k);
		r->start += k;
		return (ssize_t)k;
	}
	if (!r->rx) {
		do
			n = read(r->fd, buf, cap);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			err_sys(e, "read");
		return n;
	}
	/* A frame may hold more than cap: open it into buf's own buffer and
	 * hand it out from there. An EOF at a frame boundary is a clean end. */
	r->len = r->start = 0;
	{
		struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
		char c;
		if (poll(&pfd, 1, -1) < 0)
			return err_sys(e, "poll");
		n = recv(r->fd, &c, 1, MSG_PEEK);
		if (n <= 0) {
			if (n < 0)
				err_sys(e, "read");
			return n;
		}
	}
	n = sock_reader_room(r, e);
	if (n >= 0)
		n = sock_reader_frame(r, r->buf, (size_t)n, -1, e);
	if (n < 0)
		return -1;
	r->len = (size_t)n;
	return sock_reader_some(r, buf, cap, e);
}
