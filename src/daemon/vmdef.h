/*
 * A VM definition: what `vm.new` records and `vm.start` turns into a
 * ferry-vm command line. Stored as DIR/vms/NAME.json, written atomically
 * (temp file + rename) so a crash never leaves half a definition.
 */
#ifndef FERRY_DAEMON_VMDEF_H
#define FERRY_DAEMON_VMDEF_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "common/err.h"

#define VMDEF_NAME_MAX 64
#define VMDEF_MIN_MEMORY_MIB 16
#define VMDEF_MAX_VCPUS 8
#define VMDEF_CMDLINE_MAX 2048
#define VMDEF_CPU_MASK_MAX 512

struct vm_def {
	char name[VMDEF_NAME_MAX + 1];
	uint32_t memory_mib;
	uint32_t vcpus;
	char kernel[PATH_MAX];
	char initrd[PATH_MAX];  /* "" = none */
	char cmdline[VMDEF_CMDLINE_MAX];
	char disk[PATH_MAX];    /* "" = none */
	char tap[16];           /* IFNAMSIZ; "" = none */
	char bridge[16];        /* or a host bridge the worker puts its own tap on; "" = none */
	char mac[18];           /* "xx:xx:xx:xx:xx:xx"; "" = none */
	char cpu_mask[VMDEF_CPU_MASK_MAX];
	char dirty_tracker[8];  /* "ring"; "" = the worker's default (the bitmap) */
};

/* [a-zA-Z0-9._-]{1,64}, and not "." or ".." (names become file names). */
bool vmdef_name_valid(const char *name);

/* Fill d from a vm.new request or a stored definition: checks presence,
 * types, formats and ranges, but not the host (files, memory). On error
 * *code gets a stable API error code (E_BAD_NAME, E_BAD_ARG). */
int vmdef_from_json(struct json_object *o, struct vm_def *d,
		    const char **code, struct err *e);
/* Host-dependent checks: kernel/initrd readable, disk present. */
int vmdef_check_files(const struct vm_def *d, const char **code,
		      struct err *e);

/* Host-dependent, where the VM is to run (a start, a move's prepare), not
 * where it is defined (the network may come later): its tap or bridge is
 * here (E_NO_NETWORK). */
int vmdef_check_nic(const struct vm_def *d, const char **code, struct err *e);

struct json_object *vmdef_to_json(const struct vm_def *d);
/* A definition from a file or a peer names only fields this build knows:
 * one it would drop (a newer host's) must not pass silently. */
int vmdef_only_known_keys(struct json_object *o, struct err *e);

/* DIR/vms/NAME.json, atomically. */
int vmdef_save(const char *vms_dir, const struct vm_def *d, struct err *e);
int vmdef_load(const char *path, struct vm_def *d, struct err *e);

#endif
