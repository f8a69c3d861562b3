/*
 * A byte stream with a sticky error, in the manner of redis' rio and QEMU's
 * QEMUFile: call sites write or read a run of fields and check once at the
 * end. Back ends: a file descriptor (file, pipe, socket; buffered, with an
 * optional I/O timeout so a dead peer cannot hang a migration) or memory
 * (a growable buffer for writing, a fixed span for reading). An fd stream
 * can be sealed (encrypted and authenticated, seal.h) below its buffer.
 * All integers are little-endian on the wire.
 */
#ifndef FERRY_STREAM_H
#define FERRY_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define STREAM_BUF 65536

struct stream {
	int fd;                 /* -1 for memory streams */
	bool writing;
	bool failed;            /* sticky */
	bool eof;               /* reader hit end of input */
	struct err e;
	int timeout_ms;         /* fd back end: per-operation timeout, 0 = none */
	uint64_t bytes;         /* payload bytes moved through the stream */
	uint8_t *buf;           /* fd: I/O buffer; mem writer: the data */
	size_t cap, len, pos;   /* buffer capacity, fill, read position */
	const uint8_t *span;    /* mem reader */
	bool owns_buf;
	struct seal *seal;      /* fd: frames encrypted/checked (NULL = plain) */
	uint8_t *wire;          /* sealed: one frame as on the wire */
	uint8_t *plain;         /* sealed reader: the last frame opened */
	size_t plain_len, plain_pos;
};

void stream_init_fd(struct stream *s, int fd, bool writing);
void stream_init_mem_writer(struct stream *s);
void stream_init_mem_reader(struct stream *s, const void *data, size_t len);
void stream_set_timeout(struct stream *s, int timeout_ms);
/* From now on, bytes on the fd are sealed frames under this key (one key
 * per direction of a connection; see seal.h). -1 with e set on failure. */
int stream_set_seal(struct stream *s, const uint8_t key[32], struct err *e);
/* Frees buffers; does not close the fd. */
void stream_destroy(struct stream *s);

static inline bool stream_ok(const struct stream *s) { return !s->failed; }
static inline const char *stream_errmsg(const struct stream *s) { return s->e.msg; }
/* Fail the stream with a message (first error wins); returns -1. */
int stream_fail(struct stream *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Copy the sticky error into e; returns 0 if the stream is fine, else -1. */
int stream_check(const struct stream *s, struct err *e);

void stream_put(struct stream *s, const void *p, size_t n);
void stream_put_u8(struct stream *s, uint8_t v);
void stream_put_u16(struct stream *s, uint16_t v);
void stream_put_u32(struct stream *s, uint32_t v);
void stream_put_u64(struct stream *s, uint64_t v);
/* u32 length then bytes */
void stream_put_str(struct stream *s, const char *str);
int stream_flush(struct stream *s);

/* Reads fail the stream on short input (truncation is an error). */
void stream_get(struct stream *s, void *p, size_t n);
uint8_t stream_get_u8(struct stream *s);
uint16_t stream_get_u16(struct stream *s);
uint32_t stream_get_u32(struct stream *s);
uint64_t stream_get_u64(struct stream *s);
/* Reads a u32-length string of at most max-1 bytes into out (NUL ended). */
void stream_get_str(struct stream *s, char *out, size_t max);
/* Discard n bytes. */
void stream_skip(struct stream *s, uint64_t n);
/* Memory reader: bytes left. fd reader: bytes buffered. */
size_t stream_remaining(const struct stream *s);
/* fd reader: would a read start without waiting (bytes buffered, or the
 * fd readable: data, end of file or an error)? */
bool stream_readable_now(const struct stream *s);

/* Memory writer: the data written so far. */
static inline const uint8_t *stream_mem_data(const struct stream *s) { return s->buf; }
static inline size_t stream_mem_len(const struct stream *s) { return s->len; }

/* Little-endian helpers for fixed buffers. */
static inline void le_put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void le_put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void le_put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline uint16_t le_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t le_get_u32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static inline uint64_t le_get_u64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }

#endif
