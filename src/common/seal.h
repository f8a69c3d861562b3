/*
 * Sealed frames: the encryption of a migration connection. A byte stream is
 * cut into frames of at most SEAL_FRAME_MAX bytes, each sent as
 *   u32 LE length L | L bytes AES-256-GCM ciphertext | 16-byte tag
 * with the length as additional data and a 96-bit nonce of 4 zero bytes and
 * a 64-bit frame counter (LE), so each direction of a connection, which has
 * its own key (auth_chan_*), never reuses a nonce. A frame that fails its
 * tag (a flipped bit, a dropped, reordered or replayed frame, another key)
 * fails the stream. stream.c applies it below its buffer.
 */
#ifndef FERRY_SEAL_H
#define FERRY_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define SEAL_KEY_LEN 32
#define SEAL_TAG_LEN 16
#define SEAL_HDR_LEN 4
#define SEAL_FRAME_MAX (64 * 1024)
/* Bytes on the wire for the largest frame. */
#define SEAL_WIRE_MAX (SEAL_HDR_LEN + SEAL_FRAME_MAX + SEAL_TAG_LEN)

struct seal;

/* A seal works one way: sealing (a writer) or opening (a reader). */
struct seal *seal_new(const uint8_t key[SEAL_KEY_LEN], bool sealing, struct err *e);
void seal_free(struct seal *s);
/* Encrypt n (1..SEAL_FRAME_MAX) bytes into out (n + SEAL_HDR_LEN +
 * SEAL_TAG_LEN bytes): one whole frame. */
int seal_frame(struct seal *s, const uint8_t *in, size_t n, uint8_t *out, struct err *e);
/* Seal n bytes (any length) as frames of up to SEAL_FRAME_MAX, each built
 * in frame (SEAL_WIRE_MAX bytes) and handed to emit; stops at the first
 * failure (emit's, which sets e, or a frame's). */
int seal_all(struct seal *s, const uint8_t *in, size_t n, uint8_t *frame,
	     int (*emit)(void *ctx, const uint8_t *frame, size_t len, struct err *e), void *ctx,
	     struct err *e);
/* The payload length a frame header announces; -1 if out of range. */
long seal_frame_len(const uint8_t hdr[SEAL_HDR_LEN]);
/* Decrypt and check one frame (header, then len bytes and the tag in body)
 * into out (len bytes). */
int seal_open(struct seal *s, const uint8_t hdr[SEAL_HDR_LEN], const uint8_t *body, size_t len,
	      uint8_t *out, struct err *e);

#endif
