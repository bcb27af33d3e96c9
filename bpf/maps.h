/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * maps.h: the maps the steering program shares with user space. `xsks` is
 * the XSKMAP keyed by rx queue index, filled by the relay with one AF_XDP
 * socket per queue; `counters` is a PERCPU_ARRAY of u64 indexed by
 * `enum steer_counter`, summed over CPUs by src/relay/steer.rs. Per-CPU
 * slots need no atomics on the hot path. The relay port is not a map: it is
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

#endif /* CLUBCAST_BPF_MAPS_H */
