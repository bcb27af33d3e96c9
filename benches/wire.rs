//! Criterion benches for the wire format: BLOCK parse and encode, a control
//! message parse, and the Elias-gamma bit-field codec.

use std::hint::black_box;

use clubcast::wire::bitfield;
use clubcast::wire::{BatchSignature, Block, ClubList, Connect, Direction, Message, StreamTag};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn wire(c: &mut Criterion) {
    let sig = [3u8; 64];
    let proof = [[9u8; 32]; 4];
    let payload = vec![0xA5u8; Block::max_payload(4)];
    let block = Block {
        tag: 0x0123_4567_89ab_cdef,
        stream: StreamTag([1; 8]),
        seq: 1000,
        club: 4,
        sent_at_us: 1,
        delay_threshold_ms: 2000,
        bitrate_kbps: 2000,
        batch: 62,
        index: 8,
        count: 16,
        signature: Some(BatchSignature {
            timestamp_us: 5,
            signature: &sig,
        }),
        proof: &proof,
        payload: &payload,
    };
    let mut buf = [0u8; 1232];
    let len = block.encode(&mut buf).expect("fits");

    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("parse", |b| {
        b.iter(|| black_box(Message::parse(black_box(&buf[..len])).is_ok()))
    });
    let mut out = [0u8; 1232];
    g.bench_function("encode", |b| {
        b.iter(|| black_box(black_box(&block).encode(&mut out)))
    });
    g.finish();

    let clubs = [3u16, 7];
    let connect = Message::Connect(Connect {
        request_id: 9,
        direction: Direction::Download,
        club: 3,
        block_tag: 0x0123_4567_89ab_cdef,
        clubs: ClubList::Items(&clubs),
        token: clubcast::wire::Token([5; clubcast::wire::Token::LEN]),
    });
    let mut cbuf = [0u8; 64];
    let clen = connect.encode(&mut cbuf).expect("fits");
    c.bench_function("control/parse_connect", |b| {
        b.iter(|| black_box(Message::parse(black_box(&cbuf[..clen])).is_ok()))
    });

    // A 4096-bit have-map with runs of mixed length, as after a join.
    let mut bits = vec![0u8; 512];
    for i in 0..4096 {
        if (i / 7) % 3 != 0 {
            bitfield::set_bit(&mut bits, i);
        }
    }
    let mut runs = vec![0u8; 2048];
    let (first, rlen) = bitfield::encode(&bits, 4096, &mut runs).expect("room");
    let mut g = c.benchmark_group("bitfield_4096");
    g.throughput(Throughput::Bytes(512));
    g.bench_function("encode", |b| {
        b.iter(|| black_box(bitfield::encode(black_box(&bits), 4096, &mut runs)))
    });
    let coded = runs[..rlen].to_vec();
    let mut back = vec![0u8; 512];
    g.bench_function("decode", |b| {
        b.iter(|| black_box(bitfield::decode(first, black_box(&coded), 4096, &mut back)))
    });
    g.finish();
}

criterion_group!(benches, wire);
criterion_main!(benches);
