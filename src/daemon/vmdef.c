/* VM definitions: validation, JSON form, atomic storage (see vmdef.h). */
#include "daemon/vmdef.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/jsonl.h"
#include "daemon/statefile.h"
#include "devices/tap.h"

/* Definitions on disk are never larger than this; a bigger file is not ours. */
#define VMDEF_FILE_MAX (64 * 1024)

bool vmdef_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n < 1 || n > VMDEF_NAME_MAX)
		return false;
	/* not hidden (the registry skips dot files) nor option-like */
	if (name[0] == '.' || name[0] == '-')
		return false;
	if (strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789._-") != n)
		return false;
	return true;
}

static bool vmdef_mac_valid(const char *mac)
{
	unsigned int b[6];
	char tail;
	if (strlen(mac) != 17)
		return false;
	if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3],
		   &b[4], &b[5], &tail) != 6)
		return false;
	/* A multicast source MAC would be dropped by every switch. */
	return (b[0] & 1) == 0;
}

/* Optional string field copied into a fixed buffer, with a length check. */
static int vmdef_str(struct json_object *o, const char *key, bool required,
		     char *dst, size_t cap, struct err *e)
{
	const char *s = NULL;
	if (jsonl_get_str(o, key, required, &s, e) < 0)
		return -1;
	if (!s) {
		dst[0] = '\0';
		return 0;
	}
	if (strlen(s) >= cap)
		return err_set(e, "field '%s' too long (limit %zu bytes)", key,
			       cap - 1);
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

/* An integer field jsonl_get_int refused as out of range (not as
 * missing or of the wrong type): its value, for a message in the CLI's
 * words rather than the API field's. */
static bool vmdef_int_given(struct json_object *o, const char *key, long long *got)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return false;
	*got = (long long)json_object_get_int64(v);
	return true;
}

int vmdef_from_json(struct json_object *o, struct vm_def *d,
		    const char **code, struct err *e)
{
	int64_t mem = 0, vcpus = 1;
	long long got;
	const char *name = NULL;

	memset(d, 0, sizeof(*d));
	*code = "E_BAD_ARG";
	if (jsonl_get_str(o, "name", true, &name, e) < 0)
		return -1;
	if (!vmdef_name_valid(name)) {
		*code = "E_BAD_NAME";
		return err_set(e, "invalid VM name '%.80s': use 1-64 characters from a-z A-Z 0-9 . _ -, "
			       "not starting with . or -", name);
	}
	memcpy(d->name, name, strlen(name) + 1);
	if (jsonl_get_int(o, "memory_mib", true, VMDEF_MIN_MEMORY_MIB,
			  16 * 1024 * 1024, &mem, e) < 0) {
		/* A number out of range is a memory problem, said in the words
		 * of --memory; a wrong type is a malformed request. */
		if (vmdef_int_given(o, "memory_mib", &got)) {
			*code = "E_BAD_MEMORY";
			err_set(e, "memory must be at least %dM and at most 16T (got %lldM)",
				VMDEF_MIN_MEMORY_MIB, got);
		}
		return -1;
	}
	/* the worker maps guest RAM in 2 MiB steps (config.c): refused here,
	 * not at the first start */
	if (mem % 2) {
		*code = "E_BAD_MEMORY";
		return err_set(e, "memory must be a multiple of 2M (got %lldM)", (long long)mem);
	}
	if (jsonl_get_int(o, "vcpus", false, 1, VMDEF_MAX_VCPUS, &vcpus, e) < 0) {
		if (vmdef_int_given(o, "vcpus", &got))
			err_set(e, "vcpus must be between 1 and %d (got %lld)", VMDEF_MAX_VCPUS, got);
		return -1;
	}
	d->memory_mib = (uint32_t)mem;
	d->vcpus = (uint32_t)vcpus;
	if (vmdef_str(o, "kernel", true, d->kernel, sizeof(d->kernel), e) < 0 ||
	    vmdef_str(o, "initrd", false, d->initrd, sizeof(d->initrd), e) < 0 ||
	    vmdef_str(o, "cmdline", false, d->cmdline, sizeof(d->cmdline), e) < 0 ||
	    vmdef_str(o, "disk", false, d->disk, sizeof(d->disk), e) < 0 ||
	    vmdef_str(o, "tap", false, d->tap, sizeof(d->tap), e) < 0 ||
	    vmdef_str(o, "bridge", false, d->bridge, sizeof(d->bridge), e) < 0 ||
	    vmdef_str(o, "mac", false, d->mac, sizeof(d->mac), e) < 0 ||
	    vmdef_str(o, "cpu_mask", false, d->cpu_mask, sizeof(d->cpu_mask), e) < 0 ||
	    vmdef_str(o, "dirty_tracker", false, d->dirty_tracker, sizeof(d->dirty_tracker), e) < 0)
		return -1;
	/* "bitmap" is the default, stored as nothing, so a definition without
	 * the field reads the same on a ferryd from before it. */
	if (strcmp(d->dirty_tracker, "bitmap") == 0)
		d->dirty_tracker[0] = 0;
	if (d->dirty_tracker[0] && strcmp(d->dirty_tracker, "ring") != 0)
		return err_set(e, "dirty_tracker '%s' is not bitmap or ring", d->dirty_tracker);
	/* Paths are handed to a worker that may run with another cwd. */
	if (d->kernel[0] != '/')
		return err_set(e, "kernel path must be absolute: %s", d->kernel);
	if (d->initrd[0] && d->initrd[0] != '/')
		return err_set(e, "initrd path must be absolute: %s", d->initrd);
	if (d->disk[0] && d->disk[0] != '/')
		return err_set(e, "disk path must be absolute: %s", d->disk);
	if (d->mac[0] && !vmdef_mac_valid(d->mac))
		return err_set(e, "invalid MAC address '%s': use xx:xx:xx:xx:xx:xx (unicast)",
			       d->mac);
	if (d->tap[0] && strpbrk(d->tap, "/ \t"))
		return err_set(e, "invalid tap interface name '%s'", d->tap);
	if (d->bridge[0] && strpbrk(d->bridge, "/ \t:"))
		return err_set(e, "invalid bridge name '%s'", d->bridge);
	if (d->tap[0] && d->bridge[0])
		return err_set(e, "give the NIC a tap (%s) or a bridge (%s), not both", d->tap, d->bridge);
	return 0;
}

