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
# count) is reported and skipped, never fatal; so is a knob the profile
# leaves empty. --dry-run prints the commands without running them.
# Needs root and ethtool (apply/revert).
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
    if ! command -v "$1" >/dev/null; then
        echo "skip: $what ($1 is not installed)"
    elif "$@" >/dev/null 2>&1; then
        echo "ok:   $what"
    else
        echo "skip: $what (not supported here: $*)"
    fi
}

sysctl_get() { sysctl -n "$1" 2>/dev/null || echo ""; }

# set_if KNOB DESCRIPTION CMD...: runs the step if the profile (or the
# saved state) gives the variable KNOB a value, else says it is left alone.
set_if() {
    local knob=$1
    shift
    if [[ -n ${!knob} ]]; then
        run "$@"
    else
        echo "skip: $knob is empty: left alone"
    fi
}

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
    local QUEUES="" QUEUE_BASE=0 RELAY_PORT="" WORKER_CPUS="" BUSY_POLL_US=""
    local GRO_FLUSH_TIMEOUT_NS="" NAPI_DEFER_HARD_IRQS="" RING_ENTRIES="" HUGEPAGES=""
    # shellcheck disable=SC1090
    . "$profile"
    if [[ $dry != --dry-run ]]; then
        [[ $(id -u) -eq 0 ]] || { echo "apply.sh: needs root" >&2; exit 1; }
        mkdir -p "$state_dir"
        # What this profile changes, as it is now; empty: left alone.
        {
            echo "BUSY_READ=${BUSY_POLL_US:+$(sysctl_get net.core.busy_read)}"
            echo "BUSY_POLL=${BUSY_POLL_US:+$(sysctl_get net.core.busy_poll)}"
            echo "GRO=${GRO_FLUSH_TIMEOUT_NS:+$(cat "/sys/class/net/$iface/gro_flush_timeout" 2>/dev/null)}"
            echo "DEFER=${NAPI_DEFER_HARD_IRQS:+$(cat "/sys/class/net/$iface/napi_defer_hard_irqs" 2>/dev/null)}"
            echo "HUGEPAGES=${HUGEPAGES:+$(cat /proc/sys/vm/nr_hugepages)}"
            echo "RULES=$(if [[ -n $RELAY_PORT ]]; then wc -w <<<"$WORKER_CPUS"; else echo 0; fi)"
        } >"$saved"
    fi
    set_if QUEUES "channels: $QUEUES combined" ethtool -L "$iface" combined "$QUEUES"
    set_if RING_ENTRIES "rings: $RING_ENTRIES entries" \
        ethtool -G "$iface" rx "$RING_ENTRIES" tx "$RING_ENTRIES"
    set_if RELAY_PORT "ntuple filters on" ethtool -K "$iface" ntuple on
    local q cpu irq i=0
    for cpu in $WORKER_CPUS; do
        q=$((QUEUE_BASE + i))
        # ethtool -N can exit 0 when the driver refused the rule: read it
        # back to know.
        set_if RELAY_PORT "UDP dst $RELAY_PORT to queue $q (rule $((1000 + i)))" \
            sh -c "ethtool -N $iface flow-type udp4 dst-port $RELAY_PORT action $q loc $((1000 + i)) && ethtool -n $iface rule $((1000 + i))"
        irq=$(grep -E "$iface.*(rx|TxRx)-?$q\b" /proc/interrupts 2>/dev/null | awk -F: '{print $1}' | tr -d ' ' | head -1)
        if [[ -n $irq ]]; then
            run "IRQ $irq of queue $q to CPU $cpu" sh -c "echo $cpu > /proc/irq/$irq/smp_affinity_list"
        else
            echo "skip: IRQ of queue $q (no per-queue interrupt for $iface)"
        fi
        i=$((i + 1))
    done
    set_knobs BUSY_POLL_US BUSY_POLL_US GRO_FLUSH_TIMEOUT_NS NAPI_DEFER_HARD_IRQS HUGEPAGES
}

# set_knobs READ POLL GRO DEFER HUGE: busy polling, the interface's NAPI
# knobs and hugepages, from the variables so named (empty: left alone).
set_knobs() {
    local read=$1 poll=$2 gro=$3 defer=$4 huge=$5
    set_if "$read" "busy_read ${!read} us, busy_poll ${!poll} us" \
        sysctl -qw net.core.busy_read="${!read}" net.core.busy_poll="${!poll}"
    set_if "$gro" "gro_flush_timeout ${!gro} ns" \
        sh -c "echo ${!gro} > /sys/class/net/$iface/gro_flush_timeout"
    set_if "$defer" "napi_defer_hard_irqs ${!defer}" \
        sh -c "echo ${!defer} > /sys/class/net/$iface/napi_defer_hard_irqs"
    set_if "$huge" "hugepages ${!huge}" sysctl -qw vm.nr_hugepages="${!huge}"
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
    local BUSY_READ="" BUSY_POLL="" GRO="" DEFER="" HUGEPAGES="" RULES=0
    # shellcheck disable=SC1090
    . "$saved"
    local i
    for ((i = 0; i < RULES; i++)); do
        run "remove rule $((1000 + i))" ethtool -N "$iface" delete $((1000 + i))
    done
    set_knobs BUSY_READ BUSY_POLL GRO DEFER HUGEPAGES
    [[ $dry == --dry-run ]] || rm -f "$saved"
}

case "$action" in
apply) apply ;;
revert) revert ;;
show) show ;;
esac
