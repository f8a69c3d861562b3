#!/usr/bin/env bash
# Evacuation benchmark (issue 4): four 1 GiB VMs, each dirtying 512 MiB at
# 128 MiB/s, evacuated from one ferry host to another with the host setting
# "maximum concurrent live migrations" at 1, 2 and 4. Reports the total time
# of the evacuation and each VM's downtime; records a CSV and a Markdown
# table under bench/results/ with the machine, the command and the date.
# Usage: bench/evacuate.sh [LIMITS] [VMS]    (defaults: "1 2 4", 4)
set -euo pipefail
cd "$(dirname "$0")/.."
B=$PWD/build/bin
G=$PWD/build/guest/testguest.elf
limits=${1:-1 2 4}
nvm=${2:-4}
out=bench/results
mkdir -p "$out"
stamp=$(date -u +%Y%m%d-%H%M)
csv=$out/evacuate-$stamp.csv
md=$out/evacuate-latest.md
[ -x "$B/ferryd" ] && [ -f "$G" ] || { echo "build first: make" >&2; exit 1; }
D=$(mktemp -d /tmp/ferry-evac.XXXXXX)
cleanup() {
	for f in "$D"/*/*/run/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
	jobs -p | xargs -r kill 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$D"
}
trap cleanup EXIT
echo "limit,vm,total_ms,downtime_ms,elapsed_ms,wire_mib,evacuation_ms" >"$csv"
rows=()
for lim in $limits; do
	PA=$((21000 + RANDOM % 500)); PB=$((PA + 600))
	mkdir -p "$D/$lim/a" "$D/$lim/b"
	"$B/ferry" host new-key "$D/$lim/cluster.key" >/dev/null
	export FERRY_KEY_FILE=$D/$lim/cluster.key
	"$B/ferryd" --state-dir "$D/$lim/a" --listen 127.0.0.1:$PA --key-file "$FERRY_KEY_FILE" 2>"$D/$lim/a.log" & FA=$!
	"$B/ferryd" --state-dir "$D/$lim/b" --listen 127.0.0.1:$PB --key-file "$FERRY_KEY_FILE" 2>"$D/$lim/b.log" & FB=$!
	for _ in $(seq 50); do "$B/ferry" -c 127.0.0.1:$PB host info >/dev/null 2>&1 && break; sleep 0.1; done
	A=(-c 127.0.0.1:$PA); Bh=(-c 127.0.0.1:$PB)
	"$B/ferry" "${A[@]}" host set --max-migrations "$lim" >/dev/null
	"$B/ferry" "${Bh[@]}" host set --max-migrations "$lim" >/dev/null
	for i in $(seq "$nvm"); do
		"$B/ferry" "${A[@]}" vm new --name ev$i --memory 1G --vcpus 1 --kernel "$G" \
			--cmdline "ws=512M rate=128" >/dev/null
		"$B/ferry" "${A[@]}" vm start ev$i >/dev/null
	done
	for i in $(seq "$nvm"); do
		for _ in $(seq 300); do grep -q 'hb n=5 ' "$D/$lim/a/logs/ev$i.serial" 2>/dev/null && break; sleep 0.1; done
	done
	t0=$(date +%s%N)
	"$B/ferry" host evacuate -c 127.0.0.1:$PA -d 127.0.0.1:$PB --json >"$D/$lim/events.jsonl"
	t1=$(date +%s%N)
	evac=$(((t1 - t0) / 1000000))
	python3 - "$D/$lim/events.jsonl" "$lim" "$evac" >>"$csv" <<'PY'
import json, sys
lim, evac = sys.argv[2], sys.argv[3]
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get('event') != 'completed':
        continue
    p = e.get('progress', {})
    total = e.get('ended_ms', 0) - e.get('started_ms', 0)
    print(f"{lim},{e['name']},{total},{p.get('downtime_ms')},{p.get('elapsed_ms')},{p.get('bytes_on_wire', 0) / 1048576:.0f},{evac}")
PY
	n=$(grep -c "^$lim," "$csv" || true)
	[ "$n" -eq "$nvm" ] || echo "limit $lim: only $n of $nvm moves completed (see $D/$lim)" >&2
	dts=$(grep "^$lim," "$csv" | cut -d, -f4 | sort -n | tr '\n' ' ')
	rows+=("| $lim | $evac | $n/$nvm | $dts|")
	echo "limit $lim: evacuation of $nvm VMs took $evac ms; downtimes (ms): $dts"
	for i in $(seq "$nvm"); do "$B/ferry" "${Bh[@]}" vm stop ev$i >/dev/null 2>&1 || true; done
	kill "$FA" "$FB" 2>/dev/null || true
	wait "$FA" "$FB" 2>/dev/null || true
done
{
	echo "# Evacuation: $nvm × 1 GiB VMs (512 MiB dirtied at 128 MiB/s each), ferry host evacuate"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); command: \`bench/evacuate.sh \"$limits\" $nvm\`"
	echo "- machine: $(uname -srm), $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kvm: $(ls -d /sys/module/kvm_* 2>/dev/null | xargs -n1 basename | tr "\n" " ")"
	echo
	echo "| max concurrent | evacuation ms | completed | per-VM downtime ms |"
	echo "|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
} >"$md"
cat "$md"
echo "recorded: $csv, $md"
