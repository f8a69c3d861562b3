/*
 * Host authentication: every ferry host of a cluster holds one shared
 * secret (the cluster key, 32 random bytes kept as hex in a 0600 file).
 * Peers prove they hold it without sending it: each side sends a fresh
 * nonce and answers the other's with HMAC-SHA256(key, role | nonces), the
 * role keeping a reflected proof from passing as the other side's. Both
 * the JSON-lines API over TCP (ferryd, the CLI, peer calls) and every
 * migration connection (with a key derived per move) authenticate this way.
 */
#ifndef FERRY_AUTH_H
#define FERRY_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define AUTH_KEY_LEN 32
#define AUTH_NONCE_LEN 16
#define AUTH_PROOF_LEN 32
/* Hex text of a key, nonce or proof, with its NUL. */
#define AUTH_KEY_HEX (AUTH_KEY_LEN * 2 + 1)
#define AUTH_NONCE_HEX (AUTH_NONCE_LEN * 2 + 1)
#define AUTH_PROOF_HEX (AUTH_PROOF_LEN * 2 + 1)

/* The roles whose proofs differ (client/server of the API; source and
 * destination of a migration connection). */
#define AUTH_ROLE_CLIENT "ferry-api-client"
#define AUTH_ROLE_SERVER "ferry-api-server"
#define AUTH_ROLE_SOURCE "ferry-migration-source"
#define AUTH_ROLE_DEST "ferry-migration-destination"

struct auth_key {
	bool set;
	uint8_t k[AUTH_KEY_LEN];
};

/* Read a key file: 64 hex digits (surrounding white space allowed). A file
 * others can read is refused, as ssh refuses such a private key. */
int auth_key_load(struct auth_key *key, const char *path, struct err *e);
/* Create a new key file (mode 0600) unless one exists already; *created
 * says which. Safe against another process creating the same path. */
int auth_key_create(const char *path, bool *created, struct err *e);
/* A short name for a key that gives nothing away (16 hex digits of an
 * HMAC under it): hosts that show the same one hold the same key. */
#define AUTH_FINGERPRINT_HEX 17
void auth_fingerprint(const struct auth_key *key, char out[AUTH_FINGERPRINT_HEX]);
/* Parse/format hex (a key sent to a worker, a nonce, a proof). */
int auth_from_hex(const char *hex, uint8_t *out, size_t len);
void auth_to_hex(const uint8_t *in, size_t len, char *out);
/* Fresh random bytes from the kernel. */
int auth_random(uint8_t *out, size_t len, struct err *e);
/* HMAC-SHA256(key, role | a | b). */
void auth_proof(const struct auth_key *key, const char *role, const uint8_t a[AUTH_NONCE_LEN],
		const uint8_t b[AUTH_NONCE_LEN], uint8_t out[AUTH_PROOF_LEN]);
/* Does proof (hex) equal ours? Constant time. */
bool auth_proof_ok(const struct auth_key *key, const char *role, const uint8_t a[AUTH_NONCE_LEN],
		   const uint8_t b[AUTH_NONCE_LEN], const char *proof_hex);
/* A key for one move's migration connections: HMAC(cluster key, label |
 * salt), so a salt seen on the wire gives nothing without the cluster key. */
void auth_derive(const struct auth_key *cluster, const char *label, const uint8_t *salt,
		 size_t salt_len, struct auth_key *out);

/* A migration connection's handshake, before its first stream byte (see
 * docs/stream.md): the source sends magic, its nonce and flags (encrypt or
 * not); the destination answers with its nonce and proof; the source checks
 * it and sends its own proof. Both proofs cover the flags, so no one on the
 * path can turn encryption off. Each side fails with a message naming what
 * went wrong. With encryption, each direction gets its own key, derived
 * from the move's key and both nonces, for stream_set_seal. */
#define AUTH_CHAN_MAGIC "FRYAUTH1"
#define AUTH_CHAN_ENCRYPT 1u /* hello flag: seal both directions */
struct auth_chan {
	bool encrypt;
	uint8_t key_tx[AUTH_KEY_LEN]; /* what this side sends */
	uint8_t key_rx[AUTH_KEY_LEN]; /* what it receives */
};
/* How long a destination waits on one connection's handshake before it
 * turns the connection away. */
