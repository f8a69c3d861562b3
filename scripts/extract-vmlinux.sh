#!/usr/bin/env bash
# Extract the uncompressed kernel (ELF vmlinux) from an x86 bzImage, so
# ferry-vm can boot it without running the kernel's own decompressor (on a
# host whose guest kernel mode is emulated, that decompressor alone takes
# minutes). Uses only tools from Debian packages: coreutils, grep, xz-utils,
# zstd, gzip, bzip2, lz4, lzop.
#
# usage: extract-vmlinux.sh BZIMAGE OUT
#
# The setup header says where the payload is (payload_offset/length,
# protocol 2.08+); its magic says how it is compressed, and the kernel's
# build appends the uncompressed size as 4 little-endian bytes, which we
# check. If the header fields are missing or wrong, every offset where a
# known magic occurs is tried. The result must be a complete x86-64
# ET_EXEC ELF; OUT is written only then (atomically).
set -euo pipefail

die() { echo "extract-vmlinux: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: extract-vmlinux.sh BZIMAGE OUT"
img=$1 out=$2
[ -f "$img" ] && [ -r "$img" ] || die "$img: not a readable file"
size=$(stat -c %s "$img")

# u N OFF: unsigned little-endian N-byte integer at OFF in $img
u() { od -An -tu"$1" -j "$2" -N "$1" "$img" | tr -d ' \n'; }
# hex N OFF [FILE]: N bytes at OFF as lowercase hex, no spaces
hex() { od -An -tx1 -j "$2" -N "$1" "${3:-$img}" | tr -d ' \n'; }

# format name for the bytes at OFF, or nothing
magic_at() {
	local h
	h=$(hex 6 "$1")
	case "$h" in
	fd377a585a00*) echo xz ;;
	28b52ffd*)     echo zstd ;;
	1f8b08*)       echo gzip ;;
	5d0000*)       echo lzma ;;
	425a68*)       echo bzip2 ;;
	02214c18*)     echo lz4 ;;
	894c5a4f*)     echo lzo ;;
	esac
}

# the grep -P pattern for each format's magic, for the fallback scan
scan_pattern() {
	case "$1" in
	xz)    echo '\xfd7zXZ\x00' ;;
	zstd)  echo '\x28\xb5\x2f\xfd' ;;
	gzip)  echo '\x1f\x8b\x08' ;;
	lzma)  echo '\x5d\x00\x00' ;;
	bzip2) echo 'BZh[1-9]' ;;
	lz4)   echo '\x02\x21\x4c\x18' ;;
	lzo)   echo '\x89LZO' ;;
	esac
}

# decompress FORMAT: stdin to stdout. Trailing bytes after the stream (the
# appended size, or the rest of the file in scan mode) must not matter.
decompress() {
	case "$1" in
	xz)    xz -dc --single-stream ;;
	lzma)  xz -dc --format=lzma --single-stream ;;
	zstd)  zstd -qdc ;;
	gzip)  gzip -dcq ;;
	bzip2) bzip2 -dcq ;;
	lz4)   lz4 -dcq ;;
	lzo)   lzop -dcq ;;
	esac
}

# check_elf FILE: a complete x86-64 executable ELF (section headers, which
# the linker puts at the end, lie inside the file, so truncation shows)
check_elf() {
	local f=$1 n shoff shnum shent
	n=$(stat -c %s "$f")
	[ "$n" -ge 64 ] || return 1
	[ "$(hex 4 0 "$f")" = 7f454c46 ] || return 1
	[ "$(hex 2 4 "$f")" = 0201 ] || return 1       # ELFCLASS64, little-endian
	[ "$(hex 2 16 "$f")" = 0200 ] || return 1      # ET_EXEC
	[ "$(hex 2 18 "$f")" = 3e00 ] || return 1      # EM_X86_64
	shoff=$(od -An -tu8 -j 40 -N 8 "$f" | tr -d ' ')
	shent=$(od -An -tu2 -j 58 -N 2 "$f" | tr -d ' ')
	shnum=$(od -An -tu2 -j 60 -N 2 "$f" | tr -d ' ')
	[ "$shoff" -le "$n" ] && [ $((shoff + shent * shnum)) -le "$n" ]
}

tmp=$(mktemp "${out}.XXXXXX")
trap 'rm -f "$tmp"' EXIT

# try FORMAT OFF [LEN]: decompress LEN (default: to end of file) bytes at
# OFF into $tmp; succeed if the result is a whole vmlinux.
try() {
	local fmt=$1 off=$2 len=${3:-$((size - $2))}
	command -v "$(decompress_tool "$fmt")" >/dev/null ||
		{ echo "extract-vmlinux: $fmt payload at $off but $(decompress_tool "$fmt") is not installed" >&2; return 1; }
	tail -c +$((off + 1)) "$img" | head -c "$len" | decompress "$fmt" >"$tmp" 2>/dev/null || true
	check_elf "$tmp"
}
decompress_tool() {
	case "$1" in lzma) echo xz ;; *) echo "$1" ;; esac
}

found=
# 1. The header's own account of the payload.
if [ "$size" -ge 1024 ] && [ "$(hex 4 $((0x202)))" = 48647253 ] &&
   [ "$(u 2 $((0x206)))" -ge $((0x208)) ]; then
	sects=$(u 1 $((0x1f1))); [ "$sects" -ne 0 ] || sects=4
	poff=$(( (sects + 1) * 512 + $(u 4 $((0x248))) ))
	plen=$(u 4 $((0x24c)))
	if [ "$plen" -gt 4 ] && [ "$poff" -lt "$size" ] && [ "$plen" -le $((size - poff)) ]; then
		fmt=$(magic_at "$poff")
		if [ -n "$fmt" ] && try "$fmt" "$poff" $((plen - 4)); then
			want=$(u 4 $((poff + plen - 4)))
			got=$(stat -c %s "$tmp")
			[ "$got" -eq "$want" ] ||
				die "$fmt payload decompressed to $got bytes, the image says $want"
			found="$fmt payload at offset $poff ($plen bytes)"
		fi
	fi
fi
# 2. Not a usable header: try every known magic, first hit wins.
if [ -z "$found" ]; then
	for fmt in xz zstd gzip lzma bzip2 lz4 lzo; do
		for off in $(LC_ALL=C grep -obUaP "$(scan_pattern "$fmt")" "$img" | cut -d: -f1); do
			if try "$fmt" "$off"; then
				found="$fmt stream found at offset $off"
				break 2
			fi
		done
	done
fi
[ -n "$found" ] || die "$img: no compressed x86-64 vmlinux found (not a bzImage?)"
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "extract-vmlinux: $img: $found -> $out ($(stat -c %s "$out") bytes)" >&2
