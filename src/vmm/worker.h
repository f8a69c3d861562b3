/*
 * The worker's main thread: one poll() loop over the control socket, the
 * live-console socket, device input (tap) and the VM's wake-up eventfd.
 * vCPUs run in their own threads; a live migration runs in its own thread
 * and reports through worker state, so the control socket always answers.
 */
#ifndef FERRY_WORKER_H
#define FERRY_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/auth.h"
#include "common/err.h"
#include "vmm/machine.h"

#define WORKER_MAX_CLIENTS 16

enum worker_state { WORKER_RUNNING, WORKER_PAUSED, WORKER_INCOMING, WORKER_STOPPED };

struct worker_opts {
	const char *control_path;
	const char *console_path;
	const char *serial_path;
	uint64_t serial_max;        /* serial log size limit (common/caplog.h), 0: none */
	const char *log_path;       /* this process's stderr, size-capped like the console */
	uint64_t log_max;
	const char *restore_path;   /* start from a state file */
	const char *incoming;       /* listen ADDR:PORT for a live migration */
	const char *host_cpu_mask;  /* incoming: CPU features this host must be treated as lacking */
	bool start_paused;
	bool prealloc;              /* incoming: fault in the guest's memory (cfg mem_size) up front */
	/* incoming: --memory / --vcpus were given, the VM this host admitted:
	 * a stream carrying another size is refused */
	bool memory_given, vcpus_given;
	const char *prealloc_extents; /* with prealloc: only these page ranges (file of "FIRST N" lines) */
	struct auth_key migration_key; /* incoming: connections must prove it (unset: none) */
	/* incoming: created just before the VM's vCPUs first run here (made
	 * durable before the source hears RESUMED): from then on this host
	 * owns the VM, whatever becomes of this process */
	const char *resumed_file;
	/* incoming: the move copies the disk to this path (ferryd checked it):
	 * a stream that does not is refused */
	const char *disk_copy;
};

struct worker;

/* Build (or restore) the machine and run until stopped. Returns the process
 * exit code: 0 stopped, 3 guest reset/shutdown, 4 migrated away, 5 incoming
 * migration failed, 6 incoming migration called off by the source (it sent
 * ABORT: cancelled or rolled back there); nothing kept on 5 or 6; 1 failure
 * (message in e). */
int worker_main(const struct vm_config *cfg, const struct worker_opts *o, struct err *e);

#endif
