/*
 * Non-live save and load of a whole VM in the ferry stream format: the
 * "state blob". Save writes header, config, every populated page, all
 * device/vCPU state and an end marker. Load is split in two so the caller
 * can build the machine from the configuration before the state arrives.
 * Live migration (precopy.c) reuses the same loader on its receive side.
 */
#ifndef FERRY_SNAPSHOT_H
#define FERRY_SNAPSHOT_H

#include "common/err.h"
#include "common/stream.h"
#include "migration/ram.h"
#include "vmm/machine.h"

/* vCPUs must be parked. */
int snapshot_save(struct machine *m, struct stream *w, struct ram_stats *st, struct err *e);
/* Header and configuration record. */
int snapshot_load_config(struct stream *r, struct vm_config *cfg, struct err *e);
/* The same, from a record already read (the header, of this version,
 * before it too). */
int snapshot_config_from_rec(struct stream *r, uint32_t version, const struct mig_rec *rec,
			     struct vm_config *cfg, struct err *e);
/* Everything after the config, up to and including STATE_END, applied to
 * machine m (built with incoming=true). Pages are written as they arrive;
 * the device state is applied only once complete. */
int snapshot_load_state(struct stream *r, struct machine *m, struct ram_recv *rr, struct err *e);
/* Same, with a hook run after STATE_END arrives and before the state is
 * applied (live migration waits there for its other channels). */
int snapshot_load_state_ex(struct stream *r, struct machine *m, struct ram_recv *rr,
			   int (*before_apply)(void *opaque, struct err *e), void *opaque,
			   struct err *e);

#endif
