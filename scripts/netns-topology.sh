#!/usr/bin/env bash
# A relay test bench in network namespaces: the source, the relay and N
# peers each get a namespace, joined to the relay by veth pairs. Addresses
# live in 10.77.0.0/16, inside namespaces this script creates, so no traffic
# leaves the machine. The relay namespace forwards between its links.
#
#   scripts/netns-topology.sh up [PEERS] [PREFIX]    create (default 4 peers, prefix "cc")
#   scripts/netns-topology.sh down [PREFIX]          remove everything with that prefix
#   scripts/netns-topology.sh show [PREFIX]          list namespaces and addresses
#
# Layout, for prefix P:
#   P-relay   : one veth per neighbour, P-r0 (to the source) and P-r1..N (to peers)
#   P-src     : P-s  10.77.0.2/30  <-> P-r0 10.77.0.1/30
#   P-peerI   : P-pI 10.77.I.2/30  <-> P-rI 10.77.I.1/30   (I = 1..N)
# Each namespace routes 10.77.0.0/16 via the relay, which forwards.
set -euo pipefail

cmd=${1:-}
case "$cmd" in
up)
    peers=${2:-4}
    prefix=${3:-cc}
    ;;
down | show)
    prefix=${2:-cc}
    ;;
*)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac

if [[ $(id -u) -ne 0 ]]; then
    echo "netns-topology: needs root (ip netns, veth)" >&2
    exit 1
fi
if ! [[ $prefix =~ ^[a-z][a-z0-9]{0,5}$ ]]; then
    echo "netns-topology: prefix must be 1-6 lowercase letters or digits" >&2
    exit 2
fi

down() {
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^${prefix}-(relay|src|peer[0-9]+)$" || true); do
        ip netns delete "$ns" 2>/dev/null || true
    done
}

link() {
    # link NS_A IF_A ADDR_A NS_B IF_B ADDR_B
    ip link add "$2" type veth peer name "$5"
    ip link set "$2" netns "$1"
    ip link set "$5" netns "$4"
    ip -n "$1" addr add "$3" dev "$2"
    ip -n "$4" addr add "$6" dev "$5"
    ip -n "$1" link set "$2" up
    ip -n "$4" link set "$5" up
}

up() {
    if ((peers < 1 || peers > 250)); then
        echo "netns-topology: 1 to 250 peers" >&2
        exit 2
    fi
    trap 'echo "netns-topology: setup failed, tearing down" >&2; down' ERR
    ip netns add "${prefix}-relay"
    ip -n "${prefix}-relay" link set lo up
    ip netns exec "${prefix}-relay" sysctl -qw net.ipv4.ip_forward=1
    ip netns add "${prefix}-src"
    ip -n "${prefix}-src" link set lo up
    link "${prefix}-relay" "${prefix}-r0" 10.77.0.1/30 "${prefix}-src" "${prefix}-s" 10.77.0.2/30
    ip -n "${prefix}-src" route add 10.77.0.0/16 via 10.77.0.1
    for i in $(seq 1 "$peers"); do
        ns="${prefix}-peer${i}"
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        link "${prefix}-relay" "${prefix}-r${i}" "10.77.${i}.1/30" "$ns" "${prefix}-p${i}" "10.77.${i}.2/30"
        ip -n "$ns" route add 10.77.0.0/16 via "10.77.${i}.1"
    done
    trap - ERR
}

show() {
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^${prefix}-" | sort); do
        echo "== $ns"
        ip -n "$ns" -brief addr show | grep -v '^lo'
    done
}

case "$cmd" in
up)
    down
    up
    show
    ;;
down) down ;;
show) show ;;
esac
