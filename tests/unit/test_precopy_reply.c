/*
 * The source's reading of the destination's replies (SETUP, READY,
 * RESUMED: src/migration/precopy.c, included here for its static
 * reader): a reply from another host is believed only as the destination
 * writes it. "ok" must be the boolean true, and a refusal's "error" a
 * string; anything else is a refusal with a reason of ours. No KVM.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "migration/precopy.c"

static int ok_of(const char *text, char *why)
{
	why[0] = 0;
	return reply_ok(text, why, 512);
}

static void test_reply_ok(void **state)
{
	char why[512];
	(void)state;
	assert_int_equal(ok_of("{\"ok\":true,\"channels\":1}", why), 1);
	assert_int_equal(ok_of("{\"ok\":false,\"error\":\"no disk\"}", why), 0);
	assert_string_equal(why, "no disk");
	assert_int_equal(ok_of("{\"error\":\"x\"}", why), 0);
	assert_int_equal(ok_of("not json", why), 0);
	assert_non_null(strstr(why, "unreadable"));
}

/* Not a yes: json-c reads a non-empty string (or an object) as true. */
static void test_reply_ok_typed(void **state)
{
	char why[512];
	(void)state;
	assert_int_equal(ok_of("{\"ok\":\"false\",\"error\":\"refused\"}", why), 0);
	assert_string_equal(why, "refused");
	assert_int_equal(ok_of("{\"ok\":{},\"error\":\"refused\"}", why), 0);
	assert_int_equal(ok_of("{\"ok\":1}", why), 0);
	/* a null or non-string reason is no reason */
	assert_int_equal(ok_of("{\"ok\":false,\"error\":null}", why), 0);
	assert_string_equal(why, "the destination refused without a reason");
	assert_int_equal(ok_of("{\"ok\":false,\"error\":[1]}", why), 0);
	assert_string_equal(why, "the destination refused without a reason");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_ok),
		cmocka_unit_test(test_reply_ok_typed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
