//! Entry points for the fuzz targets (`fuzz/`): the gossip judges exactly as a peer's
//! bytes reach them, without a swarm. Not an API: each returns its verdict as text.

use super::gossip::{self, Judged};
use crate::node::Node;
use apiary_core::block::HEADER_BYTES;
use apiary_core::hash::sha256d;
use apiary_core::BlockHash;

/// A gossiped transaction (a batch of one).
pub fn judge_tx(node: &Node, bytes: &[u8]) -> String {
    format!("{:?}", gossip::judge_tx_batch(node, std::iter::once(bytes)))
}

/// A gossiped compact block.
pub fn judge_compact_block(node: &Node, bytes: &[u8]) -> String {
    match gossip::judge_compact_block(node, bytes) {
        Judged::Done(judgement) => format!("{judgement:?}"),
        Judged::NeedsBody(hash) => format!("needs the body of {hash}"),
    }
}

/// A whole block fetched for the compact one its header announced.
pub fn judge_block(node: &Node, bytes: Vec<u8>) -> String {
    let expected = match bytes.get(..HEADER_BYTES) {
        Some(header) => BlockHash(sha256d(header)),
        None => BlockHash::ZERO,
    };
    format!("{:?}", gossip::judge_fetched_block(node, bytes, expected))
}
