/* Host settings: defaults, validation, storage, network matching (see settings.h). */
#include "daemon/settings.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/jsonl.h"
#include "daemon/statefile.h"
#include "vmm/x86/cpuid.h"

void settings_default(struct host_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->max_migrations = 2;          /* Hyper-V's default */
	snprintf(s->transport, sizeof(s->transport), "compression");
	s->downtime_ms = 50;            /* QEMU uses 300; ferry aims lower */
	s->bandwidth_mibps = 0;
	s->memory_reserve_mib = 0;
	s->port_min = 7460;
	s->port_max = 7559;
	s->accept_moves = true;
}

int settings_parse_cidr(const char *text, struct net_cidr *c, struct err *e)
{
	char buf[64], *slash;
	long prefix = -1;
	int max;

	if (strlen(text) >= sizeof(buf))
		return err_set(e, "migration network '%.64s' is too long", text);
	snprintf(buf, sizeof(buf), "%s", text);
	slash = strchr(buf, '/');
	if (slash) {
		char *end;
		*slash = '\0';
		prefix = strtol(slash + 1, &end, 10);
		/* digits only: strtol would also take " -8" or "+8" */
		if (!isdigit((unsigned char)slash[1]) || *end || end - slash > 4)
			return err_set(e, "migration network '%s': prefix length must be a number", text);
	}
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, buf, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else {
		return err_set(e, "migration network '%s' is not an address or ADDR/PREFIX (e.g. 10.0.0.0/24)",
			       text);
	}
	if (prefix < 0)
		prefix = max;
	if (prefix > max)
		return err_set(e, "migration network '%s': prefix longer than %d bits", text, max);
	c->prefix = (int)prefix;
	/* Keep only the network part, so 10.0.0.7/24 means 10.0.0.0/24. */
	for (int bit = c->prefix; bit < max; bit++)
		c->addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
	return 0;
}

void settings_format_cidr(const struct net_cidr *c, char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN];
	if (!inet_ntop(c->family, c->addr, a, sizeof(a)))
		snprintf(a, sizeof(a), "?");
	snprintf(buf, cap, "%s/%d", a, c->prefix);
}

