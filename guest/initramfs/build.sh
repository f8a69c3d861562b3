#!/bin/sh
# Build ferry's Linux test initramfs: busybox-static, an /init that mounts
# proc/sys/devtmpfs, loads the virtio PCI/blk/net modules of the installed
# Debian kernel (with their dependencies, in load order), announces
# "FERRY-LINUX ready" on the console and keeps a shell on ttyS0.
#
# usage: build.sh OUT.cpio.gz
#   KVER=<version>     kernel whose modules to include (default: the one
#                      /boot/vmlinuz-* and /lib/modules/* both have, newest)
#   BUSYBOX=<path>     static busybox (default /bin/busybox)
#   EXTRA_DIR=<dir>    tree copied over the image (guest tools), optional
set -eu

out=${1:?usage: build.sh OUT.cpio.gz}
busybox=${BUSYBOX:-/bin/busybox}
here=$(cd "$(dirname "$0")" && pwd)
modules="virtio_pci virtio_blk virtio_net"

die() { echo "build.sh: $*" >&2; exit 1; }

[ -x "$busybox" ] || die "$busybox missing (apt-get install busybox-static)"
# A dynamic busybox would need its libraries in the image; refuse it.
if ldd "$busybox" >/dev/null 2>&1; then
	die "$busybox is dynamically linked; install busybox-static"
fi
command -v cpio >/dev/null || die "cpio missing (apt-get install cpio)"

if [ -z "${KVER:-}" ]; then
	for k in $(ls /boot/vmlinuz-* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V); do
		[ -d "/lib/modules/$k" ] && KVER=$k
	done
fi
KVER=${KVER:-}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT INT TERM
mkdir -p "$stage/bin" "$stage/sbin" "$stage/dev" "$stage/proc" "$stage/sys" \
	"$stage/tmp" "$stage/etc" "$stage/root" "$stage/lib/modules"
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
	[ "$applet" = busybox ] || ln -sf busybox "$stage/bin/$applet"
done

# Modules: modules.dep lists each module's full dependency closure, last
# one first to load (that is how modprobe walks it).
if [ -n "$KVER" ] && [ -f "/lib/modules/$KVER/modules.dep" ]; then
	mdir=/lib/modules/$KVER
	mkdir -p "$stage$mdir"
	order=$stage$mdir/load-order
	: > "$order"
	for m in $modules; do
		line=$(grep -E "(^|/)$m\.ko(\.xz|\.zst|\.gz)?:" "$mdir/modules.dep" || true)
		if [ -z "$line" ]; then
			grep -qE "(^|/)$m\.ko" "$mdir/modules.builtin" 2>/dev/null && continue
			die "module $m not found for kernel $KVER"
		fi
		self=${line%%:*}
		deps=$(echo "${line#*:}" | tr ' ' '\n' | sed '/^$/d' | tac)
		for f in $deps $self; do
			base=$(basename "$f")
			ko=${base%.xz}; ko=${ko%.zst}; ko=${ko%.gz}
			grep -qx "$ko" "$order" && continue
			# busybox insmod wants plain ELF objects.
			case "$base" in
			*.xz)  xz -dc "$mdir/$f" > "$stage$mdir/$ko" ;;
			*.zst) zstd -qdc "$mdir/$f" > "$stage$mdir/$ko" ;;
			*.gz)  gzip -dc "$mdir/$f" > "$stage$mdir/$ko" ;;
			*)     cp "$mdir/$f" "$stage$mdir/$ko" ;;
			esac
			echo "$ko" >> "$order"
		done
	done
	echo "build.sh: kernel $KVER modules: $(tr '\n' ' ' < "$order")" >&2
else
	echo "build.sh: no installed kernel modules found; image has no virtio drivers" >&2
fi

install -m 0755 "$here/init" "$stage/init"
if [ -n "${EXTRA_DIR:-}" ]; then
	cp -a "$EXTRA_DIR/." "$stage/"
fi

# newc archive, sorted, with fixed owners and times so rebuilds match.
tmp=$out.tmp.$$
(cd "$stage" && find . | LC_ALL=C sort | \
	cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -9n > "$tmp"
mv "$tmp" "$out"
echo "build.sh: wrote $out ($(wc -c < "$out") bytes)" >&2
