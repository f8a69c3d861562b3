#!/bin/bash
# san: yes
# The host's bandwidth limit is one budget for every move leaving the host.
# Two moves at once each run at half of it — as ferryd reports it and as
# each source worker reports it; a move's own lower limit, set live with
# `ferry migration set`, leaves the rest to the other; a changed host
# limit reaches running moves; when one move ends the other gets the whole
# limit; a move's own limit works alone when the host has none; both VMs
# arrive intact. Only the limits are checked, never times or rates.
# Exit: 0 pass, 77 skip (no /dev/kvm or not root), else fail.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm

two_hosts 22500 --max-migrations 2 --bandwidth 4
on A host info | grep -qE '^Bandwidth: +4 MiB/s, shared' || fail "host limit not shown as shared"

note "v1 small (8 MiB working set), v2 six times larger and busier"
new_vm A v1 64M "ws=8M rate=2"
new_vm A v2 128M "ws=48M rate=16"
# By the fourth heartbeat both have written their whole working set.
wait_for "$(serial_of A v1)" 'FERRY-GUEST hb n=4 ' 30 || fail "v1 heartbeat"
wait_for "$(serial_of A v2)" 'FERRY-GUEST hb n=4 ' 30 || fail "v2 heartbeat"

# limits: the outgoing moves that are sending, as NAME=FERRYD:WORKER (the
# limit ferryd says is in force, and the one the source worker reports).
limits() {
	on A --json migration list | python3 -c '
import json, sys
out = []
for m in json.load(sys.stdin)["moves"]:
    if m["direction"] == "outgoing" and m["state"] == "migrating":
        p = m.get("progress") or {}
        out.append("%s=%s:%s" % (m["name"], m.get("bandwidth_effective_mibps", "-"),
                                 p.get("bandwidth_mibps", "-")))
print(" ".join(sorted(out)))'
}
# expect WANT: wait until limits shows exactly WANT (workers are polled
# every 100 ms, so the worker's figure follows ferryd's within a moment).
expect() {
	local now=
	for _ in $(seq 200); do
		now=$(limits)
		[ "$now" = "$1" ] && { echo "limits: $now"; return 0; }
		sleep 0.1
	done
	on A migration list
	fail "expected limits '$1', have '$now'"
}

note "two moves under a 4 MiB/s host limit: 2 MiB/s each"
on A move-vm -n v1,v2 -d "$(port_of B)" --transport tcp --no-wait >/dev/null || fail "move-vm"
expect "v1=2:2 v2=2:2"

# v2's first pass takes ~20 s at 2 MiB/s: its progress must move meanwhile
# (it was published every 64 MiB sent, so a capped pass showed none).
wire() {
	on A --json migration list | python3 -c '
import json, sys
for m in json.load(sys.stdin)["moves"]:
    if m["name"] == "v2":
        p = m.get("progress") or {}
        # in pass 1 what is left is what it has not sent, in the same answer
        left_ok = p.get("remaining_pages") == p.get("total_pages", 0) - p.get("sent_pages", 0)
        print(p.get("pass", 0), p.get("bytes_on_wire", 0) if left_ok else "left-%s-of-%s-sent-%s" % (
            p.get("remaining_pages"), p.get("total_pages"), p.get("sent_pages")))'
}
w1=$(wire); sleep 1.5; w2=$(wire)
echo "v2 progress (pass, bytes on the wire): $w1, then $w2"
[ "${w1%% *}" = 1 ] && [ "${w2%% *}" = 1 ] || fail "v2 is not in its first pass: $w1 / $w2"
[ "${w2##* }" -gt "${w1##* }" ] || fail "v2's progress did not move in 1.5 s of its first pass: $w1 / $w2"
# the destination shows what has arrived of it, growing
got() {
	on B --json migration list | python3 -c '
import json, sys
for m in json.load(sys.stdin)["moves"]:
    if m["name"] == "v2" and m["direction"] == "incoming":
        print((m.get("progress") or {}).get("bytes_received", -1))'
}
g1=$(got); sleep 1; g2=$(got)
echo "v2 on B: $g1, then $g2 bytes received"
[ "${g1:--1}" -gt 0 ] && [ "${g2:--1}" -gt "$g1" ] || fail "B does not show v2's bytes arriving: $g1 / $g2"
on B migration list | grep -qE "v2 .* [0-9.]+ [KMG]iB in" || { on B migration list; fail "B's list shows no progress"; }
on A migration list | tee "$T/list"
grep -q "outgoing moves share 4 MiB/s" "$T/list" || fail "list does not show the shared limit"
grep -qE "v1 .* 2 MiB/s" "$T/list" || fail "list does not show v1's limit"

