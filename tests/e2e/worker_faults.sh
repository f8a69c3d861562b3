#!/usr/bin/env bash
# Failures at every stage leave exactly one running copy: cancel during
# setup, pre-copy and stop-and-copy; the destination worker killed; the
# connection dropped (proxy killed) or blackholed (proxy frozen) during
# pre-copy and during stop-and-copy; the destination dying right after the
# commit point. Before the commit the source keeps running, unharmed, and
# the destination leaves nothing; after it the source never resumes by itself.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
need_kvm
command -v socat >/dev/null || skip "socat is needed for the proxy"

# Source VM used by every case; it must survive them all.
FERRY_FAILPOINTS="src.after_state=delay(2500)" start_src s 256M 2 "ws=128M rate=64 cpus=2"
wait_for "$T/s.log" 'FERRY-GUEST hb n=2 ' 30 || fail "source not heartbeating"

source_ok() { # the VM still runs on the source and verifies
	[ "$(state_of s)" = running ] || fail "$1: source is $(state_of s), not running"
	local hb; hb=$(last_hb "$T/s.log")
	hb_continues "$T/s.log" "$hb" || fail "$1: source heartbeat stopped"
	verify s >/dev/null
}
dst_gone() { # dst_gone PID CASE [CODE]: the destination worker exited CODE (5), leaving nothing
	local pid=$1 rc want=${3:-5}
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
	kill -0 "$pid" 2>/dev/null && fail "$2: destination worker still alive"
	wait "$pid"; rc=$?
	[ $rc -eq "$want" ] || fail "$2: destination exited $rc, expected $want"
}
wait_stage() { # wait_stage STAGE
	for _ in $(seq 200); do [ "$(stage_of s)" = "$1" ] && return 0; sleep 0.05; done
	fail "stage $1 never reached (now $(stage_of s))"
}
cancel() { vmctl "$T/s.sock" '{"cmd":"migrate-cancel"}' | grep -q '"ok":true' || fail "cancel refused"; }
expect_end() { # expect_end STAGE CASE
	local res; res=$(wait_mig s 60) || fail "$2: move did not end"
	[ "$(field "$res" stage)" = "$1" ] || fail "$2: ended $(field "$res" stage), expected $1: $res"
	echo "$2: $1 ($(field "$res" error))"
}

note "cancel during setup (a destination that never answers)"
next_port; socat TCP-LISTEN:$port,reuseaddr SYSTEM:"sleep 30" & _pids+=($!); sleep 0.3
migrate s "$port" || fail "migrate refused"
sleep 0.5; [ "$(stage_of s)" = setup ] || fail "not in setup: $(stage_of s)"
cancel; expect_end cancelled "cancel in setup"; source_ok "cancel in setup"

note "cancel during pre-copy"
next_port; start_dst d1 "$port"
migrate s "$port" ',"bandwidth_mibps":20' || fail "migrate refused"
wait_stage precopy; sleep 1; cancel
# the source told the destination why (6: called off), rather than just closing the stream (5)
expect_end cancelled "cancel in pre-copy"; dst_gone "$PID_d1" "cancel in pre-copy" 6; source_ok "cancel in pre-copy"
grep -q "the source abandoned the migration: cancelled by request" "$T/d1.err" ||
	fail "the destination did not learn of the cancel: $(grep -i 'migration' "$T/d1.err" | tail -n2)"

note "cancel during stop-and-copy"
next_port; start_dst d2 "$port"
migrate s "$port" || fail "migrate refused"
wait_stage stop-and-copy; cancel
# the source thread sleeps in src.after_state: its connections are shut
# 250 ms after the cancel, before it can send ABORT, so the destination
# sees the stream end (5), as with a blocked peer
expect_end cancelled "cancel in stop-and-copy"; dst_gone "$PID_d2" "cancel in stop-and-copy"; source_ok "cancel in stop-and-copy"

note "destination worker killed during pre-copy"
next_port; start_dst d3 "$port"
migrate s "$port" ',"bandwidth_mibps":20' || fail "migrate refused"
wait_stage precopy; sleep 1; kill -9 "$PID_d3"
expect_end failed "destination killed"; source_ok "destination killed"

proxy() { # proxy LISTEN TARGET: a TCP relay the test can kill or freeze
	socat TCP-LISTEN:$1,reuseaddr TCP:127.0.0.1:$2 & PROXY=$!; _pids+=($PROXY); sleep 0.3
}
note "connection dropped during pre-copy"
next_port; start_dst d4 "$port"; p=$port; next_port; proxy "$port" "$p"
migrate s "$port" ',"bandwidth_mibps":20' || fail "migrate refused"
wait_stage precopy; sleep 1; kill -9 $PROXY
expect_end failed "drop in pre-copy"; dst_gone "$PID_d4" "drop in pre-copy"; source_ok "drop in pre-copy"

note "connection dropped during stop-and-copy"
next_port; start_dst d5 "$port"; p=$port; next_port; proxy "$port" "$p"
migrate s "$port" || fail "migrate refused"
wait_stage stop-and-copy; kill -9 $PROXY
expect_end failed "drop in stop-and-copy"; dst_gone "$PID_d5" "drop in stop-and-copy"; source_ok "drop in stop-and-copy"

note "link blackholed during pre-copy (proxy frozen: no RST, only silence)"
next_port; start_dst d6 "$port"; p=$port; next_port; proxy "$port" "$p"
migrate s "$port" ',"bandwidth_mibps":20' || fail "migrate refused"
wait_stage precopy; sleep 1; kill -STOP $PROXY
t0=$SECONDS; expect_end failed "blackhole in pre-copy"
echo "blackhole detected after $((SECONDS - t0)) s"
kill -9 $PROXY; dst_gone "$PID_d6" "blackhole in pre-copy"; source_ok "blackhole in pre-copy"

note "a move after all that still works"
next_port; start_dst d7 "$port"
migrate s "$port" || fail "migrate refused"
expect_end completed "final move"
verify d7 >/dev/null
[ "$(state_of d7)" = running ] || fail "destination not running after the final move"
vmctl "$T/s.sock" '{"cmd":"stop"}' >/dev/null; expect_exit "$PID_s" 4

note "destination dies right after the commit point: the outcome is unknown to the source"
start_src u 256M 1 "ws=32M rate=32"
next_port; FERRY_FAILPOINTS="dst.after_commit=crash" start_dst d8 "$port"
migrate u "$port" || fail "migrate refused"
res=$(wait_mig u 60); [ "$(field "$res" stage)" = unknown ] || fail "expected unknown, got $res"
[ "$(state_of u)" = paused ] || fail "source must stay paused after an unconfirmed commit"
vmctl "$T/u.sock" '{"cmd":"resume"}' | grep -q '"ok":false' || fail "plain resume must be refused"
kill -0 "$PID_d8" 2>/dev/null && fail "destination should have crashed"
# The destination is gone for sure: the operator (ferryd) resolves by resuming here.
vmctl "$T/u.sock" '{"cmd":"migrate-resolve","action":"resume"}' | grep -q '"ok":true' || fail "resolve refused"
[ "$(state_of u)" = running ] || fail "source not running after resolve"
wait_for "$T/u.log" "FERRY-GUEST hb n=$(($(last_hb "$T/u.log") + 1)) " 20 || fail "no heartbeat after resolve"
vmctl "$T/u.sock" '{"cmd":"verify"}' | grep -q '"verified":true' || fail "pages after resolve"
echo ok
