/* Names of the downtime's parts (see downtime.h). */
#include "migration/downtime.h"

const struct mig_downtime_name mig_downtime_names[MIG_DT_NPARTS] = {
	[MIG_DT_STOP_VCPUS] = { "stop_vcpus_ms", "stopping the vCPUs" },
	[MIG_DT_LAST_PAGES] = { "last_pages_ms", "the last pages" },
	[MIG_DT_DIGEST] = { "memory_digest_ms", "the source's memory digest (--verify-memory)" },
	[MIG_DT_DEVICE_STATE] = { "device_state_ms", "the device state" },
	[MIG_DT_DEST_READY] = { "destination_ready_ms", "the destination getting ready" },
	[MIG_DT_COMMIT_RESUME] = { "commit_resume_ms", "commit and resume" },
};

int mig_downtime_largest(const double ms[MIG_DT_NPARTS])
{
	int most = 0;
	for (int i = 1; i < MIG_DT_NPARTS; i++)
		if (ms[i] > ms[most])
			most = i;
	return most;
}
