#!/usr/bin/env bash
# Applies or reverts a relay tuning profile on one interface.
#
#   tuning/apply.sh apply  PROFILE IFACE [--dry-run]
#   tuning/apply.sh revert IFACE [--dry-run]
#   tuning/apply.sh show   IFACE
#
# `apply` saves the current values to /run/clubcast-tuning/IFACE.saved
# before changing anything; `revert` restores them. Each step that the
# interface does not support (a veth has no ntuple filters or channel
# count) is reported and skipped, never fatal. --dry-run prints the
# commands without running them. Needs root and ethtool (apply/revert).
set -uo pipefail

usage() { sed -n '2,12p' "$0"; exit 2; }
action=${1:-}
case "$action" in
apply) profile=${2:-}; iface=${3:-}; dry=${4:-} ;;
revert) iface=${2:-}; dry=${3:-} ;;
show) iface=${2:-}; dry="" ;;
*) usage ;;
esac
[[ -n ${iface:-} ]] || usage
[[ $iface =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || { echo "apply.sh: bad interface name" >&2; exit 2; }
[[ -z $dry || $dry == --dry-run ]] || usage
state_dir=/run/clubcast-tuning
saved="$state_dir/$iface.saved"

run() {
    # run DESCRIPTION CMD...: runs (or prints) one step; failures are
    # reported and skipped.
    local what=$1
    shift
    if [[ $dry == --dry-run ]]; then
        echo "would: $*"
        return 0
    fi
    if "$@" >/dev/null 2>&1; then
        echo "ok:   $what"
    else
        echo "skip: $what (not supported here: $*)"
    fi
}

sysctl_get() { sysctl -n "$1" 2>/dev/null || echo ""; }

show() {
    echo "== $iface"
    command -v ethtool >/dev/null && {
        ethtool -l "$iface" 2>/dev/null | sed -n '/Current/,$p' | grep -i combined
        ethtool -g "$iface" 2>/dev/null | sed -n '/Current/,$p' | grep -E '^(RX|TX):'
        ethtool -n "$iface" 2>/dev/null | grep -E 'Filter|Dst port|Action' | head -20
    }
    echo "busy_read=$(sysctl_get net.core.busy_read) busy_poll=$(sysctl_get net.core.busy_poll)"
    echo "gro_flush_timeout=$(cat /sys/class/net/$iface/gro_flush_timeout 2>/dev/null || echo n/a)" \
        "napi_defer_hard_irqs=$(cat /sys/class/net/$iface/napi_defer_hard_irqs 2>/dev/null || echo n/a)"
    echo "hugepages=$(cat /proc/sys/vm/nr_hugepages)"
}

apply() {
    [[ -f $profile ]] || { echo "apply.sh: no profile $profile" >&2; exit 2; }
    # shellcheck disable=SC1090
    . "$profile"
    if [[ $dry != --dry-run ]]; then
        [[ $(id -u) -eq 0 ]] || { echo "apply.sh: needs root" >&2; exit 1; }
        mkdir -p "$state_dir"
        {
            echo "BUSY_READ=$(sysctl_get net.core.busy_read)"
            echo "BUSY_POLL=$(sysctl_get net.core.busy_poll)"
            echo "GRO=$(cat /sys/class/net/$iface/gro_flush_timeout 2>/dev/null || echo)"
            echo "DEFER=$(cat /sys/class/net/$iface/napi_defer_hard_irqs 2>/dev/null || echo)"
            echo "HUGEPAGES=$(cat /proc/sys/vm/nr_hugepages)"
            echo "RELAY_PORT=$RELAY_PORT"
            echo "QUEUES=$QUEUES"
        } >"$saved"
    fi
    run "channels: $QUEUES combined" ethtool -L "$iface" combined "$QUEUES"
    run "rings: $RING_ENTRIES entries" ethtool -G "$iface" rx "$RING_ENTRIES" tx "$RING_ENTRIES"
    run "ntuple filters on" ethtool -K "$iface" ntuple on
    local q cpu i=0
    for cpu in $WORKER_CPUS; do
        q=$((QUEUE_BASE + i))
        run "UDP dst $RELAY_PORT to queue $q (rule $((1000 + i)))" \
            ethtool -N "$iface" flow-type udp4 dst-port "$RELAY_PORT" action "$q" loc $((1000 + i))
        local irq
        irq=$(grep -E "$iface.*(rx|TxRx)-?$q\b" /proc/interrupts 2>/dev/null | awk -F: '{print $1}' | tr -d ' ' | head -1)
        if [[ -n $irq ]]; then
            run "IRQ $irq of queue $q to CPU $cpu" sh -c "echo $cpu > /proc/irq/$irq/smp_affinity_list"
        else
            echo "skip: IRQ of queue $q (no per-queue interrupt for $iface)"
        fi
        i=$((i + 1))
    done
    run "busy_read/busy_poll $BUSY_POLL_US us" sysctl -qw net.core.busy_read="$BUSY_POLL_US" net.core.busy_poll="$BUSY_POLL_US"
    run "gro_flush_timeout $GRO_FLUSH_TIMEOUT_NS ns" sh -c "echo $GRO_FLUSH_TIMEOUT_NS > /sys/class/net/$iface/gro_flush_timeout"
    run "napi_defer_hard_irqs $NAPI_DEFER_HARD_IRQS" sh -c "echo $NAPI_DEFER_HARD_IRQS > /sys/class/net/$iface/napi_defer_hard_irqs"
    run "hugepages $HUGEPAGES" sysctl -qw vm.nr_hugepages="$HUGEPAGES"
}

revert() {
    if [[ ! -f $saved ]]; then
        if [[ $dry == --dry-run ]]; then
            echo "would: restore $saved (none saved yet)"
            return 0
        fi
        echo "apply.sh: nothing saved for $iface ($saved)" >&2
        exit 1
    fi
    # shellcheck disable=SC1090
    . "$saved"
    local i
    for ((i = 0; i < QUEUES; i++)); do
        run "remove rule $((1000 + i))" ethtool -N "$iface" delete $((1000 + i))
    done
    run "busy_read/busy_poll back" sysctl -qw net.core.busy_read="$BUSY_READ" net.core.busy_poll="$BUSY_POLL"
    [[ -n $GRO ]] && run "gro_flush_timeout back" sh -c "echo $GRO > /sys/class/net/$iface/gro_flush_timeout"
    [[ -n $DEFER ]] && run "napi_defer_hard_irqs back" sh -c "echo $DEFER > /sys/class/net/$iface/napi_defer_hard_irqs"
    run "hugepages back" sysctl -qw vm.nr_hugepages="$HUGEPAGES"
    [[ $dry == --dry-run ]] || rm -f "$saved"
}

case "$action" in
apply) apply ;;
revert) revert ;;
show) show ;;
esac
