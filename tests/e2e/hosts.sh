# Two (or more) ferry hosts on one machine for end-to-end tests: each host
# is a ferryd with its own state directory, TCP port on 127.0.0.1 and
# migration port range. Source after tests/lib/common.sh.
# Provides: start_host NAME, stop_host NAME, port_of NAME, on NAME ferry-args...,
# new_vm HOST VM MEM CMDLINE, vm_sock HOST VM, serial_of HOST VM,
# wait_state HOST VM STATE [TIMEOUT], json_field (python one-liner helper).

declare -A HOST_PORT HOST_PID

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Workers outlive ferryd by design: the test ends them itself.
kill_all_workers() {
	for f in "$T"/*/run/*.pid; do
		[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	cleanup
}
trap kill_all_workers EXIT

start_host() { # NAME
	local name=$1 state=$T/$1
	[ -n "${HOST_PORT[$name]:-}" ] || HOST_PORT[$name]=$(free_port)
	mkdir -p "$state"
	bg "$FERRY_BIN/ferryd" --state-dir "$state" --listen "127.0.0.1:${HOST_PORT[$name]}" \
		--vmm "$FERRY_BIN/ferry-vm" 2>>"$T/$name.ferryd.log"
	HOST_PID[$name]=$!
	for _ in $(seq 100); do
		on "$name" host info >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	cat "$T/$name.ferryd.log"
	fail "ferryd $name did not come up"
}

stop_host() { # NAME: SIGTERM ferryd (workers keep running)
	kill "${HOST_PID[$1]}" 2>/dev/null
	wait "${HOST_PID[$1]}" 2>/dev/null
}

port_of() { echo "127.0.0.1:${HOST_PORT[$1]}"; }

on() { # NAME ferry-args...
	local name=$1; shift
	"$FERRY_BIN/ferry" -c "$(port_of "$name")" "$@"
}

new_vm() { # HOST VM MEM CMDLINE [VCPUS]
	on "$1" vm new --name "$2" --memory "$3" --vcpus "${5:-1}" --kernel "$FERRY_GUEST" \
		--cmdline "$4" >/dev/null || fail "vm new $2 on $1"
	on "$1" vm start "$2" >/dev/null || { tail -5 "$T/$1/logs/$2.log"; fail "vm start $2 on $1"; }
	wait_for "$T/$1/logs/$2.serial" "FERRY-GUEST hb" 30 || fail "$2 did not boot on $1"
}

vm_sock() { echo "$T/$1/run/$2.sock"; }
serial_of() { echo "$T/$1/logs/$2.serial"; }

# json_get KEY.PATH: read JSON on stdin, print a field ("moves.0.state").
json_get() {
	python3 -c '
import json, sys
o = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    o = o[int(k)] if isinstance(o, list) else o.get(k)
    if o is None: break
print("" if o is None else (json.dumps(o) if isinstance(o, (dict, list)) else o))' "$1"
}

vm_state() { # HOST VM -> state or "absent"
	local s
	s=$(on "$1" --json vm status "$2" 2>/dev/null | json_get state 2>/dev/null)
	echo "${s:-absent}"
}

wait_state() { # HOST VM STATE [TIMEOUT_S]
	local i
	for i in $(seq $((${4:-30} * 10))); do
		[ "$(vm_state "$1" "$2")" = "$3" ] && return 0
		sleep 0.1
	done
	echo "VM $2 on $1 is $(vm_state "$1" "$2"), expected $3"
	return 1
}

move_state() { # HOST VM -> state of its latest move
	on "$1" --json migration status "$2" 2>/dev/null | json_get move.state 2>/dev/null
}

wait_move() { # HOST VM STATE [TIMEOUT_S]
	local i
	for i in $(seq $((${4:-60} * 10))); do
		[ "$(move_state "$1" "$2")" = "$3" ] && return 0
		sleep 0.1
	done
	echo "move of $2 on $1 is $(move_state "$1" "$2"), expected $3"
	return 1
}

verify_vm() { # HOST VM: the test guest's page checker on its worker
	local out
	out=$(vmctl "$(vm_sock "$1" "$2")" '{"cmd":"verify"}')
	echo "$out" | grep -q '"verified":true' || { echo "$out"; return 1; }
}
