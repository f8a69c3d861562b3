/*
 * The parts a switch-over's downtime is split into, by name: the keys of a
 * move's `downtime_parts` in status (each with "_ms") and the words an
 * administrator reads. One table for the three places that use it — the
 * worker that reports the parts, the worker's warning when a downtime went
 * over its target, and the CLI that names the largest part from the JSON —
 * with no dependency, so the CLI links it alone.
 */
#ifndef FERRY_DOWNTIME_H
#define FERRY_DOWNTIME_H

/* In order: they add up to the whole downtime. */
enum mig_downtime_part {
	MIG_DT_STOP_VCPUS,
	MIG_DT_LAST_PAGES,
	MIG_DT_DIGEST,        /* the source's memory digest (verify_memory; else 0) */
	MIG_DT_DEVICE_STATE,
	MIG_DT_DEST_READY,
	MIG_DT_COMMIT_RESUME,
	MIG_DT_NPARTS
};

struct mig_downtime_name {
	const char *key;   /* status JSON key, e.g. "last_pages_ms" */
	const char *what;  /* e.g. "the last pages" */
};
extern const struct mig_downtime_name mig_downtime_names[MIG_DT_NPARTS];

/* The index of the largest of ms[] (in the enum's order). */
int mig_downtime_largest(const double ms[MIG_DT_NPARTS]);

#endif
