#!/usr/bin/env bash
# A relay test bench in network namespaces: the source, the relay and N
# peers each get a namespace with one veth link to a shared Ethernet segment
# (a bridge in a namespace of its own), as a super-peer relay sits on a LAN
# with its peers: the relay's AF_XDP data plane serves its one interface and
# reaches every peer through it. Addresses live in 10.77.0.0/24, inside
# namespaces this script creates, so no traffic leaves the machine.
#
#   scripts/netns-topology.sh up [PEERS] [PREFIX] [QUEUES]
#                                                    create (default 4 peers, prefix "cc",
#                                                    QUEUES RX/TX queues on the relay's link, 1)
#   scripts/netns-topology.sh down [PREFIX]          remove everything with that prefix
#   scripts/netns-topology.sh show [PREFIX]          list namespaces and addresses
#
# Layout, for prefix P:
#   P-lan     : bridge P-br with one port per namespace below (P-lr, P-ls, P-lI)
#   P-relay   : P-r   10.77.0.1/24   (run `clubcast relay --io xdp --listen 10.77.0.1:7100` here)
#   P-src     : P-s   10.77.0.2/24   (tracker and source)
#   P-peerI   : P-pI  10.77.0.(10+I)/24, I = 1..N
# The relay's end needs no XDP program on the far side: AF_XDP transmits in
# copy mode through the veth, and the bridge forwards as for any frame.
set -euo pipefail

cmd=${1:-}
case "$cmd" in
up)
    peers=${2:-4}
    prefix=${3:-cc}
    queues=${4:-1}
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
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^${prefix}-(lan|relay|src|peer[0-9]+)$" || true); do
        ip netns delete "$ns" 2>/dev/null || true
    done
}

attach() {
    # attach NS IF ADDR PORT [QUEUES]: a veth from NS (IF, ADDR) to bridge
    # port PORT, with QUEUES RX and TX queues at each end
    local q=${5:-1}
    ip link add "$2" numtxqueues "$q" numrxqueues "$q" type veth \
        peer name "$4" numtxqueues "$q" numrxqueues "$q"
    ip link set "$2" netns "$1"
    ip link set "$4" netns "${prefix}-lan"
    ip -n "$1" addr add "$3" dev "$2"
    ip -n "$1" link set "$2" up
    ip -n "${prefix}-lan" link set "$4" master "${prefix}-br" up
}

space() {
    ip netns add "$1"
    ip -n "$1" link set lo up
}

up() {
    if ((peers < 1 || peers > 200)); then
        echo "netns-topology: 1 to 200 peers" >&2
        exit 2
    fi
    if ! [[ $queues =~ ^[0-9]+$ ]] || ((queues < 1 || queues > 16)); then
        echo "netns-topology: 1 to 16 queues" >&2
        exit 2
    fi
    trap 'echo "netns-topology: setup failed, tearing down" >&2; down' ERR
    space "${prefix}-lan"
    ip -n "${prefix}-lan" link add "${prefix}-br" type bridge
    ip -n "${prefix}-lan" link set "${prefix}-br" up
    space "${prefix}-relay"
    attach "${prefix}-relay" "${prefix}-r" 10.77.0.1/24 "${prefix}-lr" "$queues"
    space "${prefix}-src"
    attach "${prefix}-src" "${prefix}-s" 10.77.0.2/24 "${prefix}-ls"
    for i in $(seq 1 "$peers"); do
        space "${prefix}-peer${i}"
        attach "${prefix}-peer${i}" "${prefix}-p${i}" "10.77.0.$((10 + i))/24" "${prefix}-l${i}"
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
