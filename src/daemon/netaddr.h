/*
 * Addresses for migration traffic: which local address lies in the host's
 * migration networks, which source address the kernel would use towards a
 * destination, whether a port is free to listen on. Used on both ends of a
 * move so that memory only ever flows over the networks the administrator
 * chose, and a mismatch is an error before any memory moves.
 */
#ifndef FERRY_DAEMON_NETADDR_H
#define FERRY_DAEMON_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "common/err.h"
#include "daemon/settings.h"

/* Numeric text of an address ("10.0.0.5", "fd00::5"), no port. */
void netaddr_text(const struct sockaddr_storage *sa, char *buf, size_t cap);
/* First address of a local interface in one of s's migration networks. */
int netaddr_local_in_nets(const struct host_settings *s, char *buf,
			  size_t cap, struct err *e);
/* The source address the kernel picks to reach host (an IP address: no
 * name lookups on the loop). */
int netaddr_route_source(const char *host, struct sockaddr_storage *src,
			 struct err *e);
/* Local address of a connected socket. */
int netaddr_sock_local(int fd, char *buf, size_t cap, struct err *e);
/* Can a TCP listener bind ip:port right now? */
bool netaddr_port_free(const char *ip, int port);

#endif
