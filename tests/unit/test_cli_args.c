/* ferry CLI value parsing: memory sizes and counts as users type them;
 * move-vm's options as the request ferryd reads, and its exit status as
 * its moves end (against a stand-in ferryd). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <getopt.h>

#include "cli/cli.h"
#include "common/jsonl.h"

static void test_sizes(void **state)
{
	(void)state;
	assert_int_equal(cli_parse_mib("512M"), 512);
	assert_int_equal(cli_parse_mib("512"), 512);
	assert_int_equal(cli_parse_mib("1G"), 1024);
	assert_int_equal(cli_parse_mib("1g"), 1024);
	assert_int_equal(cli_parse_mib("1GiB"), 1024);
	assert_int_equal(cli_parse_mib("1.5G"), 1536);
	assert_int_equal(cli_parse_mib("2048K"), 2);
	assert_int_equal(cli_parse_mib("1T"), 1024 * 1024);
	assert_int_equal(cli_parse_mib(""), -1);
	assert_int_equal(cli_parse_mib("G"), -1);
	assert_int_equal(cli_parse_mib("-1G"), -1);
	assert_int_equal(cli_parse_mib("1X"), -1);
	assert_int_equal(cli_parse_mib("1Gzz"), -1);
	assert_int_equal(cli_parse_mib("1e300"), -1);
	assert_int_equal(cli_parse_mib("nan"), -1);
}

static void test_ints(void **state)
{
	long v = 0;
	(void)state;
	assert_true(cli_parse_int("8", 1, 8, &v));
	assert_int_equal(v, 8);
	assert_false(cli_parse_int("9", 1, 8, &v));
	assert_false(cli_parse_int("0", 1, 8, &v));
	assert_false(cli_parse_int("2x", 1, 8, &v));
	assert_false(cli_parse_int("", 1, 8, &v));
	assert_false(cli_parse_int("99999999999999999999", 1, 8, &v));
}

static void test_durations(void **state)
{
	char b[32];
	(void)state;
	cli_fmt_duration(5000, b, sizeof(b));
	assert_string_equal(b, "5s");
	cli_fmt_duration(184000, b, sizeof(b));
	assert_string_equal(b, "3m04s");
	cli_fmt_duration(3720000, b, sizeof(b));
	assert_string_equal(b, "1h02m");
	cli_fmt_duration(-1, b, sizeof(b));
	assert_string_equal(b, "-");
	/* a move's ETA is rounded up: "0s" while it still runs misleads */
	static const struct { int64_t ms; const char *want; } etas[] = {
		{ 900, "1s" }, { 1930, "2s" }, { 2000, "2s" }, { 59500, "1m00s" },
		{ 0, "-" }, { -5, "-" },
	};
	for (size_t i = 0; i < sizeof(etas) / sizeof(etas[0]); i++) {
		cli_fmt_eta(etas[i].ms, b, sizeof(b));
		assert_string_equal(b, etas[i].want);
	}
	cli_fmt_mib(2048, b, sizeof(b));
	assert_string_equal(b, "2 GiB");
	cli_fmt_mib(64, b, sizeof(b));
	assert_string_equal(b, "64 MiB");
}

/* move-vm's on/off options: --verify-memory alone is on, =on / =off or
 * the next word on / off as said, anything else refused; untouched, the
 * host's setting (-1). */
