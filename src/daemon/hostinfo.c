/* Host facts (see hostinfo.h). */
#include "daemon/hostinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "devices/tap.h"

int hostinfo_memory(struct host_mem *m, struct err *e)
{
	char line[256];
	unsigned long long kb;
	bool have_total = false, have_avail = false;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return err_sys(e, "opening /proc/meminfo");
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) {
			m->total_mib = kb / 1024;
			have_total = true;
		} else if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
			m->free_mib = kb / 1024;
			have_avail = true;
		}
	}
	fclose(f);
	if (!have_total || !have_avail)
		return err_set(e, "/proc/meminfo lacks MemTotal or MemAvailable");
	m->meminfo_free_mib = m->free_mib;
	hostinfo_cgroup_memory(NULL, NULL, &m->cg);
	if (m->cg.limited && m->cg.room_mib < m->free_mib)
		m->free_mib = m->cg.room_mib;
	return 0;
}

const char *hostinfo_free_text(const struct host_mem *m, char *buf, size_t n)
{
	if (m->cg.limited && m->cg.room_mib <= m->meminfo_free_mib)
		snprintf(buf, n,
			 "%" PRIu64 " MiB free (the memory cgroup %s that ferryd and its VMs run in allows %" PRIu64 " MiB and uses %" PRIu64 " MiB; the host itself has %" PRIu64 " MiB free)",
			 m->free_mib, m->cg.path, m->cg.limit_mib, m->cg.used_mib,
			 m->meminfo_free_mib);
	else
		snprintf(buf, n, "%" PRIu64 " MiB free", m->free_mib);
	return buf;
}

/* Does a comma-separated list contain word? */
static bool csv_has(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list;; p++) {
		if (strncmp(p, word, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return true;
		p = strchr(p, ',');
		if (!p)
			return false;
	}
}

/* This process's cgroup path for the memory controller: v1's
 * "N:...memory...:/path" line, else v2's "0::/path". */
static bool cg_own_path(const char *proc_cgroup, bool *v2, char *path, size_t n)
{
	char line[1024], v2path[PATH_MAX] = "";
	bool found = false;
	FILE *f = fopen(proc_cgroup, "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c2 = '\0';
		c2[1 + strcspn(c2 + 1, "\n")] = '\0';
		if (csv_has(c1 + 1, "memory")) {
			snprintf(path, n, "%s", c2 + 1);
			*v2 = false;
			found = true;
		} else if (c1 == line + 1 && line[0] == '0' && c1[1] == '\0') {
			snprintf(v2path, sizeof(v2path), "%s", c2 + 1);
		}
	}
	fclose(f);
	if (!found && v2path[0]) {
		snprintf(path, n, "%s", v2path);
		*v2 = true;
		found = true;
	}
	return found;
}

/* Where that hierarchy is mounted, and which of its directories the mount
 * shows as its root (not "/" inside a container with its own cgroup view). */
static bool cg_mount(const char *mountinfo, bool v2, char *dir, size_t dn, char *root, size_t rn)
{
	char line[4096];
	bool found = false;
	FILE *f = fopen(mountinfo, "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char mroot[PATH_MAX], mdir[PATH_MAX], fstype[64], super[1024];
		char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %4095s %4095s", mroot, mdir) != 2 ||
		    sscanf(dash + 3, "%63s %*s %1023s", fstype, super) != 2)
			continue;
		if (v2 ? strcmp(fstype, "cgroup2") == 0
		       : strcmp(fstype, "cgroup") == 0 && csv_has(super, "memory")) {
			snprintf(dir, dn, "%s", mdir);
			snprintf(root, rn, "%s", mroot);
			found = true;
		}
	}
	fclose(f);
	return found;
}

/* A number file ("max" = no limit); false when absent or unreadable. */
static bool cg_read_u64(const char *dir, const char *name, uint64_t *v)
{
	char path[PATH_MAX + 32], buf[64];
	FILE *f;
	bool ok;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "re");
	if (!f)
		return false;
	ok = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	if (!ok)
		return false;
	if (strncmp(buf, "max", 3) == 0) {
		*v = UINT64_MAX;
		return true;
	}
	char *end;
	errno = 0;
	*v = strtoull(buf, &end, 10);
	return errno == 0 && end != buf;
}

/* The first line of a file that matches fmt (one %llu); 0 when none does
 * or the file is missing. */
static uint64_t scan_file(const char *path, const char *fmt)
{
	char line[256];
	unsigned long long v = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, fmt, &v) == 1)
			break;
	fclose(f);
	return v;
}

/* One key of a cgroup's memory.stat; 0 when absent. */
static uint64_t cg_stat(const char *dir, const char *fmt)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/memory.stat", dir);
	return scan_file(path, fmt);
}