static int vmdef_check_file(const char *what, const char *path,
			    const char *code_missing, const char **code,
			    struct err *e)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		*code = code_missing;
		if (errno == ENOENT)
			return err_set(e, "%s not found: %s", what, path);
		return err_sys(e, "%s %s", what, path);
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		*code = code_missing;
		return err_set(e, "%s is not a regular file: %s", what, path);
	}
	if (access(path, R_OK) < 0) {
		*code = code_missing;
		return err_sys(e, "%s not readable: %s", what, path);
	}
	return 0;
}

int vmdef_check_files(const struct vm_def *d, const char **code, struct err *e)
{
	if (vmdef_check_file("kernel", d->kernel, "E_NO_KERNEL", code, e) < 0)
		return -1;
	if (d->initrd[0] &&
	    vmdef_check_file("initrd", d->initrd, "E_NO_INITRD", code, e) < 0)
		return -1;
	if (d->disk[0] &&
	    vmdef_check_file("disk", d->disk, "E_NO_DISK", code, e) < 0)
		return -1;
	return 0;
}

int vmdef_check_nic(const struct vm_def *d, const char **code, struct err *e)
{
	*code = "E_NO_NETWORK";
	if (d->bridge[0])
		return tap_bridge_check(d->bridge, e);
	if (d->tap[0] && if_nametoindex(d->tap) == 0)
		return err_set(e, "tap device '%s' does not exist on this host: create it and connect it "
			       "to the VM network first, or give the VM a bridge (ferry vm new --bridge)",
			       d->tap);
	return 0;
}

struct json_object *vmdef_to_json(const struct vm_def *d)
{
	struct json_object *o = json_object_new_object();
	jsonl_add_str(o, "name", d->name);
	jsonl_add_int(o, "memory_mib", d->memory_mib);
	jsonl_add_int(o, "vcpus", d->vcpus);
	jsonl_add_str(o, "kernel", d->kernel);
	jsonl_add_str(o, "initrd", d->initrd);
	jsonl_add_str(o, "cmdline", d->cmdline);
	jsonl_add_str(o, "disk", d->disk);
	jsonl_add_str(o, "tap", d->tap);
	if (d->bridge[0]) /* only when set, as dirty_tracker: a peer from before it refuses the move */
		jsonl_add_str(o, "bridge", d->bridge);
	jsonl_add_str(o, "mac", d->mac);
	jsonl_add_str(o, "cpu_mask", d->cpu_mask);
	if (d->dirty_tracker[0]) /* only when set: a peer from before it refuses unknown fields */
		jsonl_add_str(o, "dirty_tracker", d->dirty_tracker);
	return o;
}

int vmdef_save(const char *vms_dir, const struct vm_def *d, struct err *e)
{
	char path[PATH_MAX];
	struct json_object *o;
	int rc;

	if (snprintf(path, sizeof(path), "%s/%s.json", vms_dir, d->name) >= (int)sizeof(path))
		return err_set(e, "state directory path too long");
	/* temp file, fsync, rename, directory sync: readers see the old file
	 * or the whole new one, even across a power loss, and the reply that
	 * follows ("defined") holds after one */
	o = vmdef_to_json(d);
	rc = statefile_write_json(path, o, e);
	json_object_put(o);
	return rc;
}

int vmdef_only_known_keys(struct json_object *o, struct err *e)
{
	static const char *const keys[] = { "name", "memory_mib", "vcpus",
		"kernel", "initrd", "cmdline", "disk", "tap", "bridge", "mac", "cpu_mask",
		"dirty_tracker", NULL };
	return jsonl_only_keys(o, keys, e);
}

int vmdef_load(const char *path, struct vm_def *d, struct err *e)
{
	struct json_object *o;
	const char *code;
	char *buf;
	ssize_t n;
	size_t len = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_sys(e, "opening %s", path);
	buf = malloc(VMDEF_FILE_MAX + 1);
	if (!buf) {
		close(fd);
		return err_set(e, "out of memory");
	}
	while ((n = read(fd, buf + len, VMDEF_FILE_MAX + 1 - len)) > 0)
		len += (size_t)n;
	if (n < 0) {
		err_sys(e, "reading %s", path);
		close(fd);
		free(buf);
		return -1;
	}
	close(fd);
	if (len > VMDEF_FILE_MAX) {
		free(buf);
		return err_set(e, "%s: larger than %d bytes", path, VMDEF_FILE_MAX);
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		len--;
	o = jsonl_parse(buf, len, e);
	free(buf);
	if (!o)
		return err_prefix(e, "%s", path);
	rc = vmdef_only_known_keys(o, e);
	if (rc == 0)
		rc = vmdef_from_json(o, d, &code, e);
	json_object_put(o);
	if (rc < 0)
		return err_prefix(e, "%s", path);
	return 0;
}
