#!/usr/bin/env bash
# Local migration through the state blob: save a busy guest, restore it into
# a new worker; every page verifies, the heartbeat counter continues, and
# each vCPU's own counter too.
# san: yes
. "$(dirname "$0")/../lib/common.sh"
need_kvm
bg "$FERRY_BIN/ferry-vm" --name sr --kernel "$FERRY_GUEST" --memory 256M --vcpus 2 \
	--cmdline "ws=64M rate=64 cpus=2" --serial "$T/a.log" --control "$T/a.sock"
a=$!
wait_for "$T/a.log" 'FERRY-GUEST hb n=2 ' 60 || fail "source guest not heartbeating"
vmctl "$T/a.sock" '{"cmd":"save","path":"'"$T"'/state"}' | tee "$T/save" | grep -q '"ok":true' || { cat "$T/save"; fail "save failed"; }
hb_before=$(last_hb "$T/a.log")
vmctl "$T/a.sock" '{"cmd":"verify"}' | grep -q '"verified":true' || fail "source pages do not verify after save"
vmctl "$T/a.sock" '{"cmd":"stop"}' >/dev/null; wait $a
note "saved at heartbeat $hb_before: $(cat "$T/save")"
bg "$FERRY_BIN/ferry-vm" --restore "$T/state" --serial "$T/b.log" --control "$T/b.sock" --paused
b=$!
for i in $(seq 50); do [ -S "$T/b.sock" ] && break; sleep 0.1; done
vmctl "$T/b.sock" '{"cmd":"verify"}' | tee "$T/vb" | grep -q '"verified":true' || { cat "$T/vb"; fail "restored pages do not verify"; }
vmctl "$T/b.sock" '{"cmd":"resume"}' | grep -q '"ok":true' || fail "resume failed"
wait_for "$T/b.log" "FERRY-GUEST hb n=$((hb_before + 2)) " 30 || fail "heartbeat did not continue from $hb_before"
first=$(grep -oE 'hb n=[0-9]+' "$T/b.log" | head -n1 | grep -oE '[0-9]+')
[ "$first" -gt "$hb_before" ] && [ "$first" -le $((hb_before + 2)) ] || fail "heartbeat jumped: $hb_before -> $first"
vmctl "$T/b.sock" '{"cmd":"verify"}' | grep -q '"verified":true' || fail "pages do not verify after running on"
# Every vCPU runs on, not vCPU 0 alone (whose heartbeat is the one above):
# each vCPU's own counter moves by 2 (a vCPU left unrestored never moved).
beats() { vmctl "$T/b.sock" '{"cmd":"verify"}' |
	python3 -c 'import json,sys; print(*json.load(sys.stdin)["vcpu_heartbeats"])'; }
read -r -a b0 <<<"$(beats)"
[ ${#b0[@]} -eq 2 ] || fail "verify reports ${#b0[@]} vCPU heartbeats, not 2"
for _ in $(seq 50); do
	read -r -a b1 <<<"$(beats)"
	[ "${b1[0]}" -ge $((b0[0] + 2)) ] && [ "${b1[1]}" -ge $((b0[1] + 2)) ] && break
	sleep 0.2
done
[ "${b1[0]}" -ge $((b0[0] + 2)) ] && [ "${b1[1]}" -ge $((b0[1] + 2)) ] ||
	fail "a vCPU stopped after the restore: heartbeats ${b0[*]} -> ${b1[*]}"
vmctl "$T/b.sock" '{"cmd":"stop"}' >/dev/null; wait $b
echo "ok: heartbeat $hb_before -> $first"
