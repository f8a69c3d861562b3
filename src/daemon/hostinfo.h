/*
 * Facts about this host that requests are checked against: memory from
 * /proc/meminfo and from the memory cgroup ferryd runs in, whether
 * /dev/kvm is usable, whether the CPU has hardware virtualization (vmx/svm
 * in /proc/cpuinfo). Read fresh on every call: they change while ferryd
 * runs.
 */
#ifndef FERRY_DAEMON_HOSTINFO_H
#define FERRY_DAEMON_HOSTINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* The tightest memory limit of the cgroup ferryd runs in or one of its
 * ancestors (v2 memory.max, v1 memory.limit_in_bytes). Workers inherit
 * ferryd's cgroup, so their guest memory is charged to it: a host with
 * gigabytes free can still have no room for a VM. */
struct host_cgroup_mem {
	bool limited;		/* some level has a limit */
	char path[256];		/* that level, as in /proc/self/cgroup */
	uint64_t limit_mib;
	uint64_t used_mib;	/* usage less reclaimable page cache (inactive file) */
	uint64_t room_mib;	/* limit - used, 0 when over */
};

struct host_mem {
	uint64_t total_mib;
	/* What a new VM may allocate: MemAvailable (without swapping), or
	 * less when ferryd's memory cgroup allows less. */
	uint64_t free_mib;
	uint64_t meminfo_free_mib; /* MemAvailable alone */
	struct host_cgroup_mem cg;
};

int hostinfo_memory(struct host_mem *m, struct err *e);
/* The cgroup part alone, from the given /proc files (tests pass their own;
 * NULL = this process's). A host without cgroups, or with unreadable ones,
 * is "not limited". */
void hostinfo_cgroup_memory(const char *proc_cgroup, const char *mountinfo,
			    struct host_cgroup_mem *cg);
/* "N MiB free", plus which cgroup bounds it when one does: for errors. */
const char *hostinfo_free_text(const struct host_mem *m, char *buf, size_t n);
/* Shared memory process pid has mapped (RssShmem: a worker's guest RAM it
 * has touched or reserved), in MiB; 0 if the process is gone. */
uint64_t hostinfo_proc_shmem_mib(int pid);
/* 0 when /dev/kvm opens read-write, else -1 with the reason. */
int hostinfo_kvm_usable(struct err *e);
bool hostinfo_hw_virt(void);
/* The host's network bridges (what a VM's --bridge may name), sorted, as
 * a JSON array of names; an empty array where /sys/class/net cannot be
 * read. */
struct json_object *hostinfo_bridges(void);

#endif
