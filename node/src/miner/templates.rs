//! Block templates for miners outside the node (`mining_template`, `mining_submit`, the
//! `templates` subscription): each template is kept under an id until it is too old, so
//! a miner sends back only its id and a nonce (and a rolled timestamp, if it likes).

use super::build_template;
use crate::chain::{Accepted, ChainError};
use crate::node::Node;
use crate::time::now_ms;
use apiary_core::{Address, Amount, Block, BlockHash};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Templates kept at once; the oldest goes first. A miner holding an older id is told its
/// template is unknown, and asks again.
pub const TEMPLATES_KEPT: usize = 64;

/// A template handed out: the block with nonce 0, and what it was built on.
pub struct Template {
    pub id: u64,
    pub block: Block,
    /// The fees its transactions pay.
    pub fees: Amount,
}

/// What became of a submitted nonce.
#[derive(Debug)]
pub enum Submitted {
    /// The block is the new tip.
    Accepted(BlockHash),
    /// A valid block, but not on the best chain any more (another block came first).
    Stale(BlockHash),
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("unknown template {0}: expired or never given; ask for a new one")]
    UnknownTemplate(String),
    #[error("timestamp {given} ms is before the template's earliest {earliest} ms")]
    TooEarly { given: u64, earliest: u64 },
    #[error("the block hash {0} does not meet the template's target")]
    InsufficientWork(BlockHash),
    #[error("the block was refused: {0}")]
    Refused(#[from] ChainError),
}

#[derive(Default)]
pub struct Templates {
    kept: Mutex<VecDeque<Arc<Template>>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Templates {
    /// A new template on the tip, paying `miner`.
    pub fn build(&self, node: &Node, miner: Address) -> Result<Arc<Template>, ChainError> {
        let block = build_template(node, miner, now_ms())?;
        let fees = fees_of(&block);
        // Ids are random-looking but unique: a counter mixed with the process's start, so
        // a restarted node does not take an old id for a new template.
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(*SALT);
        let template = Arc::new(Template { id, block, fees });
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == TEMPLATES_KEPT {
            kept.pop_front();
        }
        kept.push_back(template.clone());
        Ok(template)
    }

    /// The fees a template built now would collect, without keeping it (a long poll
    /// looks every second; kept, those would push miners' templates out).
    pub fn fees_now(&self, node: &Node, miner: Address) -> Result<Amount, ChainError> {
        Ok(fees_of(&build_template(node, miner, now_ms())?))
    }

    pub fn find(&self, id: u64) -> Option<Arc<Template>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().rev().find(|t| t.id == id).cloned()
    }

    /// Seals template `id` with `nonce` (and `timestamp_ms`, if given) and submits it.
    pub fn submit(
        &self,
        node: &Node,
        id: u64,
        nonce: u64,
        timestamp_ms: Option<u64>,
    ) -> Result<Submitted, SubmitError> {
        let template = self
            .find(id)
            .ok_or_else(|| SubmitError::UnknownTemplate(format!("{id:016x}")))?;
        let mut block = template.block.clone();
        if let Some(timestamp_ms) = timestamp_ms {
            // The template's own timestamp is at least the median time past plus one: an
            // earlier one can only be refused.
            if timestamp_ms < block.header.timestamp_ms.0 {
                return Err(SubmitError::TooEarly {
                    given: timestamp_ms,
                    earliest: block.header.timestamp_ms.0,
                });
            }
            block.header.timestamp_ms = apiary_core::TimestampMs(timestamp_ms);
        }
        block.header.nonce = nonce;
        let hash = block.hash();
        // Checked before anything else: a wrong nonce costs one hash, not a block check.
        let meets = block
            .header
            .bits
            .to_target()
            .is_ok_and(|target| target.is_met_by(&hash.0));
        if !meets {
            return Err(SubmitError::InsufficientWork(hash));
        }
        match node.submit_mined_block(block)? {
            Accepted::NewTip(_) => Ok(Submitted::Accepted(hash)),
            Accepted::SideBranch | Accepted::Duplicate => Ok(Submitted::Stale(hash)),
        }
    }
}

fn fees_of(block: &Block) -> Amount {
    block.fees().unwrap_or(Amount::ZERO)
}

static SALT: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
});
