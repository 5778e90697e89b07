//! A block's state changes worked out before the chain's lock is taken. Connecting a block
//! is mostly reading and rehashing the state's pages; done under the lock, every reader of
//! the node (RPC, peers, metrics) would wait for it. The pages are read through the state
//! alone (it takes no chain lock), and the result is kept only if the tip and the state are
//! still those it was worked out on when the lock is taken; otherwise the chain works the
//! block out again, as it always could.

use super::CheckedBlock;
use crate::state::{Pending, StateDb};
use apiary_core::validate::{connect_block, Connected};
use apiary_core::{BlockHash, ChainSpec};

pub struct Prepared {
    /// The block it is for.
    pub(super) block: BlockHash,
    /// The tip it extends.
    pub(super) parent: BlockHash,
    /// The state's commit count it read (`StateDb::commits`).
    pub(super) commits: u64,
    pub(super) connected: Connected,
}

impl Prepared {
    /// `checked`'s changes on `state` as it is now, if it extends `tip`. None when it does
    /// not, or when it is invalid or the state is unreadable (the chain then works it out
    /// under its lock and reports why).
    pub fn work_out(
        state: &StateDb,
        tip: BlockHash,
        checked: &CheckedBlock,
        spec: &ChainSpec,
    ) -> Option<Prepared> {
        if checked.block.header.prev_hash != tip {
            return None;
        }
        let commits = state.commits();
        let pending = Pending::new(state);
        let connected = connect_block(&pending, &checked.block, &checked.txids, spec).ok()?;
        Some(Prepared {
            block: checked.hash,
            parent: tip,
            commits,
            connected,
        })
    }

    /// Whether it still holds for `block` on a state at `tip` after `commits` commits.
    pub(super) fn holds(&self, block: &BlockHash, tip: &BlockHash, commits: u64) -> bool {
        self.block == *block && self.parent == *tip && self.commits == commits
    }
}