void hostinfo_cgroup_memory(const char *proc_cgroup, const char *mountinfo,
			    struct host_cgroup_mem *cg)
{
	char path[PATH_MAX], mdir[PATH_MAX], mroot[PATH_MAX], dir[PATH_MAX];
	const char *rel;
	bool v2 = false;
	uint64_t best_room = UINT64_MAX;

	memset(cg, 0, sizeof(*cg));
	if (!cg_own_path(proc_cgroup ? proc_cgroup : "/proc/self/cgroup", &v2, path, sizeof(path)) ||
	    !cg_mount(mountinfo ? mountinfo : "/proc/self/mountinfo", v2, mdir, sizeof(mdir),
		      mroot, sizeof(mroot)))
		return;
	/* The path is relative to the hierarchy's root; the mount may show a
	 * subtree of it. A path outside what is mounted cannot be read. */
	rel = path;
	if (strcmp(mroot, "/") != 0) {
		size_t rn = strlen(mroot);
		if (strncmp(path, mroot, rn) != 0 || (path[rn] != '/' && path[rn] != '\0'))
			return;
		rel = path + rn;
	}
	if ((size_t)snprintf(dir, sizeof(dir), "%s%s", mdir, strcmp(rel, "/") == 0 ? "" : rel) >=
	    sizeof(dir))
		return;
	/* Walk up to the mount: every level's limit binds. v1's usage and
	 * total_inactive_file count the level's whole subtree, as v2's do. */
	for (;;) {
		uint64_t limit, usage;
		if (cg_read_u64(dir, v2 ? "memory.max" : "memory.limit_in_bytes", &limit) &&
		    cg_read_u64(dir, v2 ? "memory.current" : "memory.usage_in_bytes", &usage) &&
		    limit < (UINT64_MAX >> 2) /* v1 says "no limit" with a huge page-rounded number */) {
			uint64_t inactive = cg_stat(dir, v2 ? "inactive_file %llu" : "total_inactive_file %llu");
			uint64_t used = usage - (inactive < usage ? inactive : usage);
			uint64_t room = limit > used ? limit - used : 0;
			if (room < best_room) {
				best_room = room;
				cg->limited = true;
				cg->limit_mib = limit >> 20;
				cg->used_mib = used >> 20;
				cg->room_mib = room >> 20;
				/* the level's own path: the mount's root, then
				 * what the level adds below the mount point */
				const char *below = dir + strlen(mdir);
				snprintf(cg->path, sizeof(cg->path), "%.*s%s", (int)(rel - path),
					 path, *below || rel != path ? below : "/");
			}
		}
		if (strlen(dir) <= strlen(mdir))
			break;
		char *slash = strrchr(dir, '/');
		if (!slash || slash < dir + strlen(mdir))
			break;
		*slash = '\0';
	}
}

uint64_t hostinfo_proc_shmem_mib(int pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	return scan_file(path, "RssShmem: %llu kB") / 1024;
}

int hostinfo_kvm_usable(struct err *e)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return err_set(e, "no /dev/kvm: KVM is not available on this host (load kvm_intel or kvm_amd, or enable virtualization)");
		return err_sys(e, "cannot open /dev/kvm");
	}
	close(fd);
	return 0;
}

/* Whole-word search in a cpuinfo "flags" line. */
static bool hostinfo_has_flag(const char *line, const char *flag)
{
	size_t n = strlen(flag);
	for (const char *p = line; (p = strstr(p, flag)); p += n)
		if (p > line && p[-1] == ' ' && (p[n] == ' ' || p[n] == '\n' || !p[n]))
			return true;
	return false;
}

bool hostinfo_hw_virt(void)
{
	char line[8192];
	bool found = false;
	FILE *f = fopen("/proc/cpuinfo", "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		if (strncmp(line, "flags", 5) == 0)
			found = hostinfo_has_flag(line, "vmx") ||
				hostinfo_has_flag(line, "svm");
	fclose(f);
	return found;
}

static int hostinfo_name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

struct json_object *hostinfo_bridges(void)
{
	struct json_object *arr = json_object_new_array();
	char *names[256];
	size_t n = 0;
	struct dirent *de;
	DIR *d = opendir("/sys/class/net");

	if (!d)
		return arr;
	while ((de = readdir(d)) && n < sizeof(names) / sizeof(names[0])) {
		if (de->d_name[0] == '.')
			continue;
		if (tap_is_bridge(de->d_name) && (names[n] = strdup(de->d_name)))
			n++;
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), hostinfo_name_cmp);
	for (size_t i = 0; i < n; i++) {
		json_object_array_add(arr, json_object_new_string(names[i]));
		free(names[i]);
	}
	return arr;
}
