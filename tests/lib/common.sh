# Shared helpers for KVM and end-to-end test scripts. Source it first.
# Conventions: exit 0 = pass, 77 = skip (with a loud reason), else fail.
set -u
FERRY_BIN=${FERRY_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/bin}
FERRY_GUEST=${FERRY_GUEST:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/guest/testguest.elf}
T=$(mktemp -d /tmp/ferry-test.XXXXXX)
_pids=()
_memcgs=()

cleanup() {
	for p in "${_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	for c in "${_memcgs[@]}"; do memcg_drop "$c"; done
	[ -n "${KEEP_TMP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
note() { echo "--- $*"; }

need_kvm() {
	[ -e /dev/kvm ] || skip "no /dev/kvm on this machine: KVM tests cannot run"
	[ -r /dev/kvm ] && [ -w /dev/kvm ] || skip "/dev/kvm is not accessible to $(id -un)"
	[ -x "$FERRY_BIN/ferry-vm" ] || fail "ferry-vm not built at $FERRY_BIN"
	[ -f "$FERRY_GUEST" ] || fail "test guest not built at $FERRY_GUEST"
}
need_ferryd() {
	for b in ferryd ferry; do
		[ -x "$FERRY_BIN/$b" ] || fail "$b not built at $FERRY_BIN"
	done
}
need_root() { [ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, tap devices)"; }

# bg CMD...: run in the background, remember the pid in $! and for cleanup
bg() { "$@" & _pids+=($!); }

# last_blk LOG: the newest disk record the test guest says it wrote (blk=1)
last_blk() { grep -oE 'blk wrote n=[0-9]+' "$1" | tail -n1 | grep -oE '[0-9]+$'; }

# wait_for FILE REGEX [TIMEOUT_S]: wait until a line matching REGEX appears
wait_for() {
	local f=$1 re=$2 t=${3:-30} i=0
	while [ $i -lt $((t * 10)) ]; do
		[ -f "$f" ] && grep -qE "$re" "$f" && return 0
		sleep 0.1; i=$((i + 1))
	done
	echo "timed out after ${t}s waiting for /$re/ in $f; last lines:"; tail -n 15 "$f" 2>/dev/null
	return 1
}

# count of lines matching REGEX in FILE
count() { grep -cE "$2" "$1" 2>/dev/null || true; }

# last heartbeat counter in a serial log
last_hb() { grep -oE 'FERRY-GUEST hb n=[0-9]+' "$1" | tail -n1 | grep -oE '[0-9]+$'; }

# vmctl SOCK JSON: one request to a ferry-vm control socket, prints the reply
vmctl() { printf '%s\n' "$2" | socat -t 60 - UNIX-CONNECT:"$1"; }

# Memory cgroups (v1 memory controller, or v2 with memory enabled for the
# test's own cgroup's children): memcg_new NAME sets MEMCG to a new child
# of this shell's memory cgroup, or MEMCG_WHY to why there is none and
# returns 1;
# memcg_limit DIR BYTES; memcg_drop DIR moves what is left in it back to
# the parent and removes it (also done at exit).
memcg_new() {
	local own dir
	own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
	if [ -n "$own" ] && [ -d "/sys/fs/cgroup/memory$own" ]; then
		dir=/sys/fs/cgroup/memory${own%/}/$1
	else
		own=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
		local v2=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
		if [ -z "$v2" ] || ! grep -qw memory "$v2${own%/}/cgroup.subtree_control" 2>/dev/null; then
			MEMCG_WHY="no memory cgroup to make a child of (no v1 memory hierarchy; v2 without the memory controller for $own)"
			return 1
		fi
		dir=$v2${own%/}/$1
	fi
	mkdir -p "$dir" 2>/dev/null || { MEMCG_WHY="cannot make $dir"; return 1; }
	_memcgs+=("$dir")
	MEMCG=$dir
}
memcg_limit() {
	if [ -e "$1/memory.limit_in_bytes" ]; then echo "$2" >"$1/memory.limit_in_bytes"
	else echo "$2" >"$1/memory.max"; fi
}
memcg_drop() {
	[ -d "$1" ] || return 0
	local p
	for p in $(cat "$1/cgroup.procs" 2>/dev/null); do
		echo "$p" >"$(dirname "$1")/cgroup.procs" 2>/dev/null
	done
	rmdir "$1" 2>/dev/null
}
