#!/bin/bash
# san: yes
# ferryd's files in its state directory, after crashes and hand edits:
# - a marker left by an arrival that never completed (run/NAME.incoming
#   without a definition) is swept at start, and `vm new` clears one that
#   appears later: a VM defined by hand is never taken for a failed arrival
#   and deleted at the next restart;
# - a history line torn by a crash costs only itself: the next move's record
#   starts on its own line and is found;
# - a history line with null where a string belongs is skipped, not a crash;
# - a history grown past 16 MiB is cut to its newest 8 MiB, and a reply of
#   thousands of its moves reaches the client whole;
# - an unreadable migrations.json stops ferryd with the file named and the
#   remedy (it used to be overwritten, losing moves in flight); a stored move
#   in a state this ferryd does not know is skipped, not queued;
# - a worker ferryd does not track (its definition was unreadable at the
#   last start) keeps a second worker from starting for the same VM;
# - a worker's `save` to a path too long for it is refused, instead of
#   truncating the temporary name onto another file.
# Env: FERRY_BIN, FERRY_GUEST. Exit: 0 pass, 77 skip, else fail.
. "$(dirname "$0")/../lib/common.sh"
need_root
need_kvm
need_ferryd

STATE=$T/state
SOCK=$STATE/ferryd.sock
export FERRY_SOCKET=$SOCK
ferry() { "$FERRY_BIN/ferry" "$@"; }
FERRYD=

kill_workers() {
	pkill -9 -f "ferry-vm --name g2 " 2>/dev/null
	cleanup
}
trap kill_workers EXIT

start_ferryd() {
	bg "$FERRY_BIN/ferryd" --state-dir "$STATE" --listen none --vmm "$FERRY_BIN/ferry-vm" 2>>"$T/ferryd.log"
	FERRYD=$!
	for _ in $(seq 50); do
		[ -S "$SOCK" ] && ferry host info >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	tail -n 20 "$T/ferryd.log"
	fail "ferryd did not come up"
}
stop_ferryd() {
	kill "$FERRYD" && wait "$FERRYD" 2>/dev/null
	FERRYD=
}
define() { ferry vm new --name "$1" --memory 64M --vcpus 1 --kernel "$FERRY_GUEST" --cmdline "ws=4M rate=0" >/dev/null ||
	fail "vm new $1"; }

mkdir -p "$STATE/run"
note "a marker without a definition is swept at start"
echo '{"id":"mv-1","source":"hostA"}' >"$STATE/run/g1.incoming"
start_ferryd
[ -e "$STATE/run/g1.incoming" ] && fail "the stale marker was kept"
grep -q "removing .*g1.incoming: no VM of that name" "$T/ferryd.log" || fail "the sweep was not logged"
define g1
stop_ferryd
start_ferryd
ferry vm list | grep -qE '^g1 ' || fail "g1 vanished at the restart"

note "vm new clears a marker that appeared while ferryd ran"
echo '{"id":"mv-2","source":"hostA"}' >"$STATE/run/g3.incoming"
define g3
[ -e "$STATE/run/g3.incoming" ] && fail "vm new kept the marker"
stop_ferryd
start_ferryd
ferry vm list | grep -qE '^g3 ' || fail "g3 was taken for a failed arrival and deleted"
grep -q "g3: its incoming migration ended" "$T/ferryd.log" && fail "g3 was judged an arrival"

note "a torn history line costs only itself"
stop_ferryd
printf '{"id":"mv-3","sta' >>"$STATE/migration-history.jsonl"
# A move in setup when ferryd stopped: the next start cancels it and
# records it in the history, right after the torn line.
cat >"$STATE/migrations.json" <<'EOF'
{"moves":[{"id":"mv-4","name":"g1","destination":"127.0.0.1:9","state":"preparing"}]}
EOF
start_ferryd
ferry --json migration status mv-4 >"$T/mv4" || fail "mv-4 lost after a torn line: $(cat "$T/mv4")"
grep -q '"cancelled"' "$T/mv4" || fail "mv-4 not recorded as cancelled: $(cat "$T/mv4")"
ferry migration history --name g1 | grep -q mv-4 || fail "mv-4 missing from the history"

note "a history line with null for its id and name is skipped"
echo '{"id":null,"name":null}' >>"$STATE/migration-history.jsonl"
ferry --json migration status mv-9 >"$T/mv9" 2>&1 && fail "mv-9 found"
grep -q E_NO_MIGRATION "$T/mv9" || fail "mv-9: $(cat "$T/mv9")"
ferry migration history --name g1 >/dev/null || fail "history with a null line"
kill -0 "$FERRYD" 2>/dev/null || fail "ferryd died on a null history entry"

