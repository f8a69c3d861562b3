/*
 * Host side of virtio-net: a tap interface from /dev/net/tun, in
 * IFF_TAP|IFF_NO_PI mode (plain Ethernet frames, no packet-info prefix and
 * no vnet header: virtio-net strips and adds its header itself). The fd is
 * non-blocking so the main loop never stalls on it. Either a tap the
 * administrator made and bridged (one name per VM per host), or one the
 * worker makes on a named bridge.
 */
#ifndef FERRY_TAP_H
#define FERRY_TAP_H

#include <net/if.h>
#include <stdbool.h>

#include "common/err.h"

#define TAP_NAME_MAX IFNAMSIZ

/* Attach to (or create) tap `ifname` ("" or NULL: the kernel picks a
 * tapN name). The name in use is copied to actual_name (TAP_NAME_MAX bytes)
 * if not NULL. Returns the fd or -1. */
int tap_open(const char *ifname, char *actual_name, struct err *e);

/* The NIC on a host bridge (the "virtual switch" a VM names, the same on
 * every host it may run on): is bridge here, and is it a bridge? */
int tap_bridge_check(const char *bridge, struct err *e);
/* The kernel's mark of a bridge: /sys/class/net/NAME/bridge. */
bool tap_is_bridge(const char *name);
/* A new tap of the worker's own (the kernel names it fyN), joined to
 * bridge and up. It lives as long as the fd: when the worker exits, or
 * the VM moves away, it is gone from the bridge with nothing to clean. */
int tap_open_on_bridge(const char *bridge, char *actual_name, struct err *e);

#endif
