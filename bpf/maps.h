/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * maps.h: the maps the steering program shares with user space. `xsks` is
 * the XSKMAP keyed by rx queue index, filled by the relay with one AF_XDP
 * socket per queue; `counters` is a PERCPU_ARRAY of u64 indexed by
 * `enum steer_counter`, summed over CPUs by src/relay/steer.rs. Per-CPU
 * slots need no atomics on the hot path. `senders` and `gate` are the
 * sender gate: the relay's validated uploaders, and whether BLOCKs from
 * anyone else are dropped here. The relay port is not a map: it is
 * the read-only global `relay_port` in relay.bpf.c, set before load.
 */
#ifndef CLUBCAST_BPF_MAPS_H
#define CLUBCAST_BPF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "clubcast.h"

/* Upper bound on rx queues served; a NIC with more queues needs a bigger
 * map. 64 covers the multi-queue NICs the relay targets. */
#define STEER_MAX_QUEUES 64

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, STEER_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Adds one to this CPU's slot of `which`. */
static __always_inline void count(enum steer_counter which)
{
	__u32 key = which;
	__u64 *slot = bpf_map_lookup_elem(&counters, &key);

	if (slot)
		*slot += 1;
}

/* Most uploaders the sender gate holds. */
#define STEER_MAX_SENDERS 65536

/* One sender: IPv4 address and UDP port, both in network order. */
struct sender_key {
	__u32 addr;
	__u16 port;
	__u16 pad;
};

/* The relay's validated uploaders, kept by its control plane. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_MAX_SENDERS);
	__type(key, struct sender_key);
	/* The block tag the relay gave the sender, as its 8 bytes on the wire. */
	__type(value, __u64);
} senders SEC(".maps");

/* Slot 0: non-zero when the sender gate is on (a BLOCK from a sender not
 * in `senders` is dropped). Off until the relay turns it on. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gate SEC(".maps");

#endif /* CLUBCAST_BPF_MAPS_H */
