/*
 * The serial console's log file (serial_log): grows until its limit, then
 * becomes PATH.1 (replacing an older one) while a new PATH starts; the size
 * a VM left behind counts when it comes back; no limit keeps it whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/serial_log.h"

static char path[256], old[270];

static long file_size(const char *p)
{
	struct stat st;
	return stat(p, &st) < 0 ? -1 : (long)st.st_size;
}

static int setup(void **state)
{
	(void)state;
	snprintf(path, sizeof(path), "/tmp/ferry-test-serial-%d.log", (int)getpid());
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
	struct serial_log l;
	struct err e = { 0 };
	char line[32];
	(void)state;
	assert_int_equal(serial_log_open(&l, path, 100, &e), 0);
	for (int i = 0; i < 25; i++) { /* 250 bytes: two rotations */
		snprintf(line, sizeof(line), "line %03d\n", i);
		serial_log_write(&l, line, 9);
	}
	serial_log_close(&l);
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
	struct serial_log l;
	struct err e = { 0 };
	(void)state;
	assert_int_equal(serial_log_open(&l, path, 100, &e), 0);
	serial_log_write(&l, "0123456789012345678901234567890123456789", 40);
	serial_log_close(&l);
	assert_int_equal(serial_log_open(&l, path, 100, &e), 0);
	assert_int_equal(l.size, 40);
	serial_log_write(&l, "0123456789012345678901234567890123456789", 40);
	assert_int_equal(file_size(old), -1);
	serial_log_write(&l, "0123456789012345678901234567890123456789", 40);
	serial_log_close(&l);
	assert_int_equal(file_size(old), 80);
	assert_int_equal(file_size(path), 40);
}

static void test_no_limit(void **state)
{
	struct serial_log l;
	struct err e = { 0 };
	char buf[4096];
	(void)state;
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(serial_log_open(&l, path, 0, &e), 0);
	for (int i = 0; i < 64; i++)
		serial_log_write(&l, buf, sizeof(buf));
	serial_log_close(&l);
	assert_int_equal(file_size(path), 64 * 4096);
	assert_int_equal(file_size(old), -1);
}

static void test_unwritable_path(void **state)
{
	struct serial_log l;
	struct err e = { 0 };
	(void)state;
	assert_int_equal(serial_log_open(&l, "/nonexistent-dir/x.serial", 100, &e), -1);
	assert_non_null(strstr(e.msg, "/nonexistent-dir/x.serial"));
	/* a log that never opened swallows output quietly */
	serial_log_write(&l, "abc", 3);
	serial_log_close(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rotates_at_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_counts_what_is_there, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unwritable_path, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