static void test_move_options(void **state)
{
	struct move_opts_pub mo = { .bandwidth = -1, .encrypt = -1, .verify_memory = -1 };
	char *none[] = { "move-vm", NULL };
	char *next_off[] = { "move-vm", "--verify-memory", "off", "-n", "g1", NULL };
	char *next_name[] = { "move-vm", "--verify-memory", "-n", "g1", NULL };
	(void)state;
	assert_int_equal(mo.verify_memory, -1);
	optind = 1;
	assert_int_equal(cli_move_parse_common('V', NULL, "move-vm", &mo, 1, none), 0);
	assert_int_equal(mo.verify_memory, 1);
	assert_int_equal(cli_move_parse_common('V', "off", "move-vm", &mo, 1, none), 0);
	assert_int_equal(mo.verify_memory, 0);
	assert_int_equal(cli_move_parse_common('V', "on", "move-vm", &mo, 1, none), 0);
	assert_int_equal(mo.verify_memory, 1);
	assert_int_equal(cli_move_parse_common('V', "maybe", "move-vm", &mo, 1, none), -1);
	/* getopt has just returned --verify-memory: optind is at the next word */
	optind = 2;
	assert_int_equal(cli_move_parse_common('V', NULL, "move-vm", &mo, 5, next_off), 0);
	assert_int_equal(mo.verify_memory, 0);
	assert_int_equal(optind, 3);
	optind = 2;
	assert_int_equal(cli_move_parse_common('V', NULL, "move-vm", &mo, 4, next_name), 0);
	assert_int_equal(mo.verify_memory, 1);
	assert_int_equal(optind, 2);
	assert_int_equal(cli_move_parse_common('E', "off", "move-vm", &mo, 1, none), 0);
	assert_int_equal(mo.encrypt, 0);
	/* -d is checked as -c is: a malformed address is a bad command line */
	assert_int_equal(cli_move_parse_common('d', "node2", "move-vm", &mo, 1, none), 0);
	assert_int_equal(cli_move_parse_common('d', "[fd00::2]:7450", "move-vm", &mo, 1, none), 0);
	assert_int_equal(cli_move_parse_common('d', "node2:99999", "move-vm", &mo, 1, none), -1);
	assert_int_equal(cli_move_parse_common('d', ":7450", "move-vm", &mo, 1, none), -1);
	assert_int_equal(cli_move_parse_common('d', "node2:", "move-vm", &mo, 1, none), -1);
	assert_string_equal(mo.destination, "[fd00::2]:7450");
}

/* move-vm's options reach migration.start as the fields ferryd reads,
 * each in its own; options not given are left out (the host's settings
 * apply), while off is said as off (it overrides a host setting on). */
static void test_move_request(void **state)
{
	struct move_opts_pub mo = { .bandwidth = -1, .encrypt = -1, .verify_memory = -1 };
	char *none[] = { "move-vm", NULL };
	struct json_object *req = json_object_new_object();
	(void)state;
	cli_move_request_options(req, &(struct move_opts_pub){ .destination = "n2", .bandwidth = -1,
							      .encrypt = -1, .verify_memory = -1 });
	assert_string_equal(jsonl_text(req), "{\"destination\":\"n2\"}");
	json_object_put(req);

	assert_int_equal(cli_move_parse_common('d', "node2:7451", "move-vm", &mo, 1, none), 0);
	assert_int_equal(cli_move_parse_common('D', "120", "move-vm", &mo, 1, none), 0);
	assert_int_equal(cli_move_parse_common('B', "33", "move-vm", &mo, 1, none), 0);
	assert_int_equal(cli_move_parse_common('T', "multichannel", "move-vm", &mo, 1, none), 0);
	assert_int_equal(cli_move_parse_common('C', "zstd", "move-vm", &mo, 1, none), 0);
	assert_int_equal(cli_move_parse_common('M', "45", "move-vm", &mo, 1, none), 0);
	assert_int_equal(cli_move_parse_common('O', "cancel", "move-vm", &mo, 1, none), 0);
	assert_int_equal(cli_move_parse_common('E', "off", "move-vm", &mo, 1, none), 0);
	assert_int_equal(cli_move_parse_common('V', "off", "move-vm", &mo, 1, none), 0);
	assert_int_equal(cli_move_parse_common('K', NULL, "host evacuate", &mo, 1, none), 0);
	assert_int_equal(cli_move_parse_common('X', NULL, "host evacuate", &mo, 1, none), 0);
	mo.disk_path = "/srv/copy.img"; /* move-vm's own option */
	req = json_object_new_object();
	cli_move_request_options(req, &mo);
	assert_string_equal(jsonl_text(req),
			    "{\"destination\":\"node2:7451\",\"downtime_ms\":120,\"bandwidth_mibps\":33,"
			    "\"max_duration_s\":45,\"on_timeout\":\"cancel\",\"transport\":\"multichannel\","
			    "\"codec\":\"zstd\",\"encrypt\":false,\"verify_memory\":false,"
			    "\"copy_disk\":true,\"disk_path\":\"/srv/copy.img\",\"check_only\":true}");
	json_object_put(req);
	/* the ranges ferryd takes: a downtime of 0 ms is refused here, not
	 * dropped for the host's default */
	assert_int_equal(cli_move_parse_common('D', "0", "move-vm", &mo, 1, none), -1);
	assert_int_equal(cli_move_parse_common('D', "600001", "move-vm", &mo, 1, none), -1);
	assert_int_equal(cli_move_parse_common('M', "86401", "move-vm", &mo, 1, none), -1);
	assert_int_equal(cli_move_parse_common('B', "-1", "move-vm", &mo, 1, none), -1);
	/* --disk-dir: absolute, with --copy-disk, and not with --disk-path */
	assert_int_equal(cli_move_parse_common('G', "images", "host evacuate", &mo, 1, none), -1);
	assert_int_equal(cli_move_parse_common('G', "/srv/images", "host evacuate", &mo, 1, none), 0);
	assert_int_equal(cli_move_check_common(&mo, "host evacuate"), -1); /* and --disk-path */
	mo.disk_path = NULL;
	assert_int_equal(cli_move_check_common(&mo, "host evacuate"), 0);
	req = json_object_new_object();
	cli_move_request_options(req, &mo);
	assert_non_null(strstr(jsonl_text(req), "\"copy_disk\":true,\"disk_dir\":\"/srv/images\""));
	json_object_put(req);
	assert_int_equal(cli_move_parse_common('R', NULL, "host evacuate", &mo, 1, none), 0);
	req = json_object_new_object();
	cli_move_request_options(req, &mo);
	assert_non_null(strstr(jsonl_text(req), "\"disk_dir\":\"/srv/images\",\"remove_source_disk\":true"));
	json_object_put(req);
	mo.copy_disk = false;
	assert_int_equal(cli_move_check_common(&mo, "host evacuate"), -1);
	mo.disk_dir = NULL; /* --remove-source-disk alone needs --copy-disk too */
	assert_int_equal(cli_move_check_common(&mo, "move-vm"), -1);
	/* --post-copy: asked for in the request; not with --verify-memory on */
	mo.remove_source_disk = false;
	assert_int_equal(cli_move_parse_common('Y', NULL, "move-vm", &mo, 1, none), 0);
	assert_int_equal(cli_move_check_common(&mo, "move-vm"), 0); /* verify_memory off, above */
	req = json_object_new_object();
	cli_move_request_options(req, &mo);
	assert_non_null(strstr(jsonl_text(req), "\"postcopy\":true"));
	json_object_put(req);
	mo.verify_memory = 1;
	assert_int_equal(cli_move_check_common(&mo, "move-vm"), -1);
}

