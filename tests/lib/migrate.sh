# Helpers for worker-level migration tests (source with tests/lib/common.sh first).
# Workers talk JSON lines on their control sockets; see docs/api.md "worker".

# Below the kernel's ephemeral range (32768+), where a client socket of this
# or another test could already hold the port we want to listen on.
_port=$((20000 + RANDOM % 12000))
# next_port: sets $port to a fresh port (no subshell, so the counter advances)
next_port() { _port=$((_port + 1)); port=$_port; }

# start_src TAG MEM VCPUS CMDLINE [ferry-vm args...]: control $T/TAG.sock, serial $T/TAG.log
start_src() {
	local tag=$1 mem=$2 vcpus=$3 cmd=$4; shift 4
	bg "$FERRY_BIN/ferry-vm" --name "vm-$tag" --kernel "$FERRY_GUEST" --memory "$mem" --vcpus "$vcpus" \
		--cmdline "$cmd" --serial "$T/$tag.log" --control "$T/$tag.sock" "$@" 2>"$T/$tag.err"
	eval "PID_$tag=$!"
	wait_for "$T/$tag.log" 'FERRY-GUEST ready' 60 || fail "guest $tag never got ready"
}

# start_dst TAG PORT [ferry-vm args...]
start_dst() {
	local tag=$1 port=$2; shift 2
	bg "$FERRY_BIN/ferry-vm" --incoming "127.0.0.1:$port" --serial "$T/$tag.log" \
		--control "$T/$tag.sock" "$@" 2>"$T/$tag.err"
	eval "PID_$tag=$!"
	for _ in $(seq 50); do [ -S "$T/$tag.sock" ] && return 0; sleep 0.1; done
	fail "destination $tag did not come up: $(cat "$T/$tag.err")"
}

# field JSON KEY: a scalar from a JSON reply
field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); m=d.get("migration",d); print(m.get(sys.argv[2], d.get(sys.argv[2],"")))' "$1" "$2"; }

# migrate SRC_TAG PORT [extra JSON members, e.g. ',"transport":"tcp"']
migrate() {
	local r
	r=$(vmctl "$T/$1.sock" '{"cmd":"migrate","uri":"127.0.0.1:'"$2"'"'"${3:-}"'}')
	echo "$r" | grep -q '"ok":true' || { echo "$r"; return 1; }
}

# rx_matches DST_TAG FINAL_STATUS: the destination counts what came as the
# source counts what it sent: every record on every connection, the
# handshake and the disk's too, not the memory alone
rx_matches() {
	local rx tx
	rx=$(field "$(vmctl "$T/$1.sock" '{"cmd":"status"}')" bytes_received)
	tx=$(field "$2" bytes_on_wire)
	[ -n "$rx" ] && [ "$rx" = "$tx" ] || fail "$1 received ${rx:-no} bytes, the source sent $tx"
}

# wait_mig SRC_TAG [TIMEOUT_S]: waits for the move to end; prints the final status JSON
wait_mig() {
	local i s
	for i in $(seq $((${2:-60} * 5))); do
		s=$(vmctl "$T/$1.sock" '{"cmd":"migrate-status"}')
		case "$(field "$s" stage)" in completed|failed|cancelled|unknown|lost) echo "$s"; return 0;; esac
		sleep 0.2
	done
	echo "$s"; return 1
}

# stage_of SRC_TAG: current migration stage
stage_of() { field "$(vmctl "$T/$1.sock" '{"cmd":"migrate-status"}')" stage; }

# verify TAG: the page checker must pass on that worker
verify() {
	local r; r=$(vmctl "$T/$1.sock" '{"cmd":"verify"}')
	echo "$r" | grep -q '"verified":true' || fail "pages do not verify on $1: $r"
	echo "verified $1: $(field "$r" pages_checked) pages, heartbeat $(field "$r" heartbeat)"
}

# state_of TAG
state_of() { field "$(vmctl "$T/$1.sock" '{"cmd":"status"}')" state; }

# hb_continues LOG FROM: the heartbeat counter goes past FROM+2 in LOG
hb_continues() { wait_for "$1" "FERRY-GUEST hb n=$(($2 + 2)) " 30; }

# expect_exit PIDVAR CODE: wait for a worker to exit with CODE
expect_exit() {
	local pid=$1 code=$2 rc
	wait "$pid"; rc=$?
	[ "$rc" -eq "$code" ] || fail "worker $pid exited $rc, expected $code"
}
