/*
 * Facts about this host that requests are checked against: memory from
 * /proc/meminfo, whether /dev/kvm is usable, whether the CPU has hardware
 * virtualization (vmx/svm in /proc/cpuinfo). Read fresh on every call: they
 * change while ferryd runs.
 */
#ifndef FERRY_DAEMON_HOSTINFO_H
#define FERRY_DAEMON_HOSTINFO_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

struct host_mem {
	uint64_t total_mib;
	uint64_t free_mib; /* MemAvailable: what can be allocated without swapping */
};

int hostinfo_memory(struct host_mem *m, struct err *e);
/* Shared memory process pid has mapped (RssShmem: a worker's guest RAM it
 * has touched or reserved), in MiB; 0 if the process is gone. */
uint64_t hostinfo_proc_shmem_mib(int pid);
/* 0 when /dev/kvm opens read-write, else -1 with the reason. */
int hostinfo_kvm_usable(struct err *e);
bool hostinfo_hw_virt(void);

#endif
