/*
 * The VM registry: definitions loaded from DIR/vms at startup, the in-memory
 * list, and the per-VM file layout under run/ and logs/.
 */
#include "daemon/ferryd.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/durable.h"
#include "common/log.h"

long long ferryd_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long ferryd_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *registry_state_name(enum vm_state s)
{
	switch (s) {
	case VM_STOPPED: return "stopped";
	case VM_STARTING: return "starting";
	case VM_RUNNING: return "running";
	case VM_STOPPING: return "stopping";
	case VM_CRASHED: return "crashed";
	case VM_INCOMING: return "incoming";
	}
	return "unknown";
}

struct vm *registry_find(struct ferryd *d, const char *name)
{
	for (struct vm *vm = d->vms; vm; vm = vm->next)
		if (strcmp(vm->def.name, name) == 0)
			return vm;
	return NULL;
}

struct vm *registry_add(struct ferryd *d, const struct vm_def *def)
{
	struct vm *vm = calloc(1, sizeof(*vm)), **tail;
	if (!vm)
		return NULL;
	vm->def = *def;
	vm->pidfd = -1;
	vm->last_exit_code = -1;
	/* Keep insertion order: definitions load sorted, so lists are stable. */
	for (tail = &d->vms; *tail; tail = &(*tail)->next)
		;
	*tail = vm;
	return vm;
}

void registry_remove(struct ferryd *d, struct vm *vm)
{
	for (struct vm **p = &d->vms; *p; p = &(*p)->next) {
		if (*p == vm) {
			*p = vm->next;
			if (vm->pidfd >= 0)
				close(vm->pidfd);
			free(vm);
			return;
		}
	}
}

/* The console's and the worker's logs (and their rotated halves) live in
 * the logs directory and may outlive the VM's removal. */
static bool registry_kind_is_log(const char *kind)
{
	return strcmp(kind, "serial") == 0 || strcmp(kind, "serial.1") == 0 ||
	       strcmp(kind, "log") == 0 || strcmp(kind, "log.1") == 0;
}

int registry_path(const struct ferryd *d, const struct vm *vm,
		  const char *kind, char *buf, size_t cap, struct err *e)
{
	const char *dir = d->run_dir;
	int n;
	if (registry_kind_is_log(kind))
		dir = d->logs_dir;
	n = snprintf(buf, cap, "%s/%s.%s", dir, vm->def.name, kind);
	if (n < 0 || (size_t)n >= cap)
		return err_set(e, "path for %s of VM %s too long", kind,
			       vm->def.name);
	return 0;
}

int registry_name_fits(const struct ferryd *d, const char *name, struct err *e)
{
	/* the longest socket a worker binds: run/NAME.console */
	static const char longest[] = ".console";
	struct sockaddr_un sa;
	size_t fixed = strlen(d->run_dir) + 1 + sizeof(longest) - 1;
	size_t max = sizeof(sa.sun_path) - 1;

	if (fixed + strlen(name) <= max)
		return 0;
	return err_set(e, "VM name '%.80s' is too long for this host: its console socket "
		       "%s/%s%s would be longer than a UNIX socket path can be (%zu bytes); "
		       "use a name of at most %zu characters here",
		       name, d->run_dir, name, longest, max, fixed < max ? max - fixed : 0);
}

int registry_delete_files(struct ferryd *d, struct vm *vm, bool keep_logs, struct err *e)
{
	/* "incoming": an arrival's marker (migrate.h), after the definition:
	 * one left alone by a crash is swept at the next start, and then
	 * "resumed", its worker's mark, swept with it ("resumed.tmp": the
	 * mark written ahead by a worker killed before it ran the VM) */
	static const char *const kinds[] = { "pid", "sock", "console", "exit", "extents",
					     "mkey", "incoming", "resumed", "resumed.tmp", "serial",
					     "serial.1", "log", "log.1" };
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "%s/%s.json", d->vms_dir,
			 vm->def.name);

	/* The definition goes first: once it is gone the VM no longer exists
	 * after a restart, whatever happens to the rest. */
	if (n < 0 || (size_t)n >= sizeof(path))
		return err_set(e, "path too long");
	if (unlink(path) < 0 && errno != ENOENT)
		return err_sys(e, "removing %s", path);
	if (durable_dir_sync(path, e) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (keep_logs && registry_kind_is_log(kinds[i]))
			continue;
		if (registry_path(d, vm, kinds[i], path, sizeof(path), e) < 0)
			return -1;
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn("removing %s: %s", path, strerror(errno));
	}
	return 0;
}

void registry_forget(struct ferryd *d, struct vm *vm)
{
	struct err e = { 0 };

	if (registry_delete_files(d, vm, true, &e) < 0)
		log_warn("VM %s: %s", vm->def.name, e.msg);
	registry_remove(d, vm);
}

static int registry_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int registry_load(struct ferryd *d, struct err *e)
{
	DIR *dir = opendir(d->vms_dir);
	struct dirent *de;
	char **names = NULL, path[PATH_MAX];
	size_t n = 0, cap = 0;

	if (!dir)
		return err_sys(e, "opening %s", d->vms_dir);
	while ((errno = 0, de = readdir(dir))) {
		size_t len = strlen(de->d_name);
		char **grown;
		if (len < 6 || de->d_name[0] == '.' ||
		    strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			grown = realloc(names, cap * sizeof(*names));
			if (!grown)
				break;
			names = grown;
		}
		names[n] = strdup(de->d_name);
		if (!names[n])
			break;
		n++;
	}
	closedir(dir);
	if (n > 0)
		qsort(names, n, sizeof(*names), registry_cmp);
	for (size_t i = 0; i < n; i++) {
		struct vm_def def;
		struct err le = { 0 };
		int pl = snprintf(path, sizeof(path), "%s/%s", d->vms_dir,
				  names[i]);
		/* One bad file must not hide the other VMs: log and go on. */
		if (pl < 0 || (size_t)pl >= sizeof(path)) {
			log_error("skipping %s: path too long", names[i]);
		} else if (vmdef_load(path, &def, &le) < 0) {
			log_error("skipping VM definition: %s", le.msg);
		} else if (strlen(def.name) + 5 != strlen(names[i]) ||
			   strncmp(def.name, names[i], strlen(def.name)) != 0) {
			log_error("skipping %s: file name does not match VM name '%s'",
				  path, def.name);
		} else if (registry_find(d, def.name)) {
			log_error("skipping duplicate VM %s", def.name);
		} else if (!registry_add(d, &def)) {
			log_error("out of memory loading %s", def.name);
		}
		free(names[i]);
	}
	free(names);
	return 0;
}
