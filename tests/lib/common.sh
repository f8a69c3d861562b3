# Shared helpers for KVM and end-to-end test scripts. Source it first.
# Conventions: exit 0 = pass, 77 = skip (with a loud reason), else fail.
set -u
FERRY_BIN=${FERRY_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/bin}
FERRY_GUEST=${FERRY_GUEST:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/guest/testguest.elf}
T=$(mktemp -d /tmp/ferry-test.XXXXXX)
_pids=()

cleanup() {
	for p in "${_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
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
need_root() { [ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, tap devices)"; }

# bg CMD...: run in the background, remember the pid in $! and for cleanup
bg() { "$@" & _pids+=($!); }

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