#define AUTH_CHAN_TIMEOUT_MS 5000
int auth_chan_source(int fd, const struct auth_key *key, bool encrypt, int timeout_ms,
		     struct auth_chan *out, struct err *e);
int auth_chan_dest(int fd, const struct auth_key *key, int timeout_ms, struct auth_chan *out,
		   struct err *e);
/* The destination's side one step at a time, for a caller that answers
 * several connections at once from its own poll loop (a stranger holding
 * one open then delays no one): reads what a non-blocking fd has, answers
 * the hello once it is whole. 1 done (out set), 0 call again when fd is
 * readable, -1 refused or failed. Reads nothing past the handshake. */
struct auth_chan_hs {
	uint8_t in[64];   /* the hello, then the source's proof */
	size_t got;
	uint8_t dn[AUTH_NONCE_LEN];
	bool answered;
};
int auth_chan_dest_step(int fd, const struct auth_key *key, struct auth_chan_hs *hs,
			struct auth_chan *out, struct err *e);

/* Once a TCP API client and ferryd have proved the key to each other,
 * every further byte of their connection is sealed (common/seal.h), each
 * direction with its own key: HMAC-SHA256(cluster key, role | server nonce
 * | client nonce). Only the two ends can derive them, so no one on the path
 * reads requests and replies, or takes the session over after the
 * handshake. ferryd's greeting announces it ("seal":"aes-256-gcm"). */
#define AUTH_API_SEAL "aes-256-gcm"
#define AUTH_ROLE_API_C2S "ferry-api-seal-client-to-server"
#define AUTH_ROLE_API_S2C "ferry-api-seal-server-to-client"
struct seal;
int auth_api_seals(const struct auth_key *key, const uint8_t sn[AUTH_NONCE_LEN],
		   const uint8_t cn[AUTH_NONCE_LEN], bool server, struct seal **tx,
		   struct seal **rx, struct err *e);

/* The TCP API's protocol versions. ferryd's greeting says which it speaks
 * ("proto_min".."proto"); a client or peer that shares none with it stops
 * before its first request, naming both, rather than failing later on a
 * field the other side reads differently. Raise FERRY_API_PROTO when a
 * verb's fields change incompatibly, and FERRY_API_PROTO_MIN only when the
 * old version is no longer served: during a rolling upgrade old and new
 * hosts must still be able to move VMs between them. */
#define FERRY_API_PROTO_MIN 1
#define FERRY_API_PROTO 1
/* The highest version both ranges hold, or -1 when they do not overlap. */
int auth_api_proto_agree(int my_min, int my_max, int peer_min, int peer_max);

/* The keys a side may prove: its cluster key and, while the cluster moves
 * to a new key, the previous one. ferryd's greeting lists the fingerprints
 * of the keys it accepts ("keys"); the client proves the first of its own
 * that ferryd holds and names it ("key" in its auth request). */
#define AUTH_MAX_KEYS 2
struct auth_keyring {
	const struct auth_key *k[AUTH_MAX_KEYS]; /* unset or NULL entries are skipped */
};
/* The key of ring with fingerprint fp (hex): its index, or -1. */
int auth_keyring_find(const struct auth_keyring *ring, const char *fp);

/* The API client's side over TCP: read ferryd's greeting line, check the
 * protocol versions, then, if it asks, prove a key of ring that ferryd
 * holds (*used: its index) and check ferryd's proof, and seal the
 * connection (rd's seals; sock_reader_send_line and sock_reader_line use
 * them). A client holding a key refuses a ferryd that does not
 * authenticate (it could be anyone); one without a key is told where to
 * get it. `where` names the server. A refusal over keys (not the network)
 * sets e->code = EACCES; over protocol versions, EPROTO. */
struct sock_reader;
int auth_api_client(int fd, struct sock_reader *rd, const struct auth_keyring *ring,
		    int timeout_ms, const char *where, int *used, struct err *e);

#endif
