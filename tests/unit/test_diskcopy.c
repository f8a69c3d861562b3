/*
 * The disk copy's parts that need no VM (src/migration/diskcopy.c, the
 * CONFIG fields in src/vmm/config.c): a DISK record's header is refused
 * for every way a hostile source could point it outside the disk or
 * misframe it; the copy's size and allocation survive CONFIG's JSON and
 * are held to whole sectors; a destination never creates the copy over an
 * existing file, nor without room, and creates it sparse of the size asked.
 * The write log and the transfer run under KVM in tests/e2e/worker_disk_copy.sh.
 */
#include <errno.h>
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

#include "migration/diskcopy.h"
#include "vmm/config.h"

#define IMAGE (8ull << 20)

/* A DISK payload's header: offset, length, zero, sum. */
static int parse(uint32_t len, uint64_t off, uint32_t length, uint32_t zero, struct err *e)
{
	struct stream w, r;
	struct diskcopy_hdr h;
	int rc;

	stream_init_mem_writer(&w);
	stream_put_u64(&w, off);
	stream_put_u32(&w, length);
	stream_put_u32(&w, zero);
	stream_put_u64(&w, 0x1234);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	rc = diskcopy_get_hdr(&r, len, IMAGE, &h, e);
	if (rc == 0) {
		assert_true(h.offset == off);
		assert_int_equal(h.length, length);
		assert_true(h.sum == 0x1234);
	}
	stream_destroy(&w);
	return rc;
}

static void refused(uint32_t len, uint64_t off, uint32_t length, uint32_t zero, const char *why)
{
	struct err e = { 0 };
	assert_int_equal(parse(len, off, length, zero, &e), -1);
	if (!strstr(e.msg, why))
		fail_msg("expected \"%s\", got \"%s\"", why, e.msg);
}

static void header_bounds(void **state)
{
	struct err e = { 0 };
	(void)state;
	assert_int_equal(parse(DISKCOPY_HDR + 65536, 0, 65536, 0, &e), 0);
	/* the last 1 MiB of the disk, to its very end */
	assert_int_equal(parse(DISKCOPY_HDR + DISKCOPY_MAX_RUN, IMAGE - DISKCOPY_MAX_RUN, DISKCOPY_MAX_RUN, 0, &e), 0);
	refused(DISKCOPY_HDR - 1, 0, 0, 0, "shorter than its header");
	refused(DISKCOPY_HDR + 512, 0, 1024, 0, "does not match");
	refused(DISKCOPY_HDR + 512, 0, 512, 7, "does not match");
	refused(DISKCOPY_HDR, 0, 0, 0, "whole sectors");
	refused(DISKCOPY_HDR + 1000, 0, 1000, 0, "whole sectors");
	refused(DISKCOPY_HDR + 512, 100, 512, 0, "whole sectors");
	refused(DISKCOPY_HDR + DISKCOPY_MAX_RUN + 512, 0, DISKCOPY_MAX_RUN + 512, 0, "whole sectors");
	refused(DISKCOPY_HDR + 1024, IMAGE - 512, 1024, 0, "past the disk's end");
	refused(DISKCOPY_HDR + 512, IMAGE, 512, 0, "past the disk's end");
	/* an offset that would wrap around when the length is added */
	refused(DISKCOPY_HDR + 512, UINT64_MAX - 511, 512, 0, "past the disk's end");
}

static void config_fields(void **state)
{
	struct vm_config c, back;
	struct err e = { 0 };
	char *json;
	(void)state;

	memset(&c, 0, sizeof(c));
	snprintf(c.name, sizeof(c.name), "d1");
	c.mem_size = 64ull << 20;
	c.vcpus = 1;
	snprintf(c.disk, sizeof(c.disk), "/srv/d1.img");
	json = config_to_json(&c);
	assert_null(strstr(json, "disk_copy")); /* a plain move's CONFIG is as before */
	free(json);
	c.disk_copy_bytes = 64ull << 20;
	c.disk_copy_allocated = 3ull << 20;
	json = config_to_json(&c);
	assert_int_equal(config_from_json(json, strlen(json), &back, &e), 0);
	assert_true(back.disk_copy_bytes == c.disk_copy_bytes);
	assert_true(back.disk_copy_allocated == c.disk_copy_allocated);
	free(json);

	c.disk_copy_bytes = (64ull << 20) + 100; /* not whole sectors */
	json = config_to_json(&c);
	assert_int_equal(config_from_json(json, strlen(json), &back, &e), -1);
	free(json);
	c.disk_copy_bytes = 1ull << 20;
	c.disk_copy_allocated = 2ull << 20; /* more allocated than there is */
	json = config_to_json(&c);
	assert_int_equal(config_from_json(json, strlen(json), &back, &e), -1);
	free(json);
	c.disk_copy_allocated = 0;
	c.disk[0] = 0; /* a copy of no disk */
	json = config_to_json(&c);
	assert_int_equal(config_from_json(json, strlen(json), &back, &e), -1);
	free(json);
	static const char neg[] = "{\"name\":\"d1\",\"memory\":67108864,\"vcpus\":1,\"disk\":\"/x\","
				  "\"disk_copy_bytes\":-512}";
	assert_int_equal(config_from_json(neg, sizeof(neg) - 1, &back, &e), -1);
	assert_non_null(strstr(e.msg, "disk_copy_bytes"));
}

static void target_checked_and_created(void **state)
{
	char dir[] = "/tmp/ferry-diskcopy.XXXXXX";
	struct vm_config c;
	struct err e = { 0 };
	struct stat st;
	FILE *f;
	(void)state;

	assert_non_null(mkdtemp(dir));
	memset(&c, 0, sizeof(c));
	snprintf(c.disk, sizeof(c.disk), "%s/copy.img", dir);
	c.disk_copy_bytes = IMAGE;
	assert_int_equal(diskcopy_check_target(&c, &e), 0);
	assert_int_equal(diskcopy_create_image(&c, &e), 0);
	assert_int_equal(stat(c.disk, &st), 0);
	assert_true((uint64_t)st.st_size == IMAGE);
	assert_true(st.st_blocks * 512 < (off_t)IMAGE); /* sparse */
	assert_int_equal(st.st_mode & 0777, 0600);       /* a guest's disk is private */

	/* an existing file is never a target, nor overwritten */
	assert_int_equal(diskcopy_check_target(&c, &e), -1);
	assert_non_null(strstr(e.msg, "already exists"));
	assert_int_equal(diskcopy_create_image(&c, &e), -1);
	f = fopen(c.disk, "w");
	assert_non_null(f);
	fputs("keep", f);
	fclose(f);
	assert_int_equal(diskcopy_create_image(&c, &e), -1);
	assert_int_equal(stat(c.disk, &st), 0);
	assert_int_equal(st.st_size, 4);
	unlink(c.disk);

	/* no room: more allocated than any file system here has free */
	c.disk_copy_allocated = 1ull << 62;
	assert_int_equal(diskcopy_check_target(&c, &e), -1);
	assert_non_null(strstr(e.msg, "not enough space"));
	/* a relative path, a missing directory */
	c.disk_copy_allocated = 0;
	snprintf(c.disk, sizeof(c.disk), "copy.img");
	assert_int_equal(diskcopy_check_target(&c, &e), -1);
	snprintf(c.disk, sizeof(c.disk), "%s/no/such/copy.img", dir);
	assert_int_equal(diskcopy_check_target(&c, &e), -1);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(header_bounds),
		cmocka_unit_test(config_fields),
		cmocka_unit_test(target_checked_and_created),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
