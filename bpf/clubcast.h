/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * clubcast.h: the few constants of the clubcast wire format and of the
 * steering policy that the XDP program needs. The wire values mirror
 * src/wire/mod.rs and docs/PROTOCOL.md (magic 0xCC, version 6, BLOCK 0x40, block tag);
 * the counter indices mirror `SteerCounter` in src/relay/steer.rs. Nothing
 * here parses packets or declares maps: see parse.h and maps.h.
 */
#ifndef CLUBCAST_BPF_CLUBCAST_H
#define CLUBCAST_BPF_CLUBCAST_H

/* First byte of every clubcast datagram (wire::MAGIC). */
#define CLUBCAST_MAGIC 0xCC
/* Wire format version this program steers (wire::VERSION). */
#define CLUBCAST_VERSION 6
/* Message type of a data block, the hot path (wire::MessageType::Block). */
#define CLUBCAST_MSG_BLOCK 0x40
/* Common header: magic, version, message type (wire::HEADER_LEN). */
#define CLUBCAST_HEADER_LEN 3
/* Bytes of a BLOCK's block tag, after the header and the flags byte
 * (wire::BLOCK_TAG_OFFSET). */
#define CLUBCAST_BLOCK_TAG_LEN 8

/*
 * Per-CPU counter slots, one per verdict. The order is part of the ABI with
 * user space (src/relay/steer.rs reads them by index): append, never reorder.
 */
enum steer_counter {
	/* BLOCK to the relay port, handed to the AF_XDP socket of the rx queue. */
	STEER_REDIRECTED = 0,
	/* Not IPv4 (ARP, IPv6, VLAN-tagged, ...): passed to the kernel. */
	STEER_PASSED_NOT_IP = 1,
	/* IPv4 but not UDP (TCP, ICMP, ...): passed. */
	STEER_PASSED_NOT_UDP = 2,
	/* UDP to a port other than the relay port: passed. */
	STEER_PASSED_OTHER_PORT = 3,
	/* clubcast message other than BLOCK to the relay port: passed to the
	 * relay's ordinary socket, which handles the control plane. */
	STEER_PASSED_CONTROL = 4,
	/* A header (Ethernet, IPv4, UDP, clubcast) ends past the frame: passed. */
	STEER_PASSED_TRUNCATED = 5,
	/* IPv4 fragment (MF set or non-zero offset): passed for reassembly. */
	STEER_PASSED_FRAGMENT = 6,
	/* Relay-port datagram without clubcast magic/version 6: passed, the
	 * socket counts and drops it. */
	STEER_PASSED_NOT_CLUBCAST = 7,
	/* BLOCK whose rx queue has no AF_XDP socket in the XSKMAP: passed by
	 * bpf_redirect_map's XDP_PASS fallback. */
	STEER_PASSED_NO_SOCKET = 8,
	/* UDP datagram to the port dropped by the `sink_port` program (the far
	 * end of a bench or test link, not the relay). */
	STEER_SINK_DROPPED = 9,
	/* BLOCK to the relay port from a sender that is not one of the relay's
	 * validated uploaders, with the sender gate on: dropped here. */
	STEER_DROPPED_UNKNOWN_SENDER = 10,
	/* BLOCK from a validated uploader's address without the block tag the
	 * relay gave that uploader (cut short, or spoofed by someone who does
	 * not know it), with the sender gate on: dropped here. */
	STEER_DROPPED_WRONG_TAG = 11,
	STEER_COUNTER_MAX = 12,
};

#endif /* CLUBCAST_BPF_CLUBCAST_H */
