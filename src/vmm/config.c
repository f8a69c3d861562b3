/* VM configuration parsing, validation and JSON form (see config.h). */
#include "vmm/config.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/x86/layout.h"

int config_parse_size(const char *s, uint64_t *out, struct err *e)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;
	if (!s || !isdigit((unsigned char)s[0]))
		return err_set(e, "size '%s' is not a number (use e.g. 512M or 2G)", s ? s : "");
	v = strtoull(s, &end, 10);
	switch (toupper((unsigned char)*end)) {
	case 0: break;
	case 'K': mul = 1ULL << 10; end++; break;
	case 'M': mul = 1ULL << 20; end++; break;
	case 'G': mul = 1ULL << 30; end++; break;
	case 'T': mul = 1ULL << 40; end++; break;
	default: return err_set(e, "size '%s' has an unknown suffix (use K, M, G or T)", s);
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	if (*end)
		return err_set(e, "size '%s' has trailing characters", s);
	if (v > UINT64_MAX / mul)
		return err_set(e, "size '%s' is too large", s);
	*out = v * mul;
	return 0;
}

int config_parse_mac(const char *s, uint8_t mac[6], struct err *e)
{
	unsigned b[6];
	char tail;
	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6)
		return err_set(e, "MAC address '%s' is not of the form aa:bb:cc:dd:ee:ff", s);
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	if (mac[0] & 1)
		return err_set(e, "MAC address '%s' is a multicast address", s);
	return 0;
}

int config_parse_tracker(const char *s, enum config_tracker *out, struct err *e)
{
	if (s && strcmp(s, "bitmap") == 0)
		*out = CONFIG_TRACKER_BITMAP;
	else if (s && strcmp(s, "ring") == 0)
		*out = CONFIG_TRACKER_RING;
	else
		return err_set(e, "dirty tracker '%s' is unknown (use bitmap or ring)", s ? s : "");
	return 0;
}

const char *config_tracker_name(enum config_tracker t)
{
	switch (t) {
	case CONFIG_TRACKER_BITMAP: return "bitmap";
	case CONFIG_TRACKER_RING: return "ring";
	}
	return "?";
}

int config_validate(const struct vm_config *c, struct err *e)
{
	uint8_t mac[6];
	if (!c->name[0])
		return err_set(e, "the VM needs a name (--name)");
	for (const char *p = c->name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
			return err_set(e, "VM name '%s' may only use letters, digits, '.', '_' and '-'", c->name);
	if (c->mem_size < (16ULL << 20) || c->mem_size % (2ULL << 20))
		return err_set(e, "memory must be at least 16M and a multiple of 2M (got %llu bytes)",
			       (unsigned long long)c->mem_size);
	if (c->mem_size > (1ULL << 40))
		return err_set(e, "memory of %llu GiB is more than ferry supports (1 TiB)",
			       (unsigned long long)(c->mem_size >> 30));
	if (c->vcpus < 1 || c->vcpus > LAYOUT_MAX_VCPUS)
		return err_set(e, "vCPU count %d is out of range 1..%d", c->vcpus, LAYOUT_MAX_VCPUS);
	if (c->mac[0] && config_parse_mac(c->mac, mac, e) < 0)
		return -1;
	if (c->dirty_tracker != CONFIG_TRACKER_BITMAP && c->dirty_tracker != CONFIG_TRACKER_RING)
		return err_set(e, "dirty tracker %d is out of range", (int)c->dirty_tracker);
	if (c->tap[0] && c->bridge[0])
		return err_set(e, "a NIC has a tap (%s) or a bridge (%s), not both", c->tap, c->bridge);
	if (c->disk_copy_bytes && (!c->disk[0] || c->disk_copy_bytes % 512 ||
				   c->disk_copy_allocated > c->disk_copy_bytes))
		return err_set(e, "a disk copy needs a disk path, whole sectors (%llu bytes) and no more "
			       "allocated than that (%llu)", (unsigned long long)c->disk_copy_bytes,
			       (unsigned long long)c->disk_copy_allocated);
	return 0;
}

void config_place_nic(struct vm_config *c, const struct vm_config *local)
{
	if (!local->tap[0] && !local->bridge[0])
		return;
	snprintf(c->tap, sizeof(c->tap), "%s", local->tap);
	snprintf(c->bridge, sizeof(c->bridge), "%s", local->bridge);
}

char *config_to_json(const struct vm_config *c)
{
	struct json_object *o = json_object_new_object();
	char *out;
	json_object_object_add(o, "name", json_object_new_string(c->name));
	json_object_object_add(o, "memory", json_object_new_int64((int64_t)c->mem_size));
	json_object_object_add(o, "vcpus", json_object_new_int(c->vcpus));
	json_object_object_add(o, "kernel", json_object_new_string(c->kernel));
	json_object_object_add(o, "initrd", json_object_new_string(c->initrd));
	json_object_object_add(o, "cmdline", json_object_new_string(c->cmdline));
	json_object_object_add(o, "disk", json_object_new_string(c->disk));
	json_object_object_add(o, "disk_readonly", json_object_new_boolean(c->disk_readonly));
	json_object_object_add(o, "net", json_object_new_boolean(c->net));
	json_object_object_add(o, "tap", json_object_new_string(c->tap));
	/* only when set: a destination from before bridges ignores unknown
	 * fields, and ferryd refuses such a move at prepare (vmdef) */
	if (c->bridge[0])
		json_object_object_add(o, "bridge", json_object_new_string(c->bridge));
	json_object_object_add(o, "mac", json_object_new_string(c->mac));
	json_object_object_add(o, "cpu_mask", json_object_new_string(c->cpu_mask));
	json_object_object_add(o, "dirty_tracker", json_object_new_string(config_tracker_name(c->dirty_tracker)));
	/* only in a move that copies the disk (stream version 7 on) */
	if (c->disk_copy_bytes) {
		json_object_object_add(o, "disk_copy_bytes", json_object_new_int64((int64_t)c->disk_copy_bytes));
		json_object_object_add(o, "disk_copy_allocated",
				       json_object_new_int64((int64_t)c->disk_copy_allocated));
	}
	out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return out;
}

static int get_str(struct json_object *o, const char *key, char *dst, size_t cap, struct err *e)
{
	struct json_object *v;
	const char *s;
	if (!json_object_object_get_ex(o, key, &v)) {
		dst[0] = 0;
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return err_set(e, "configuration field '%s' must be a string", key);
	s = json_object_get_string(v);
	/* The fields are paths, names and argv words: an embedded NUL (JSON's
	 * \u0000) would silently cut one, as jsonl_get_str refuses for ferryd. */
	if (strlen(s) != (size_t)json_object_get_string_len(v))
		return err_set(e, "configuration field '%s' contains a NUL byte", key);
	if (strlen(s) >= cap)
		return err_set(e, "configuration field '%s' is too long", key);
	strcpy(dst, s);
	return 0;
}

/* json-c reads any non-empty string, or a non-zero number, as true:
 * "net":"false" would give the VM a NIC. Absent is false. */
static int get_bool(struct json_object *o, const char *key, bool *dst, struct err *e)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return err_set(e, "configuration field '%s' must be true or false", key);
	*dst = json_object_get_boolean(v);
	return 0;
}

/* A non-negative integer; absent is 0. */
static int get_u64(struct json_object *o, const char *key, uint64_t *dst, struct err *e)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
		return err_set(e, "configuration field '%s' must be a non-negative integer", key);
	*dst = (uint64_t)json_object_get_int64(v);
	return 0;
}

