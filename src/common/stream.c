/*
 * Stream implementation (see stream.h). The fd back end buffers in 64 KiB
 * and waits with poll() so that a timeout can end a stalled transfer; large
 * payloads bypass the buffer to avoid a copy. A sealed stream encrypts on
 * the way out of fd_write_all and decrypts in fd_read_some, so everything
 * above (buffering, records) is the same with or without it.
 */
#include "common/stream.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/seal.h"

void stream_init_fd(struct stream *s, int fd, bool writing)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->writing = writing;
	s->cap = STREAM_BUF;
	s->buf = malloc(s->cap);
	s->owns_buf = true;
	if (!s->buf)
		stream_fail(s, "out of memory for stream buffer");
}

void stream_init_mem_writer(struct stream *s)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->writing = true;
	s->owns_buf = true;
}

void stream_init_mem_reader(struct stream *s, const void *data, size_t len)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->span = data;
	s->len = len;
}

void stream_set_timeout(struct stream *s, int timeout_ms)
{
	s->timeout_ms = timeout_ms;
}

static void stream_drop_seal(struct stream *s)
{
	seal_free(s->seal);
	free(s->wire);
	free(s->plain);
	s->seal = NULL;
	s->wire = s->plain = NULL;
}

int stream_set_seal(struct stream *s, const uint8_t key[32], struct err *e)
{
	if (s->fd < 0 || s->seal)
		return err_set(e, "only a plain fd stream can be sealed");
	s->seal = seal_new(key, s->writing, e);
	if (!s->seal)
		return -1;
	s->wire = malloc(SEAL_WIRE_MAX);
	s->plain = s->writing ? NULL : malloc(SEAL_FRAME_MAX);
	if (!s->wire || (!s->writing && !s->plain)) {
		stream_drop_seal(s);
		return err_set(e, "out of memory");
	}
	return 0;
}

void stream_destroy(struct stream *s)
{
	if (s->owns_buf)
		free(s->buf);
	s->buf = NULL;
	s->owns_buf = false;
	stream_drop_seal(s);
}

int stream_fail(struct stream *s, const char *fmt, ...)
{
	va_list ap;
	if (s->failed)
		return -1;
	s->failed = true;
	va_start(ap, fmt);
	vsnprintf(s->e.msg, sizeof(s->e.msg), fmt, ap);
	va_end(ap);
	return -1;
}

int stream_check(const struct stream *s, struct err *e)
{
	if (!s->failed)
		return 0;
	if (e)
		*e = s->e;
	return -1;
}

/* Wait until fd is ready for `events`, honouring the timeout. */
static int stream_wait(struct stream *s, short events)
{
	struct pollfd pfd = { .fd = s->fd, .events = events };
	int r;
	if (s->timeout_ms <= 0)
		return 0;
	do {
		r = poll(&pfd, 1, s->timeout_ms);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return stream_fail(s, "poll: %s", strerror(errno));
	if (r == 0)
		return stream_fail(s, "timed out after %d ms waiting for the peer", s->timeout_ms);
	return 0;
}

/* All of iov[0..cnt) in gathered writes, resuming after partial ones. */
static void fd_writev_all(struct stream *s, struct iovec *iov, int cnt)
{
	int i = 0;
	while (i < cnt && !iov[i].iov_len)
		i++;
	while (i < cnt && !s->failed) {
		ssize_t w;
		if (stream_wait(s, POLLOUT) < 0)
			return;
		w = writev(s->fd, iov + i, cnt - i);
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			stream_fail(s, "write: %s", strerror(errno));
			return;
		}
		for (; i < cnt && (size_t)w >= iov[i].iov_len; i++)
			w -= (ssize_t)iov[i].iov_len;
		if (i < cnt) {
			iov[i].iov_base = (uint8_t *)iov[i].iov_base + w;
			iov[i].iov_len -= (size_t)w;
		}
	}
}

static void fd_write_raw(struct stream *s, const uint8_t *p, size_t n)
{
	struct iovec iov = { (void *)p, n };
	fd_writev_all(s, &iov, 1);
}

/* The buffer, then `n` bytes from `p`, as one gathered write. */
static void fd_write_pair(struct stream *s, const uint8_t *p, size_t n)
{
	struct iovec iov[2] = { { s->buf, s->len }, { (void *)p, n } };
	s->len = 0;
	fd_writev_all(s, iov, 2);
}

