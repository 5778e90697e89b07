//! `mining`: nonces per second on one thread against the raw SHA-256 compressions.

use super::*;

pub(crate) fn bench_mining() -> Value {
    let header = bench_header(apiary_core::CompactTarget(0x1f00ffff));
    // The miner's own search loop, on a target no hash meets, stopped after `rounds`.
    let mut impossible = header.clone();
    impossible.bits = Target::from_u256(U256::one()).unwrap().to_compact();
    let checks_wanted = 20_000_000 / NONCES_BETWEEN_CHECKS;
    let rounds = checks_wanted * NONCES_BETWEEN_CHECKS;
    let checks = std::cell::Cell::new(0u64);
    let started = Instant::now();
    let found = search_nonce(&impossible, 0, 1, || {
        checks.set(checks.get() + 1);
        checks.get() >= checks_wanted
    });
    assert!(found.is_none(), "no hash meets a target of 1");
    let miner_rate = rounds as f64 / started.elapsed().as_secs_f64();
    let mut sink = 0u8;

    // The floor of any nonce search: two SHA-256 compressions per nonce, nothing else.
    let mut state = [0u32; 8];
    let block = [[7u8; 64]];
    let started = Instant::now();
    for i in 0..rounds {
        state[0] ^= i as u32;
        sha2::block_api::compress256(&mut state, &block);
        sha2::block_api::compress256(&mut state, &block);
    }
    sink ^= state[0] as u8;
    let raw_rate = rounds as f64 / started.elapsed().as_secs_f64();

    // For reference: hashing the whole 160-byte header twice per nonce, no midstate.
    let mut bytes = header.encode();
    let plain_rounds = rounds / 4;
    let started = Instant::now();
    for nonce in 0..plain_rounds {
        bytes[HEADER_BYTES - 8..].copy_from_slice(&nonce.to_le_bytes());
        sink ^= Sha256::digest(Sha256::digest(bytes))[0];
    }
    let plain_rate = plain_rounds as f64 / started.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    figure(
        miner_rate,
        "hashes/s/thread",
        raw_rate,
        json!({
            "nonces": rounds,
            "limit_is": "two raw SHA-256 compressions per nonce, one thread",
            "plain_sha256d_of_header_per_s": plain_rate.round() as u64,
        }),
    )
}
