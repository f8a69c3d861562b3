/*
 * Host settings: the knobs an administrator sets per host and may change
 * while ferryd runs (maximum concurrent live migrations, transport,
 * migration networks, downtime target, bandwidth limit, the memory kept
 * back for the host, the port range incoming moves listen on, whether it
 * takes incoming moves at all). Stored as
 * STATE_DIR/settings.json, written atomically; a missing file means the
 * defaults.
 */
#ifndef FERRY_DAEMON_SETTINGS_H
#define FERRY_DAEMON_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>

#include <json-c/json.h>

#include "common/err.h"

#define SETTINGS_MAX_NETS 16
#define SETTINGS_MAX_MIGRATIONS 64

/* One migration network: an IPv4 or IPv6 prefix. */
struct net_cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	int prefix;
};

struct host_settings {
	int max_migrations;        /* concurrent live migrations, in + out */
	char transport[16];        /* tcp | compression | multichannel */
	int downtime_ms;           /* switchover target */
	int bandwidth_mibps;       /* all outgoing moves together, 0 = unlimited */
	int memory_reserve_mib;    /* never handed to VMs */
	bool prealloc;             /* incoming VMs get their memory faulted in before the move */
	bool encrypt;              /* outgoing moves' connections are encrypted (needs a cluster key) */
	bool verify_memory;        /* outgoing moves: the destination checks all RAM against a digest */
	int port_min, port_max;    /* incoming migration listeners */
	/* false: migration.prepare refuses every incoming move (E_NOT_ACCEPTING),
	 * a host being drained for maintenance */
	bool accept_moves;
	/* Incoming VMs must not see these CPU features ("-avx512f,-avx2",
	 * ferry-vm --host-cpu-mask): a migration baseline for this host, ""
	 * none. */
	char cpu_baseline[256];
	int nnets;                 /* 0 = any network may carry migrations */
	struct net_cidr nets[SETTINGS_MAX_NETS];
};

void settings_default(struct host_settings *s);
/* Apply the fields present in o (a host.set request or the stored file)
 * on top of s; all-or-nothing: on error s is unchanged. */
int settings_apply_json(struct host_settings *s, struct json_object *o,
			struct err *e);
struct json_object *settings_to_json(const struct host_settings *s);
int settings_load(const char *path, struct host_settings *s, struct err *e);
int settings_save(const char *path, const struct host_settings *s,
		  struct err *e);

/* "10.0.0.0/24", "fd00::/64", "192.168.1.7" (a host prefix). */
int settings_parse_cidr(const char *text, struct net_cidr *c, struct err *e);
void settings_format_cidr(const struct net_cidr *c, char *buf, size_t cap);
/* "10.0.0.0/24,10.1.0.0/24" for messages. */
void settings_format_nets(const struct host_settings *s, char *buf,
			  size_t cap);
bool settings_cidr_contains(const struct net_cidr *c,
			    const struct sockaddr_storage *sa);
/* True when no networks are set or sa lies in one of them. */
bool settings_net_allowed(const struct host_settings *s,
			  const struct sockaddr_storage *sa);

#endif
