//! Every known header with its cumulative work and status. The entries sit in one vector
//! in the order they became known, and a map holds each hash's position: a map of whole
//! entries (~220 bytes each) spread them over a table twice the count, every page of it
//! touched, ~950 bytes of memory a header at a million blocks.

use crate::store::IndexEntry;
use apiary_core::state::FastMap;
use apiary_core::BlockHash;

#[derive(Default)]
pub struct HeaderIndex {
    positions: FastMap<BlockHash, u32>,
    entries: Vec<(BlockHash, IndexEntry)>,
}

impl HeaderIndex {
    /// The index of these entries (each hash once), keeping the vector as it is.
    pub fn from_entries(entries: Vec<(BlockHash, IndexEntry)>) -> HeaderIndex {
        let mut positions = FastMap::default();
        positions.reserve(entries.len());
        for (position, (hash, _)) in entries.iter().enumerate() {
            positions.insert(*hash, position as u32);
        }
        HeaderIndex { positions, entries }
    }

    pub fn get(&self, hash: &BlockHash) -> Option<&IndexEntry> {
        let position = *self.positions.get(hash)?;
        Some(&self.entries[position as usize].1)
    }

    pub fn get_mut(&mut self, hash: &BlockHash) -> Option<&mut IndexEntry> {
        let position = *self.positions.get(hash)?;
        Some(&mut self.entries[position as usize].1)
    }

    /// Adds or replaces `hash`'s entry.
    pub fn insert(&mut self, hash: BlockHash, entry: IndexEntry) {
        match self.positions.get(&hash) {
            Some(&position) => self.entries[position as usize].1 = entry,
            None => {
                let position = u32::try_from(self.entries.len())
                    .expect("fewer than four billion headers fit in memory anyway");
                self.positions.insert(hash, position);
                self.entries.push((hash, entry));
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&BlockHash, &IndexEntry)> {
        self.entries.iter().map(|(hash, entry)| (hash, entry))
    }
}

impl std::ops::Index<&BlockHash> for HeaderIndex {
    type Output = IndexEntry;

    fn index(&self, hash: &BlockHash) -> &IndexEntry {
        self.get(hash).expect("the hash is indexed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BlockStatus;
    use apiary_core::{Address, BlockHeader, CompactTarget, Hash256, Height, Work};

    fn entry(height: u64, status: BlockStatus) -> IndexEntry {
        let header = BlockHeader {
            version: 1,
            height: Height(height),
            prev_hash: BlockHash(Hash256::ZERO),
            tx_root: Hash256::ZERO,
            state_root: Hash256::ZERO,
            miner: Address([0; 32]),
            timestamp_ms: apiary_core::TimestampMs(0),
            bits: CompactTarget(0x2000_ffff),
            nonce: 0,
        };
        IndexEntry {
            header,
            total_work: Work::ZERO,
            status,
        }
    }

    #[test]
    fn entries_are_found_replaced_and_added_by_hash() {
        let hash = |b: u8| BlockHash(Hash256([b; 32]));
        let mut index = HeaderIndex::from_entries(vec![(hash(1), entry(1, BlockStatus::Stored))]);
        index.insert(hash(2), entry(2, BlockStatus::Stored));
        index.insert(hash(1), entry(1, BlockStatus::Valid));
        assert_eq!(index[&hash(1)].status, BlockStatus::Valid);
        assert_eq!(index.get(&hash(2)).map(|e| e.header.height.0), Some(2));
        assert!(index.get(&hash(3)).is_none());
        index.get_mut(&hash(2)).unwrap().status = BlockStatus::Invalid;
        assert_eq!(index[&hash(2)].status, BlockStatus::Invalid);
        assert_eq!(index.iter().count(), 2);
    }
}