/* Several destinations: biggest VM first, each where the most room is
 * left (the first named on a tie), so the load spreads; a VM no host has
 * room for still goes to the roomiest, marked as not fitting. A list
 * given to -d is checked name by name. */
static void test_place(void **state)
{
	struct cli_place_vm v[4] = { { .name = "small", .memory_mib = 64 }, { .name = "big", .memory_mib = 256 },
				     { .name = "mid", .memory_mib = 128 }, { .name = "huge", .memory_mib = 4096 } };
	struct cli_place_host h[2] = { { .addr = "b", .room_mib = 1000 }, { .addr = "c", .room_mib = 800 } };
	struct move_opts_pub mo = { .bandwidth = -1, .encrypt = -1, .verify_memory = -1 };
	char *none[] = { "move-vm", NULL };
	(void)state;

	assert_int_equal(cli_place(v, 3, h, 2), 0);
	/* big -> b (1000 vs 800), mid -> c (744 vs 800), small -> b (744 vs 672) */
	assert_int_equal(v[1].host, 0);
	assert_int_equal(v[2].host, 1);
	assert_int_equal(v[0].host, 0);
	assert_true(v[0].fits && v[1].fits && v[2].fits);
	assert_int_equal(h[0].room_mib, 1000 - 256 - 64);
	assert_int_equal(h[1].room_mib, 800 - 128);
	assert_int_equal(h[0].placed, 2);
	assert_int_equal(h[1].placed, 1);
	/* a tie goes to the first named; a VM too big for all is marked */
	h[0].room_mib = h[1].room_mib = 500;
	h[0].placed = h[1].placed = 0;
	assert_int_equal(cli_place(&v[3], 1, h, 2), 0);
	assert_int_equal(v[3].host, 0);
	assert_false(v[3].fits);
	assert_int_equal(cli_place(v, 1, h, 0), -1);
	/* none on a destination that takes no moves, however roomy */
	h[0].room_mib = 100000;
	h[0].closed = true;
	assert_int_equal(cli_place(v, 3, h, 2), 0);
	assert_true(v[0].host == 1 && v[1].host == 1 && v[2].host == 1);
	h[1].closed = true;
	assert_int_equal(cli_place(v, 3, h, 2), -1);

	assert_int_equal(cli_move_parse_common('d', "b:7450,c", "host evacuate", &mo, 1, none), 0);
	assert_string_equal(mo.destination, "b:7450,c");
	assert_int_equal(cli_move_parse_common('d', "b,", "host evacuate", &mo, 1, none), -1);
	assert_int_equal(cli_move_parse_common('d', ",b", "host evacuate", &mo, 1, none), -1);
	assert_int_equal(cli_move_parse_common('d', "b,c:notaport", "host evacuate", &mo, 1, none), -1);
}

