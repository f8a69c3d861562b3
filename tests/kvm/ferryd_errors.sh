#!/bin/bash
# san: yes
# ferryd/ferry error paths: every bad input gets its own clear message and a
# nonzero exit, and hostile raw input on the socket never takes ferryd down.
# Most checks need no KVM; with /dev/kvm and ferry-vm present it also checks
# that a worker failing at start is reported with the tail of its log.
# Env: FERRY_BIN, FERRY_GUEST. Exit: 0 pass, 77 skip, else fail.
. "$(dirname "$0")/../lib/common.sh"
need_root
need_ferryd
command -v socat >/dev/null || skip "socat is not installed (apt-get install socat)"

STATE=$T/state
SOCK=$STATE/ferryd.sock
export FERRY_SOCKET=$SOCK

kill_workers() {
	for f in "$STATE"/run/*.pid; do
		[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	cleanup
}
trap kill_workers EXIT

# expect_fail REGEX CMD...: CMD must exit nonzero and print REGEX.
expect_fail() {
	local re=$1 rc
	shift
	"$@" >"$T/out" 2>&1
	rc=$?
	cat "$T/out"
	[ $rc -ne 0 ] || fail "expected failure, got exit 0: $*"
	grep -qE -- "$re" "$T/out" || fail "expected /$re/ from: $*"
	echo "    ok (exit $rc)"
}
ferry() { "$FERRY_BIN/ferry" "$@"; }
raw() { printf '%s\n' "$1" | socat -t5 - "UNIX-CONNECT:$SOCK"; }

note "daemon not running"
expect_fail "cannot reach ferryd at $SOCK: no such socket .*start it with: ferryd --state-dir $STATE" \
	ferry vm list
expect_fail "cannot reach ferryd at 127.0.0.1:1: connection refused" ferry -c 127.0.0.1:1 host info
# a malformed -c is a bad command line (exit 2), not a host that is down (3)
expect_fail "bad address '127.0.0.1:99999': port must be 1-65535" ferry -c 127.0.0.1:99999 host info
rc=0; ferry -c 127.0.0.1:99999 host info 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "a malformed -c address exited $rc, not 2"

bg "$FERRY_BIN/ferryd" --state-dir "$STATE" --listen none --vmm "$FERRY_BIN/ferry-vm" 2>>"$T/ferryd.log"
FERRYD=$!
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
ferry host info >/dev/null || fail "ferryd did not come up"
KERNEL=$T/kernel
echo "not really a kernel" >"$KERNEL"

note "pipelined requests, then EOF: every one is answered, in order"
n=$(printf '{"cmd":"vm.list"}\n%.0s' 1 2 3 4 5 | socat -t5 - "UNIX-CONNECT:$SOCK" | grep -c '"ok":true')
[ "$n" = 5 ] || fail "5 requests, then a half-close: $n replies"

note "a stray word is named; after --verify-memory it is its value"
expect_fail "^ferry move-vm: --verify-memory 'maybe': use on or off" ferry move-vm -n a -d x --verify-memory maybe
expect_fail "^ferry host evacuate: --verify-memory 'maybe': use on or off" ferry host evacuate -d x --verify-memory maybe
expect_fail "^ferry move-vm: unexpected argument 'extra' \(name VMs with -n\)" ferry move-vm -n a -d x extra
expect_fail "^ferry host set: unexpected argument 'extra'" ferry host set --prealloc on extra
expect_fail "^ferry vm new: two names, 'a1' and --name b2: give the VM's name once" \
	ferry vm new a1 --name b2 --kernel "$KERNEL"

note "bad vm new requests"
expect_fail "^ferry vm new: unrecognized option '--bogus'" ferry vm new --bogus
expect_fail "^ferry host set: option '--verify-memory' requires an argument" ferry host set --verify-memory
expect_fail "kernel not found: /nonexistent/vmlinuz" ferry vm new --name a --kernel /nonexistent/vmlinuz
expect_fail "disk not found: $T/missing.img" ferry vm new --name a --kernel "$KERNEL" --disk "$T/missing.img"
TOTAL=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
expect_fail "not enough memory: VM needs $((TOTAL * 2)) MiB, host has [0-9]+ MiB free" \
	ferry vm new --name a --kernel "$KERNEL" --memory "$((TOTAL * 2))M"
expect_fail "invalid VM name" ferry vm new --name 'bad/name' --kernel "$KERNEL"
expect_fail "vcpus must be between 1 and 8 \(got 9\)" ferry vm new --name a --kernel "$KERNEL" --vcpus 9
expect_fail "memory must be at least 16M and at most 16T \(got 8M\)" ferry vm new --name a --kernel "$KERNEL" --memory 8M
expect_fail "memory must be at least 16M" ferry --json vm new --name a --kernel "$KERNEL" --memory 8M
expect_fail "memory must be a multiple of 2M \(got 17M\)" ferry vm new --name a --kernel "$KERNEL" --memory 17M
expect_fail "give a whole number of MiB" ferry vm new --name a --kernel "$KERNEL" --memory 15.9M
expect_fail "--kernel is required" ferry vm new --name a
expect_fail "VM a has none: give it one with --bridge BR or --tap IFNAME" \
	ferry vm new --name a --kernel "$KERNEL" --mac 52:54:00:12:34:56
# a CPU mask is checked when the VM is defined, not at its first start
expect_fail '--cpu-mask: CPU feature mask: unknown feature "nosuch"' \
	ferry vm new --name cm --kernel "$KERNEL" --cpu-mask -nosuch
ferry vm list | grep -q '^cm ' && fail "a VM with a bad --cpu-mask was defined"
note "bad host set values, in words rather than API field names"
expect_fail "migration ports '100-50' must be LOW-HIGH within 1024-65535" ferry host set --migration-ports 100-50
expect_fail 'CPU baseline: CPU feature mask: unknown feature "nosuch"' ferry host set --cpu-baseline -nosuch
ferry vm new --name a --kernel "$KERNEL" --memory 32M || fail "valid vm new"
expect_fail "a VM named a already exists" ferry vm new --name a --kernel "$KERNEL"
expect_fail "no VM named 'zz'" ferry vm start zz
expect_fail "VM a is not running" ferry vm stop a
expect_fail "VM a is stopped; start it first" ferry vm console a
grep -q '^hint:' "$T/out" && fail "the console's hint repeats its message"
note "host new-key names the file it was given, not a temporary one"
expect_fail "creating cluster key $T/nodir/k: No such file or directory" ferry host new-key "$T/nodir/k"
grep -q '\.new-' "$T/out" && fail "new-key named its temporary file"

note "raw hostile input on the socket"
raw 'this is not json' | tee "$T/r1"; grep -q '"code":"E_BAD_JSON"' "$T/r1" || fail "garbage"
raw '{"cmd":"vm.new","name":' | tee "$T/r2"; grep -q '"code":"E_BAD_JSON"' "$T/r2" || fail "truncated JSON"
raw '[1,2,3]' | tee "$T/r3"; grep -q 'must be a JSON object' "$T/r3" || fail "array"
raw '{"cmd":"vm.explode"}' | tee "$T/r4"; grep -q '"code":"E_UNKNOWN_VERB"' "$T/r4" || fail "unknown verb"
raw '{"cmd":42}' | tee "$T/r5"; grep -q "field 'cmd' must be a string" "$T/r5" || fail "cmd type"
raw '{"cmd":"vm.new","name":"x","memory_mib":"lots","kernel":"/k"}' | tee "$T/r6"
grep -q "field 'memory_mib' must be an integer" "$T/r6" || fail "memory type"
raw '{"cmd":"vm.status","name":"a","extra":1}' | tee "$T/r7"; grep -q "unknown field 'extra'" "$T/r7" || fail "extra field"
# A source's list of the memory it uses: every range must lie inside the VM.
DEF='"definition":{"name":"m1","memory_mib":64,"vcpus":1,"kernel":"/k"}'
# A stream this host's worker cannot read is refused before anything starts.
raw '{"cmd":"migration.prepare","name":"m1","id":"mv-1",'"$DEF"'}' | tee "$T/r14"
grep -q "missing field 'stream_version'" "$T/r14" || fail "prepare without stream_version"
raw '{"cmd":"migration.prepare","name":"m1","id":"mv-1","stream_version":99,'"$DEF"'}' | tee "$T/r15"
grep -q '"code":"E_VERSION"' "$T/r15" && grep -q "version 99; this host reads versions 2 to 7: upgrade the destination" "$T/r15" ||
	fail "stream version from the future"
raw '{"cmd":"migration.prepare","name":"m1","id":"mv-1","stream_version":1,'"$DEF"'}' | tee "$T/r15"
grep -q "version 1; this host reads versions 2 to 7: upgrade the source" "$T/r15" ||
	fail "stream version from the past"
# version 2 (an earlier ferry's source) passes this check; the key salt is next
DEF=$DEF',"stream_version":2'
# This host has a cluster key: a prepare must carry the move's key salt.
raw '{"cmd":"migration.prepare","name":"m1","id":"mv-1",'"$DEF"'}' | tee "$T/r12"
grep -q '"code":"E_AUTH"' "$T/r12" || fail "prepare without key_salt"
raw '{"cmd":"migration.prepare","name":"m1","id":"mv-1",'"$DEF"',"key_salt":"xyz"}' | tee "$T/r13"
grep -q "'key_salt' must be 32 hex digits" "$T/r13" || fail "bad key_salt"
DEF=$DEF',"key_salt":"00112233445566778899aabbccddeeff"'
# a definition with a field this build does not know (a later source's):
# dropping it would run the VM otherwise than defined
raw '{"cmd":"migration.prepare","name":"m1","id":"mv-1",'"${DEF/\"vcpus\":1/\"vcpus\":1,\"nic_queues\":4}"'}' | tee "$T/r16"
grep -q '"code":"E_VERSION"' "$T/r16" && grep -q "unknown field 'nic_queues'" "$T/r16" ||
	fail "a definition field from a later build was not refused"
raw '{"cmd":"migration.prepare","name":"m1","id":"mv-1",'"$DEF"',"extents":[[16383,2]]}' | tee "$T/r10"
grep -q "extents\[0\] lies outside the VM's 16384 pages" "$T/r10" || fail "extents beyond RAM"
raw '{"cmd":"migration.prepare","name":"m1","id":"mv-1",'"$DEF"',"extents":[[0,1],["a",1]]}' | tee "$T/r11"
grep -q "extents\[1\] is not a \[first_page, pages\] pair" "$T/r11" || fail "extents pair type"
for id in '' mv- 'MV-1' '../x'; do
	raw '{"cmd":"migration.prepare","name":"m1","id":"'"$id"'",'"$DEF"'}' | tee "$T/r16"
	grep -q "field 'id' must be a move id" "$T/r16" || fail "prepare with move id '$id'"
done
# migration.status reads the history once for all the ids, and takes 256 at most
raw '{"cmd":"migration.status","ids":["mv-none1","mv-none2"]}' | tee "$T/r17"
grep -q "no move with id or VM name 'mv-none1'" "$T/r17" || fail "status of unknown moves"
raw "{\"cmd\":\"migration.status\",\"ids\":[$(printf '"mv-%d",' $(seq 257) | sed 's/,$//')]}" >"$T/r18"
grep -q "lists 257 moves; at most 256 at once" "$T/r18" || { cat "$T/r18"; fail "status of 257 moves"; }
expect_fail "invalid VM name" ferry vm new --name .hidden --kernel "$KERNEL"
expect_fail "invalid VM name" ferry vm new --name -x --kernel "$KERNEL"
raw '{"cmd":"vm.list"} {"cmd":"vm.list"}' | tee "$T/r8"; grep -q 'after the object' "$T/r8" || fail "two objects"
head -c 100000 /dev/zero | tr '\0' x | socat -t5 - "UNIX-CONNECT:$SOCK" | tee "$T/r9"
grep -q '"code":"E_TOO_LONG"' "$T/r9" || fail "oversized line"
# A client that connects and says nothing must not block others.
# One sends a partial line and then nothing; one never reads its replies.
mkfifo "$T/fifo"
exec 3<>"$T/fifo"
printf '{"cmd":"vm.li' >&3
socat - "UNIX-CONNECT:$SOCK" <"$T/fifo" >/dev/null 2>&1 &
STALLED=$!
yes '{"cmd":"host.info"}' | socat -u - "UNIX-CONNECT:$SOCK" 2>/dev/null &
NOREAD=$!
sleep 0.5
timeout 5 "$FERRY_BIN/ferry" vm list >/dev/null || fail "a stalled client blocked others"
kill "$STALLED" "$NOREAD" 2>/dev/null
exec 3>&-
kill -0 "$FERRYD" || fail "ferryd died on hostile input"
ferry host info >/dev/null || fail "ferryd stopped answering"
echo "    ok: ferryd alive and answering"

if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ -x "$FERRY_BIN/ferry-vm" ]; then
	note "worker that fails at start: error carries its log"
	expect_fail "VM a failed to start: ferry-vm exited with code [0-9]+" ferry vm start a
	# the hint points where the whole log is: status names its file
	grep -q "^hint: the worker's whole log is the file on the 'Worker log:' line of: ferry vm status a" \
		"$T/out" || fail "start failure hint"
	ferry vm status a | grep -q "^Worker log: *$STATE/logs/a.log" || fail "status names no worker log"
	ferry vm list | grep -qE '^a +(stopped|crashed)' || fail "state after failed start"
	if [ -f "$FERRY_GUEST" ]; then
		note "running VM cannot be deleted without --force"
		ferry vm new --name g --memory 64M --kernel "$FERRY_GUEST" --cmdline "ws=16M rate=0" || fail "vm new g"
		ferry vm start g || fail "vm start g"
		expect_fail "VM g is already running" ferry vm start g
		expect_fail "VM g is running; stop it first" ferry vm delete g
		ferry vm delete g --force || fail "delete --force"

		note "a tap that does not exist is refused, not created unconnected"
		ferry vm new --name nt --memory 64M --kernel "$FERRY_GUEST" --cmdline "ws=4M rate=0" \
			--tap ferrynotap0 >/dev/null || fail "vm new nt"
		expect_fail "tap device 'ferrynotap0' does not exist on this host" ferry vm start nt
		ip link show ferrynotap0 >/dev/null 2>&1 && fail "a tap ferrynotap0 was created"
		ferry vm delete nt || fail "delete nt"

		note "hints fit the command and name the VM"
		ferry vm new --name h1 --memory 64M --kernel "$FERRY_GUEST" >/dev/null || fail "vm new h1"
		expect_fail "VM h1 is stopped; start it first \(ferry vm start h1\)" ferry vm verify h1
		grep -q '^hint:' "$T/out" && fail "vm verify's hint repeats its message"
		expect_fail "VM h1 is not running" ferry vm stop h1
		grep -q "defining it on the other host" "$T/out" && fail "vm stop got move-vm's hint"
		# a file the definition names, gone at the start: no --disk to fix there
		truncate -s 1M "$T/h2.img"
		ferry vm new --name h2 --memory 64M --kernel "$FERRY_GUEST" --disk "$T/h2.img" >/dev/null ||
			fail "vm new h2"
		rm "$T/h2.img"
		expect_fail "hint: the VM's definition names that file: put it back, or define the VM again \(ferry vm delete h2" \
			ferry vm start h2
		ferry vm delete h2 || fail "delete h2"
		# vm start has no --memory to make smaller: its hint is the reserve
		ferry host set --memory-reserve 16T >/dev/null || fail "reserve 16T"
		expect_fail "hint: stop other VMs, or lower the host's reserve \(ferry host set --memory-reserve" \
			ferry vm start h1
		grep -q "use a smaller --memory" "$T/out" && fail "vm start's hint names --memory"
		ferry host set --memory-reserve 0 >/dev/null || fail "reserve 0"
		expect_fail "^ferry host set: --memory-reserve '17T': give a size like 2G, at most 16T" \
			ferry host set --memory-reserve 17T
		ferry vm delete h1 || fail "delete h1"
	fi
else
	echo "NOTE: /dev/kvm or ferry-vm missing: skipped the worker start-failure checks"
fi
ferry vm delete a || fail "delete a"

note "move requests refused before anything is queued"
expect_fail "codec zstd compresses memory, and the tcp transport sends it as it is" \
	ferry move-vm -n a -d 127.0.0.1:9 --transport tcp --codec zstd
ferry --json migration list | grep -q '"name":"a"' && fail "a refused move was queued"

note "encryption cannot be the default of a ferryd without a cluster key"
NA=$T/noauth
bg "$FERRY_BIN/ferryd" --state-dir "$NA" --listen none --no-auth --vmm "$FERRY_BIN/ferry-vm" 2>>"$T/noauth.log"
NAPID=$!
for _ in $(seq 50); do [ -S "$NA/ferryd.sock" ] && break; sleep 0.1; done
FERRY_SOCKET=$NA/ferryd.sock expect_fail "encryption needs a cluster key: this ferryd runs --no-auth" \
	ferry host set --encrypt on
FERRY_SOCKET=$NA/ferryd.sock ferry --json host info | grep -q '"encrypt":false' || fail "encrypt was stored"
kill "$NAPID"; wait "$NAPID" 2>/dev/null

note "a ferryd that cannot start leaves no cluster key behind"
rc=0; timeout 20 "$FERRY_BIN/ferryd" --state-dir "$T/fresh" --listen 127.0.0.1:99999 \
	--vmm "$FERRY_BIN/ferry-vm" 2>"$T/fresh.log" || rc=$?
cat "$T/fresh.log"
[ "$rc" -ne 0 ] || fail "ferryd started with a bad --listen"
[ -e "$T/fresh/cluster.key" ] && fail "a ferryd that did not start created a cluster key"

note "a --listen port another program holds: ferryd says so and what to do"
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True); sys.stdout.close(); time.sleep(30)' >"$T/busyport" &
BUSY=$!
for _ in $(seq 50); do [ -s "$T/busyport" ] && break; sleep 0.1; done
BPORT=$(cat "$T/busyport")
expect_fail "another program \(another ferryd\?\) listens on 127.0.0.1:$BPORT: stop it, or give this ferryd another --listen" \
	timeout 20 "$FERRY_BIN/ferryd" --state-dir "$T/busy" --listen "127.0.0.1:$BPORT" --vmm "$FERRY_BIN/ferry-vm"
[ -e "$T/busy/ferryd.sock" ] && fail "a ferryd that did not start left its socket"
kill "$BUSY" 2>/dev/null; wait "$BUSY" 2>/dev/null

note "a name too long for this host's socket paths is refused when defined"
LS=$T/$(printf 'd%.0s' $(seq 40))
mkdir -p "$LS"
bg "$FERRY_BIN/ferryd" --state-dir "$LS" --listen none --no-auth --vmm "$FERRY_BIN/ferry-vm" 2>>"$T/long.log"
LSPID=$!
for _ in $(seq 50); do [ -S "$LS/ferryd.sock" ] && break; sleep 0.1; done
LONG=$(printf 'n%.0s' $(seq 64))
FERRY_SOCKET=$LS/ferryd.sock expect_fail "VM name '$LONG' is too long for this host: its console socket .* use a name of at most [0-9]+ characters here" \
	ferry vm new --name "$LONG" --kernel "$KERNEL"
FERRY_SOCKET=$LS/ferryd.sock ferry vm list | grep -q "^$LONG" && fail "a VM that could never start was defined"
kill "$LSPID"; wait "$LSPID" 2>/dev/null

note "out of file descriptors: no busy loop, and clients are served again after"
LF=$T/lowfd
mkdir -p "$LF"
bg prlimit --nofile=48:48 "$FERRY_BIN/ferryd" --state-dir "$LF" --listen none --no-auth \
	--vmm "$FERRY_BIN/ferry-vm" 2>>"$T/lowfd.log"
LFPID=$!
for _ in $(seq 50); do [ -S "$LF/ferryd.sock" ] && break; sleep 0.1; done
python3 - "$LF/ferryd.sock" "$LFPID" <<'EOF' || fail "ferryd out of file descriptors"
import os, socket, sys, time
path, pid = sys.argv[1], int(sys.argv[2])
def cpu():
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
conns = []
for _ in range(80):  # more than its 48 fds: the rest wait in the backlog
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    conns.append(s)
time.sleep(0.5)
c0 = cpu()
time.sleep(2)
used = cpu() - c0
print("ferryd CPU while out of fds: %.2f s in 2 s" % used)
# a loop retrying accept at once burns a whole core: ~2 s
assert used < 1.0, "ferryd spins on accept"
for s in conns:
    s.close()
EOF
grep -q "taking no new clients" "$T/lowfd.log" || fail "running out of fds was not logged"
for _ in $(seq 50); do
	FERRY_SOCKET=$LF/ferryd.sock ferry host info >/dev/null 2>&1 && break
	sleep 0.1
done
FERRY_SOCKET=$LF/ferryd.sock ferry host info >/dev/null || fail "no client served after the fds came back"
kill "$LFPID"; wait "$LFPID" 2>/dev/null

note "SIGTERM: ferryd exits cleanly and removes its socket"
kill -TERM "$FERRYD"
wait "$FERRYD"
rc=$?
[ $rc -eq 0 ] || fail "ferryd exited with $rc on SIGTERM"
[ -e "$SOCK" ] && fail "socket left behind"
echo "PASS: ferryd_errors"
