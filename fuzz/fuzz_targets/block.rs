//! A whole block as a peer sends it: one encoding, the hash of its first 160 bytes, and —
//! when it passes every stateless check — a stable identity through a round trip and every
//! signature good by the oracle too; then the node's path for a fetched block takes it.
//! The first byte is a mode: bit 0 recomputes the tx root, so inputs reach the checks
//! behind it (duplicates, chain ids, signatures).
#![no_main]

use apiary_core::block::HEADER_BYTES;
use apiary_core::hash::sha256d;
use apiary_core::tx::KeyCache;
use apiary_core::validate::check_block;
use apiary_core::{decode_exact, tx_merkle_root, Block};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let spec = apiary_fuzz::spec();
    let max = spec.consensus.max_block_bytes as usize;
    let Ok(mut block) = decode_exact::<Block>("block", bytes, max) else {
        return;
    };
    assert_eq!(block.encode(), bytes, "one encoding per block");
    assert_eq!(block.hash().0, sha256d(&bytes[..HEADER_BYTES]));
    if mode & 1 == 1 {
        block.header.tx_root = tx_merkle_root(&block.txids());
    }
    let encoded = block.encode();
    if let Ok(txids) = check_block(&block, encoded.len(), &spec, &KeyCache::default()) {
        let again: Block = decode_exact("block", &encoded, max).expect("it decoded before");
        assert_eq!(again.hash(), block.hash());
        assert_eq!(again.txids(), txids);
        for stx in &block.txs {
            assert!(
                apiary_fuzz::expected_verdict(stx),
                "a signature the oracle refuses"
            );
        }
    }
    apiary_node::p2p::fuzzing::judge_block(apiary_fuzz::shared_node(), encoded);
});