static int fd_write_frame(void *ctx, const uint8_t *frame, size_t len, struct err *e)
{
	struct stream *s = ctx;
	(void)e; /* a write failure is the stream's own sticky error */
	fd_write_raw(s, frame, len);
	return s->failed ? -1 : 0;
}

static void fd_write_all(struct stream *s, const uint8_t *p, size_t n)
{
	struct err e = { 0 };
	if (!s->seal) {
		fd_write_raw(s, p, n);
		return;
	}
	if (seal_all(s->seal, p, n, s->wire, fd_write_frame, s, &e) < 0 && !s->failed)
		stream_fail(s, "%s", e.msg);
}

int stream_flush(struct stream *s)
{
	if (s->failed)
		return -1;
	if (s->fd >= 0 && s->writing && s->len > 0) {
		fd_write_all(s, s->buf, s->len);
		s->len = 0;
	}
	return s->failed ? -1 : 0;
}

void stream_put(struct stream *s, const void *p, size_t n)
{
	if (s->failed || n == 0)
		return;
	s->bytes += n;
	if (s->fd < 0) {
		if (s->len + n > s->cap) {
			size_t ncap = s->cap ? s->cap : 4096;
			uint8_t *nb;
			while (ncap < s->len + n)
				ncap *= 2;
			nb = realloc(s->buf, ncap);
			if (!nb) {
				stream_fail(s, "out of memory growing stream to %zu bytes", ncap);
				return;
			}
			s->buf = nb;
			s->cap = ncap;
		}
		memcpy(s->buf + s->len, p, n);
		s->len += n;
		return;
	}
	if (s->len + n <= s->cap) {
		memcpy(s->buf + s->len, p, n);
		s->len += n;
		return;
	}
	if (n >= s->cap / 2 && !s->seal && s->writing) {
		/* big payload: straight from the caller, in one write with what
		 * is buffered (a record's header), so with TCP_NODELAY the header
		 * does not go out as a segment of its own */
		fd_write_pair(s, p, n);
		return;
	}
	if (stream_flush(s) < 0)
		return;
	if (n >= s->cap / 2) {
		fd_write_all(s, p, n); /* big payload: straight from the caller */
		return;
	}
	memcpy(s->buf, p, n);
	s->len = n;
}

void stream_put_u8(struct stream *s, uint8_t v) { stream_put(s, &v, 1); }
void stream_put_u16(struct stream *s, uint16_t v) { uint8_t b[2]; le_put_u16(b, v); stream_put(s, b, 2); }
void stream_put_u32(struct stream *s, uint32_t v) { uint8_t b[4]; le_put_u32(b, v); stream_put(s, b, 4); }
void stream_put_u64(struct stream *s, uint64_t v) { uint8_t b[8]; le_put_u64(b, v); stream_put(s, b, 8); }

void stream_put_str(struct stream *s, const char *str)
{
	size_t n = strlen(str);
	stream_put_u32(s, (uint32_t)n);
	stream_put(s, str, n);
}

/* Some bytes (1..n) from the fd; 0 once the stream has failed (end of
 * input counts as truncation: every caller needs those bytes). */
static size_t fd_read_raw(struct stream *s, uint8_t *p, size_t n)
{
	while (!s->failed) {
		ssize_t r;
		if (stream_wait(s, POLLIN) < 0)
			break;
		r = read(s->fd, p, n);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			stream_fail(s, "read: %s", strerror(errno));
			break;
		}
		if (r == 0) {
			s->eof = true;
			stream_fail(s, "stream truncated: peer closed or file ended");
			break;
		}
		return (size_t)r;
	}
	return 0;
}

/* Exactly n bytes into p, from some() (the fd itself, or the opened
 * frames); stops short once the stream has failed. */
static void fd_read_exact(struct stream *s, uint8_t *p, size_t n,
			  size_t (*some)(struct stream *, uint8_t *, size_t))
{
	while (n > 0) {
		size_t r = some(s, p, n);
		if (!r)
			return;
		p += r;
		n -= r;
	}
}

/* Some plaintext bytes (1..n): from the fd, or, sealed, from the frame
 * opened last (the next whole frame is read and checked when it is used
 * up, before any of its bytes are handed out; a caller that wants the
 * whole frame gets it decrypted in place: page payloads skip a copy, and
 * if the check fails the stream has failed and the bytes are not used).
 * 0 once failed. */
