/*
 * Host side of virtio-net: a tap interface from /dev/net/tun, in
 * IFF_TAP|IFF_NO_PI mode (plain Ethernet frames, no packet-info prefix and
 * no vnet header: virtio-net strips and adds its header itself). The fd is
 * non-blocking so the main loop never stalls on it.
 */
#ifndef FERRY_TAP_H
#define FERRY_TAP_H

#include <net/if.h>

#include "common/err.h"

#define TAP_NAME_MAX IFNAMSIZ

/* Attach to (or create) tap `ifname` ("" or NULL: the kernel picks a
 * tapN name). The name in use is copied to actual_name (TAP_NAME_MAX bytes)
 * if not NULL. Returns the fd or -1. */
int tap_open(const char *ifname, char *actual_name, struct err *e);

#endif