note "v1's own limit 1 MiB/s, set live: v2 gets the other 3"
on A migration set v1 --bandwidth 1 | tee "$T/set"
grep -q "bandwidth 1 MiB/s now (own limit: 1 MiB/s)" "$T/set" || fail "set reply"
expect "v1=1:1 v2=3:3"
on A migration status v2 | grep -E '^Bandwidth: +3 MiB/s now \(own limit: none\)' ||
	fail "status does not show v2's limit"

note "v1's own limit removed: half each again; host limit raised to 8 live"
on A migration set v1 --bandwidth 0 >/dev/null || fail "set v1 0"
expect "v1=2:2 v2=2:2"
on A host set --bandwidth 8 >/dev/null || fail "raise host limit"
expect "v1=4:4 v2=4:4"

# v2 dirties 16 MiB/s, faster than it may send: it keeps moving until the
# end of the test lifts its limit.
note "v1 ends: v2 gets the whole 8 MiB/s"
wait_move A v1 completed 60 || fail "v1 did not complete"
expect "v2=8:8"

note "a move's own limit alone, with no host limit"
on A migration set v2 --bandwidth 3 >/dev/null || fail "set v2 3"
expect "v2=3:3"
on A host set --bandwidth 0 >/dev/null || fail "host limit off"
on A host info | grep -qE '^Bandwidth: +no cap' || fail "host limit not off"
expect "v2=3:3"
# held WAIT_MS [FIELD]: v2's migration.status held at most WAIT_MS, as
# "STATE MS" (its state in the answer, the ms the answer took), or the
# error code; on A's local socket, so no key is needed.
held() {
	python3 - "$T/A/ferryd.sock" "$1" <<'EOF'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
t0 = time.monotonic()
s.sendall(json.dumps({"cmd": "migration.status", "name": "v2", "wait_ms": int(sys.argv[2])}).encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    b = s.recv(65536)
    if not b:
        break
    buf += b
r = json.loads(buf)
print(r["move"]["state"] if r.get("ok") else r["code"], int((time.monotonic() - t0) * 1000))
EOF
}
note "a held migration.status: answered when the move changes state, else after wait_ms"
h=$(held 400); echo "held 400 ms, v2 unchanged: $h"
# v2 cannot converge at 3 MiB/s: nothing changes, so ferryd holds the whole wait
[ "${h%% *}" = migrating ] && [ "${h##* }" -ge 390 ] || fail "a held status was not held: $h"
case "$(held 5001)" in E_BAD_ARG*) ;; *) fail "wait_ms 5001 accepted" ;; esac
held 5000 >"$T/held" &
HELD=$!
sleep 0.3 # the request is in and held before the limit goes
on A migration set v2 --bandwidth 0 | tee "$T/set"
grep -q "bandwidth no limit now (own limit: none)" "$T/set" || fail "set v2 0 reply"
wait "$HELD" || fail "the held status failed"
echo "held 5000 ms while v2's limit was lifted: $(cat "$T/held")"
# answered at v2's next state (it ends), not at the wait's end with v2 still moving
case "$(cat "$T/held")" in migrating*) fail "the held status missed v2's end: $(cat "$T/held")" ;; esac
wait_move A v2 completed 60 || fail "v2 did not complete"
h=$(held 5000); echo "held 5000 ms after v2 ended: $h"
[ "${h%% *}" = completed ] && [ "${h##* }" -lt 2500 ] || fail "a finished move's status was held: $h"
# B's record of the arrival says what came, as much as A says it sent
# (columns: ID VM DIR RESULT TOTAL(2) DOWNTIME(2, or "-" on the destination) ON-WIRE(2) ...)
ins=$(on B migration history | awk '$2 == "v2" && $3 == "in" {print $8, $9}')
outs=$(on A migration history | awk '$2 == "v2" && $3 == "out" {print $9, $10}')
echo "v2 on the wire: A sent $outs, B received $ins"
case "$ins" in [0-9]*" MiB") ;; *) on B migration history; fail "B's history has no size for v2's arrival" ;; esac

note "refusals"
on A migration set v2 --bandwidth 5 >"$T/err" 2>&1 && fail "set on a finished move accepted"
grep -q "no queued or running move" "$T/err" || { cat "$T/err"; fail "unclear refusal"; }
on A migration set v2 >/dev/null 2>&1; [ $? = 2 ] || fail "set without --bandwidth not a usage error"
on A migration --help | grep -q "set ID|VM --bandwidth" || fail "help does not teach set"

for v in v1 v2; do
	[ "$(vm_state B $v)" = running ] || fail "$v not running on B"
	verify_vm B $v || fail "$v damaged"
done
echo "PASS: move_bandwidth"
