/* Host authentication with a shared cluster key (see auth.h). */
#include "common/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/jsonl.h"
#include "common/seal.h"
#include "common/sock.h"
#include "common/stream.h"

int auth_from_hex(const char *hex, uint8_t *out, size_t len)
{
	if (!hex || strlen(hex) != len * 2)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned v = 0;
		for (int j = 0; j < 2; j++) {
			char c = hex[i * 2 + (size_t)j];
			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v |= (unsigned)(c - 'a' + 10);
			else if (c >= 'A' && c <= 'F')
				v |= (unsigned)(c - 'A' + 10);
			else
				return -1;
		}
		out[i] = (uint8_t)v;
	}
	return 0;
}

void auth_to_hex(const uint8_t *in, size_t len, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[i * 2] = d[in[i] >> 4];
		out[i * 2 + 1] = d[in[i] & 15];
	}
	out[len * 2] = 0;
}

int auth_random(uint8_t *out, size_t len, struct err *e)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = getrandom(out + got, len - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return err_sys(e, "getrandom");
		got += (size_t)n;
	}
	return 0;
}

int auth_key_load(struct auth_key *key, const char *path, struct err *e)
{
	char buf[160], *p, *end;
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	key->set = false;
	if (fd < 0)
		return err_sys(e, "cluster key %s", path);
	if (fstat(fd, &st) < 0) {
		close(fd);
		return err_sys(e, "cluster key %s", path);
	}
	if (st.st_mode & 077) {
		close(fd);
		return err_set(e, "cluster key %s can be read by other users (mode %04o): "
			       "chmod 600 %s", path, (unsigned)(st.st_mode & 07777), path);
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return err_sys(e, "reading cluster key %s", path);
	buf[n] = 0;
	for (p = buf; *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'; p++)
		;
	for (end = p; (*end >= '0' && *end <= '9') || (*end >= 'a' && *end <= 'f') ||
		      (*end >= 'A' && *end <= 'F'); end++)
		;
	for (char *q = end; *q; q++)
		if (*q != ' ' && *q != '\n' && *q != '\t' && *q != '\r')
			return err_set(e, "cluster key %s: not 64 hex digits", path);
	*end = 0;
	if (auth_from_hex(p, key->k, AUTH_KEY_LEN) < 0)
		return err_set(e, "cluster key %s: not 64 hex digits", path);
	key->set = true;
	return 0;
}

int auth_key_create(const char *path, bool *created, struct err *e)
{
	uint8_t k[AUTH_KEY_LEN];
	char hex[AUTH_KEY_HEX + 1], tmp[4200];
	int fd, rc;

	*created = false;
	if (access(path, F_OK) == 0)
		return 0;
	if (auth_random(k, sizeof(k), e) < 0)
		return -1;
	auth_to_hex(k, sizeof(k), hex);
	strcat(hex, "\n");
	if (snprintf(tmp, sizeof(tmp), "%s.new-%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return err_set(e, "cluster key path too long");
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) /* named as the user gave it: the temporary name means nothing to them */
		return err_sys(e, "creating cluster key %s", path);
	rc = sock_write_all(fd, hex, strlen(hex), -1, e);
	if (rc == 0 && fsync(fd) < 0)
		rc = err_sys(e, "writing cluster key %s", tmp);
	if (close(fd) < 0 && rc == 0)
		rc = err_sys(e, "writing cluster key %s", tmp);
	/* link() never replaces: whoever links first wins and everyone else
	 * reads that key, so two ferryds started together agree. */
	if (rc == 0 && link(tmp, path) < 0) {
		if (errno != EEXIST)
			rc = err_sys(e, "creating cluster key %s", path);
	} else if (rc == 0) {
		*created = true;
	}
	unlink(tmp);
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(hex, sizeof(hex));
	return rc;
}

static void auth_hmac(const struct auth_key *key, const char *label, const uint8_t *a, size_t alen,
		      const uint8_t *b, size_t blen, uint8_t out[AUTH_PROOF_LEN])
{
	uint8_t msg[256];
	size_t l = strlen(label), n = 0;
	unsigned int outlen = AUTH_PROOF_LEN;
	/* Callers pass constant labels and fixed-size inputs: they always fit. */
	memcpy(msg, label, l);
	msg[l] = 0; /* the label ends where the binary part starts */
	n = l + 1;
	memcpy(msg + n, a, alen);
	n += alen;
	if (b) {
		memcpy(msg + n, b, blen);
		n += blen;
	}
	HMAC(EVP_sha256(), key->k, AUTH_KEY_LEN, msg, n, out, &outlen);
}

void auth_proof(const struct auth_key *key, const char *role, const uint8_t a[AUTH_NONCE_LEN],
		const uint8_t b[AUTH_NONCE_LEN], uint8_t out[AUTH_PROOF_LEN])
{
	auth_hmac(key, role, a, AUTH_NONCE_LEN, b, AUTH_NONCE_LEN, out);
}

bool auth_proof_ok(const struct auth_key *key, const char *role, const uint8_t a[AUTH_NONCE_LEN],
		   const uint8_t b[AUTH_NONCE_LEN], const char *proof_hex)
{
	uint8_t want[AUTH_PROOF_LEN], got[AUTH_PROOF_LEN];
	auth_proof(key, role, a, b, want);
	if (auth_from_hex(proof_hex, got, sizeof(got)) < 0)
		return false;
	return CRYPTO_memcmp(want, got, sizeof(want)) == 0;
}

void auth_fingerprint(const struct auth_key *key, char out[AUTH_FINGERPRINT_HEX])
{
	uint8_t h[AUTH_PROOF_LEN];
	auth_hmac(key, "ferry-key-fingerprint", (const uint8_t *)"", 0, NULL, 0, h);
	auth_to_hex(h, 8, out);
}

void auth_derive(const struct auth_key *cluster, const char *label, const uint8_t *salt,
		 size_t salt_len, struct auth_key *out)
{
	if (salt_len > 128)
		salt_len = 128;
	auth_hmac(cluster, label, salt, salt_len, NULL, 0, out->k);
	out->set = true;
}

/* The channel handshake's fixed-size messages (binary). */
struct chan_hello {
	char magic[8];
	uint8_t nonce[AUTH_NONCE_LEN];
	uint8_t flags[4];    /* u32 LE: AUTH_CHAN_ENCRYPT */
	uint8_t reserved[4]; /* zero */
};
struct chan_answer { uint8_t nonce[AUTH_NONCE_LEN]; uint8_t proof[AUTH_PROOF_LEN]; };

/* Proofs and session keys cover the whole hello (flags included) and the
 * destination's nonce. */
static void chan_mac(const struct auth_key *key, const char *label, const struct chan_hello *h,
		     const uint8_t dn[AUTH_NONCE_LEN], uint8_t out[AUTH_PROOF_LEN])
{
	auth_hmac(key, label, (const uint8_t *)h, sizeof(*h), dn, AUTH_NONCE_LEN, out);
}

static bool chan_proof_ok(const struct auth_key *key, const char *role, const struct chan_hello *h,
			  const uint8_t dn[AUTH_NONCE_LEN], const uint8_t *proof)
{
	uint8_t want[AUTH_PROOF_LEN];
	chan_mac(key, role, h, dn, want);
	return CRYPTO_memcmp(want, proof, sizeof(want)) == 0;
}

static void chan_keys(const struct auth_key *key, const struct chan_hello *h,
		      const uint8_t dn[AUTH_NONCE_LEN], bool source, struct auth_chan *out)
{
	uint8_t s2d[AUTH_KEY_LEN], d2s[AUTH_KEY_LEN];
	out->encrypt = le_get_u32(h->flags) & AUTH_CHAN_ENCRYPT;
	chan_mac(key, "ferry-migration-seal-source-to-destination", h, dn, s2d);
	chan_mac(key, "ferry-migration-seal-destination-to-source", h, dn, d2s);
	memcpy(out->key_tx, source ? s2d : d2s, AUTH_KEY_LEN);
	memcpy(out->key_rx, source ? d2s : s2d, AUTH_KEY_LEN);
	OPENSSL_cleanse(s2d, sizeof(s2d));
	OPENSSL_cleanse(d2s, sizeof(d2s));
}

int auth_chan_source(int fd, const struct auth_key *key, bool encrypt, int timeout_ms,
		     struct auth_chan *out, struct err *e)
{
	struct chan_hello h = { .magic = { 0 } };
	struct chan_answer a;
	uint8_t proof[AUTH_PROOF_LEN];

	memcpy(h.magic, AUTH_CHAN_MAGIC, sizeof(h.magic));
	le_put_u32(h.flags, encrypt ? AUTH_CHAN_ENCRYPT : 0);
	if (auth_random(h.nonce, sizeof(h.nonce), e) < 0 ||
	    sock_write_all(fd, &h, sizeof(h), timeout_ms, e) < 0)
		return err_prefix(e, "authenticating to the destination");
	if (sock_read_all(fd, &a, sizeof(a), timeout_ms, e) < 0)
		return err_prefix(e, "authenticating to the destination (does it expect a "
				  "migration key? are both hosts' cluster keys the same?)");
	if (!chan_proof_ok(key, AUTH_ROLE_DEST, &h, a.nonce, a.proof))
		return err_set(e, "the destination failed to prove the migration key: the hosts "
			       "do not share a cluster key, or something else answered");
	chan_mac(key, AUTH_ROLE_SOURCE, &h, a.nonce, proof);
	if (sock_write_all(fd, proof, sizeof(proof), timeout_ms, e) < 0)
		return err_prefix(e, "authenticating to the destination");
	chan_keys(key, &h, a.nonce, true, out);
	return 0;
}

_Static_assert(sizeof(struct chan_hello) + AUTH_PROOF_LEN <= sizeof(((struct auth_chan_hs *)0)->in),
	       "auth_chan_hs holds the hello and the proof");

int auth_chan_dest_step(int fd, const struct auth_key *key, struct auth_chan_hs *hs,
			struct auth_chan *out, struct err *e)
{
	size_t want = sizeof(struct chan_hello) + (hs->answered ? AUTH_PROOF_LEN : 0);
	struct chan_hello h;

	while (hs->got < want) {
		/* MSG_DONTWAIT: never blocks, whether or not fd is non-blocking */
		ssize_t n = recv(fd, hs->in + hs->got, want - hs->got, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			return err_sys(e, "reading the migration handshake");
		if (n == 0)
			return err_set(e, "reading the migration handshake: connection closed by the peer");
		hs->got += (size_t)n;
	}
	memcpy(&h, hs->in, sizeof(h));
	if (!hs->answered) {
		struct chan_answer a;
		uint32_t flags = le_get_u32(h.flags);
		if (memcmp(h.magic, AUTH_CHAN_MAGIC, sizeof(h.magic)) != 0)
			return err_set(e, "the connection did not authenticate (a source without the "
				       "migration key, or not a ferry source)");
		if ((flags & ~AUTH_CHAN_ENCRYPT) || le_get_u32(h.reserved))
			return err_set(e, "migration handshake with unknown flags %#x", flags);
		if (auth_random(a.nonce, sizeof(a.nonce), e) < 0)
			return -1;
		memcpy(hs->dn, a.nonce, sizeof(hs->dn));
		chan_mac(key, AUTH_ROLE_DEST, &h, a.nonce, a.proof);
		/* 48 bytes into a fresh connection's empty send buffer */
		if (sock_write_all(fd, &a, sizeof(a), AUTH_CHAN_TIMEOUT_MS, e) < 0)
			return err_prefix(e, "migration handshake");
		hs->answered = true;
		return auth_chan_dest_step(fd, key, hs, out, e);
	}
	if (!chan_proof_ok(key, AUTH_ROLE_SOURCE, &h, hs->dn, hs->in + sizeof(h)))
		return err_set(e, "the connection's proof of the migration key is wrong");
	chan_keys(key, &h, hs->dn, false, out);
	return 1;
}

int auth_chan_dest(int fd, const struct auth_key *key, int timeout_ms, struct auth_chan *out,
		   struct err *e)
{
	struct auth_chan_hs hs = { .got = 0 };
	long long deadline = sock_now_ms() + timeout_ms;
	int rc;

	while ((rc = auth_chan_dest_step(fd, key, &hs, out, e)) == 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long long left = deadline - sock_now_ms();
		if (left <= 0 || (poll(&p, 1, (int)left) < 0 && errno != EINTR)) {
			OPENSSL_cleanse(&hs, sizeof(hs));
			return err_set(e, "migration handshake: no answer within %d ms", timeout_ms);
		}
	}
	OPENSSL_cleanse(&hs, sizeof(hs));
	return rc < 0 ? -1 : 0;
}

int auth_api_seals(const struct auth_key *key, const uint8_t sn[AUTH_NONCE_LEN],
		   const uint8_t cn[AUTH_NONCE_LEN], bool server, struct seal **tx,
		   struct seal **rx, struct err *e)
{
	uint8_t c2s[AUTH_PROOF_LEN], s2c[AUTH_PROOF_LEN];

	auth_proof(key, AUTH_ROLE_API_C2S, sn, cn, c2s);
	auth_proof(key, AUTH_ROLE_API_S2C, sn, cn, s2c);
	*tx = seal_new(server ? s2c : c2s, true, e);
	*rx = *tx ? seal_new(server ? c2s : s2c, false, e) : NULL;
	OPENSSL_cleanse(c2s, sizeof(c2s));
	OPENSSL_cleanse(s2c, sizeof(s2c));
	if (!*rx) {
		seal_free(*tx);
		*tx = NULL;
		return -1;
	}
	return 0;
}

int auth_api_proto_agree(int my_min, int my_max, int peer_min, int peer_max)
{
	int hi = my_max < peer_max ? my_max : peer_max;
	int lo = my_min > peer_min ? my_min : peer_min;
	return hi >= lo ? hi : -1;
}

/* The greeting's protocol range; a ferryd from before versioning sends
 * none (version 0). */
static int api_check_proto(struct json_object *g, const char *where, struct err *e)
{
	int64_t lo = 0, hi = 0;
	const char *ver = NULL;
	struct err ge = { 0 };

	if (jsonl_get_int(g, "proto", false, 0, INT32_MAX, &hi, &ge) < 0 ||
	    jsonl_get_int(g, "proto_min", false, 0, hi, &lo, &ge) < 0)
		return err_set(e, "ferryd at %s sent a malformed greeting: %s", where, ge.msg);
	if (!json_object_object_get_ex(g, "proto_min", NULL))
		lo = hi;
	if (auth_api_proto_agree(FERRY_API_PROTO_MIN, FERRY_API_PROTO, (int)lo, (int)hi) >= 0)
		return 0;
	jsonl_get_str(g, "ferryd", false, &ver, &ge);
	err_set(e, "ferryd at %s (version %.40s) speaks API protocol %lld..%lld, this side "
		"speaks %d..%d: upgrade %s", where, ver ? ver : "unknown",
		(long long)lo, (long long)hi, FERRY_API_PROTO_MIN, FERRY_API_PROTO,
		hi < FERRY_API_PROTO_MIN ? "that ferryd" : "this side");
	e->code = EPROTO;
	return -1;
}

int auth_keyring_find(const struct auth_keyring *ring, const char *fp)
{
	char mine[AUTH_FINGERPRINT_HEX];
	for (int i = 0; i < AUTH_MAX_KEYS; i++) {
		if (!ring->k[i] || !ring->k[i]->set)
			continue;
		auth_fingerprint(ring->k[i], mine);
		if (strcmp(mine, fp) == 0)
			return i;
	}
	return -1;
}

/* The first key of ring the greeting's "keys" lists (a greeting without
 * the list accepts only one key: then our first). -1 with the reason. */
static int api_pick_key(struct json_object *g, const struct auth_keyring *ring,
			const char *where, struct err *e)
{
	struct json_object *keys;
	char theirs[128] = "", mine[128] = "";

	if (!json_object_object_get_ex(g, "keys", &keys)) {
		for (int i = 0; i < AUTH_MAX_KEYS; i++)
			if (ring->k[i] && ring->k[i]->set)
				return i;
		return -1;
	}
	if (!json_object_is_type(keys, json_type_array))
		return err_set(e, "ferryd at %s sent a malformed greeting", where);
	for (int i = 0; i < AUTH_MAX_KEYS; i++) {
		char fp[AUTH_FINGERPRINT_HEX];
		if (!ring->k[i] || !ring->k[i]->set)
			continue;
		auth_fingerprint(ring->k[i], fp);
		for (size_t j = 0; j < json_object_array_length(keys); j++) {
			const char *t = json_object_get_string(json_object_array_get_idx(keys, j));
			if (t && strcmp(t, fp) == 0)
				return i;
		}
		snprintf(mine + strlen(mine), sizeof(mine) - strlen(mine), "%s%s", *mine ? ", " : "",
			 fp);
	}
	for (size_t j = 0; j < json_object_array_length(keys) && j < 4; j++) {
		const char *t = json_object_get_string(json_object_array_get_idx(keys, j));
		snprintf(theirs + strlen(theirs), sizeof(theirs) - strlen(theirs), "%s%.16s",
			 *theirs ? ", " : "", t ? t : "?");
	}
	err_set(e, "wrong cluster key: ferryd at %s holds the key(s) %s, this side %s (fingerprints; "
		"see ferry host info on each)", where, theirs, mine);
	e->code = EACCES;
	return -1;
}

int auth_api_client(int fd, struct sock_reader *rd, const struct auth_keyring *ring,
		    int timeout_ms, const char *where, int *used, struct err *e)
{
	struct json_object *g, *req, *rep = NULL;
	const char *mode = NULL, *nonce_hex = NULL, *proof = NULL;
	const struct auth_key *key = NULL;
	uint8_t sn[AUTH_NONCE_LEN], cn[AUTH_NONCE_LEN], p[AUTH_PROOF_LEN];
	char hex[AUTH_PROOF_HEX], fp[AUTH_FINGERPRINT_HEX];
	char *line = sock_reader_line(rd, timeout_ms, e);
	int rc = -1, pick;
	bool have_key = false;

	for (int i = 0; i < AUTH_MAX_KEYS; i++)
		have_key |= ring->k[i] && ring->k[i]->set;
	*used = -1;

	if (!line)
		return err_prefix(e, "waiting for the greeting of ferryd at %s", where);
	g = jsonl_parse(line, strlen(line), e);
	if (!g)
		return err_prefix(e, "greeting of ferryd at %s", where);
	if (jsonl_get_str(g, "auth", true, &mode, e) < 0) {
		err_prefix(e, "greeting of ferryd at %s (is that a ferryd?)", where);
		goto out;
	}
	if (api_check_proto(g, where, e) < 0)
		goto out;
	if (strcmp(mode, "none") == 0) {
		if (have_key) {
			err_set(e, "ferryd at %s does not authenticate (started with --no-auth): "
				"refusing to trust it", where);
			e->code = EACCES; /* a key problem, not the network */
			goto out;
		}
		rc = 0;
		goto out;
	}
	if (strcmp(mode, "hmac-sha256") != 0) {
		err_set(e, "ferryd at %s asks for an unknown authentication '%.40s'", where, mode);
		goto out;
	}
	if (!have_key) {
		err_set(e, "ferryd at %s requires the cluster key: give it with --key-file FILE "
			"or FERRY_KEY_FILE (a copy of that host's key file, e.g. "
			"/var/lib/ferry/cluster.key)", where);
		e->code = EACCES; /* a key problem, not the network */
		goto out;
	}
	if (jsonl_get_str(g, "nonce", true, &nonce_hex, e) < 0 ||
	    auth_from_hex(nonce_hex, sn, sizeof(sn)) < 0) {
		err_set(e, "ferryd at %s sent a malformed greeting", where);
		goto out;
	}
	{
		const char *seal = NULL;
		if (jsonl_get_str(g, "seal", false, &seal, e) < 0 || !seal ||
		    strcmp(seal, AUTH_API_SEAL) != 0) {
			err_set(e, "ferryd at %s does not seal its connections with %s", where,
				AUTH_API_SEAL);
			e->code = EPROTO;
			goto out;
		}
	}
	pick = api_pick_key(g, ring, where, e);
	if (pick < 0)
		goto out;
	key = ring->k[pick];
	if (auth_random(cn, sizeof(cn), e) < 0)
		goto out;
	req = json_object_new_object();
	jsonl_add_str(req, "cmd", "auth");
	auth_to_hex(cn, sizeof(cn), hex);
	jsonl_add_str(req, "nonce", hex);
	auth_fingerprint(key, fp);
	jsonl_add_str(req, "key", fp);
	auth_proof(key, AUTH_ROLE_CLIENT, sn, cn, p);
	auth_to_hex(p, sizeof(p), hex);
	jsonl_add_str(req, "proof", hex);
	{
		int w = sock_write_line(fd, jsonl_text(req), timeout_ms, e);
		json_object_put(req);
		if (w < 0) {
			err_prefix(e, "authenticating to ferryd at %s", where);
			goto out;
		}
	}
	line = sock_reader_line(rd, timeout_ms, e);
	if (!line || !(rep = jsonl_parse(line, strlen(line), e))) {
		err_prefix(e, "authenticating to ferryd at %s", where);
		goto out;
	}
	if (!json_object_get_boolean(json_object_object_get(rep, "ok"))) {
		const char *why = json_object_get_string(json_object_object_get(rep, "error"));
		err_set(e, "ferryd at %s refused our cluster key: %s", where,
			why ? why : "no reason given");
		e->code = EACCES; /* a key problem, not the network */
		goto out;
	}
	if (jsonl_get_str(rep, "proof", true, &proof, e) < 0 ||
	    !auth_proof_ok(key, AUTH_ROLE_SERVER, sn, cn, proof)) {
		err_set(e, "ferryd at %s failed to prove the cluster key: not the host it claims to be",
			where);
		e->code = EACCES; /* a key problem, not the network */
		goto out;
	}
	{
		struct seal *tx, *rx;
		if (auth_api_seals(key, sn, cn, false, &tx, &rx, e) < 0 ||
		    sock_reader_seal(rd, tx, rx, e) < 0) {
			err_prefix(e, "sealing the connection to ferryd at %s", where);
			goto out;
		}
	}
	*used = pick;
	rc = 0;
out:
	json_object_put(rep);
	json_object_put(g);
	return rc;
}
