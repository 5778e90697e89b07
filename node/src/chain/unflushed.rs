//! What changed in the records derived from blocks (accounts, tx index, address index)
//! since they were last written: kept in memory, written together by the next flush.

use crate::store::{AddressTx, StoreBatch, TxLocation};
use apiary_core::{AccountTree, Address, Block, BlockHash, Hash256, Height, StateUndo, TxId};
use std::collections::{BTreeMap, HashMap, HashSet};

/// An address index entry and what it now points at (None: removed by a disconnect).
type AddressChange = (AddressTx, Option<Hash256>);

#[derive(Default)]
pub(super) struct Unflushed {
    accounts: HashSet<Address>,
    /// None where a disconnect took the tx off the main chain.
    txs: HashMap<TxId, Option<TxLocation>>,
    /// Address index changes in the order they happened (None: removed by a disconnect).
    /// A log, not a map: appending is all a block costs; the rare reads and the flush sort.
    addresses: Vec<AddressChange>,
}

impl Unflushed {
    /// `block` (whose txids are `txids`) joined the main chain, changing what `undo` lists.
    pub(super) fn connected(
        &mut self,
        hash: BlockHash,
        block: &Block,
        txids: &[TxId],
        undo: &StateUndo,
    ) {
        self.accounts.extend(undo.previous.iter().map(|(a, _)| *a));
        for (index, (stx, txid)) in (0..).zip(block.txs.iter().zip(txids)) {
            self.txs
                .insert(*txid, Some(TxLocation { block: hash, index }));
            for address in [stx.tx.from, stx.tx.to] {
                self.addresses.push((
                    address_tx(address, block.header.height, index),
                    Some(txid.0),
                ));
            }
        }
        self.addresses.push((reward_entry(block), Some(hash.0)));
    }

    /// `block` left the main chain; `undo` is what connecting it had changed.
    pub(super) fn disconnected(&mut self, block: &Block, undo: &StateUndo) {
        self.accounts.extend(undo.previous.iter().map(|(a, _)| *a));
        for (index, (stx, txid)) in (0..).zip(block.txs.iter().zip(block.txids())) {
            self.txs.insert(txid, None);
            for address in [stx.tx.from, stx.tx.to] {
                self.addresses
                    .push((address_tx(address, block.header.height, index), None));
            }
        }
        self.addresses.push((reward_entry(block), None));
    }

    /// Takes in `later`'s changes, which happened after this one's.
    pub(super) fn absorb(&mut self, later: Unflushed) {
        self.accounts.extend(later.accounts);
        self.txs.extend(later.txs);
        self.addresses.extend(later.addresses);
    }

    pub(super) fn accounts_len(&self) -> usize {
        self.accounts.len()
    }

    pub(super) fn txs_len(&self) -> usize {
        self.txs.len()
    }

    /// Where `txid` is, if a change since the last flush says; None if it does not know.
    pub(super) fn tx_location(&self, txid: &TxId) -> Option<Option<TxLocation>> {
        self.txs.get(txid).copied()
    }

    /// `address`'s latest change per entry before `before` (all when None).
    pub(super) fn address_txs(
        &self,
        address: &Address,
        before: Option<AddressTx>,
    ) -> BTreeMap<AddressTx, Option<Hash256>> {
        self.addresses
            .iter()
            .filter(|(entry, _)| entry.address == *address && before.is_none_or(|b| *entry < b))
            .copied()
            .collect()
    }

    /// Keeps only the last change of every entry, in key order. The log stays valid for
    /// reads and appends, so a flush that fails to commit loses nothing.
    fn compact_addresses(&mut self) {
        // Stable: equal keys stay in the order they happened, so the last one wins.
        self.addresses.sort_by_key(|(entry, _)| *entry);
        self.addresses.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                *kept = *later;
            }
            same
        });
    }

    /// Puts every change into `batch`, sorted (RocksDB's memtable takes sorted keys faster),
    /// reading accounts' current values from `state`.
    pub(super) fn write(&mut self, batch: &mut StoreBatch<'_>, state: &AccountTree) {
        let mut accounts: Vec<&Address> = self.accounts.iter().collect();
        accounts.sort_unstable();
        for address in accounts {
            batch.put_account(address, state.get(address));
        }
        let mut txs: Vec<(&TxId, &Option<TxLocation>)> = self.txs.iter().collect();
        txs.sort_unstable_by_key(|(txid, _)| **txid);
        for (txid, location) in txs {
            match location {
                Some(location) => batch.put_tx(txid, *location),
                None => batch.delete_tx(txid),
            }
        }
        self.compact_addresses();
        for (entry, id) in &self.addresses {
            match id {
                Some(id) => batch.put_address_tx(entry, id),
                None => batch.delete_address_tx(entry),
            }
        }
    }
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
