//! The pool's books: the last N shares (PPLNS), the blocks found and who each credits,
//! balances owed, and payouts made. Written whole to `<datadir>/pool.json` (temp file,
//! fsync, rename) before a share is acknowledged or a payout is sent, so a pool killed at
//! any moment restarts with every share it acknowledged and pays nothing twice. Settled
//! entries beyond the newest few move to an append-only history, so the books (and each
//! write) stay the same size however long the pool runs.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

#[derive(Clone, Serialize, Deserialize)]
pub struct Share {
    pub miner: String,
    /// Hashes this share stands for: its difficulty.
    pub weight: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
#[serde(rename_all = "snake_case")]
pub enum BlockState {
    /// Found; its reward is spendable once it is `maturity` deep.
    Immature,
    /// Deep enough: its credits moved to the balances.
    Credited,
    /// It left the main chain: its credits are void.
    Orphaned,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct FoundBlock {
    pub height: u64,
    pub hash: String,
    pub reward: u64,
    pub fee: u64,
    /// What is left after the integer split (kept by the pool).
    pub remainder: u64,
    /// Each miner's weight in the window the reward was split over (for audits).
    pub weights: BTreeMap<String, u64>,
    pub credits: BTreeMap<String, u64>,
    pub state: BlockState,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
#[serde(rename_all = "snake_case")]
pub enum PayoutState {
    /// Signed and recorded; given to the node (again after a restart if it lost it).
    Sent,
    Confirmed,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Payout {
    pub txid: String,
    pub to: String,
    pub amount: u64,
    pub fee: u64,
    pub nonce: u64,
    pub tx_hex: String,
    pub state: PayoutState,
}

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct MinerTotals {
    pub shares: u64,
    pub weight: u64,
}

#[derive(Default, Serialize, Deserialize)]
pub struct Books {
    /// The last `window` shares, oldest first.
    pub window: VecDeque<Share>,
    /// Every share ever accepted, by miner.
    pub miners: BTreeMap<String, MinerTotals>,
    pub blocks: Vec<FoundBlock>,
    /// Credited and not yet paid, by miner (base units).
    pub balances: BTreeMap<String, u64>,
    pub payouts: Vec<Payout>,
    /// The next nonce of the pool's account for a payout.
    pub next_nonce: u64,
}

impl Books {
    pub fn load(path: &Path) -> anyhow::Result<Books> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is damaged ({e}); it holds what miners are owed: restore it from a \
                     backup, it is not replaced",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Books::default()),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    /// The books as written to disk: taken under the books' lock, written outside it (a
    /// share must not wait for an fsync to be counted).
    pub fn to_bytes(&self) -> std::io::Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(std::io::Error::other)
    }

    pub fn save(bytes: &[u8], path: &Path) -> std::io::Result<()> {
        apiary_files::write_atomically(path, |file| std::io::Write::write_all(file, bytes))
    }

    pub fn add_share(&mut self, miner: &str, weight: u64, window: usize) {
        self.window.push_back(Share {
            miner: miner.to_string(),
            weight,
        });
        while self.window.len() > window {
            self.window.pop_front();
        }
        let totals = self.miners.entry(miner.to_string()).or_default();
        totals.shares = totals.shares.saturating_add(1);
        totals.weight = totals.weight.saturating_add(weight);
    }

    /// Splits `reward` over the window's shares by weight (PPLNS), after the pool's fee.
    /// Credits are floored; what the flooring leaves is the pool's. Sum of credits + fee +
    /// remainder = reward, exactly.
    pub fn block_found(&mut self, height: u64, hash: String, reward: u64, fee_percent: u64) {
        if self.blocks.iter().any(|b| b.hash == hash) {
            return;
        }
        let fee = (reward as u128 * fee_percent as u128 / 100) as u64;
        let split = reward - fee;
        let total: u128 = self.window.iter().map(|s| s.weight as u128).sum();
        let mut credits: BTreeMap<String, u64> = BTreeMap::new();
        let mut weights: BTreeMap<String, u64> = BTreeMap::new();
        for share in &self.window {
            *weights.entry(share.miner.clone()).or_default() += share.weight;
        }
        for (miner, weight) in &weights {
            let credit = (split as u128 * *weight as u128)
                .checked_div(total)
                .unwrap_or(0) as u64;
            if credit > 0 {
                credits.insert(miner.clone(), credit);
            }
        }
        let remainder = split - credits.values().sum::<u64>();
        self.blocks.push(FoundBlock {
            height,
            hash,
            reward,
            fee,
            remainder,
            weights,
            credits,
            state: BlockState::Immature,
        });
    }
}

/// An entry that no longer changes, moved out of the books into the history file.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    Block(FoundBlock),
    Payout(Payout),
}

impl Books {
    /// Settled entries beyond the newest `keep` of each kind (blocks credited or orphaned,
    /// payouts confirmed), oldest first. They stay in the books until `forget` is called,
    /// after they are safely in the history: the books are written at any moment, and an
    /// entry must always be in one or the other.
    pub fn settled_beyond(&self, keep: usize) -> Vec<Settled> {
        let blocks: Vec<&FoundBlock> = self
            .blocks
            .iter()
            .filter(|b| b.state != BlockState::Immature)
            .collect();
        let payouts: Vec<&Payout> = self
            .payouts
            .iter()
            .filter(|p| p.state == PayoutState::Confirmed)
            .collect();
        let old_blocks = blocks.len().saturating_sub(keep);
        let old_payouts = payouts.len().saturating_sub(keep);
        blocks[..old_blocks]
            .iter()
            .map(|b| Settled::Block((*b).clone()))
            .chain(
                payouts[..old_payouts]
                    .iter()
                    .map(|p| Settled::Payout((*p).clone())),
            )
            .collect()
    }

