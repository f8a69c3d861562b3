#!/usr/bin/env bash
# The benchmark's report code on a recorded run (no VM, no timing): a small
# per-run CSV in the format bench/migrate.py writes goes through
# `--summarize`; the medians, the end-to-end figure (destination start +
# total, converged runs only) and both best-of-each-system lines must come
# out as computed by hand. Catches a report change that misstates results.
. "$(dirname "$0")/../lib/common.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v python3 >/dev/null || skip "python3 missing: the benchmark report cannot be checked"
csv=$T/runs.csv
cat >"$csv" <<'CSV'
# date: 2026-11-27 00:00:00
# command: synthetic
# loopback_gib_s: 5.0
workload,variant,run,converged,total_ms,wall_ms,setup_ms,downtime_ms,guest_down_ms,host_down_ms,bytes_reported,bytes_wire,passes,pass1_mibps,move_mibps,src_cpu_s,dst_cpu_s,dst_start_ms,integrity,notes
w,qemu-mfd4,1,True,1300,,,50,,,,,3,,,,,50,ok,
w,qemu-mfd4,2,True,1400,,,60,,,,,3,,,,,60,ok,
w,qemu-mfd4,3,True,1500,,,70,,,,,3,,,,,40,ok,
w,qemu-mfd4-prealloc,1,True,250,,,55,,,,,3,,,,,2500,ok,
w,qemu-mfd4-prealloc,2,True,270,,,57,,,,,3,,,,,2600,ok,
w,qemu-mfd4-prealloc,3,True,290,,,59,,,,,3,,,,,2400,ok,
w,ferry-multichannel,1,True,380,,,6,,,,,2,,,,,30,ok verify: 1 pages,
w,ferry-multichannel,2,True,390,,,5,,,,,2,,,,,20,ok verify: 1 pages,
w,ferry-multichannel,3,False,,,,,,,,,9,,,,,25,not converged,
w,ferry-multichannel-prealloc,1,True,240,,,4,,,,,2,,,,,170,ok verify: 1 pages,
w,ferry-multichannel-prealloc,2,True,250,,,4,,,,,2,,,,,150,ok verify: 1 pages,
w,ferry-multichannel-prealloc,3,True,260,,,5,,,,,2,,,,,160,ok verify: 1 pages,
CSV
out=$(python3 "$root/bench/migrate.py" --summarize "$csv") || fail "--summarize failed: $out"
echo "$out"
row() { echo "$out" | grep -E "^w +$1 " || fail "no row for $1"; }
# medians: qemu-mfd4 e2e runs 1350, 1460, 1540 -> 1460 (1350–1540)
row qemu-mfd4 | grep -q '1460 (1350–1540)' || fail "qemu-mfd4 end-to-end median wrong"
# the unconverged ferry run counts in neither total nor end to end: (410, 410) -> 410
row ferry-multichannel | grep -q ' 2/3 ' || fail "converged count wrong"
row ferry-multichannel | grep -q '385 (380–390)' || fail "ferry-multichannel total median wrong"
row ferry-multichannel | grep -q '410 (410–410)' || fail "ferry-multichannel end-to-end wrong"
echo "$out" | grep -q '^best: w: QEMU qemu-mfd4-prealloc 270 ms (down 57 ms) vs ferry ferry-multichannel-prealloc 250 ms (down 4 ms): 0.93×' ||
	fail "best-of line (total) wrong"
# end to end: QEMU's best is multifd 4 without prealloc (1460), ferry's the
# prealloc row (410 vs 410 from only 2 of 3 runs: an unconverged row is never best)
echo "$out" | grep -q '^best end to end: w: QEMU qemu-mfd4 1460 ms (down 60 ms) vs ferry ferry-multichannel-prealloc 410 ms (down 4 ms): 0.28×' ||
	fail "best-of line (end to end) wrong"
echo "ok: report figures as computed by hand"
