/* Whole-VM save/load in the stream format (see snapshot.h). */
#include "migration/snapshot.h"

#include <stdlib.h>
#include <string.h>

#include "common/failpoint.h"
#include "common/log.h"
#include "migration/channel.h"
#include "migration/digest.h"
#include "migration/diskcopy.h"
#include "migration/postcopy.h"
#include "vmm/vmstate.h"

int snapshot_save(struct machine *m, struct stream *w, struct ram_stats *st, struct err *e)
{
	char *cfg = config_to_json(&m->cfg);
	if (!cfg)
		return err_set(e, "out of memory");
	mig_put_header(w);
	mig_put_config(w, cfg);
	free(cfg);
	if (ram_send_populated(w, &m->vm.mem, 1, NULL, st) < 0)
		return stream_check(w, e);
	mig_put_sync(w, &(struct mig_sync){ .pass = 1 });
	if (vmstate_save(&m->vm, w, e) < 0)
		return -1;
	mig_put_rec(w, MIG_REC_EOS, 0);
	if (stream_flush(w) < 0)
		return stream_check(w, e);
	return 0;
}

int snapshot_load_config(struct stream *r, struct vm_config *cfg, struct err *e)
{
	struct mig_rec rec;
	uint32_t version;
	if (mig_get_header(r, &version, e) < 0 || mig_get_rec(r, &rec, e) < 0)
		return -1;
	return snapshot_config_from_rec(r, version, &rec, cfg, e);
}

int snapshot_config_from_rec(struct stream *r, uint32_t version, const struct mig_rec *rec,
			     struct vm_config *cfg, struct err *e)
{
	const char *json;
	uint8_t *buf;
	uint32_t jlen;
	int rc = -1;
	if (rec->type != MIG_REC_CONFIG)
		return err_set(e, "corrupt stream: expected the configuration first, found a %s record",
			       mig_rec_name(rec->type));
	/* +1: config_from_json gets NUL-terminated text */
	buf = malloc(rec->len + 1);
	if (!buf)
		return err_set(e, "out of memory");
	stream_get(r, buf, rec->len);
	if (stream_check(r, e) == 0 && mig_config_text(version, buf, rec->len, &json, &jlen, e) == 0) {
		buf[rec->len] = 0;
		rc = config_from_json(json, jlen, cfg, e);
		if (rc < 0)
			err_prefix(e, "stream configuration");
	}
	free(buf);
	return rc;
}

/* Before the device state goes in: the pages are all here and nothing
 * has run on them, so they must be exactly what the source digested. */
static int snapshot_verify_memory(struct machine *m, const struct mem_digest *dg, struct err *e)
{
	uint64_t t0 = channel_now_ns();
	/* A test's way to prove a difference fails the move (tests/e2e/worker_verify.sh). */
	if (failpoint("dst.digest_flip") < 0)
		m->vm.mem.host[0] ^= 0x5a;
	if (digest_verify(dg, &m->vm.mem, e) < 0)
		return -1;
	log_info("memory verified against the source's digest: %llu MiB in %.1f ms",
		 (unsigned long long)(dg->npages >> 8), (double)(channel_now_ns() - t0) / 1e6);
	return 0;
}

int snapshot_load_state(struct stream *r, struct machine *m, struct ram_recv *rr, struct err *e)
{
	return snapshot_load_state_ex(r, m, rr, NULL, NULL, e);
}

int snapshot_load_state_ex(struct stream *r, struct machine *m, struct ram_recv *rr,
			   int (*before_apply)(void *opaque, struct err *e), void *opaque,
			   struct err *e)
{
	struct vmstate_loaded ld = { 0 };
	struct mem_digest dg = { 0 };
	struct diskcopy_rx drx = { 0 };
	struct mig_rec rec;
	int rc = -1;

	for (;;) {
		if (mig_get_rec(r, &rec, e) < 0)
			goto out;
		/* the record before this one, its payload read now */
		ram_recv_account(rr, r);
		switch (rec.type) {
		case MIG_REC_MEM:
			if (ram_recv_record(rr, r, rec.len, e) < 0)
				goto out;
			break;
		case MIG_REC_SECTION:
			if (vmstate_read_section(&ld, r, rec.len, e) < 0)
				goto out;
			break;
		case MIG_REC_SYNC: {
			struct mig_sync sy;
			if (mig_get_sync(r, &rec, &sy, e) < 0)
				goto out;
			break;
		}
		case MIG_REC_DIGEST:
			if (digest_get(r, rec.len, gmem_npages(&m->vm.mem), &dg, e) < 0)
				goto out;
			break;
		case MIG_REC_DISK:
			if (diskcopy_recv(&drx, r, rec.len, m, e) < 0)
				goto out;
			break;
		case MIG_REC_POSTCOPY:
			if (!rr->postcopy) {
				err_set(e, "corrupt stream: a post-copy record, which this load did not offer to take");
				goto out;
			}
			if (postcopy_in_read_owed(rr->postcopy, r, rec.len, e) < 0)
				goto out;
			break;
		case MIG_REC_ABORT:
			/* a live source that gave up (cancelled, or failed there) */
			mig_get_abort(r, &rec, e);
			goto out;
		case MIG_REC_STATE_END:
			if (rec.len != 0) {
				err_set(e, "corrupt stream: state-end record with a payload");
				goto out;
			}
			if (before_apply && before_apply(opaque, e) < 0)
				goto out;
			/* every channel is done: no page may be left torn
			 * (but those post-copy sends again) */
			if (rr->postcopy && rr->postcopy->owed_count)
				ram_recv_drop_torn(rr, rr->postcopy->owed);
			if (ram_recv_check_torn(rr, e) < 0)
				goto out;
			if (dg.sums && snapshot_verify_memory(m, &dg, e) < 0)
				goto out;
			/* the copied disk on stable storage before READY */
			if (diskcopy_rx_finish(&drx, m, e) < 0)
				goto out;
			rc = vmstate_apply(&m->vm, &ld, e);
			goto out;
		default:
			err_set(e, "corrupt stream: unexpected %s record before the device state",
				mig_rec_name(rec.type));
			goto out;
		}
	}
out:
	vmstate_loaded_free(&ld);
	digest_free(&dg);
	diskcopy_rx_free(&drx);
	return rc;
}
