/* Tap device setup through the TUNSETIFF ioctl (see tap.h). */
#include "devices/tap.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int tap_open(const char *ifname, char *actual_name, struct err *e)
{
	struct ifreq ifr;
	int fd;

	if (ifname && strlen(ifname) >= IFNAMSIZ)
		return err_set(e, "tap name '%s' is longer than %d characters",
			       ifname, IFNAMSIZ - 1);
	/* TUNSETIFF would make a new, unconnected tap of a mistyped name: the
	 * VM would start with a NIC that reaches nothing. A named tap is the
	 * administrator's, set up (bridged) before the VM uses it. */
	if (ifname && if_nametoindex(ifname) == 0)
		return err_set(e, "tap device '%s' does not exist on this host: create it and connect "
			       "it to the VM network first (e.g. ip tuntap add %s mode tap; ip link set %s "
			       "master br0 up)", ifname, ifname, ifname);
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return err_sys(e, "opening /dev/net/tun");
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	if (ifname)
		memcpy(ifr.ifr_name, ifname, strlen(ifname));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		err_sys(e, "attaching tap '%s'", ifname ? ifname : "");
		close(fd);
		return -1;
	}
	if (actual_name)
		snprintf(actual_name, TAP_NAME_MAX, "%s", ifr.ifr_name);
	return fd;
}