    /// Drops `entries` (as `settled_beyond` gave them) from the books.
    pub fn forget(&mut self, entries: &[Settled]) {
        for entry in entries {
            match entry {
                Settled::Block(block) => self.blocks.retain(|b| b.hash != block.hash),
                Settled::Payout(payout) => self.payouts.retain(|p| p.txid != payout.txid),
            }
        }
    }
}

/// `<datadir>/pool.json`.
pub fn path(datadir: &Path) -> PathBuf {
    datadir.join("pool.json")
}

/// `<datadir>/pool-history.jsonl`: settled blocks and confirmed payouts, one JSON object a
/// line, appended. After a crash an entry may appear twice (the same entry again).
pub fn history_path(datadir: &Path) -> PathBuf {
    datadir.join("pool-history.jsonl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_splits_by_weight_and_the_books_add_up() {
        let mut books = Books::default();
        for _ in 0..3 {
            books.add_share("a", 100, 10);
        }
        books.add_share("b", 300, 10);
        books.add_share("c", 1, 10);
        books.block_found(5, "h".into(), 5_000_000_001, 1);
        let block = &books.blocks[0];
        assert_eq!(block.fee, 50_000_000);
        assert_eq!(block.credits["a"], block.credits["b"]);
        assert!(block.credits["c"] < block.credits["a"] / 100);
        let sum: u64 = block.credits.values().sum();
        assert_eq!(sum + block.fee + block.remainder, 5_000_000_001);
        // The same block again changes nothing.
        books.block_found(5, "h".into(), 5_000_000_001, 1);
        assert_eq!(books.blocks.len(), 1);
    }

    #[test]
    fn only_settled_entries_beyond_the_newest_leave_the_books() {
        let mut books = Books::default();
        books.add_share("a", 1, 10);
        for height in 1..=5 {
            books.block_found(height, format!("h{height}"), 100, 0);
        }
        for block in &mut books.blocks[..3] {
            block.state = BlockState::Credited;
        }
        books.blocks[3].state = BlockState::Orphaned;
        // Four settled, the newest two kept; the immature one stays whatever its age.
        let old = books.settled_beyond(2);
        let hashes: Vec<&str> = old
            .iter()
            .map(|e| match e {
                Settled::Block(b) => b.hash.as_str(),
                Settled::Payout(p) => p.txid.as_str(),
            })
            .collect();
        assert_eq!(hashes, ["h1", "h2"]);
        books.forget(&old);
        let left: Vec<&str> = books.blocks.iter().map(|b| b.hash.as_str()).collect();
        assert_eq!(left, ["h3", "h4", "h5"]);
        assert!(books.settled_beyond(2).is_empty());
    }

    #[test]
    fn only_the_last_n_shares_count() {
        let mut books = Books::default();
        books.add_share("old", 1000, 2);
        books.add_share("new", 1, 2);
        books.add_share("new", 1, 2);
        books.block_found(1, "h".into(), 100, 0);
        assert_eq!(books.blocks[0].credits.get("old"), None);
        assert_eq!(books.blocks[0].credits["new"], 100);
        assert_eq!(books.miners["old"].shares, 1);
    }
}
