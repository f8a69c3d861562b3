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
