//! What changed in the indexes derived from blocks (tx index, address index) since they
//! were last written: kept in memory, written by the next flush. (The accounts' changes
//! are the state's own: `crate::state`.)

use crate::store::{AddressEntry, AddressTx, Store, StoreError, TxLocation};
use apiary_core::{Address, Amount, Block, BlockHash, Height, TxId};
use std::collections::BTreeMap;

/// An address index entry and what it now holds (None: removed by a disconnect).
type AddressChange = (AddressTx, Option<AddressEntry>);

/// Logs, not maps: appending is all a block costs (inserting thousands of keys per block
/// into maps of hundreds of thousands cost more than the rest of connecting it, in cache
/// misses and rehashing); the rare reads scan, and the flush sorts and keeps the last
/// change of each key.
#[derive(Default)]
pub(super) struct Unflushed {
    /// Tx index changes in the order they happened (None: a disconnect took the tx off
    /// the main chain).
    txs: Vec<(TxId, Option<TxLocation>)>,
    /// Address index changes in the order they happened (None: removed by a disconnect).
    addresses: Vec<AddressChange>,
}

impl Unflushed {
    /// `block` (whose txids are `txids`) joined the main chain, paying its miner `earned`
    /// (new coins and fees).
    pub(super) fn connected(
        &mut self,
        hash: BlockHash,
        block: &Block,
        txids: &[TxId],
        earned: Amount,
    ) {
        let height = block.header.height;
        for (index, (stx, txid)) in (0..).zip(block.txs.iter().zip(txids)) {
            self.txs
                .push((*txid, Some(TxLocation { block: hash, index })));
            let tx = &stx.tx;
            // The block is valid: amount plus fee fit in a u64.
            let spent = tx.amount.checked_add(tx.fee).unwrap_or(tx.amount);
            let (sender, recipient) = (
                AddressEntry {
                    id: txid.0,
                    received: Amount::ZERO,
                    sent: spent,
                },
                AddressEntry {
                    id: txid.0,
                    received: tx.amount,
                    sent: Amount::ZERO,
                },
            );
            if tx.from == tx.to {
                let both = AddressEntry {
                    received: tx.amount,
                    ..sender
                };
                self.addresses
                    .push((address_tx(tx.from, height, index), Some(both)));
            } else {
                self.addresses
                    .push((address_tx(tx.from, height, index), Some(sender)));
                self.addresses
                    .push((address_tx(tx.to, height, index), Some(recipient)));
            }
        }
        let reward = AddressEntry {
            id: hash.0,
            received: earned,
            sent: Amount::ZERO,
        };
        self.addresses.push((reward_entry(block), Some(reward)));
    }

    /// `block` left the main chain.
    pub(super) fn disconnected(&mut self, block: &Block) {
        for (index, (stx, txid)) in (0..).zip(block.txs.iter().zip(block.txids())) {
            self.txs.push((txid, None));
            for address in [stx.tx.from, stx.tx.to] {
                self.addresses
                    .push((address_tx(address, block.header.height, index), None));
            }
        }
        self.addresses.push((reward_entry(block), None));
    }

    /// Takes in `later`'s changes, which happened after this one's.
    pub(super) fn absorb(&mut self, later: Unflushed) {
        self.txs.extend(later.txs);
        self.addresses.extend(later.addresses);
    }

    pub(super) fn tx_changes(&self) -> usize {
        self.txs.len()
    }

    /// Where `txid` is, if a change since the last flush says; None if it does not know.
    pub(super) fn tx_location(&self, txid: &TxId) -> Option<Option<TxLocation>> {
        // Newest first: the last change is the one that holds, and recent txs are the
        // ones asked about.
        self.txs
            .iter()
            .rev()
            .find(|(id, _)| id == txid)
            .map(|(_, location)| *location)
    }

    /// `address`'s latest change per entry before `before` (all when None).
    pub(super) fn address_txs(
        &self,
        address: &Address,
        before: Option<AddressTx>,
    ) -> BTreeMap<AddressTx, Option<AddressEntry>> {
        self.addresses
            .iter()
            .filter(|(entry, _)| entry.address == *address && before.is_none_or(|b| *entry < b))
            .copied()
            .collect()
    }

    /// Writes the tx and address index changes, each compacted to the last change of every
    /// key and sorted, the two indexes on two threads. The logs stay valid for reads and
    /// appends (only compacted), so a flush that fails loses nothing.
    pub(super) fn write_indexes(&mut self, store: &Store) -> Result<(), StoreError> {
        let (txs, addresses) = (&mut self.txs, &mut self.addresses);
        let (txs_written, addresses_written) = rayon::join(
            || {
                keep_last_change(txs);
                store.ingest_tx_index(txs)
            },
            || {
                keep_last_change(addresses);
                store.ingest_address_index(addresses)
            },
        );
        txs_written.and(addresses_written)
    }
}

/// Keeps only the last change of every key, in key order.
fn keep_last_change<K: Ord + Copy, V: Copy>(log: &mut Vec<(K, V)>) {
    // Stable: equal keys stay in the order they happened, so the last one wins.
    log.sort_by_key(|(key, _)| *key);
    log.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            *kept = *later;
        }
        same
    });
}

fn reward_entry(block: &Block) -> AddressTx {
    address_tx(block.header.miner, block.header.height, AddressTx::REWARD)
}

fn address_tx(address: Address, height: Height, index: u32) -> AddressTx {
    AddressTx {
        address,
        height,
        index,
    }
}
