/* Tap device setup through the TUNSETIFF ioctl (see tap.h). */
#include "devices/tap.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

bool tap_is_bridge(const char *name)
{
	char path[64 + NAME_MAX];
	struct stat st;

	if (snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", name) >= (int)sizeof(path))
		return false;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int tap_bridge_check(const char *bridge, struct err *e)
{

	if (!bridge[0] || strlen(bridge) >= IFNAMSIZ || strchr(bridge, '/'))
		return err_set(e, "bridge name '%s' is not an interface name (1-%d characters, no '/')",
			       bridge, IFNAMSIZ - 1);
	if (if_nametoindex(bridge) == 0)
		return err_set(e, "bridge '%s' does not exist on this host: create it and connect it to "
			       "the VM network first (e.g. ip link add %s type bridge; ip link set eth0 "
			       "master %s; ip link set %s up)", bridge, bridge, bridge, bridge);
	/* a tap joined to anything else would fail at SIOCBRADDIF with a
	 * less helpful EINVAL */
	if (!tap_is_bridge(bridge))
		return err_set(e, "interface '%s' on this host is not a bridge", bridge);
	return 0;
}

/* SIOCBRADDIF and SIOCSIFFLAGS take any socket; a UNIX one needs no
 * network protocol loaded. */
static int tap_join_bridge(const char *tap, const char *bridge, struct err *e)
{
	struct ifreq ifr;
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc = -1;

	if (s < 0)
		return err_sys(e, "socket for bridge setup");
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", bridge);
	ifr.ifr_ifindex = (int)if_nametoindex(tap);
	if (ifr.ifr_ifindex == 0) {
		err_sys(e, "tap %s vanished", tap);
		goto out;
	}
	if (ioctl(s, SIOCBRADDIF, &ifr) < 0) {
		err_sys(e, "adding tap %s to bridge %s", tap, bridge);
		goto out;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tap);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		err_sys(e, "reading the flags of tap %s", tap);
		goto out;
	}
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
		err_sys(e, "bringing tap %s up", tap);
		goto out;
	}
	rc = 0;
out:
	close(s);
	return rc;
}

int tap_open_on_bridge(const char *bridge, char *actual_name, struct err *e)
{
	char name[TAP_NAME_MAX];
	struct ifreq ifr;
	int fd;

	if (tap_bridge_check(bridge, e) < 0)
		return -1;
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return err_sys(e, "opening /dev/net/tun");
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	/* the kernel picks the first free fyN: no name clash between VMs */
	memcpy(ifr.ifr_name, "fy%d", 5);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		err_sys(e, "creating a tap for bridge %s", bridge);
		close(fd);
		return -1;
	}
	snprintf(name, sizeof(name), "%s", ifr.ifr_name);
	if (tap_join_bridge(name, bridge, e) < 0) {
		close(fd); /* not persistent: the tap goes with its fd */
		return -1;
	}
	if (actual_name)
		snprintf(actual_name, TAP_NAME_MAX, "%s", name);
	return fd;
}