/* move-vm's progress line: nothing "left" before pass 1 is counted */
static void test_watch_line(void **state)
{
	static const struct { const char *json, *want; } cases[] = {
		{ "{\"name\":\"g1\",\"state\":\"preparing\",\"stage\":\"setup\","
		  "\"progress\":{\"pass\":0,\"remaining_bytes\":0,\"eta_ms\":0}}",
		  "left -  ETA -" },
		{ "{\"name\":\"g1\",\"state\":\"migrating\",\"stage\":\"precopy\","
		  "\"progress\":{\"pass\":1,\"percent\":10,\"remaining_bytes\":70254592,"
		  "\"eta_ms\":900}}",
		  "left 67.0 MiB  ETA 1s" },
	};
	char line[512];
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_object *mv = json_tokener_parse(cases[i].json);
		assert_non_null(mv);
		cli_watch_line(mv, line, sizeof(line));
		assert_non_null(strstr(line, cases[i].want));
		json_object_put(mv);
	}
}

/* A stand-in ferryd on a UNIX socket that answers every request line with
 * reply, until the client leaves. */
static pid_t fake_ferryd(const char *path, const char *reply)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pid_t pid;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0 && strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	unlink(path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char buf[4096];
		ssize_t n;
		int c;
		alarm(10);
		c = accept(fd, NULL, NULL);
		while (c >= 0 && (n = read(c, buf, sizeof(buf))) > 0)
			for (ssize_t i = 0; i < n; i++)
				if (buf[i] == '\n' && (write(c, reply, strlen(reply)) < 0 ||
						       write(c, "\n", 1) < 0))
					_exit(1);
		_exit(0);
	}
	close(fd);
	return pid;
}

/* move-vm's exit status once its moves end: 0 only if every one
 * completed; a failed or cancelled one makes it 1. */
static void test_watch_exit_status(void **state)
{
	static const struct { const char *states[2]; int rc; } cases[] = {
		{ { "completed", "completed" }, CLI_OK },
		{ { "completed", "failed" }, CLI_FAILED },
		{ { "cancelled", "completed" }, CLI_FAILED },
	};
	char dir[] = "/tmp/ferry-cli-unit.XXXXXX", path[64], reply[512];
	struct cli_opts o = { .socket = path, .json = true };
	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ferryd.sock", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_object *moves = json_tokener_parse(
			"[{\"id\":\"mv-00000001\",\"name\":\"g1\"},{\"id\":\"mv-00000002\",\"name\":\"g2\"}]");
		int status;
		pid_t pid;
		snprintf(reply, sizeof(reply),
			 "{\"ok\":true,\"moves\":[{\"id\":\"mv-00000001\",\"name\":\"g1\",\"state\":\"%s\"},"
			 "{\"id\":\"mv-00000002\",\"name\":\"g2\",\"state\":\"%s\"}]}",
			 cases[i].states[0], cases[i].states[1]);
		pid = fake_ferryd(path, reply);
		assert_int_equal(cli_watch_moves(&o, moves), cases[i].rc);
		json_object_put(moves);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_ints),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_move_options),
		cmocka_unit_test(test_move_request),
		cmocka_unit_test(test_place),
		cmocka_unit_test(test_watch_line),
		cmocka_unit_test(test_watch_exit_status),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