static size_t fd_read_some(struct stream *s, uint8_t *p, size_t n)
{
	struct err e = { 0 };
	size_t take;
	long len;
	if (!s->seal)
		return fd_read_raw(s, p, n);
	if (s->plain_pos == s->plain_len) {
		uint8_t *out;
		fd_read_exact(s, s->wire, SEAL_HDR_LEN, fd_read_raw);
		if (s->failed)
			return 0;
		len = seal_frame_len(s->wire);
		if (len < 0) {
			stream_fail(s, "corrupt stream: encrypted frame length %u out of range",
				    le_get_u32(s->wire));
			return 0;
		}
		fd_read_exact(s, s->wire + SEAL_HDR_LEN, (size_t)len + SEAL_TAG_LEN, fd_read_raw);
		if (s->failed)
			return 0;
		out = (size_t)len <= n ? p : s->plain;
		if (seal_open(s->seal, s->wire, s->wire + SEAL_HDR_LEN, (size_t)len, out, &e) < 0) {
			stream_fail(s, "%s", e.msg);
			return 0;
		}
		if (out == p)
			return (size_t)len;
		s->plain_len = (size_t)len;
		s->plain_pos = 0;
	}
	take = s->plain_len - s->plain_pos < n ? s->plain_len - s->plain_pos : n;
	memcpy(p, s->plain + s->plain_pos, take);
	s->plain_pos += take;
	return take;
}


void stream_get(struct stream *s, void *out, size_t n)
{
	uint8_t *p = out;
	if (s->failed) {
		memset(out, 0, n);
		return;
	}
	if (n == 0)
		return;
	if (s->fd < 0) {
		if (n > s->len - s->pos) {
			s->eof = true;
			stream_fail(s, "stream truncated: wanted %zu bytes, %zu left", n, s->len - s->pos);
			memset(out, 0, n);
			return;
		}
		memcpy(p, s->span + s->pos, n);
		s->pos += n;
		s->bytes += n;
		return;
	}
	/* buffered part first */
	size_t have = s->len - s->pos;
	size_t take = have < n ? have : n;
	memcpy(p, s->buf + s->pos, take);
	s->pos += take;
	p += take;
	n -= take;
	s->bytes += take;
	if (n == 0)
		return;
	if (n >= s->cap / 2) {
		fd_read_exact(s, p, n, fd_read_some);
		if (!s->failed)
			s->bytes += n;
		else
			memset(p, 0, n);
		return;
	}
	s->pos = s->len = 0;
	while (s->len < n) {
		size_t r = fd_read_some(s, s->buf + s->len, s->cap - s->len);
		if (!r)
			break;
		s->len += r;
	}
	if (s->failed) {
		memset(p, 0, n);
		return;
	}
	memcpy(p, s->buf, n);
	s->pos = n;
	s->bytes += n;
}

uint8_t stream_get_u8(struct stream *s) { uint8_t v; stream_get(s, &v, 1); return v; }
uint16_t stream_get_u16(struct stream *s) { uint8_t b[2]; stream_get(s, b, 2); return le_get_u16(b); }
uint32_t stream_get_u32(struct stream *s) { uint8_t b[4]; stream_get(s, b, 4); return le_get_u32(b); }
uint64_t stream_get_u64(struct stream *s) { uint8_t b[8]; stream_get(s, b, 8); return le_get_u64(b); }

void stream_get_str(struct stream *s, char *out, size_t max)
{
	uint32_t n = stream_get_u32(s);
	if (max == 0)
		return;
	out[0] = 0;
	if (s->failed)
		return;
	if (n >= max) {
		stream_fail(s, "string of %u bytes exceeds limit %zu", n, max - 1);
		return;
	}
	stream_get(s, out, n);
	out[s->failed ? 0 : n] = 0;
}

void stream_skip(struct stream *s, uint64_t n)
{
	uint8_t tmp[4096];
	while (n > 0 && !s->failed) {
		size_t c = n > sizeof(tmp) ? sizeof(tmp) : (size_t)n;
		stream_get(s, tmp, c);
		n -= c;
	}
}

size_t stream_remaining(const struct stream *s)
{
	return s->len - s->pos;
}

bool stream_readable_now(const struct stream *s)
{
	struct pollfd p = { s->fd, POLLIN, 0 };
	if (s->failed || s->len > s->pos || (s->seal && s->plain_pos < s->plain_len))
		return true;
	return s->fd >= 0 && poll(&p, 1, 0) > 0;
}
