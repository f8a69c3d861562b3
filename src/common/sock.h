/*
 * Socket helpers shared by ferryd and the ferry CLI: UNIX and TCP
 * listeners/connections, "host:port" parsing, and a buffered line reader
 * with a timeout for the simple request/response clients (the CLI, and
 * ferryd talking to a worker's control socket or to another ferryd). All
 * fds are CLOEXEC so workers spawned by ferryd never inherit them. A
 * reader's connection can be sealed (common/seal.h): once ferryd's TCP API
 * has authenticated both ends, every byte either way is an encrypted frame.
 */
#ifndef FERRY_SOCK_H
#define FERRY_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/err.h"

/* Longest line any ferry JSON-lines endpoint accepts (request or reply). */
#define SOCK_LINE_MAX (64 * 1024)
/* A reply may be far longer than a request: a history of 10000 moves. */
#define SOCK_REPLY_MAX (64 * 1024 * 1024)

/* Bind and listen on a UNIX stream socket at path (an existing socket file
 * is replaced: callers hold a lock that proves no one else serves it).
 * Returns a non-blocking fd or -1. */
int sock_unix_listen(const char *path, struct err *e);
/* Connect to a UNIX stream socket; blocking fd, or -1. */
int sock_unix_connect(const char *path, struct err *e);
/* The same, but fails at once when the listener's queue is full (a server
 * that stopped accepting) instead of waiting for room: for a caller that
 * must not stall, like ferryd's event loop talking to a worker. */
int sock_unix_connect_nowait(const char *path, struct err *e);
/* Listen on "host:port" ("[v6]:port" for IPv6). Non-blocking fd, or -1. */
int sock_tcp_listen(const char *hostport, struct err *e);
/* Connect to host:port (blocking, up to timeout_ms for the connect). */
int sock_tcp_connect(const char *host, const char *port, int timeout_ms,
		     struct err *e);
/* Same, with the local end bound to address `from` (NULL or "": any). */
int sock_tcp_connect_from(const char *host, const char *port, const char *from, int timeout_ms,
			  struct err *e);

/* Split "host:port", "[v6]:port" or "host" (then port = defport). */
int sock_split_hostport(const char *s, const char *defport, char *host,
			size_t hostlen, char *port, size_t portlen,
			struct err *e);

int sock_set_nonblock(int fd, bool on, struct err *e);

/* "1.2.3.4:5", "[v6]:5", or "local" for other families, into buf. */
struct sockaddr_storage;
void sock_addr_format(const struct sockaddr_storage *ss, char *buf, size_t cap);

/* Write all of buf, waiting up to timeout_ms in total (works on blocking
 * and non-blocking fds). */
int sock_write_all(int fd, const void *buf, size_t len, int timeout_ms,
		   struct err *e);

/* text and its '\n' in one new buffer (the caller frees it), *n its size:
 * one write, or one sealed frame, per line. */
char *sock_line(const char *text, size_t *n, struct err *e);

/* Write text and its '\n' in one write: split, Nagle would hold the
 * newline for the peer's delayed ACK (~40 ms per request over TCP). */
int sock_write_line(int fd, const char *text, int timeout_ms, struct err *e);

/* CLOCK_MONOTONIC in ms, for deadlines like those below. */
long long sock_now_ms(void);
/* Read exactly len bytes, waiting up to timeout_ms in total; EOF first is
 * an error that says so. */
int sock_read_all(int fd, void *buf, size_t len, int timeout_ms, struct err *e);

/* Buffered line reader for request/response clients, and the client's
 * side of the connection: with seals set, lines are sent and received as
 * sealed frames. */
struct seal;
struct sock_reader {
	int fd;
	size_t len;   /* plaintext bytes held in buf */
	size_t start; /* first byte not yet handed out */
	struct seal *rx, *tx; /* both set once the connection is sealed */
	unsigned char *wire;  /* one sealed frame, read or being sent (SEAL_WIRE_MAX) */
	char *buf;            /* grows as a line needs, up to line_max + 1 */
	size_t cap;
	size_t line_max;      /* SOCK_LINE_MAX unless set */
};

void sock_reader_init(struct sock_reader *r, int fd);
/* A reader of replies that may be long (ferryd's history: ~1 KiB a move)
 * takes lines of up to max bytes; requests stay at SOCK_LINE_MAX. */
void sock_reader_set_line_max(struct sock_reader *r, size_t max);
/* Frees the buffer and the seals (the fd stays open: it is the caller's). */
void sock_reader_destroy(struct sock_reader *r);
/* From now on both directions are sealed with these (taken over). Fails if
 * plaintext bytes were already read past the last line: nothing may come
 * between the handshake and the switch. */
int sock_reader_seal(struct sock_reader *r, struct seal *tx, struct seal *rx, struct err *e);
/* Send text and '\n' on the reader's connection: one write, or one sealed
 * frame per SEAL_FRAME_MAX bytes. */
int sock_reader_send_line(struct sock_reader *r, const char *text, int timeout_ms,
			  struct err *e);
/* Send raw bytes on the reader's connection (sealed when it is). */
int sock_reader_send(struct sock_reader *r, const void *p, size_t n, int timeout_ms,
		     struct err *e);
/* Some bytes (1..cap) from the connection once it carries a raw byte
 * stream (the console): pending ones first, else one read or one frame.
 * 0 at EOF, -1 on error. */
ssize_t sock_reader_some(struct sock_reader *r, void *buf, size_t cap, struct err *e);
/* Next '\n'-terminated line, NUL-terminated without the '\n', valid until
 * the next call. Waits up to timeout_ms (-1 = forever). Fails on EOF,
 * timeout, or a line longer than the reader's line_max. */
char *sock_reader_line(struct sock_reader *r, int timeout_ms, struct err *e);
/* Bytes already read past the last line (e.g. after a connection switches
 * to a raw byte stream). */
size_t sock_reader_pending(const struct sock_reader *r, const char **data);

#endif
