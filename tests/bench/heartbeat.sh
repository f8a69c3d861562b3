#!/usr/bin/env bash
# The benchmark's heartbeat check on recorded consoles (no VM, no timing).
# A guest that moves while writing a heartbeat leaves the first part of the
# line in the source's console and the rest in the destination's: joined,
# it must count as one heartbeat (n continues); a byte lost or repeated at
# the seam must be reported BROKEN, naming both pieces; a skipped number is
# BROKEN; a source line the reader took in late still counts. Pipes (QEMU's
# serial on stdio) must show an unfinished line while the process runs.
# The same cases through tests/lib/console_seams.py, which the migration
# tests use on their serial logs.
. "$(dirname "$0")/../lib/common.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v python3 >/dev/null || skip "python3 missing: the benchmark's heartbeat check cannot be run"
cd "$root/bench" && python3 - "$T" <<'PY' || fail "heartbeat check misjudged a recorded console"
import os, subprocess, sys, time
from helpers import procs
import migrate

tmp = sys.argv[1]
HB = "FERRY-GUEST hb n=%d mib=0 gen=0 tsc=%d000\n"
bad = []

def view(name, src, dst):
    paths = []
    for side, text in (("src", src), ("dst", dst)):
        p = os.path.join(tmp, "%s.%s" % (name, side))
        with open(p, "wb") as f:
            f.write(text.encode())
        paths.append(p)
    cons = [procs.Console(p, p + ".log") for p in paths]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(c.lines for c in cons):
        time.sleep(0.01)
    time.sleep(0.05)  # let the readers reach the end of the files
    got = migrate.guest_view(cons[0], cons[1], 0.0)["hb_check"]
    for c in cons:
        c.close()
    print("%-10s %s" % (name, got))
    return got

def expect(name, got, *parts):
    if not all(p in got for p in parts):
        bad.append("%s: %r lacks %r" % (name, got, parts))

head = "FERRY-GUEST info tsc_hz=1000\n" + HB % (1, 1) + HB % (2, 2)
line3 = HB % (3, 3)
tail = HB % (4, 4) + HB % (5, 5)

expect("whole", view("whole", head + line3, tail), "ok (n=3 -> 4..5)")
for cut in (1, 11, 17, len(line3) - 3, len(line3) - 1):
    name = "split@%d" % cut
    expect(name, view(name, head + line3[:cut], line3[cut:] + tail),
           "ok (n=2 -> 3..5", "n=3 split across the move")
expect("lost byte", view("lost", head + line3[:20], line3[21:] + tail),
       "BROKEN (source last n=2", "source ends mid-line")
expect("repeated", view("repeat", head + line3[:20], line3[19:] + tail), "BROKEN")
expect("skipped", view("skip", head, tail), "BROKEN (source last n=2, destination n=[4, 5]")

# a pipe: the unfinished line is visible before the writer ends it
p = subprocess.Popen(["sh", "-c", "printf 'x\\nFERRY-GUEST hb n=7'; sleep 1; printf ' mib=0 gen=0 tsc=7000\\n'"],
                     stdout=subprocess.PIPE)
c = procs.Console(p.stdout, os.path.join(tmp, "pipe.log"))
seen = c.wait_for(lambda _: c.partial() == "FERRY-GUEST hb n=7", 0.8)
p.wait()
c.wait_for(lambda _: c.heartbeats(), 2)
print("pipe       partial seen: %s, then %s" % (bool(seen), c.heartbeats()))
if not seen or [h[1:] for h in c.heartbeats()] != [(7, 0, 0, 7000)] or c.partial():
    bad.append("pipe: partial line not seen while the writer ran, or not completed after")
c.close()

for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
seams=$root/tests/lib/console_seams.py
hb() { printf 'FERRY-GUEST hb n=%d mib=0 gen=0 tsc=%d\n' "$1" "$1"; }
{ printf 'FERRY-GUEST info x\n'; hb 1; hb 2; hb 3 | head -c 20; } >"$T/a"
{ hb 3 | tail -c +21; hb 4; } >"$T/b"          # split inside n=3: whole when joined
{ hb 3 | tail -c +22; hb 4; } >"$T/b-lost"     # one byte lost at the seam
{ hb 3 | tail -c +20; hb 4; } >"$T/b-repeat"   # one byte written twice
{ hb 4; } >"$T/b-skip"
hb 2 >"$T/c"; hb 3 >"$T/c2"                    # three logs, two seams between lines
python3 "$seams" "$T/a" "$T/b" || fail "console_seams: a split line was not joined"
for bad in lost repeat skip; do
	python3 "$seams" "$T/a" "$T/b-$bad" && fail "console_seams: missed a $bad byte or line"
done
{ hb 1; } >"$T/c1"
python3 "$seams" "$T/c1" "$T/c" "$T/c2" || fail "console_seams: three logs not read end to end"
python3 "$seams" "$T/c1" "$T/c2" && fail "console_seams: missed a skipped heartbeat between logs"
echo "ok: split, lost, repeated and skipped heartbeats judged right"
