/* Whole-VM save/load in the stream format (see snapshot.h). */
#include "migration/snapshot.h"

#include <stdlib.h>
#include <string.h>

#include "vmm/vmstate.h"

int snapshot_save(struct machine *m, struct stream *w, struct ram_stats *st, struct err *e)
{
	char *cfg = config_to_json(&m->cfg);
	if (!cfg)
		return err_set(e, "out of memory");
	mig_put_header(w);
	mig_put_rec(w, MIG_REC_CONFIG, (uint32_t)strlen(cfg));
	stream_put(w, cfg, strlen(cfg));
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
	char *text;
	int rc;
	if (mig_get_header(r, e) < 0 || mig_get_rec(r, &rec, e) < 0)
		return -1;
	if (rec.type != MIG_REC_CONFIG)
		return err_set(e, "corrupt stream: expected the configuration first, found a %s record",
			       mig_rec_name(rec.type));
	text = malloc(rec.len + 1);
	if (!text)
		return err_set(e, "out of memory");
	stream_get(r, text, rec.len);
	if (stream_check(r, e) < 0) {
		free(text);
		return -1;
	}
	text[rec.len] = 0;
	rc = config_from_json(text, rec.len, cfg, e);
	free(text);
	return rc < 0 ? err_prefix(e, "stream configuration") : 0;
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
	struct mig_rec rec;
	int rc = -1;

	for (;;) {
		if (mig_get_rec(r, &rec, e) < 0)
			goto out;
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
			stream_skip(r, rec.len);
			if (stream_check(r, e) < 0)
				goto out;
			break;
		case MIG_REC_STATE_END:
			if (rec.len != 0) {
				err_set(e, "corrupt stream: state-end record with a payload");
				goto out;
			}
			if (before_apply && before_apply(opaque, e) < 0)
				goto out;
			/* every channel is done: no page may be left torn */
			if (ram_recv_check_torn(rr, e) < 0)
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
	return rc;
}
