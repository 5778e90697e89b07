//! A compact block as gossiped: one encoding, the header's hash, within its size bound;
//! then the node's gossip judge rebuilds it from the mempool and takes it.
#![no_main]

use apiary_core::block::HEADER_BYTES;
use apiary_core::hash::sha256d;
use apiary_core::{decode_exact, CompactBlock};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let spec = apiary_fuzz::spec();
    let max = CompactBlock::max_encoded_bytes(spec.consensus.max_block_txs as usize);
    if let Ok(compact) = decode_exact::<CompactBlock>("compact block", data, max) {
        assert_eq!(compact.encode(), data, "one encoding per compact block");
        assert_eq!(compact.hash().0, sha256d(&data[..HEADER_BYTES]));
        assert!(compact.txids.len() <= spec.consensus.max_block_txs as usize);
    }
    apiary_node::p2p::fuzzing::judge_compact_block(apiary_fuzz::shared_node(), data);
});
