#!/usr/bin/env bash
# Runs one of the README's two commands on a bare Debian 12: a fresh
# `debootstrap --variant=minbase bookworm` tree, a clone of this repository
# in it, and the command run in a chroot with /dev (for /dev/kvm and tun),
# /proc and /sys from this host. It shows whether scripts/setup.sh installs
# everything a new machine lacks: a missing package turns into a failing or
# skipping test there. Needs root, debootstrap and Debian's mirror.
#
# Usage: scripts/bare-check.sh tests|demo [DIR]   (DIR: where the tree goes;
#        default a new directory under /var/tmp, removed at the end unless
#        KEEP_BARE=1)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}
case "$what" in
tests) cmd=./run-tests.sh ;;
demo) cmd=./run-demo.sh ;;
*) echo "usage: $0 tests|demo [DIR]" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "bare-check: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
command -v debootstrap >/dev/null ||
	{ echo "bare-check: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
root=${2:-$(mktemp -d /var/tmp/ferry-bare.XXXXXX)}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

cleanup() {
	# Deepest mounts first; the tree itself was bind-mounted onto itself.
	for m in run dev sys proc ""; do
		mountpoint -q "$root/$m" && umount -R "$root/$m"
	done
	if [ -z "${KEEP_BARE:-}" ]; then
		rm -rf --one-file-system "$root"
	else
		echo "bare-check: tree kept at $root"
	fi
}
trap cleanup EXIT

echo "bare-check: debootstrap minbase bookworm into $root"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 ||
	{ tail -n 20 "$root.debootstrap.log"; exit 1; }
rm -f "$root.debootstrap.log"
# `ip netns exec` remounts / as a slave: / must be a mount point in the chroot.
mount --bind "$root" "$root"
mount --make-private "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
mount -t tmpfs tmpfs "$root/run"
cp /etc/resolv.conf "$root/etc/"
# The committed tree, as a new user's clone would be.
git clone -q "$PWD" "$root/root/ferry"
echo "bare-check: running $cmd in the chroot"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM="${TERM:-dumb}" \
	/bin/bash -c "cd /root/ferry && $cmd"