void settings_format_nets(const struct host_settings *s, char *buf, size_t cap)
{
	size_t used = 0;
	buf[0] = '\0';
	if (s->nnets == 0) {
		snprintf(buf, cap, "any");
		return;
	}
	for (int i = 0; i < s->nnets && used < cap; i++) {
		char one[64];
		int n;
		settings_format_cidr(&s->nets[i], one, sizeof(one));
		n = snprintf(buf + used, cap - used, "%s%s", i ? "," : "", one);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

bool settings_cidr_contains(const struct net_cidr *c,
			    const struct sockaddr_storage *sa)
{
	const uint8_t *a;
	uint8_t mapped[16];

	if (sa->ss_family == AF_INET && c->family == AF_INET) {
		a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (sa->ss_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (c->family == AF_INET6) {
			a = a6->s6_addr;
		} else if (IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(mapped, a6->s6_addr + 12, 4);
			a = mapped;
		} else {
			return false;
		}
	} else {
		return false;
	}
	for (int bit = 0; bit < c->prefix; bit++) {
		uint8_t m = (uint8_t)(0x80u >> (bit % 8));
		if ((a[bit / 8] & m) != (c->addr[bit / 8] & m))
			return false;
	}
	return true;
}

bool settings_net_allowed(const struct host_settings *s,
			  const struct sockaddr_storage *sa)
{
	if (s->nnets == 0)
		return true;
	for (int i = 0; i < s->nnets; i++)
		if (settings_cidr_contains(&s->nets[i], sa))
			return true;
	return false;
}

/* migration_networks: a JSON array of strings, or one comma-separated
 * string (what people type); "" or [] clears the list. */
static int settings_nets_json(struct host_settings *s, struct json_object *v,
			      struct err *e)
{
	s->nnets = 0;
	if (json_object_is_type(v, json_type_string)) {
		char buf[1024], *save = NULL, *tok;
		const char *txt = json_object_get_string(v);
		if (strlen(txt) >= sizeof(buf))
			return err_set(e, "field 'migration_networks' too long");
		snprintf(buf, sizeof(buf), "%s", txt);
		for (tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
			if (s->nnets == SETTINGS_MAX_NETS)
				return err_set(e, "at most %d migration networks", SETTINGS_MAX_NETS);
			if (settings_parse_cidr(tok, &s->nets[s->nnets], e) < 0)
				return -1;
			s->nnets++;
		}
		return 0;
	}
	if (!json_object_is_type(v, json_type_array))
		return err_set(e, "field 'migration_networks' must be a list of CIDR strings");
	if (json_object_array_length(v) > SETTINGS_MAX_NETS)
		return err_set(e, "at most %d migration networks", SETTINGS_MAX_NETS);
	for (size_t i = 0; i < json_object_array_length(v); i++) {
		struct json_object *it = json_object_array_get_idx(v, i);
		if (!json_object_is_type(it, json_type_string))
			return err_set(e, "field 'migration_networks' must be a list of CIDR strings");
		if (settings_parse_cidr(json_object_get_string(it), &s->nets[s->nnets], e) < 0)
			return -1;
		s->nnets++;
	}
	return 0;
}

int settings_apply_json(struct host_settings *s, struct json_object *o,
			struct err *e)
{
	static const char *const keys[] = { "cmd", "max_migrations", "transport",
		"downtime_ms", "bandwidth_mibps", "memory_reserve_mib",
		"migration_networks", "migration_ports", "prealloc", "encrypt", "verify_memory",
		"cpu_baseline", "accept_moves", NULL };
	struct host_settings n = *s;
	const char *transport = NULL, *ports = NULL, *baseline = NULL;
	struct json_object *nets;
	int64_t v;

	if (jsonl_only_keys(o, keys, e) < 0)
		return -1;
	v = n.max_migrations;
	if (jsonl_get_int(o, "max_migrations", false, 1, SETTINGS_MAX_MIGRATIONS, &v, e) < 0)
		return -1;
	n.max_migrations = (int)v;
	v = n.downtime_ms;
	if (jsonl_get_int(o, "downtime_ms", false, 1, 600000, &v, e) < 0)
		return -1;
	n.downtime_ms = (int)v;
	v = n.bandwidth_mibps;
	if (jsonl_get_int(o, "bandwidth_mibps", false, 0, 1 << 20, &v, e) < 0)
		return -1;
	n.bandwidth_mibps = (int)v;
	v = n.memory_reserve_mib;
	if (jsonl_get_int(o, "memory_reserve_mib", false, 0, 16 * 1024 * 1024, &v, e) < 0)
		return -1;
	n.memory_reserve_mib = (int)v;
	if (jsonl_get_bool(o, "prealloc", false, &n.prealloc, e) < 0 ||
	    jsonl_get_bool(o, "encrypt", false, &n.encrypt, e) < 0 ||
	    jsonl_get_bool(o, "verify_memory", false, &n.verify_memory, e) < 0 ||
	    jsonl_get_bool(o, "accept_moves", false, &n.accept_moves, e) < 0)
		return -1;
	if (jsonl_get_str(o, "transport", false, &transport, e) < 0)
		return -1;
	if (transport) {
		if (strcmp(transport, "tcp") != 0 && strcmp(transport, "compression") != 0 &&
		    strcmp(transport, "multichannel") != 0)
			return err_set(e, "transport '%.32s' is not one of tcp, compression, multichannel",
				       transport);
		snprintf(n.transport, sizeof(n.transport), "%s", transport);
	}
	if (jsonl_get_str(o, "cpu_baseline", false, &baseline, e) < 0)
		return -1;
	if (baseline) {
		struct cpuid_mask mask;
		if (strlen(baseline) >= sizeof(n.cpu_baseline))
			return err_set(e, "cpu_baseline is longer than %zu characters",
				       sizeof(n.cpu_baseline) - 1);
		/* checked here, where it is set, not when a move arrives */
		if (baseline[0] && cpuid_parse_mask(baseline, &mask, e) < 0)
			return err_prefix(e, "CPU baseline");
		snprintf(n.cpu_baseline, sizeof(n.cpu_baseline), "%s", baseline);
	}
	if (jsonl_get_str(o, "migration_ports", false, &ports, e) < 0)
		return -1;
	if (ports) {
		int lo, hi, used = 0;
		/* widths keep a long number from overflowing into a valid one */
		if (!isdigit((unsigned char)ports[0]) ||
		    sscanf(ports, "%5d-%5d%n", &lo, &hi, &used) != 2 || ports[used] ||
		    lo < 1024 || hi > 65535 || lo > hi)
			return err_set(e, "migration ports '%.32s' must be LOW-HIGH within 1024-65535, LOW <= HIGH (e.g. 7460-7559)",
				       ports);
		n.port_min = lo;
		n.port_max = hi;
	}
	if (json_object_object_get_ex(o, "migration_networks", &nets) &&
	    settings_nets_json(&n, nets, e) < 0)
		return -1;
	*s = n;
	return 0;
}

struct json_object *settings_to_json(const struct host_settings *s)
{
	struct json_object *o = json_object_new_object(), *nets = json_object_new_array();
	char buf[64];

	jsonl_add_int(o, "max_migrations", s->max_migrations);
	jsonl_add_str(o, "transport", s->transport);
	jsonl_add_int(o, "downtime_ms", s->downtime_ms);
	jsonl_add_int(o, "bandwidth_mibps", s->bandwidth_mibps);
	jsonl_add_int(o, "memory_reserve_mib", s->memory_reserve_mib);
	jsonl_add_bool(o, "prealloc", s->prealloc);
	jsonl_add_bool(o, "encrypt", s->encrypt);
	jsonl_add_bool(o, "verify_memory", s->verify_memory);
	/* only when set: the file stays readable by a ferryd from before it */
	if (s->cpu_baseline[0])
		jsonl_add_str(o, "cpu_baseline", s->cpu_baseline);
	if (!s->accept_moves)
		jsonl_add_bool(o, "accept_moves", false);
	for (int i = 0; i < s->nnets; i++) {
		settings_format_cidr(&s->nets[i], buf, sizeof(buf));
		json_object_array_add(nets, json_object_new_string(buf));
	}
	json_object_object_add(o, "migration_networks", nets);
	snprintf(buf, sizeof(buf), "%d-%d", s->port_min, s->port_max);
	jsonl_add_str(o, "migration_ports", buf);
	return o;
}

int settings_load(const char *path, struct host_settings *s, struct err *e)
{
	bool missing;
	struct json_object *o = statefile_read_json(path, &missing, e);
	int rc;

	settings_default(s);
	if (!o)
		return missing ? 0 : -1;
	rc = settings_apply_json(s, o, e);
	if (rc < 0)
		err_prefix(e, "%s", path);
	json_object_put(o);
	return rc;
}

int settings_save(const char *path, const struct host_settings *s,
		  struct err *e)
{
	struct json_object *o = settings_to_json(s);
	int rc = statefile_write_json(path, o, e);
	json_object_put(o);
	return rc;
}
