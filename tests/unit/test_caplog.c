/*
 * Size-capped log files (caplog), as the serial console and the worker's
 * own log use them: a file grows until its limit, then becomes PATH.1
 * (replacing an older one) while a new PATH starts; the size a VM left
 * behind counts when it comes back; no limit keeps it whole; as stderr,
 * each new file takes fd 2's place, and log_msg writes through it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/caplog.h"
#include "common/log.h"

static char path[256], old[270];

static long file_size(const char *p)
{
	struct stat st;
	return stat(p, &st) < 0 ? -1 : (long)st.st_size;
}

static int setup(void **state)
{
	(void)state;
	snprintf(path, sizeof(path), "/tmp/ferry-test-caplog-%d.log", (int)getpid());
	snprintf(old, sizeof(old), "%s.1", path);
	unlink(path);
	unlink(old);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	unlink(old);
	return 0;
}

static void test_rotates_at_limit(void **state)
{
	struct caplog l;
	struct err e = { 0 };
	char line[32];
	(void)state;
	assert_int_equal(caplog_open(&l, path, 100, &e), 0);
	for (int i = 0; i < 25; i++) { /* 250 bytes: two rotations */
		snprintf(line, sizeof(line), "line %03d\n", i);
		assert_int_equal(caplog_write(&l, line, 9), 0);
	}
	caplog_close(&l);
	/* 11 lines of 9 bytes fit in 100: lines 0-10, 11-21, then 22-24 */
	assert_int_equal(file_size(path), 3 * 9);
	assert_int_equal(file_size(old), 11 * 9);
	{
		FILE *f = fopen(old, "r");
		char first[16] = "";
		assert_non_null(f);
		assert_non_null(fgets(first, sizeof(first), f));
		fclose(f);
		assert_string_equal(first, "line 011\n");
	}
	assert_int_equal(l.errors, 0);
}

static void test_reopen_counts_what_is_there(void **state)
{
	struct caplog l;
	struct err e = { 0 };
	(void)state;
	assert_int_equal(caplog_open(&l, path, 100, &e), 0);
	caplog_write(&l, "0123456789012345678901234567890123456789", 40);
	caplog_close(&l);
	assert_int_equal(caplog_open(&l, path, 100, &e), 0);
	assert_int_equal(l.size, 40);
	caplog_write(&l, "0123456789012345678901234567890123456789", 40);
	assert_int_equal(file_size(old), -1);
	caplog_write(&l, "0123456789012345678901234567890123456789", 40);
	caplog_close(&l);
	assert_int_equal(file_size(old), 80);
	assert_int_equal(file_size(path), 40);
}

static void test_no_limit(void **state)
{
	struct caplog l;
	struct err e = { 0 };
	char buf[4096];
	(void)state;
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(caplog_open(&l, path, 0, &e), 0);
	for (int i = 0; i < 64; i++)
		caplog_write(&l, buf, sizeof(buf));
	caplog_close(&l);
	assert_int_equal(file_size(path), 64 * 4096);
	assert_int_equal(file_size(old), -1);
}

static void test_unwritable_path(void **state)
{
	struct caplog l;
	struct err e = { 0 };
	(void)state;
	assert_int_equal(caplog_open(&l, "/nonexistent-dir/x.serial", 100, &e), -1);
	assert_non_null(strstr(e.msg, "/nonexistent-dir/x.serial"));
	/* a log that never opened swallows output quietly */
	caplog_write(&l, "abc", 3);
	caplog_close(&l);
}

static void test_failure_reported_once(void **state)
{
	struct caplog l;
	struct err e = { 0 };
	(void)state;
	assert_int_equal(caplog_open(&l, path, 10, &e), 0);
	assert_int_equal(caplog_write(&l, "0123456789", 10), 0);
	/* PATH gone: the rename fails; output goes on into the open file */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(caplog_write(&l, "abc", 3), -1);
	assert_string_equal(l.fail_what, "rotating");
	assert_int_equal(caplog_write(&l, "def", 3), 0);
	assert_int_equal(l.errors, 2);
	caplog_close(&l);
}

/* The worker's own log: stderr itself rotates, and log_msg's lines, a
 * plain write(2) and what comes after a rotation all land in the files. */
static void test_stderr_rotates(void **state)
{
	struct err e = { 0 };
	int saved = dup(STDERR_FILENO);
	char buf[4096];
	FILE *f;
	size_t n;
	(void)state;
	assert_true(saved >= 0);
	log_init("test", LOG_INFO);
	assert_int_equal(log_to_file(path, 200, &e), 0);
	for (int i = 0; i < 6; i++)
		log_info("message %d with some padding to fill the file", i);
	assert_int_equal(write(STDERR_FILENO, "raw\n", 4), 4);
	/* put the test's own stderr back before asserting */
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	assert_true(file_size(path) > 0 && file_size(path) <= 200 + 4);
	assert_true(file_size(old) > 0 && file_size(old) <= 200);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "message 5 with"));
	assert_non_null(strstr(buf, "raw\n"));
	assert_null(strstr(buf, "message 0 with"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rotates_at_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_counts_what_is_there, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unwritable_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_reported_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stderr_rotates, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
