#!/usr/bin/env bash
# What a user waits for: `ferry move-vm` from the command to its return,
# through both ferryds (prepare, the destination worker's start, the move,
# the source worker's exit, the destination's confirmation), for a 256 MiB
# test guest idle and one dirtying 64 MiB at 64 MiB/s, moved back and forth
# between two hosts on this machine. Reports per workload the median and
# min-max of the command's wall time, ferryd's whole-move time and the
# workers' own move time; records a CSV and a Markdown table under
# bench/results/ with the machine, the command, the code and the date.
# QEMU has no host service here (no libvirt) to compare at this level: its
# user-driven equivalent (destination started, then migrate) is
# bench/migrate.py's "dst start + total" column.
# Usage: bench/move_latency.sh [MOVES] [BIN_DIR]   (defaults: 10, build/bin)
set -euo pipefail
cd "$(dirname "$0")/.."
moves=${1:-10}
B=$(cd "${2:-build/bin}" && pwd)
G=$PWD/build/guest/testguest.elf
out=bench/results
mkdir -p "$out"
stamp=$(date -u +%Y%m%d-%H%M%S)
csv=$out/move-latency-$stamp.csv
md=$out/move-latency-latest.md
[ -x "$B/ferryd" ] && [ -f "$G" ] || { echo "build first: make" >&2; exit 1; }
D=$(mktemp -d /tmp/ferry-lat.XXXXXX)
cleanup() {
	for f in "$D"/*/run/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
	jobs -p | xargs -r kill 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$D"
}
trap cleanup EXIT
PA=$((21000 + RANDOM % 500)); PB=$((PA + 600))
"$B/ferry" host new-key "$D/cluster.key" >/dev/null
export FERRY_KEY_FILE=$D/cluster.key
for h in a b; do
	p=$PA; [ $h = b ] && p=$PB
	mkdir -p "$D/$h"
	"$B/ferryd" --state-dir "$D/$h" --listen 127.0.0.1:$p --key-file "$FERRY_KEY_FILE" \
		--vmm "$B/ferry-vm" 2>"$D/$h.log" &
done
for _ in $(seq 50); do "$B/ferry" -c 127.0.0.1:$PB host info >/dev/null 2>&1 && break; sleep 0.1; done
"$B/ferry" -c 127.0.0.1:$PA host set --migration-ports 24000-24099 >/dev/null
"$B/ferry" -c 127.0.0.1:$PB host set --migration-ports 24100-24199 >/dev/null
now_ms() { echo $(($(date +%s%N) / 1000000)); }
{
	echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
	echo "# command: bench/move_latency.sh $*"
	echo "# code: binaries in $B, built $(date -u -r "$B/ferryd" '+%Y-%m-%d %H:%M') UTC; tree at $(git -C "$B" rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo "# uname: $(uname -srm); cores: $(nproc); kvm: $(ls /sys/module | grep -E '^kvm' | paste -sd,)"
	echo "workload,move,cli_ms,ferryd_ms,worker_ms,downtime_ms"
} >"$csv"
for wl in "idle:ws=8M rate=0" "busy:ws=64M rate=64"; do
	name=${wl%%:*}; cmd=${wl#*:}
	vm=lat-$name
	"$B/ferry" -c 127.0.0.1:$PA vm new --name $vm --memory 256M --kernel "$G" --cmdline "$cmd" >/dev/null
	"$B/ferry" -c 127.0.0.1:$PA vm start $vm >/dev/null
	for _ in $(seq 100); do grep -q "FERRY-GUEST hb n=2 " "$D/a/logs/$vm.serial" 2>/dev/null && break; sleep 0.1; done
	src=$PA; dst=$PB
	for i in $(seq "$moves"); do
		t0=$(now_ms)
		"$B/ferry" -c 127.0.0.1:$src move-vm -n $vm -d 127.0.0.1:$dst >/dev/null
		t1=$(now_ms)
		"$B/ferry" -c 127.0.0.1:$src --json migration status $vm >"$D/st.json"
		python3 - "$D/st.json" "$name" "$i" "$((t1 - t0))" >>"$csv" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["move"]
s = m.get("started_ms") or 0
e = m.get("ended_ms") or 0
p = m.get("progress") or {}
print("%s,%s,%s,%d,%s,%s" % (sys.argv[2], sys.argv[3], sys.argv[4], e - s,
      p.get("elapsed_ms", ""), p.get("downtime_ms", "")))
PY
		tmp=$src; src=$dst; dst=$tmp
	done
	"$B/ferry" -c 127.0.0.1:$src vm stop $vm >/dev/null
done
python3 - "$csv" "$md" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith("#"))]
head = [l.rstrip("\n")[2:] for l in open(sys.argv[1]) if l.startswith("#")]
def fmt(v):
    v = [float(x) for x in v if x != ""]
    if not v:
        return "–"
    return "%.0f (%.0f–%.0f)" % (statistics.median(v), min(v), max(v))
lines = ["# ferry move latency (bench/move_latency.sh)", ""] + ["- " + h for h in head] + [
    "- raw runs: `%s`" % sys.argv[1].split("/")[-1], "",
    "Median (min–max) over the moves of each workload, ms.", "",
    "| workload | moves | `ferry move-vm` wall | ferryd whole move | workers' move | downtime |",
    "|---|---|---|---|---|---|"]
for wl in dict.fromkeys(r["workload"] for r in rows):
    rs = [r for r in rows if r["workload"] == wl]
    lines.append("| %s | %d | %s | %s | %s | %s |" % (wl, len(rs), fmt(r["cli_ms"] for r in rs),
                 fmt(r["ferryd_ms"] for r in rs), fmt(r["worker_ms"] for r in rs),
                 fmt(r["downtime_ms"] for r in rs)))
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
