// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * relay.bpf.c: the relay's XDP steering program. It splits the relay port's
 * traffic into the two planes of the design: a UDP datagram to `relay_port`
 * whose clubcast header (magic 0xCC, version 6) marks a BLOCK is redirected
 * into the AF_XDP socket of the receiving rx queue through the `xsks` XSKMAP;
 * everything else (control messages, other ports, non-UDP, non-IPv4, IPv6,
 * IPv4 fragments, truncated or foreign frames) is passed to the kernel, so
 * control messages reach the relay's ordinary UDP socket on the same port.
 * The program drops one thing only: with the sender gate on (the `gate`
 * map), a BLOCK from a sender not among the relay's validated uploaders
 * (`senders`, kept by the control plane), or one whose block tag is not
 * the one the relay gave that uploader (so an off-path spoofer of an
 * uploader's address cannot reach a worker either). Anything else it does not steer
 * is the kernel's, and a BLOCK whose queue has no socket falls back to
 * XDP_PASS. Checksums are not
 * verified here; the worker checks what it receives. Each verdict bumps one
 * per-CPU counter (see clubcast.h). Built by build.rs into a libbpf-cargo
 * skeleton; every branch has a BPF_PROG_TEST_RUN fixture in
 * tests/xdp_steer.rs, except the runt check on the Ethernet header, which
 * the kernel will not test-run (it wants at least 14 bytes).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "clubcast.h"
#include "maps.h"
#include "parse.h"

/*
 * UDP port the relay serves, network byte order. Set by user space before
 * load (src/relay/steer.rs), so one object serves any port and the verifier
 * sees a constant. 0 means unset: nothing matches.
 */
const volatile __be16 relay_port = 0;

/* Bytes of UDP header plus clubcast header a steered datagram must carry. */
#define STEER_MIN_UDP_LEN (sizeof(struct udphdr) + CLUBCAST_HEADER_LEN)

static __always_inline int pass(enum steer_counter why)
{
	count(why);
	return XDP_PASS;
}

SEC("xdp")
int steer_blocks(struct xdp_md *ctx)
{
	struct cursor c = {
		.pos = (void *)(long)ctx->data,
		.end = (void *)(long)ctx->data_end,
	};
	struct ethhdr *eth;
	struct iphdr *ip;
	struct udphdr *udp;
	__u8 *hdr;
	int action;

	eth = parse_ethhdr(&c);
	if (!eth)
		return pass(STEER_PASSED_TRUNCATED);
	/* IPv4 only: IPv6, ARP and VLAN-tagged frames go to the kernel. */
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return pass(STEER_PASSED_NOT_IP);

	ip = parse_iphdr(&c);
	if (!ip)
		return pass(STEER_PASSED_TRUNCATED);
	if (ip->version != 4)
		return pass(STEER_PASSED_NOT_IP);
	if (ip->protocol != IPPROTO_UDP)
		return pass(STEER_PASSED_NOT_UDP);
	/* Only a whole datagram can be steered; the kernel reassembles. */
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return pass(STEER_PASSED_FRAGMENT);

	udp = parse_udphdr(&c);
	if (!udp)
		return pass(STEER_PASSED_TRUNCATED);
	if (relay_port == 0 || udp->dest != relay_port)
		return pass(STEER_PASSED_OTHER_PORT);
	/* The UDP length must cover the clubcast header: Ethernet padding
	 * after a short datagram is not a header. */
	if (bpf_ntohs(udp->len) < STEER_MIN_UDP_LEN)
		return pass(STEER_PASSED_TRUNCATED);

	hdr = parse_bytes(&c, CLUBCAST_HEADER_LEN);
	if (!hdr)
		return pass(STEER_PASSED_TRUNCATED);
	if (hdr[0] != CLUBCAST_MAGIC || hdr[1] != CLUBCAST_VERSION)
		return pass(STEER_PASSED_NOT_CLUBCAST);
	if (hdr[2] != CLUBCAST_MSG_BLOCK)
		return pass(STEER_PASSED_CONTROL);

	/* The sender gate: a BLOCK from anyone but a validated uploader, or
	 * without the tag the relay gave it, costs the relay nothing more than
	 * this lookup. */
	__u32 zero = 0;
	__u32 *gate_on = bpf_map_lookup_elem(&gate, &zero);
	if (gate_on && *gate_on) {
		struct sender_key key = {
			.addr = ip->saddr,
			.port = udp->source,
			.pad = 0,
		};
		__u64 *want = bpf_map_lookup_elem(&senders, &key);
		__u8 *tag_bytes;
		__u64 tag;

		if (!want) {
			count(STEER_DROPPED_UNKNOWN_SENDER);
			return XDP_DROP;
		}
		/* The flags byte, then the tag. */
		tag_bytes = parse_bytes(&c, 1 + CLUBCAST_BLOCK_TAG_LEN);
		if (!tag_bytes ||
		    bpf_ntohs(udp->len) <
			    STEER_MIN_UDP_LEN + 1 + CLUBCAST_BLOCK_TAG_LEN) {
			count(STEER_DROPPED_WRONG_TAG);
			return XDP_DROP;
		}
		__builtin_memcpy(&tag, tag_bytes + 1, sizeof(tag));
		if (tag != *want) {
			count(STEER_DROPPED_WRONG_TAG);
			return XDP_DROP;
		}
	}

	action = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	count(action == XDP_REDIRECT ? STEER_REDIRECTED : STEER_PASSED_NO_SOCKET);
	return action;
}

/* tc verdicts (linux/pkt_cls.h), spelled out to keep that header out. */
#define SINK_TC_ACT_OK 0
#define SINK_TC_ACT_SHOT 2

/*
 * sink_port: not part of the relay. The far end of a veth link in the
 * relay's bench and tests, attached at tc ingress (tcx): it counts
 * (STEER_SINK_DROPPED) and drops every whole IPv4 UDP datagram to
 * `relay_port`, which for this use is set to the subscribers' port, and
 * passes everything else uncounted. A real relay's receivers are other
 * machines; on veth the far end's receive work runs on the transmitting
 * CPU, so the sink does as little as it can: at tc ingress the frame is
 * dropped as it arrives, where an XDP program on veth would first copy it
 * into a page of its own.
 */
SEC("tcx/ingress")
int sink_port(struct __sk_buff *skb)
{
	struct cursor c = {
		.pos = (void *)(long)skb->data,
		.end = (void *)(long)skb->data_end,
	};
	struct ethhdr *eth;
	struct iphdr *ip;
	struct udphdr *udp;

	eth = parse_ethhdr(&c);
	if (!eth || eth->h_proto != bpf_htons(ETH_P_IP))
		return SINK_TC_ACT_OK;
	ip = parse_iphdr(&c);
	if (!ip || ip->version != 4 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return SINK_TC_ACT_OK;
	udp = parse_udphdr(&c);
	if (!udp || relay_port == 0 || udp->dest != relay_port)
		return SINK_TC_ACT_OK;
	count(STEER_SINK_DROPPED);
	return SINK_TC_ACT_SHOT;
}

/*
 * Where inject_frames sends its frames: an interface index of the network
 * namespace that runs it. Set by user space before each run.
 */
__u32 inject_ifindex = 0;

/*
 * inject_frames: not part of the relay. A traffic source for the relay's
 * tests and benches, run by BPF_PROG_TEST_RUN in live-frames mode: every
 * frame it is handed goes out of `inject_ifindex` as an xdp_frame. On veth
 * such a frame reaches the peer's XDP program the way a NIC driver hands
 * one over, in a page with XDP headroom, without the copy veth makes of
 * every skb a socket sent.
 */
SEC("xdp")
int inject_frames(struct xdp_md *ctx)
{
	return bpf_redirect(inject_ifindex, 0);
}

/* The crate is MIT OR Apache-2.0; the kernel only knows GPL-compatible
 * strings, and "Dual MIT/GPL" is one that states the MIT grant. No GPL-only
 * helper is used. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
