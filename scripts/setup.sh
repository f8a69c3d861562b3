#!/usr/bin/env bash
# Installs what ferry needs from Debian's packages, only what is missing.
# Build: gcc, make, json-c, zstd, lz4, xxhash, cmocka, OpenSSL (HMAC for host
# authentication). Runtime and tests: QEMU (for
# side-by-side benchmarks), busybox-static and Debian's kernel (the Linux
# guest path), iproute2/iptables/socat (the network test lab), gnuplot.
set -euo pipefail
pkgs=(gcc make binutils libc6-dev libjson-c-dev libzstd-dev liblz4-dev libxxhash-dev libcmocka-dev libssl-dev
      qemu-system-x86 busybox-static linux-image-amd64 iproute2 iptables socat
      bridge-utils gnuplot-nox cpio kmod procps psmisc util-linux python3 clang)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "setup: installing ${missing[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		echo "setup: need root to install packages (run as root or with sudo)" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: all build and test dependencies present"
