/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * parse.h: bounds-checked header parsing for the steering program. A
 * `struct cursor` walks from ctx->data towards ctx->data_end; every parser
 * checks that its whole header lies before data_end before reading a byte,
 * which is both what the verifier demands and what keeps a truncated frame
 * from being misread. Parsers return a pointer to the header or NULL when the
 * frame is too short; they take no verdicts and touch no maps.
 */
#ifndef CLUBCAST_BPF_PARSE_H
#define CLUBCAST_BPF_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>

struct cursor {
	void *pos;
	void *end;
};

/* IPv4 "more fragments" flag and fragment offset mask, host order
 * (RFC 791, section 3.1). */
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

static __always_inline struct ethhdr *parse_ethhdr(struct cursor *c)
{
	struct ethhdr *eth = c->pos;

	if ((void *)(eth + 1) > c->end)
		return NULL;
	c->pos = eth + 1;
	return eth;
}

/*
 * Parses an IPv4 header including its options: the header length comes from
 * IHL, which must be at least 5 words (20 bytes) and lie within the frame.
 */
static __always_inline struct iphdr *parse_iphdr(struct cursor *c)
{
	struct iphdr *ip = c->pos;
	__u32 hdr_len;

	if ((void *)(ip + 1) > c->end)
		return NULL;
	hdr_len = ip->ihl * 4;
	if (hdr_len < sizeof(*ip))
		return NULL;
	if (c->pos + hdr_len > c->end)
		return NULL;
	c->pos += hdr_len;
	return ip;
}

static __always_inline struct udphdr *parse_udphdr(struct cursor *c)
{
	struct udphdr *udp = c->pos;

	if ((void *)(udp + 1) > c->end)
		return NULL;
	c->pos = udp + 1;
	return udp;
}

/* Returns the first `len` payload bytes, or NULL if the frame is shorter. */
static __always_inline __u8 *parse_bytes(struct cursor *c, __u32 len)
{
	__u8 *bytes = c->pos;

	if (c->pos + len > c->end)
		return NULL;
	c->pos += len;
	return bytes;
}

#endif /* CLUBCAST_BPF_PARSE_H */
