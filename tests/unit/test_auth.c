/*
 * Host authentication (common/auth.c): key files (format, permissions,
 * never replaced), per-move key derivation, proofs bound to their role and
 * nonces, and the migration connection handshake over a socket pair: the
 * right key passes both ways; a wrong key, a stranger's bytes or a silent
 * peer fail with a message, never a crash or a hang. Sealed streams with
 * the handshake's keys: data crosses intact in both directions; a flipped
 * byte, a replayed or cut frame, or another key fails the reader. The API
 * greeting's protocol versions: overlapping ranges agree on the highest
 * common one; a ferryd with none in common (or from before versions) is
 * refused with EPROTO, naming which side to upgrade. Key choice during a
 * key change: the client proves the first of its keys the greeting lists,
 * names it, and with none in common is refused naming both fingerprints.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/auth.h"
#include "common/seal.h"
#include "common/sock.h"
#include "common/stream.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/ferry-auth.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f;
	unlink(path);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static void test_key_files(void **state)
{
	char path[128], p2[128];
	struct auth_key a, b;
	struct err e = { 0 };
	bool created;
	struct stat st;
	(void)state;

	snprintf(path, sizeof(path), "%s/k", dir);
	assert_int_equal(auth_key_create(path, &created, &e), 0);
	assert_true(created);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(auth_key_load(&a, path, &e), 0);
	assert_true(a.set);
	/* An existing key is never replaced. */
	assert_int_equal(auth_key_create(path, &created, &e), 0);
	assert_false(created);
	assert_int_equal(auth_key_load(&b, path, &e), 0);
	assert_memory_equal(a.k, b.k, AUTH_KEY_LEN);
	/* Two new keys differ. */
	snprintf(p2, sizeof(p2), "%s/k2", dir);
	assert_int_equal(auth_key_create(p2, &created, &e), 0);
	assert_int_equal(auth_key_load(&b, p2, &e), 0);
	assert_memory_not_equal(a.k, b.k, AUTH_KEY_LEN);

	/* Format: 64 hex digits, white space around allowed, upper case too. */
	write_file(p2, "\n  00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff \n", 0600);
	assert_int_equal(auth_key_load(&b, p2, &e), 0);
	assert_int_equal(b.k[0], 0x00);
	assert_int_equal(b.k[10], 0xaa);
	assert_int_equal(b.k[31], 0xff);
	write_file(p2, "00112233", 0600);
	assert_int_equal(auth_key_load(&b, p2, &e), -1);
	assert_non_null(strstr(e.msg, "not 64 hex digits"));
	assert_false(b.set);
	write_file(p2, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeffx", 0600);
	assert_int_equal(auth_key_load(&b, p2, &e), -1);
	write_file(p2, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00", 0600);
	assert_int_equal(auth_key_load(&b, p2, &e), -1);
	/* Readable by others: refused, with the fix in the message. */
	write_file(p2, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 0644);
	assert_int_equal(auth_key_load(&b, p2, &e), -1);
	assert_non_null(strstr(e.msg, "chmod 600"));
	snprintf(p2, sizeof(p2), "%s/missing", dir);
	assert_int_equal(auth_key_load(&b, p2, &e), -1);
	assert_non_null(strstr(e.msg, "missing"));
}

static void test_proofs_and_derive(void **state)
{
	struct auth_key k = { .set = true }, k2 = { .set = true }, m1, m2, m3;
	uint8_t a[AUTH_NONCE_LEN] = { 1 }, b[AUTH_NONCE_LEN] = { 2 }, p[AUTH_PROOF_LEN];
	uint8_t s1[AUTH_NONCE_LEN] = { 9 }, s2[AUTH_NONCE_LEN] = { 8 };
	char hex[AUTH_PROOF_HEX];
	(void)state;

	memset(k.k, 0x5a, sizeof(k.k));
	memset(k2.k, 0x5b, sizeof(k2.k));
	auth_proof(&k, AUTH_ROLE_CLIENT, a, b, p);
	auth_to_hex(p, sizeof(p), hex);
	assert_true(auth_proof_ok(&k, AUTH_ROLE_CLIENT, a, b, hex));
	assert_false(auth_proof_ok(&k2, AUTH_ROLE_CLIENT, a, b, hex));
	assert_false(auth_proof_ok(&k, AUTH_ROLE_SERVER, a, b, hex)); /* reflected */
	assert_false(auth_proof_ok(&k, AUTH_ROLE_CLIENT, b, a, hex)); /* nonces swapped */
	assert_false(auth_proof_ok(&k, AUTH_ROLE_CLIENT, a, b, "00"));
	assert_false(auth_proof_ok(&k, AUTH_ROLE_CLIENT, a, b, NULL));
	hex[5] = 'g';
	assert_false(auth_proof_ok(&k, AUTH_ROLE_CLIENT, a, b, hex));

	{
		char f1[AUTH_FINGERPRINT_HEX], f2[AUTH_FINGERPRINT_HEX], f3[AUTH_FINGERPRINT_HEX];
		auth_fingerprint(&k, f1);
		auth_fingerprint(&k, f2);
		auth_fingerprint(&k2, f3);
		assert_int_equal(strlen(f1), 16);
		assert_string_equal(f1, f2);
		assert_string_not_equal(f1, f3);
	}
	auth_derive(&k, "ferry-move-key", s1, sizeof(s1), &m1);
	auth_derive(&k, "ferry-move-key", s1, sizeof(s1), &m2);
	assert_true(m1.set);
	assert_memory_equal(m1.k, m2.k, AUTH_KEY_LEN);
	auth_derive(&k, "ferry-move-key", s2, sizeof(s2), &m3);
	assert_memory_not_equal(m1.k, m3.k, AUTH_KEY_LEN);
	auth_derive(&k2, "ferry-move-key", s1, sizeof(s1), &m3);
	assert_memory_not_equal(m1.k, m3.k, AUTH_KEY_LEN);
	assert_memory_not_equal(m1.k, k.k, AUTH_KEY_LEN);
}

/* The source side of the handshake on its own thread. */
struct src_run {
	int fd;
	struct auth_key key;
	bool encrypt;
	struct auth_chan ac;
	int rc;
	struct err e;
};

static void *src_thread(void *arg)
{
	struct src_run *s = arg;
	s->rc = auth_chan_source(s->fd, &s->key, s->encrypt, 2000, &s->ac, &s->e);
	/* Like a failing source: it hangs up, so the destination is not left waiting. */
	if (s->rc < 0)
		shutdown(s->fd, SHUT_RDWR);
	return NULL;
}

/* Run both sides over a socket pair; the fds stay open in sv. */
static void handshake_fds(const struct auth_key *src_key, const struct auth_key *dst_key,
			  bool encrypt, int sv[2], int *src_rc, struct err *src_e,
			  struct auth_chan *src_ac, int *dst_rc, struct err *dst_e,
			  struct auth_chan *dst_ac)
{
	pthread_t t;
	struct src_run s = { .key = *src_key, .encrypt = encrypt };

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	s.fd = sv[0];
	assert_int_equal(pthread_create(&t, NULL, src_thread, &s), 0);
	*dst_rc = auth_chan_dest(sv[1], dst_key, 2000, dst_ac, dst_e);
	if (*dst_rc < 0)
		shutdown(sv[1], SHUT_RDWR);
	pthread_join(t, NULL);
	*src_rc = s.rc;
	*src_e = s.e;
	*src_ac = s.ac;
}

static void handshake(const struct auth_key *src_key, const struct auth_key *dst_key, int *src_rc,
		      struct err *src_e, int *dst_rc, struct err *dst_e)
{
	int sv[2];
	struct auth_chan sa, da;
	handshake_fds(src_key, dst_key, false, sv, src_rc, src_e, &sa, dst_rc, dst_e, &da);
	close(sv[0]);
	close(sv[1]);
}

static void test_channel_handshake(void **state)
{
	struct auth_key k = { .set = true }, k2 = { .set = true };
	struct err se = { 0 }, de = { 0 };
	struct auth_chan sac, dac;
	int src, dst, sv[2];
	(void)state;

	memset(k.k, 0x77, sizeof(k.k));
	memset(k2.k, 0x78, sizeof(k2.k));
	handshake(&k, &k, &src, &se, &dst, &de);
	assert_int_equal(src, 0);
	assert_int_equal(dst, 0);

	/* Wrong key: the source catches the destination's proof first and
	 * stops; the destination never accepts the connection. */
	handshake(&k2, &k, &src, &se, &dst, &de);
	assert_int_equal(src, -1);
	assert_non_null(strstr(se.msg, "failed to prove the migration key"));
	assert_int_equal(dst, -1);

	/* A stranger's bytes (the stream's own header, no handshake). */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[0], "FERRYMIG\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 32), 32);
	assert_int_equal(auth_chan_dest(sv[1], &k, 1000, &dac, &de), -1);
	assert_non_null(strstr(de.msg, "did not authenticate"));
	close(sv[0]);
	close(sv[1]);

	/* A silent peer: a timeout, not a hang. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(auth_chan_dest(sv[1], &k, 200, &dac, &de), -1);
	assert_non_null(strstr(de.msg, "handshake"));
	close(sv[0]);
	close(sv[1]);

	/* A destination that hangs up at once: the source says so. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	assert_int_equal(auth_chan_source(sv[0], &k, false, 1000, &sac, &se), -1);
	assert_non_null(strstr(se.msg, "authenticating to the destination"));
	close(sv[0]);
}

/* Write buf on one sealed stream from a thread, read it on the other. */
struct writer_run {
	struct stream *w;
	const uint8_t *buf;
	size_t n;
};

static void *writer_thread(void *arg)
{
	struct writer_run *r = arg;
	stream_put_u32(r->w, 0xfe11a);
	stream_put(r->w, r->buf, r->n);
	stream_put_u8(r->w, 7);
	stream_flush(r->w);
	return NULL;
}

/* A fresh sealed reader on rfd (key rk) and a fresh writer on wfd (key
 * wk) that has just sent one 100-byte frame: both start at frame 0. */
static void fresh_frame(struct stream *r, struct stream *w, int rfd, int wfd, const uint8_t *rk,
			const uint8_t *wk, const uint8_t *data)
{
	struct err e = { 0 };
	stream_destroy(w);
	stream_init_fd(r, rfd, false);
	assert_int_equal(stream_set_seal(r, rk, &e), 0);
	stream_init_fd(w, wfd, true);
	assert_int_equal(stream_set_seal(w, wk, &e), 0);
	stream_put(w, data, 100);
	assert_int_equal(stream_flush(w), 0);
}

static void test_sealed_streams(void **state)
{
	struct auth_key k = { .set = true };
	struct err se = { 0 }, de = { 0 };
	struct auth_chan sac, dac;
	struct stream w, r, w2, r2;
	struct writer_run wr;
	pthread_t t;
	size_t n = 3 * SEAL_FRAME_MAX + 12345;
	uint8_t *buf = malloc(n), *got = malloc(n), wire[128];
	int src, dst, sv[2];
	ssize_t got_n;
	(void)state;

	assert_non_null(buf);
	assert_non_null(got);
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(i * 131 + (i >> 9));
	memset(k.k, 0x42, sizeof(k.k));
	handshake_fds(&k, &k, true, sv, &src, &se, &sac, &dst, &de, &dac);
	assert_int_equal(src, 0);
	assert_int_equal(dst, 0);
	assert_true(sac.encrypt && dac.encrypt);
	assert_memory_equal(sac.key_tx, dac.key_rx, AUTH_KEY_LEN);
	assert_memory_equal(sac.key_rx, dac.key_tx, AUTH_KEY_LEN);
	assert_memory_not_equal(sac.key_tx, sac.key_rx, AUTH_KEY_LEN);

	/* Source to destination, then a reply back. */
	stream_init_fd(&w, sv[0], true);
	stream_init_fd(&r, sv[1], false);
	assert_int_equal(stream_set_seal(&w, sac.key_tx, &se), 0);
	assert_int_equal(stream_set_seal(&r, dac.key_rx, &de), 0);
	wr = (struct writer_run){ &w, buf, n };
	assert_int_equal(pthread_create(&t, NULL, writer_thread, &wr), 0);
	assert_int_equal(stream_get_u32(&r), 0xfe11a);
	stream_get(&r, got, n);
	assert_int_equal(stream_get_u8(&r), 7);
	pthread_join(t, NULL);
	assert_true(stream_ok(&w));
	assert_true(stream_ok(&r));
	assert_memory_equal(buf, got, n);
	stream_init_fd(&w2, sv[1], true);
	stream_init_fd(&r2, sv[0], false);
	assert_int_equal(stream_set_seal(&w2, dac.key_tx, &de), 0);
	assert_int_equal(stream_set_seal(&r2, sac.key_rx, &se), 0);
	stream_put_u64(&w2, 0x1122334455667788ull);
	assert_int_equal(stream_flush(&w2), 0);
	assert_true(stream_get_u64(&r2) == 0x1122334455667788ull);
	/* The plaintext is not on the wire: read the next frame raw. */
	stream_put(&w, buf, 48);
	assert_int_equal(stream_flush(&w), 0);
	got_n = read(sv[1], wire, sizeof(wire));
	assert_int_equal(got_n, SEAL_HDR_LEN + 48 + SEAL_TAG_LEN);
	assert_memory_not_equal(wire + SEAL_HDR_LEN, buf, 48);
	stream_destroy(&w2);
	stream_destroy(&r2);
	/* Deliver that frame, then replay it: the copy's nonce is not the
	 * reader's next one. */
	assert_int_equal(write(sv[0], wire, (size_t)got_n), got_n);
	assert_int_equal(write(sv[0], wire, (size_t)got_n), got_n);
	stream_get(&r, got, 48);
	assert_true(stream_ok(&r));
	assert_memory_equal(got, buf, 48);
	stream_get(&r, got, 48);
	assert_false(stream_ok(&r));
	assert_non_null(strstr(stream_errmsg(&r), "failed its check"));
	stream_destroy(&r);

	/* A flipped byte in a fresh frame (taken off the wire, changed, put back). */
	fresh_frame(&r, &w, sv[1], sv[0], dac.key_rx, sac.key_tx, buf);
	got_n = read(sv[1], got, 4096);
	assert_int_equal(got_n, SEAL_HDR_LEN + 100 + SEAL_TAG_LEN);
	got[SEAL_HDR_LEN + 50] ^= 1;
	assert_int_equal(write(sv[0], got, (size_t)got_n), got_n);
	stream_get(&r, wire, 60);
	assert_false(stream_ok(&r));
	assert_non_null(strstr(stream_errmsg(&r), "corrupt stream"));
	stream_destroy(&r);

	/* Another key. */
	fresh_frame(&r, &w, sv[1], sv[0], sac.key_rx, sac.key_tx, buf);
	stream_get(&r, wire, 10);
	assert_false(stream_ok(&r));
	stream_destroy(&r);

	/* A frame cut short, then the peer gone: truncation. */
	fresh_frame(&r, &w, sv[1], sv[0], dac.key_rx, sac.key_tx, buf);
	got_n = read(sv[1], got, 4096);
	assert_int_equal(write(sv[0], got, 30), 30);
	shutdown(sv[0], SHUT_WR);
	stream_get(&r, wire, 10);
	assert_false(stream_ok(&r));
	assert_non_null(strstr(stream_errmsg(&r), "truncated"));
	stream_destroy(&r);
	stream_destroy(&w);

	/* A frame header announcing too much: refused before any allocation. */
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	stream_init_fd(&r, sv[1], false);
	assert_int_equal(stream_set_seal(&r, dac.key_rx, &de), 0);
	le_put_u32(wire, SEAL_FRAME_MAX + 1);
	assert_int_equal(write(sv[0], wire, 4), 4);
	stream_get(&r, got, 10);
	assert_false(stream_ok(&r));
	assert_non_null(strstr(stream_errmsg(&r), "out of range"));
	stream_destroy(&r);
	close(sv[0]);
	close(sv[1]);
	free(buf);
	free(got);
}

/* A client with ring reads greeting (no reply follows it): *rc is what
 * auth_api_client returned; the result is the auth request it sent, NULL
 * if it sent none (the caller frees it). */
static char *client_after(const char *greeting, const struct auth_keyring *ring, int *rc,
			  struct err *e)
{
	struct sock_reader rd;
	char buf[1024];
	int sv[2], used;
	ssize_t n;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[1], greeting, strlen(greeting)), (ssize_t)strlen(greeting));
	assert_int_equal(write(sv[1], "\n", 1), 1);
	shutdown(sv[1], SHUT_WR); /* no reply will come: the client fails after sending */
	sock_reader_init(&rd, sv[0]);
	memset(e, 0, sizeof(*e));
	*rc = auth_api_client(sv[0], &rd, ring, 1000, "h1:7777", &used, e);
	close(sv[0]);
	n = read(sv[1], buf, sizeof(buf) - 1);
	close(sv[1]);
	sock_reader_destroy(&rd);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	return strdup(buf);
}

