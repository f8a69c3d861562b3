/*
 * The line logs of ferryd's state directory (statefile_lines_newest_first,
 * statefile_trim_lines): read back newest first across chunk boundaries,
 * with a torn last line, a line too long to keep and a stop on request;
 * cut to their newest whole lines once too big, never mid-line.
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

#include "daemon/statefile.h"

static char path[256];

struct seen {
	int n, stop_after;
	char lines[64][128];
};

static bool collect(char *line, size_t len, void *ctx)
{
	struct seen *s = ctx;
	assert_int_equal(strlen(line), len);
	if (s->n < 64)
		snprintf(s->lines[s->n], sizeof(s->lines[0]), "%s", line);
	s->n++;
	return s->stop_after == 0 || s->n < s->stop_after;
}

static void write_file(const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	snprintf(path, sizeof(path), "/tmp/ferry-test-statefile-%d.jsonl", (int)getpid());
	unlink(path);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

/* max_line 8 makes the chunk 17 bytes: most lines cross a boundary. */
static void test_newest_first_across_chunks(void **state)
{
	struct seen s = { 0 };
	struct err e = { 0 };
	(void)state;
	write_file("one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\n");
	assert_int_equal(statefile_lines_newest_first(path, 8, collect, &s, &e), 0);
	/* the empty "line" after the last newline comes first */
	assert_int_equal(s.n, 9);
	assert_string_equal(s.lines[0], "");
	assert_string_equal(s.lines[1], "eight");
	assert_string_equal(s.lines[4], "five");
	assert_string_equal(s.lines[8], "one");
}

static void test_torn_and_long_lines(void **state)
{
	struct seen s = { 0 };
	struct err e = { 0 };
	(void)state;
	/* a line of 40 bytes spans more than two chunks: skipped whole, and
	 * none of its pieces is handed on as a line of its own */
	write_file("first\nxxxxxxxxxxyyyyyyyyyyzzzzzzzzzzwwwwwwwwww\nlast\ntorn");
	assert_int_equal(statefile_lines_newest_first(path, 8, collect, &s, &e), 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.lines[0], "torn");
	assert_string_equal(s.lines[1], "last");
	assert_string_equal(s.lines[2], "first");
}

static void test_stop_and_missing(void **state)
{
	struct seen s = { .stop_after = 2 };
	struct err e = { 0 };
	(void)state;
	write_file("a\nb\nc\nd\n");
	assert_int_equal(statefile_lines_newest_first(path, 8, collect, &s, &e), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.lines[1], "d");
	unlink(path);
	s.n = 0;
	s.stop_after = 0;
	assert_int_equal(statefile_lines_newest_first(path, 8, collect, &s, &e), 0);
	assert_int_equal(s.n, 0);
}

static void test_trim(void **state)
{
	struct seen s = { 0 };
	struct err e = { 0 };
	struct stat st;
	char text[2048] = "";
	(void)state;
	for (int i = 0; i < 100; i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text), "line%02d\n", i);
	write_file(text); /* 700 bytes */
	/* under the limit: untouched */
	assert_int_equal(statefile_trim_lines(path, 1000, 100, &e), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 700);
	/* over it: the newest whole lines within 100 bytes, 14 of 7 bytes;
	 * the cut falls inside line85, which goes */
	assert_int_equal(statefile_trim_lines(path, 600, 100, &e), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 14 * 7);
	assert_int_equal(statefile_lines_newest_first(path, 64, collect, &s, &e), 0);
	assert_int_equal(s.n, 15);
	assert_string_equal(s.lines[1], "line99");
	assert_string_equal(s.lines[14], "line86");
	/* and appending goes on after the kept lines */
	assert_int_equal(statefile_append_line(path, "line100", &e), 0);
	s.n = 0;
	assert_int_equal(statefile_lines_newest_first(path, 64, collect, &s, &e), 0);
	assert_string_equal(s.lines[1], "line100");
	assert_string_equal(s.lines[2], "line99");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_newest_first_across_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_and_long_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_and_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trim, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