int config_from_json(const char *text, size_t len, struct vm_config *c, struct err *e)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o, *v;
	char tracker[16];
	int rc = -1;

	memset(c, 0, sizeof(*c));
	if (!tok)
		return err_set(e, "out of memory");
	o = json_tokener_parse_ex(tok, text, (int)len);
	json_tokener_free(tok);
	if (!o || !json_object_is_type(o, json_type_object)) {
		err_set(e, "configuration is not a JSON object");
		goto out;
	}
	if (get_str(o, "name", c->name, sizeof(c->name), e) < 0 ||
	    get_str(o, "kernel", c->kernel, sizeof(c->kernel), e) < 0 ||
	    get_str(o, "initrd", c->initrd, sizeof(c->initrd), e) < 0 ||
	    get_str(o, "cmdline", c->cmdline, sizeof(c->cmdline), e) < 0 ||
	    get_str(o, "disk", c->disk, sizeof(c->disk), e) < 0 ||
	    get_str(o, "tap", c->tap, sizeof(c->tap), e) < 0 ||
	    get_str(o, "bridge", c->bridge, sizeof(c->bridge), e) < 0 ||
	    get_str(o, "mac", c->mac, sizeof(c->mac), e) < 0 ||
	    get_str(o, "cpu_mask", c->cpu_mask, sizeof(c->cpu_mask), e) < 0 ||
	    get_str(o, "dirty_tracker", tracker, sizeof(tracker), e) < 0)
		goto out;
	/* Absent in streams from before trackers were chosen: the default. */
	c->dirty_tracker = CONFIG_TRACKER_DEFAULT;
	if (tracker[0] && config_parse_tracker(tracker, &c->dirty_tracker, e) < 0) {
		err_prefix(e, "configuration field 'dirty_tracker'");
		goto out;
	}
	if (!json_object_object_get_ex(o, "memory", &v) || !json_object_is_type(v, json_type_int)) {
		err_set(e, "configuration lacks an integer 'memory'");
		goto out;
	}
	c->mem_size = (uint64_t)json_object_get_int64(v);
	if (!json_object_object_get_ex(o, "vcpus", &v) || !json_object_is_type(v, json_type_int)) {
		err_set(e, "configuration lacks an integer 'vcpus'");
		goto out;
	}
	c->vcpus = json_object_get_int(v);
	if (get_bool(o, "disk_readonly", &c->disk_readonly, e) < 0 || get_bool(o, "net", &c->net, e) < 0 ||
	    get_u64(o, "disk_copy_bytes", &c->disk_copy_bytes, e) < 0 ||
	    get_u64(o, "disk_copy_allocated", &c->disk_copy_allocated, e) < 0)
		goto out;
	rc = config_validate(c, e);
out:
	if (o)
		json_object_put(o);
	return rc;
}