/* One greeting through auth_api_client without a key; returns its rc. */
static int greet(const char *line, struct err *e)
{
	struct auth_keyring none = { { NULL } };
	int rc;
	free(client_after(line, &none, &rc, e));
	return rc;
}

/* The auth request a client with ring sends; NULL if it refuses first. */
static char *auth_request_for(const char *greeting, const struct auth_keyring *ring,
			      struct err *e)
{
	int rc;
	char *req = client_after(greeting, ring, &rc, e);
	assert_int_equal(rc, -1); /* no reply ever comes */
	return req;
}

static void test_api_versions(void **state)
{
	struct err e;
	(void)state;
	assert_int_equal(auth_api_proto_agree(1, 1, 1, 1), 1);
	assert_int_equal(auth_api_proto_agree(1, 3, 2, 5), 3);
	assert_int_equal(auth_api_proto_agree(2, 5, 1, 3), 3);
	assert_int_equal(auth_api_proto_agree(1, 2, 3, 4), -1);
	assert_int_equal(auth_api_proto_agree(3, 4, 1, 2), -1);

	assert_int_equal(greet("{\"ferryd\":\"0.1.0\",\"proto_min\":1,\"proto\":1,\"auth\":\"none\"}", &e), 0);
	/* a newer ferryd that still serves our version */
	assert_int_equal(greet("{\"ferryd\":\"0.3\",\"proto_min\":1,\"proto\":4,\"auth\":\"none\"}", &e), 0);
	/* one that no longer does */
	assert_int_equal(greet("{\"ferryd\":\"0.9\",\"proto_min\":3,\"proto\":4,\"auth\":\"none\"}", &e), -1);
	assert_int_equal(e.code, EPROTO);
	assert_non_null(strstr(e.msg, "ferryd at h1:7777 (version 0.9) speaks API protocol 3..4"));
	assert_non_null(strstr(e.msg, "upgrade this side"));
	/* from before protocol versions */
	assert_int_equal(greet("{\"ferryd\":\"0.0.1\",\"auth\":\"none\"}", &e), -1);
	assert_int_equal(e.code, EPROTO);
	assert_non_null(strstr(e.msg, "speaks API protocol 0..0"));
	assert_non_null(strstr(e.msg, "upgrade that ferryd"));
	/* malformed ranges */
	assert_int_equal(greet("{\"proto\":\"one\",\"auth\":\"none\"}", &e), -1);
	assert_non_null(strstr(e.msg, "malformed greeting"));
	assert_int_equal(greet("{\"proto_min\":3,\"proto\":2,\"auth\":\"none\"}", &e), -1);
	assert_non_null(strstr(e.msg, "malformed greeting"));
	assert_int_not_equal(e.code, EPROTO);
}

