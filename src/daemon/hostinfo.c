/* Host facts (see hostinfo.h). */
#include "daemon/hostinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
	return 0;
}

uint64_t hostinfo_proc_shmem_mib(int pid)
{
	char path[64], line[256];
	unsigned long long kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssShmem: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return kb / 1024;
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
