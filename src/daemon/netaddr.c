/* Migration network addresses (see netaddr.h). */
#include "daemon/netaddr.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void netaddr_text(const struct sockaddr_storage *sa, char *buf, size_t cap)
{
	const void *a = sa->ss_family == AF_INET6 ?
		(const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr :
		(const void *)&((const struct sockaddr_in *)sa)->sin_addr;
	if (!inet_ntop(sa->ss_family, a, buf, (socklen_t)cap))
		snprintf(buf, cap, "?");
}

int netaddr_local_in_nets(const struct host_settings *s, char *buf,
			  size_t cap, struct err *e)
{
	struct ifaddrs *ifs, *i;
	char nets[512];
	int rc = -1;

	if (getifaddrs(&ifs) < 0)
		return err_sys(e, "listing this host's addresses");
	for (i = ifs; i; i = i->ifa_next) {
		struct sockaddr_storage ss;
		if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET &&
				     i->ifa_addr->sa_family != AF_INET6))
			continue;
		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, i->ifa_addr, i->ifa_addr->sa_family == AF_INET ?
		       sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
		if (settings_net_allowed(s, &ss)) {
			netaddr_text(&ss, buf, cap);
			rc = 0;
			break;
		}
	}
	freeifaddrs(ifs);
	if (rc < 0) {
		settings_format_nets(s, nets, sizeof(nets));
		err_set(e, "no address of this host is in its migration networks (%s); "
			"change them with: ferry host set --migration-network CIDR", nets);
	}
	return rc;
}

int netaddr_route_source(const char *host, struct sockaddr_storage *src,
			 struct err *e)
{
	struct addrinfo hints = { 0 }, *res;
	socklen_t sl = sizeof(*src);
	int fd, rc;

	hints.ai_socktype = SOCK_DGRAM;
	/* host is the worker address a destination sent (always an IP):
	 * a name would be looked up on ferryd's loop, and a peer could
	 * stall it with one whose lookup hangs */
	hints.ai_flags = AI_NUMERICHOST;
	rc = getaddrinfo(host, "9", &hints, &res);
	if (rc != 0)
		return err_set(e, "destination worker address %s is not an IP address: %s", host,
			       gai_strerror(rc));
	/* A connected UDP socket sends nothing but makes the kernel choose
	 * the route and source address, which is all we want to know. */
	fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(res);
		return err_sys(e, "socket");
	}
	if (connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
		err_sys(e, "no route to %s", host);
		close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	memset(src, 0, sizeof(*src));
	if (getsockname(fd, (struct sockaddr *)src, &sl) < 0) {
		err_sys(e, "getsockname");
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int netaddr_sock_local(int fd, char *buf, size_t cap, struct err *e)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return err_sys(e, "getsockname");
	if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
		return err_set(e, "not an IP connection");
	netaddr_text(&ss, buf, cap);
	/* A v4 client on a dual-stack listener shows up v4-mapped. */
	if (strncmp(buf, "::ffff:", 7) == 0 && strchr(buf + 7, '.'))
		memmove(buf, buf + 7, strlen(buf + 7) + 1);
	return 0;
}

bool netaddr_port_free(const char *ip, int port)
{
	struct addrinfo hints = { 0 }, *res;
	char p[16];
	bool ok = false;
	int fd;

	snprintf(p, sizeof(p), "%d", port);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST;
	if (getaddrinfo(ip, p, &hints, &res) != 0)
		return false;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		ok = bind(fd, res->ai_addr, res->ai_addrlen) == 0;
		close(fd);
	}
	freeaddrinfo(res);
	return ok;
}
