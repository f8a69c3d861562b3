/*
 * Unit tests for the state loader's last steps (src/migration/snapshot.c),
 * no KVM: at STATE_END the hook that waits for the other memory channels
 * runs first, then no page may be left torn, and only then is the device
 * state applied. A machine with no vCPUs and no devices stands in: reaching
 * vmstate_apply shows as its complaint about the missing kvm section.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "migration/format.h"
#include "migration/ram.h"
#include "migration/snapshot.h"

/* The other channels, as the hook sees them: the page they still owed. */
struct hook {
	struct ram_recv *rr;
	const struct stream *resend; /* applied by the hook, if set */
	bool called;
	bool fail;
};

static void apply_pages(struct ram_recv *rr, const struct stream *w)
{
	struct stream r;
	struct mig_rec rec;
	struct err e = { 0 };
	stream_init_mem_reader(&r, stream_mem_data(w), stream_mem_len(w));
	while (stream_remaining(&r)) {
		assert_int_equal(mig_get_rec(&r, &rec, &e), 0);
		assert_int_equal(ram_recv_record(rr, &r, rec.len, &e), 0);
	}
}

static int before_apply(void *opaque, struct err *e)
{
	struct hook *h = opaque;
	h->called = true;
	if (h->fail)
		return err_set(e, "memory channel 2: connection reset");
	if (h->resend)
		apply_pages(h->rr, h->resend);
	return 0;
}

/* Live pages 0..7 at generation gen, page 3 torn on the way if asked. */
static void put_pages(struct stream *w, struct guest_mem *gm, uint16_t gen, bool torn)
{
	struct ram_stats st = { .live_sums = true };
	size_t at = stream_mem_len(w);
	st.bounce = malloc((size_t)MIG_MAX_RUN_PAGES * 4096);
	assert_non_null(st.bounce);
	assert_int_equal(ram_send_pages(w, gm, 0, 8, gen, NULL, &st), 0);
	free(st.bounce);
	if (torn)
		((uint8_t *)stream_mem_data(w))[at + MIG_REC_HDR + MIG_MEM_HDR + 8 * 8 + 3 * 4096 + 9] ^= 1;
}

/* Load [pages at gen 1, page 3 torn][STATE_END] into m with hook h;
 * returns the loader's result, its message in e. */
static int load(struct machine *m, struct hook *h, struct err *e)
{
	struct ram_recv rr;
	struct stream w, r;
	int rc;
	assert_int_equal(ram_recv_init(&rr, &m->vm.mem, e), 0);
	h->rr = &rr;
	stream_init_mem_writer(&w);
	put_pages(&w, &m->vm.mem, 1, true);
	mig_put_rec(&w, MIG_REC_STATE_END, 0);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	rc = snapshot_load_state_ex(&r, m, &rr, before_apply, h, e);
	stream_destroy(&w);
	ram_recv_destroy(&rr);
	return rc;
}

static void machine_init(struct machine *m)
{
	struct err e = { 0 };
	memset(m, 0, sizeof(*m));
	assert_int_equal(gmem_init(&m->vm.mem, 16ULL << 20, &e), 0);
	for (uint32_t p = 0; p < 8; p++)
		memset(m->vm.mem.host + (size_t)p * 4096, (int)(p * 7 + 1), 4096);
}

/* A page torn and never sent again fails the load before any state is
 * applied; the same page sent again by another channel, whose pages the
 * hook waits for, passes. */
static void test_torn_page_fails_the_load(void **state)
{
	static struct machine m;
	struct stream resend;
	struct hook h = { 0 };
	struct err e = { 0 };
	(void)state;
	machine_init(&m);
	assert_int_equal(load(&m, &h, &e), -1);
	assert_true(h.called);
	assert_non_null(strstr(e.msg, "1 page(s) arrived torn"));
	assert_non_null(strstr(e.msg, "0x3000"));

	/* the hook (the other channels' last pages) comes first: a newer
	 * copy it brings makes the page whole, and the load goes on to the
	 * state */
	stream_init_mem_writer(&resend);
	put_pages(&resend, &m.vm.mem, 2, false);
	h = (struct hook){ .resend = &resend };
	memset(&e, 0, sizeof(e));
	assert_int_equal(load(&m, &h, &e), -1);
	assert_true(h.called);
	assert_null(strstr(e.msg, "torn"));
	assert_non_null(strstr(e.msg, "sections"));
	stream_destroy(&resend);
	gmem_destroy(&m.vm.mem);
}

/* A channel that failed fails the load, in its own words. */
static void test_hook_failure_fails_the_load(void **state)
{
	static struct machine m;
	struct hook h = { .fail = true };
	struct err e = { 0 };
	(void)state;
	machine_init(&m);
	assert_int_equal(load(&m, &h, &e), -1);
	assert_non_null(strstr(e.msg, "memory channel 2: connection reset"));
	gmem_destroy(&m.vm.mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_torn_page_fails_the_load),
		cmocka_unit_test(test_hook_failure_fails_the_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
