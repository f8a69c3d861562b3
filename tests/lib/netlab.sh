# The test lab's network: each host is a network namespace; a "switch"
# namespace holds a Linux bridge with one port per host and one for a client.
# Inside each host, a bridge joins the VM's tap to the host's uplink, so the
# switch learns the VM's MAC on the port of whichever host runs it.
#   lab_up PREFIX: creates ${P}sw (bridge br0, ports pa pb pc), ${P}a, ${P}b, ${P}c
#   hosts a/b get 10.77.0.1/.2 on their bridge "vbr"; client c gets 10.77.0.3
# the client's frame-echo check (python3 "$LAB_PING" IFNAME MAC WAIT_S)
LAB_PING=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/netlab_ping.py

# need_netlab TOOL...: skip (loudly) unless network namespaces can be made
# here and these tools are installed
need_netlab() {
	local t
	for t in ip "$@"; do
		command -v "$t" >/dev/null || skip "$t is missing (the network lab needs it)"
	done
	ip netns add ferry-probe-$$ 2>/dev/null || skip "cannot create network namespaces here"
	ip netns del ferry-probe-$$
}

lab_up() {
	P=$1
	ip netns add ${P}sw; ip netns add ${P}a; ip netns add ${P}b; ip netns add ${P}c
	ip -n ${P}sw link add br0 type bridge
	ip -n ${P}sw link set br0 up
	for h in a b c; do
		ip link add ${P}u$h type veth peer name ${P}p$h
		ip link set ${P}u$h netns ${P}$h
		ip link set ${P}p$h netns ${P}sw
		ip -n ${P}sw link set ${P}p$h master br0 up
		ip -n ${P}$h link set lo up
	done
	for h in a b; do
		ip -n ${P}$h link add vbr type bridge
		ip -n ${P}$h link set ${P}u$h master vbr up
		ip -n ${P}$h link set vbr up
		ip -n ${P}$h addr add 10.77.0.$([ $h = a ] && echo 1 || echo 2)/24 dev vbr
		ip -n ${P}$h tuntap add tap0 mode tap
		ip -n ${P}$h link set tap0 master vbr up
	done
	ip -n ${P}c link set ${P}uc up
	ip -n ${P}c addr add 10.77.0.3/24 dev ${P}uc
}
lab_down() {
	for n in sw a b c; do ip netns del ${P}$n 2>/dev/null; done
}
# fdb_port MAC: the switch port the bridge has learned MAC on (empty if none)
fdb_port() {
	ip netns exec ${P}sw bridge fdb show br br0 | awk -v m="$1" 'tolower($1)==tolower(m) && $0 !~ /permanent/ {print $3; exit}'
}
