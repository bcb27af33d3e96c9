# Tuning profile for a bare-metal clubcast super-peer relay.
# Sourced by tuning/apply.sh; every value is explained in tuning/README.md.

# NIC combined channels (RX/TX queue pairs): one per relay worker core.
QUEUES=2
# First queue that carries the relay port; the relay binds workers to
# queues QUEUE_BASE .. QUEUE_BASE+QUEUES-1.
QUEUE_BASE=0
# UDP port of the relay, steered to the worker queues by ntuple rules.
RELAY_PORT=7100
# CPUs the workers are pinned to (clubcast relay --cores); the queues' IRQs
# are pinned to the same CPUs, one each, in order.
WORKER_CPUS="0 1"
# Busy polling: microseconds a socket read may spin (net.core.busy_read and
# busy_poll), and NAPI defer settings on the interface.
BUSY_POLL_US=50
GRO_FLUSH_TIMEOUT_NS=200000
NAPI_DEFER_HARD_IRQS=2
# RX/TX ring sizes (ethtool -G).
RING_ENTRIES=4096
# 2 MiB hugepages reserved for UMEM.
HUGEPAGES=512
