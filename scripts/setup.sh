#!/usr/bin/env bash
# Installs what ferry needs from Debian's packages, only what is missing.
# Build: gcc, make, json-c, zstd, lz4, xxhash, cmocka, OpenSSL (HMAC for host
# authentication). Runtime and tests: QEMU (for
# side-by-side benchmarks), busybox-static, Debian's kernel and xz-utils (the
# Linux guest path: its bzImage is xz inside), iproute2/iptables/socat/tcpdump
# (the network test lab), clang with its libFuzzer runtime (the stream
# fuzzer), the zstd tool (the fuzz corpus builder), gnuplot. The list was
# checked on a bare Debian 12 (debootstrap --variant=minbase): with it, every
# test there runs, none skips for a missing tool.
set -euo pipefail
pkgs=(gcc make binutils libc6-dev libjson-c-dev libzstd-dev liblz4-dev libxxhash-dev libcmocka-dev libssl-dev
      qemu-system-x86 busybox-static linux-image-amd64 xz-utils iproute2 iptables socat tcpdump
      bridge-utils gnuplot-nox cpio kmod procps psmisc util-linux python3 clang libclang-rt-dev zstd)
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