static void test_api_key_choice(void **state)
{
	struct auth_key k1 = { .set = true }, k2 = { .set = true };
	char fp1[AUTH_FINGERPRINT_HEX], fp2[AUTH_FINGERPRINT_HEX], g[512], want[64];
	struct auth_keyring both = { { &k1, &k2 } }, only1 = { { &k1 } };
	struct err e;
	char *req;
	(void)state;
	memset(k1.k, 1, sizeof(k1.k));
	memset(k2.k, 2, sizeof(k2.k));
	auth_fingerprint(&k1, fp1);
	auth_fingerprint(&k2, fp2);
	assert_int_equal(auth_keyring_find(&both, fp2), 1);
	assert_int_equal(auth_keyring_find(&only1, fp2), -1);

	/* a host that holds only k2: a client with both proves k2; one that
	 * holds both: the client's first key */
	for (int c = 0; c < 2; c++) {
		const char *proves = c == 0 ? fp2 : fp1;
		snprintf(g, sizeof(g), "{\"proto\":1,\"auth\":\"hmac-sha256\",\"seal\":\"aes-256-gcm\","
			 "\"nonce\":\"000102030405060708090a0b0c0d0e0f\",\"keys\":[\"%s\"%s%s%s]}",
			 fp2, c ? ",\"" : "", c ? fp1 : "", c ? "\"" : "");
		req = auth_request_for(g, &both, &e);
		assert_non_null(req);
		snprintf(want, sizeof(want), "\"key\":\"%s\"", proves);
		assert_non_null(strstr(req, want));
		free(req);
	}
	/* none in common: refused before anything is proved, both named */
	snprintf(g, sizeof(g), "{\"proto\":1,\"auth\":\"hmac-sha256\",\"seal\":\"aes-256-gcm\","
		 "\"nonce\":\"000102030405060708090a0b0c0d0e0f\",\"keys\":[\"%s\"]}", fp2);
	assert_null(auth_request_for(g, &only1, &e));
	assert_int_equal(e.code, EACCES);
	assert_non_null(strstr(e.msg, fp1));
	assert_non_null(strstr(e.msg, fp2));
	assert_non_null(strstr(e.msg, "wrong cluster key"));
	/* a greeting that does not offer sealing is refused */
	assert_null(auth_request_for("{\"proto\":1,\"auth\":\"hmac-sha256\","
				     "\"nonce\":\"000102030405060708090a0b0c0d0e0f\"}", &only1, &e));
	assert_non_null(strstr(e.msg, "does not seal"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_files),
		cmocka_unit_test(test_proofs_and_derive),
		cmocka_unit_test(test_channel_handshake),
		cmocka_unit_test(test_sealed_streams),
		cmocka_unit_test(test_api_versions),
		cmocka_unit_test(test_api_key_choice),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
