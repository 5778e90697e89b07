//! `--cache-mb`: the memory the node spends on the ledger, shared out between RocksDB's
//! block cache (table blocks, and every index and filter block, so those stay bounded as
//! the store grows), its memtables, the cache of state pages, and the state's changes
//! held until the next flush (which happens once they outgrow their share). Whatever the
//! number of accounts, these stay within the budget; the rest of the node (headers,
//! mempool, peers) is a fixed overhead beside it.

use crate::store::Tuning;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheBudget {
    bytes: u64,
}

impl Default for CacheBudget {
    fn default() -> CacheBudget {
        CacheBudget::mib(CacheBudget::DEFAULT_MIB)
    }
}

impl CacheBudget {
    /// Suits a machine of 2 GiB (Bitcoin Core's default dbcache is 450 MiB too).
    pub const DEFAULT_MIB: u32 = 450;
    /// Below this the shares are too small to hold a block's working set.
    pub const MIN_MIB: u32 = 16;

    pub fn mib(mib: u32) -> CacheBudget {
        CacheBudget {
            bytes: u64::from(mib.max(Self::MIN_MIB)) << 20,
        }
    }

    /// RocksDB: a quarter for its block cache, an eighth (at most 64 MiB) for memtables.
    pub fn store_tuning(&self) -> Tuning {
        let memtables = (self.bytes / 8).min(64 << 20);
        Tuning::new((self.bytes / 4) as usize, memtables as usize)
    }

    /// Pages of the state tree read from the store: three eighths.
    pub fn state_pages(&self) -> u64 {
        self.bytes * 3 / 8
    }

    /// The state's changes since the last flush: a quarter; more starts a flush.
    pub fn unflushed_state(&self) -> usize {
        (self.bytes / 4) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shares_stay_within_the_budget() {
        for mib in [16, 450, 4096] {
            let budget = CacheBudget::mib(mib);
            let memtables = (budget.bytes / 8).min(64 << 20);
            let total = budget.bytes / 4
                + memtables
                + budget.state_pages()
                + budget.unflushed_state() as u64;
            assert!(total <= budget.bytes, "{mib} MiB: {total}");
        }
        assert_eq!(CacheBudget::mib(1), CacheBudget::mib(CacheBudget::MIN_MIB));
    }
}
