#!/bin/bash
# san: yes
# ferryd end to end on one host: define and start the test guest through the
# CLI, watch it boot, list/status it locally and over TCP, kill -9 ferryd and
# check a new ferryd re-adopts the still-running worker (same pid), attach
# to the console (output, and input beyond the UART's FIFO), stop it (its exit code still seen, though it is no longer
# ferryd's child) and delete it; then check a worker crash is recorded
# and leaves ferryd serving.
# Env: FERRY_BIN (dir with ferryd, ferry, ferry-vm), FERRY_GUEST (testguest.elf).
# Exit: 0 pass, 77 skip (no /dev/kvm or not root), else fail.
. "$(dirname "$0")/../lib/common.sh"
need_root
need_kvm
need_ferryd

STATE=$T/state
SOCK=$STATE/ferryd.sock
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 12000)))
export FERRY_SOCKET=$SOCK
ferry() { "$FERRY_BIN/ferry" "$@"; }

# Workers are ferryd's children in their own sessions; they outlive ferryd
# by design, so the test must end them itself.
kill_workers() {
	for f in "$STATE"/run/*.pid; do
		[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	cleanup
}
trap kill_workers EXIT

start_ferryd() {
	bg "$FERRY_BIN/ferryd" --state-dir "$STATE" --listen "127.0.0.1:$PORT" \
		--vmm "$FERRY_BIN/ferry-vm" 2>>"$T/ferryd.log"
	FERRYD=$!
	for _ in $(seq 50); do
		[ -S "$SOCK" ] && ferry host info >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	cat "$T/ferryd.log"
	fail "ferryd did not come up"
}

note "start ferryd (state $STATE, tcp port $PORT)"
# Its workers inherit this: each verify takes 2.5 s, as a big VM's would.
FERRY_FAILPOINTS="worker.verify=delay(2500)" start_ferryd
ferry host info | tee "$T/info" || fail "host info"
# the fingerprint is one that must match, not one that does
grep -qE "^Cluster key: +$STATE/cluster.key \(fingerprint [0-9a-f]{16}: must match on every host it moves VMs with\)" \
	"$T/info" || fail "host info: the cluster key line"
grep -qE "^ferryd: +listening on 127.0.0.1:$PORT, state in $STATE\$" "$T/info" ||
	fail "host info does not say which ferryd it is"

note "define and start the test guest"
ferry vm new --name g1 --memory 64M --vcpus 1 --kernel "$FERRY_GUEST" \
	--cmdline "ws=16M rate=0" || fail "vm new"
ferry vm start g1 || { cat "$STATE/logs/g1.log"; fail "vm start"; }
wait_for "$STATE/logs/g1.serial" "FERRY-GUEST ready" 30 || fail "guest did not boot"

note "a slow vm verify does not hold up ferryd: vm list answers meanwhile"
( ferry vm verify g1 >"$T/verify" 2>&1; echo $? >"$T/verify.rc"; date +%s%N >"$T/verify.end" ) &
VPID=$!
sleep 0.5 # the verify is with the worker now
ferry vm list >/dev/null || fail "vm list during a verify"
date +%s%N >"$T/list.end"
# one check at a time: a second is refused while the first runs
out=$(ferry vm verify g1 2>&1) && fail "a second verify ran beside the first"
echo "$out" | grep -q "is being checked already" || fail "second verify: $out"
wait $VPID
[ "$(cat "$T/verify.rc")" = 0 ] && grep -q "every page verified" "$T/verify" ||
	fail "vm verify: $(cat "$T/verify")"
[ "$(cat "$T/list.end")" -lt "$(cat "$T/verify.end")" ] ||
	fail "vm list was answered only after the verify ended: the verify held up ferryd's loop"
echo "verify: $(cat "$T/verify"); vm list answered $(( ($(cat "$T/verify.end") - $(cat "$T/list.end")) / 1000000 )) ms before it"

note "list and status"
ferry vm list | tee "$T/list" || fail "vm list"
grep -qE '^g1 +running' "$T/list" || fail "g1 not listed as running"
ferry vm status g1 | tee "$T/status" || fail "vm status"
# g1 has no NIC: no "NIC tap" line (it once showed the worker's state there)
grep -q '^NIC tap:' "$T/status" && fail "vm status shows a NIC tap for a VM without a NIC"
PID=$(ferry --json vm status g1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
[ -n "$PID" ] && kill -0 "$PID" || fail "worker pid $PID not alive"
note "TCP clients must prove the cluster key ferryd made at first start"
[ "$(stat -c %a "$STATE/cluster.key")" = 600 ] || fail "cluster key is not mode 0600"
ferry -c "127.0.0.1:$PORT" --key-file "$STATE/cluster.key" vm list | grep -qE '^g1 +running' ||
	fail "vm list over TCP"
out=$(ferry -c "127.0.0.1:$PORT" --key-file /dev/null/none vm list 2>&1) && fail "a missing key file was accepted"
echo "$out" | grep -q "cluster key /dev/null/none" || fail "missing key file not named: $out"
out=$(ferry -c "127.0.0.1:$PORT" --key-file "$T/no.key" vm list 2>&1) && fail "a missing key file was accepted"
echo "$out" | grep -q "^hint: give ferry a copy of the key file the ferryd at 127.0.0.1:$PORT uses" ||
	fail "a missing key file: no hint of which file to give: $out"
out=$(FERRY_KEY_FILE= ferry -c "127.0.0.1:$PORT" vm list 2>&1) && fail "TCP without a key was served"
# (the CLI's default key, if this machine has a ferry host of its own, is not this one's)
echo "$out" | grep -qE "requires the cluster key|wrong cluster key" || fail "no-key error unclear: $out"
ferry host new-key "$T/other.key" >/dev/null || fail "host new-key"
out=$(ferry -c "127.0.0.1:$PORT" --key-file "$T/other.key" vm list 2>&1); rc=$?
[ $rc -eq 1 ] || fail "a wrong key: exit $rc, expected 1 (refused; 3 is unreachable)"
echo "$out" | grep -q "wrong cluster key" || fail "wrong-key error unclear: $out"
# A raw client that skips the handshake gets E_AUTH, then the door shuts.
python3 - "$PORT" <<'PY' || fail "unauthenticated request was not refused"
import json, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
f = s.makefile("rw")
g = json.loads(f.readline())
assert g["auth"] == "hmac-sha256" and len(g["nonce"]) == 32, g
f.write('{"cmd":"vm.delete","name":"g1"}\n'); f.flush()
r = json.loads(f.readline())
assert r["ok"] is False and r["code"] == "E_AUTH", r
assert f.readline() == "", "connection stayed open"
PY
grep -q "authentication failed" "$T/ferryd.log" || fail "failed logins are not logged"
# Once authenticated, the connection is sealed: a client that goes on in
# plaintext (no one could forge the frames without the key) is dropped.
python3 - "$PORT" "$STATE/cluster.key" <<'PY' || fail "plaintext after authentication was not refused"
import hashlib, hmac, json, os, socket, sys
key = bytes.fromhex(open(sys.argv[2]).read().strip())
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
f = s.makefile("rw")
g = json.loads(f.readline())
assert g["seal"] == "aes-256-gcm" and g["proto"] >= 1, g
sn, cn = bytes.fromhex(g["nonce"]), os.urandom(16)
proof = hmac.new(key, b"ferry-api-client\0" + sn + cn, hashlib.sha256).hexdigest()
f.write(json.dumps({"cmd": "auth", "nonce": cn.hex(), "proof": proof}) + "\n"); f.flush()
r = json.loads(f.readline())
want = hmac.new(key, b"ferry-api-server\0" + sn + cn, hashlib.sha256).hexdigest()
assert r["ok"] is True and r["proof"] == want, r
f.write('{"cmd":"vm.delete","name":"g1","force":true}\n'); f.flush()
assert f.readline() == "", "a plaintext request after authentication was answered"
PY
grep -q "impossible length; dropping it" "$T/ferryd.log" || fail "the dropped client is not logged"
# What someone on the path sees of a session: no request, no reply.
PROXY=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bg python3 "$(dirname "$0")/../tools/mangle_proxy.py" "$PROXY" "$PORT" tap "$T/tap"
for _ in $(seq 50); do ferry -c "127.0.0.1:$PROXY" --key-file "$STATE/cluster.key" vm status g1 >"$T/tapped" 2>&1 && break; sleep 0.1; done
grep -qE '^State: +running' "$T/tapped" || { cat "$T/tapped"; fail "vm status through the tap"; }
[ -s "$T/tap" ] || fail "the tap saw nothing"
# Strings of 6 bytes or more: a 2-byte one like "g1" turns up by chance in a
# few KiB of ciphertext (it did, once, in CI)
grep -qaE '"g1"|"running"|vm\.status|testguest|"kernel"' "$T/tap" && fail "the session is readable on the wire"
ferry vm list | grep -qE '^g1 +running' || fail "g1 gone after the refused request"

note "strangers on the TCP port: one flood of lines, then 40 idle connections"
# A burst of lines after a failed authentication is one log line, not one each.
before=$(grep -c "authentication failed" "$T/ferryd.log")
python3 - "$PORT" <<'PY' || fail "a burst of bad lines was not cut off"
import json, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
f = s.makefile("rwb")
json.loads(f.readline())
f.write(b"x\n" * 30000); f.flush()
# ferryd closes with the rest unread, so the kernel may reset the
# connection before the reply is read
try:
    assert json.loads(f.readline())["code"] == "E_AUTH"
    assert f.readline() == b"", "connection stayed open"
except ConnectionResetError:
    pass
PY
after=$(grep -c "authentication failed" "$T/ferryd.log")
[ "$after" -eq $((before + 1)) ] || fail "30000 bad lines logged $((after - before)) times"
# At most 32 wait to authenticate (the oldest make room), for at most 10 s;
# meanwhile the local socket and clients with the key are served.
python3 - "$PORT" "$FERRY_BIN/ferry" "$STATE/cluster.key" <<'PY' || fail "idle strangers locked clients out"
import select, socket, subprocess, sys, time
port, ferry, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
conns, t0 = [], time.monotonic()
for _ in range(40):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.recv(4096)  # the greeting
    conns.append(s)
time.sleep(0.5)
r, _, _ = select.select(conns, [], [], 0)
shut = [s for s in r if s.recv(4096) == b""]
assert shut == conns[:8], f"{len(shut)} closed, want the 8 oldest strangers pushed out"
for args in ([ferry, "vm", "list"], [ferry, "-c", f"127.0.0.1:{port}", "--key-file", key, "vm", "list"]):
    out = subprocess.run(args, capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "g1" in out.stdout, (args, out.stdout, out.stderr)
left = conns[8:]
while left and time.monotonic() - t0 < 16:
    r, _, _ = select.select(left, [], [], 1)
    for s in r:
        assert s.recv(4096) == b"", "a stranger was answered"
        left.remove(s)
took = time.monotonic() - t0
assert not left and 9 <= took, f"{len(left)} strangers still open after {took:.1f} s"
print(f"    32 strangers closed {took:.1f} s after they connected")
PY
grep -q "did not authenticate within 10 s: closed" "$T/ferryd.log" || fail "the timeout is not logged"

note "kill -9 ferryd (pid $FERRYD); the VM must keep running"
kill -9 "$FERRYD"
wait "$FERRYD" 2>/dev/null
sleep 0.3
kill -0 "$PID" || fail "worker $PID died with ferryd"
if ferry vm list >/dev/null 2>&1; then fail "ferry still answers with ferryd dead"; fi

note "restart ferryd; it must re-adopt the worker"
start_ferryd
ferry vm status g1 | tee "$T/status2"
grep -qE '^State: +running' "$T/status2" || fail "g1 not running after re-adoption"
grep -qE "^Worker pid: +$PID \(re-adopted\)" "$T/status2" || fail "g1 not re-adopted with pid $PID"
grep -q "re-adopted running worker pid $PID" "$T/ferryd.log" || fail "no re-adoption in ferryd log"

note "console: guest output through ferryd, and typed input, more than the UART's FIFO holds"
# The guest echoes what it reads ("FERRY-GUEST rx n=N BYTES") at each line
# it prints: 64 bytes a second. All 150 must arrive, in order.
INPUT=$(python3 -c 'import string; a = string.ascii_letters + string.digits; print((a * 3)[:150])')
(printf '%s' "$INPUT"; sleep 5) | timeout 10 "$FERRY_BIN/ferry" vm console g1 >"$T/console" 2>&1
grep -q "FERRY-GUEST" "$T/console" || { cat "$T/console"; fail "no guest output on the console"; }
GOT=$(grep -ao 'FERRY-GUEST rx n=[0-9]* [^[:space:]]*' "$T/console" | awk '{ printf "%s", $4 }')
[ "$GOT" = "$INPUT" ] || { grep -a "rx n=" "$T/console"; fail "console input: the guest read '$GOT'"; }
echo "console input: the guest read all ${#GOT} bytes in order"
# and over TCP, where the console's bytes travel sealed
(sleep 3) | timeout 10 "$FERRY_BIN/ferry" -c "127.0.0.1:$PORT" --key-file "$STATE/cluster.key" \
	vm console g1 >"$T/console2" 2>&1
grep -q "FERRY-GUEST hb" "$T/console2" || { cat "$T/console2"; fail "no guest output on the console over TCP"; }

note "a worker that does not answer holds ferryd up once, not at every call"
# g1's worker stopped (SIGSTOP): the first call waits out the 2 s timeout,
# later ones are told at once while ferryd asks again in the background.
kill -STOP "$PID"
python3 - "$SOCK" <<'PY' || { kill -CONT "$PID"; fail "calls to a stopped worker"; }
import json, socket, sys, time
a = socket.socket(socket.AF_UNIX); a.connect(sys.argv[1]); f = a.makefile()
t0 = time.time()
a.sendall(b'{"cmd":"vm.status","name":"g1"}\n' * 3)
errs = [json.loads(f.readline()).get("worker_error", "") for _ in range(3)]
print("three vm status of a stopped worker in %.1f s (each 2 s before): %s" % (time.time() - t0, errs[2]))
assert all(errs), errs
assert all("has not answered on its control socket" in e for e in errs[1:]), errs
PY
kill -CONT "$PID"
# asked again in the background, once a second: it answers again
for _ in $(seq 50); do
	ferry --json vm status g1 | grep -q '"worker_state"' && break
	sleep 0.2
done
ferry --json vm status g1 | grep -q '"worker_state"' ||
	fail "g1's worker runs again, but ferryd still takes it for silent"
grep -q "g1: its worker answers again" "$T/ferryd.log" || fail "the worker's return was not logged"

note "a burst of requests from one client does not hold up the others"
# Each vm.status made slow (a failpoint in ferryd, restarted with it): one
# client sends three at once; another's vm list must be answered before
# the third of them, not after the whole burst.
kill "$FERRYD"; wait "$FERRYD" 2>/dev/null
FERRY_FAILPOINTS="ferryd.vm_status=delay(2000)" start_ferryd
python3 - "$SOCK" <<'PY' || fail "a burst held up ferryd"
import socket, sys, time, threading
a = socket.socket(socket.AF_UNIX); a.connect(sys.argv[1])
a.sendall(b'{"cmd":"vm.status","name":"g1"}\n' * 3)
time.sleep(0.3)
got = {}
def lister():
    b = socket.socket(socket.AF_UNIX); b.connect(sys.argv[1])
    b.sendall(b'{"cmd":"vm.list"}\n'); b.makefile().readline(); got["list"] = time.time()
t = threading.Thread(target=lister); t.start()
f = a.makefile()
for i in range(3):
    f.readline()
got["burst"] = time.time()
t.join()
print("vm list answered %.1f s before the burst's last reply" % (got["burst"] - got["list"]))
sys.exit(0 if got["list"] < got["burst"] else 1)
PY
kill "$FERRYD"; wait "$FERRYD" 2>/dev/null
start_ferryd
note "SIGHUP is logged, not fatal"
kill -HUP "$FERRYD"
sleep 0.3
ferry vm list >/dev/null || fail "ferryd did not survive SIGHUP"
grep -q "signal 1 .* ignored" "$T/ferryd.log" || fail "SIGHUP not logged"

note "stop and delete"
ferry vm stop g1 | tee "$T/stop" || fail "vm stop"
# not ferryd's child any more: its exit code comes from the worker's exit file
grep -q "exited with code 0 (clean stop)" "$T/stop" || fail "re-adopted worker's exit code not seen: $(cat "$T/stop")"
for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PID" 2>/dev/null && fail "worker $PID still alive after stop"
ferry vm list | grep -qE '^g1 +stopped' || fail "g1 not stopped"
ferry vm delete g1 || fail "vm delete"
ferry vm list | grep -q '^g1 ' && fail "g1 still listed after delete"
[ -e "$STATE/vms/g1.json" ] && fail "definition file left behind"
[ -e "$STATE/logs/g1.serial" ] || [ -e "$STATE/logs/g1.log" ] && fail "vm delete left g1's logs behind"

note "a worker crash is recorded and ferryd keeps serving"
ferry vm new --name g2 --memory 64M --kernel "$FERRY_GUEST" --cmdline "ws=16M rate=0" || fail "vm new g2"
ferry vm start g2 || fail "vm start g2"
wait_for "$STATE/logs/g2.serial" "FERRY-GUEST ready" 30 || fail "g2 did not boot"
PID2=$(cat "$STATE/run/g2.pid")
kill -9 "$PID2"
for _ in $(seq 50); do
	ferry vm list | grep -qE '^g2 +crashed' && break
	sleep 0.1
done
ferry vm status g2 | tee "$T/status3"
grep -qE '^State: +crashed' "$T/status3" || fail "crash not recorded"
grep -q "killed by signal 9" "$T/status3" || fail "exit status not recorded"
ferry host info >/dev/null || fail "ferryd not serving after a worker crash"
ferry vm delete g2 || fail "delete crashed VM"

echo "PASS: ferryd_basic"
