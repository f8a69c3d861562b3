/*
 * The memory cgroup part of a host's free memory (hostinfo_cgroup_memory):
 * fake /proc/self/cgroup and mountinfo files pointing at a temporary tree
 * of cgroup files, for v1 (memory.limit_in_bytes, total_inactive_file) and
 * v2 (memory.max, inactive_file): the tightest level wins, reclaimable page
 * cache is not counted as used, "no limit" values are ignored, a container's
 * mount of a subtree is followed, and a host without any is "not limited".
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

#include "daemon/hostinfo.h"

#define MIB (1ull << 20)

static char tmp[256];

static void put(const char *rel, const char *fmt, ...)
{
	char path[512], dir[512];
	va_list ap;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmp, rel);
	/* make the parents */
	for (char *p = strchr(path + strlen(tmp) + 1, '/'); p; p = strchr(p + 1, '/')) {
		snprintf(dir, sizeof(dir), "%.*s", (int)(p - path), path);
		mkdir(dir, 0755);
	}
	f = fopen(path, "w");
	assert_non_null(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

static void read_cg(struct host_cgroup_mem *cg)
{
	char pc[300], mi[300];
	snprintf(pc, sizeof(pc), "%s/proc_cgroup", tmp);
	snprintf(mi, sizeof(mi), "%s/mountinfo", tmp);
	hostinfo_cgroup_memory(pc, mi, cg);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmp, sizeof(tmp), "/tmp/ferry-hostinfo-XXXXXX");
	return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_v1_leaf_limit(void **state)
{
	struct host_cgroup_mem cg;
	(void)state;
	put("proc_cgroup", "9:name=systemd:/\n5:cpu,cpuacct:/\n4:memory:/a/b\n0::/\n");
	put("mountinfo",
	    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n"
	    "35 31 0:32 / %s/mem rw,relatime - cgroup cgroup rw,memory\n"
	    "41 31 0:38 / %s/unified rw,relatime - cgroup2 cgroup2 rw\n", tmp, tmp);
	put("mem/a/b/memory.limit_in_bytes", "%llu\n", 512 * MIB);
	put("mem/a/b/memory.usage_in_bytes", "%llu\n", 200 * MIB);
	put("mem/a/b/memory.stat", "cache 1\ninactive_file 7\ntotal_inactive_file %llu\n", 50 * MIB);
	/* v1's "no limit": a huge page-rounded number */
	put("mem/a/memory.limit_in_bytes", "9223372036854771712\n");
	put("mem/a/memory.usage_in_bytes", "%llu\n", 4000 * MIB);
	put("mem/memory.limit_in_bytes", "9223372036854771712\n");
	put("mem/memory.usage_in_bytes", "%llu\n", 9000 * MIB);
	read_cg(&cg);
	assert_true(cg.limited);
	assert_string_equal(cg.path, "/a/b");
	assert_int_equal(cg.limit_mib, 512);
	assert_int_equal(cg.used_mib, 150); /* page cache it could drop is not "used" */
	assert_int_equal(cg.room_mib, 362);

	/* a tighter ancestor binds */
	put("mem/a/memory.limit_in_bytes", "%llu\n", 4100 * MIB);
	read_cg(&cg);
	assert_string_equal(cg.path, "/a");
	assert_int_equal(cg.room_mib, 100);

	/* over its limit: no room, not a wrapped-around huge number */
	put("mem/a/memory.limit_in_bytes", "%llu\n", 1000 * MIB);
	read_cg(&cg);
	assert_true(cg.limited);
	assert_int_equal(cg.room_mib, 0);
}

static void test_v2(void **state)
{
	struct host_cgroup_mem cg;
	(void)state;
	put("proc_cgroup", "0::/x/y\n");
	put("mountinfo", "41 31 0:38 / %s/v2 rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n", tmp);
	put("v2/x/y/memory.max", "max\n");
	put("v2/x/y/memory.current", "%llu\n", 10 * MIB);
	put("v2/x/memory.max", "%llu\n", 1024 * MIB);
	put("v2/x/memory.current", "%llu\n", 300 * MIB);
	put("v2/x/memory.stat", "anon 1\nactive_file 5\ninactive_file %llu\n", 100 * MIB);
	/* the root has no memory.max in v2 */
	put("v2/memory.current", "%llu\n", 9000 * MIB);
	read_cg(&cg);
	assert_true(cg.limited);
	assert_string_equal(cg.path, "/x");
	assert_int_equal(cg.limit_mib, 1024);
	assert_int_equal(cg.used_mib, 200);
	assert_int_equal(cg.room_mib, 824);

	/* every level "max": not limited */
	put("v2/x/memory.max", "max\n");
	read_cg(&cg);
	assert_false(cg.limited);
}

/* Inside a container the mount shows a subtree: the mount's root is a
 * prefix of the path in /proc/self/cgroup. */
static void test_v2_container_mount(void **state)
{
	struct host_cgroup_mem cg;
	(void)state;
	put("proc_cgroup", "0::/docker/abc/sub\n");
	put("mountinfo", "41 31 0:38 /docker/abc %s/c2 rw - cgroup2 cgroup2 rw\n", tmp);
	put("c2/sub/memory.max", "%llu\n", 256 * MIB);
	put("c2/sub/memory.current", "%llu\n", 6 * MIB);
	put("c2/memory.max", "%llu\n", 2048 * MIB);
	put("c2/memory.current", "%llu\n", 6 * MIB);
	read_cg(&cg);
	assert_true(cg.limited);
	assert_string_equal(cg.path, "/docker/abc/sub");
	assert_int_equal(cg.room_mib, 250);

	/* a path outside what is mounted cannot be read: not limited */
	put("proc_cgroup", "0::/elsewhere\n");
	read_cg(&cg);
	assert_false(cg.limited);
}

static void test_none(void **state)
{
	struct host_cgroup_mem cg;
	(void)state;
	/* no memory hierarchy mounted */
	put("proc_cgroup", "4:memory:/a\n");
	put("mountinfo", "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n");
	read_cg(&cg);
	assert_false(cg.limited);
	/* mounted, but the files are missing */
	put("mountinfo", "35 31 0:32 / %s/empty rw - cgroup cgroup rw,memory\n", tmp);
	read_cg(&cg);
	assert_false(cg.limited);
	/* no /proc files at all */
	hostinfo_cgroup_memory("/nonexistent/cgroup", "/nonexistent/mountinfo", &cg);
	assert_false(cg.limited);
}

/* Error texts name the cgroup when it is what binds. */
static void test_free_text(void **state)
{
	struct host_mem m = { .total_mib = 24000, .free_mib = 100, .meminfo_free_mib = 20000 };
	char buf[512];
	(void)state;
	m.cg.limited = true;
	snprintf(m.cg.path, sizeof(m.cg.path), "/ferry");
	m.cg.limit_mib = 1024;
	m.cg.used_mib = 924;
	m.cg.room_mib = 100;
	hostinfo_free_text(&m, buf, sizeof(buf));
	assert_non_null(strstr(buf, "100 MiB free"));
	assert_non_null(strstr(buf, "cgroup /ferry"));
	assert_non_null(strstr(buf, "allows 1024 MiB and uses 924 MiB"));
	m.cg.limited = false;
	m.free_mib = 20000;
	hostinfo_free_text(&m, buf, sizeof(buf));
	assert_string_equal(buf, "20000 MiB free");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_v1_leaf_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2_container_mount, setup, teardown),
		cmocka_unit_test_setup_teardown(test_none, setup, teardown),
		cmocka_unit_test(test_free_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