note "a long history is cut to its newest moves and read back whole"
stop_ferryd
python3 - "$STATE/migration-history.jsonl" <<'EOF'
import json, sys
with open(sys.argv[1], "a") as f:
    for i in range(17000):
        f.write(json.dumps({"id": "mv-h%05d" % i, "name": "old", "state": "completed",
                            "pad": "x" * 1000}) + "\n")
EOF
# the move cancelled at the next start is the append that trims
cat >"$STATE/migrations.json" <<'EOF'
{"moves":[{"id":"mv-6","name":"g1","destination":"127.0.0.1:9","state":"preparing"}]}
EOF
start_ferryd
size=$(stat -c %s "$STATE/migration-history.jsonl")
[ "$size" -le $((8 << 20)) ] || fail "the history was not cut: $size bytes"
grep -q '"mv-h00000"' "$STATE/migration-history.jsonl" && fail "the oldest entry was kept"
# ~7800 entries, a reply of ~8 MiB: once beyond what a client could read
ferry --json migration history --limit 10000 >"$T/hist" 2>&1 ||
	fail "a history of thousands of moves: $(tail -c 300 "$T/hist")"
python3 - "$T/hist" <<'EOF' || fail "the long history reply"
import json, sys
moves = json.load(open(sys.argv[1]))["moves"]
ids = [m["id"] for m in moves]
assert len(ids) > 7000, len(ids)
assert ids[-1] == "mv-6" and ids[-2] == "mv-h16999", ids[-3:]
assert ids[:-1] == sorted(ids[:-1]), "not in the order they ended"
print("history: %d moves in one reply" % len(ids))
EOF
ferry --json migration status mv-h16990 | grep -q '"completed"' || fail "a move from the history's end"

note "an unreadable migrations.json stops ferryd, naming it"
stop_ferryd
echo '{"moves":[' >"$STATE/migrations.json"
rc=0; timeout 20 "$FERRY_BIN/ferryd" --state-dir "$STATE" --listen none --vmm "$FERRY_BIN/ferry-vm" \
	2>"$T/bad.log" || rc=$?
[ "$rc" -eq 1 ] || fail "ferryd with a corrupt migrations.json: exit $rc"
grep -q "migrations.json records the moves in flight .*move it aside" "$T/bad.log" ||
	fail "unclear refusal: $(cat "$T/bad.log")"
grep -q '{"moves":\[' "$STATE/migrations.json" || fail "the corrupt file was overwritten"
cat "$T/bad.log"

note "a stored move in an unknown state is skipped, not queued"
cat >"$STATE/migrations.json" <<'EOF'
{"moves":[{"id":"mv-5","name":"g1","destination":"127.0.0.1:9","state":"teleporting"}]}
EOF
start_ferryd
ferry --json migration list | grep -q mv-5 && fail "mv-5 was queued"
grep -q "skipping a stored move.*mv-5" "$T/ferryd.log" || fail "the skipped move was not logged"

note "a worker ferryd does not track blocks a second start of its VM"
define g2
ferry vm start g2 >/dev/null || fail "vm start g2"
wait_for "$STATE/logs/g2.serial" "FERRY-GUEST ready" 60 || fail "g2 did not boot"
OLD=$(cat "$STATE/run/g2.pid")
kill -9 "$FERRYD"; wait "$FERRYD" 2>/dev/null
: >"$STATE/vms/g2.json"   # unreadable at the next start: g2 is skipped
start_ferryd
ferry vm list | grep -qE '^g2 ' && fail "a definition that cannot be read was listed"
define g2
ferry vm start g2 >"$T/start2" 2>&1 && fail "a second worker started for g2"
grep -q "already runs VM g2.*kill $OLD" "$T/start2" || fail "unclear refusal: $(cat "$T/start2")"
cat "$T/start2"
[ "$(pgrep -c -f "ferry-vm --name g2 ")" = 1 ] || fail "not exactly one worker for g2"

note "save to a path too long for the worker is refused; no other file is touched"
long=$T
while [ ${#long} -lt 900 ]; do long=$long/$(printf 'd%.0s' $(seq 100)); done
mkdir -p "$long"
victim=$long/$(printf 'v%.0s' $(seq $((1031 - ${#long} - 1))))
[ ${#victim} -eq 1031 ] || fail "test setup: victim path of ${#victim} bytes"
echo keep >"$victim"
out=$(printf '{"cmd":"save","path":"%s-snap"}\n' "$victim" | socat -t 20 - "UNIX-CONNECT:$STATE/run/g2.sock")
echo "$out" | grep -q '"ok":false' || fail "save to a 1036-byte path: $out"
echo "$out" | grep -q "path too long" || fail "unclear refusal: $out"
[ "$(cat "$victim")" = keep ] || fail "the save destroyed $victim"
kill -9 "$OLD"
echo ok
