/*
 * Host authentication (common/auth.c): key files (format, permissions,
 * never replaced), per-move key derivation, proofs bound to their role and
 * nonces, and the migration connection handshake over a socket pair: the
 * right key passes both ways; a wrong key, a stranger's bytes or a silent
 * peer fail with a message, never a crash or a hang.
 */
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
	int rc;
	struct err e;
};

static void *src_thread(void *arg)
{
	struct src_run *s = arg;
	s->rc = auth_chan_source(s->fd, &s->key, 2000, &s->e);
	/* Like a failing source: it hangs up, so the destination is not left waiting. */
	if (s->rc < 0)
		shutdown(s->fd, SHUT_RDWR);
	return NULL;
}

static void handshake(const struct auth_key *src_key, const struct auth_key *dst_key, int *src_rc,
		      struct err *src_e, int *dst_rc, struct err *dst_e)
{
	int sv[2];
	pthread_t t;
	struct src_run s = { .key = *src_key };

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	s.fd = sv[0];
	assert_int_equal(pthread_create(&t, NULL, src_thread, &s), 0);
	*dst_rc = auth_chan_dest(sv[1], dst_key, 2000, dst_e);
	if (*dst_rc < 0)
		shutdown(sv[1], SHUT_RDWR);
	pthread_join(t, NULL);
	*src_rc = s.rc;
	*src_e = s.e;
	close(sv[0]);
	close(sv[1]);
}

static void test_channel_handshake(void **state)
{
	struct auth_key k = { .set = true }, k2 = { .set = true };
	struct err se = { 0 }, de = { 0 };
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
	assert_int_equal(write(sv[0], "FERRYMIG\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 28), 28);
	assert_int_equal(auth_chan_dest(sv[1], &k, 1000, &de), -1);
	assert_non_null(strstr(de.msg, "did not authenticate"));
	close(sv[0]);
	close(sv[1]);

	/* A silent peer: a timeout, not a hang. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(auth_chan_dest(sv[1], &k, 200, &de), -1);
	assert_non_null(strstr(de.msg, "handshake"));
	close(sv[0]);
	close(sv[1]);

	/* A destination that hangs up at once: the source says so. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	assert_int_equal(auth_chan_source(sv[0], &k, 1000, &se), -1);
	assert_non_null(strstr(se.msg, "authenticating to the destination"));
	close(sv[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_files),
		cmocka_unit_test(test_proofs_and_derive),
		cmocka_unit_test(test_channel_handshake),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
