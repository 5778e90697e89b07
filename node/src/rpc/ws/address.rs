//! The `address` topic: one address's transactions as they go pending, confirmed (deeper
//! each block, up to the depth asked for) and dropped.

use crate::events::{BlockBrief, TxBrief};
use apiary_api::{AddressEvent, AddressEventKind, Units};
use apiary_core::{Address, AddressPrefix, BlockHash, Height, TxId};
use std::collections::{HashMap, HashSet};

pub(super) struct AddressWatch {
    pub(super) address: Address,
    /// Seen entering the mempool, not yet in a block.
    pub(super) pending: HashSet<TxId>,
    /// In a main-chain block: (height, block) until reported `max_confirmations` deep.
    pub(super) confirmed: HashMap<TxId, (Height, BlockHash, TxBrief)>,
    pub(super) max_confirmations: u64,
}

pub(super) fn tx_event(
    tx: &TxBrief,
    event: AddressEventKind,
    prefix: &AddressPrefix,
) -> AddressEvent {
    AddressEvent {
        from: Some(tx.from.to_text(prefix)),
        to: Some(tx.to.to_text(prefix)),
        amount: Some(Units(tx.amount)),
        fee: Some(Units(tx.fee)),
        ..AddressEvent::bare(event, tx.txid)
    }
}

/// A pending transaction that left the mempool without a block.
fn dropped_event(txid: TxId, reason: &str) -> AddressEvent {
    AddressEvent {
        reason: Some(reason.to_string()),
        ..AddressEvent::bare(AddressEventKind::Dropped, txid)
    }
}

impl AddressWatch {
    /// A transaction entered the mempool: pending, if it is this address's and new.
    pub(super) fn accepted(
        &mut self,
        tx: &TxBrief,
        prefix: &AddressPrefix,
    ) -> Option<AddressEvent> {
        let new = tx.touches(&self.address)
            && !self.confirmed.contains_key(&tx.txid)
            && self.pending.insert(tx.txid);
        new.then(|| tx_event(tx, AddressEventKind::Pending, prefix))
    }

    /// What a change of tip means for this address's transactions: those that left the
    /// chain (back to pending, or dropped), those it confirmed, and deeper confirmations.
    pub(super) fn follow(
        &mut self,
        connected: &[BlockBrief],
        disconnected: &[BlockBrief],
        dropped: &[(TxId, String)],
        in_mempool: &mut dyn FnMut(&TxId) -> bool,
        prefix: &AddressPrefix,
    ) -> Vec<AddressEvent> {
        let mut out = Vec::new();
        let reconnected: HashSet<TxId> = connected
            .iter()
            .flat_map(|b| b.txs.iter().map(|t| t.txid))
            .collect();
        for block in disconnected {
            for tx in &block.txs {
                if self.confirmed.remove(&tx.txid).is_none() && !tx.touches(&self.address) {
                    continue;
                }
                if reconnected.contains(&tx.txid) {
                    continue;
                }
                if in_mempool(&tx.txid) {
                    self.pending.insert(tx.txid);
                    out.push(tx_event(tx, AddressEventKind::Pending, prefix));
                } else {
                    let mut dropped = tx_event(tx, AddressEventKind::Dropped, prefix);
                    dropped.reason = Some(
                        "its block left the main chain and it is not valid on the new one".into(),
                    );
                    out.push(dropped);
                }
            }
        }
        for (txid, reason) in dropped {
            if self.pending.remove(txid) {
                out.push(dropped_event(*txid, reason));
            }
        }
        let tip = connected.last().map_or(Height(0), |b| b.height);
        for block in connected {
            for tx in &block.txs {
                if tx.touches(&self.address) {
                    self.pending.remove(&tx.txid);
                    self.confirmed
                        .insert(tx.txid, (block.height, block.hash, tx.clone()));
                }
            }
        }
        // Deeper: every tracked confirmation, the new ones included (1 on arrival).
        let max = self.max_confirmations;
        self.confirmed.retain(|_, (height, hash, tx)| {
            let confirmations = tip.0.saturating_sub(height.0) + 1;
            let mut confirmed = tx_event(tx, AddressEventKind::Confirmed, prefix);
            confirmed.height = Some(*height);
            confirmed.block_hash = Some(*hash);
            confirmed.confirmations = Some(confirmations);
            out.push(confirmed);
            confirmations < max
        });
        // Replaced, evicted or expired: gone from the pool without a block.
        if !self.pending.is_empty() {
            let gone: Vec<TxId> = self
                .pending
                .iter()
                .filter(|txid| !reconnected.contains(txid) && !in_mempool(txid))
                .copied()
                .collect();
            for txid in gone {
                self.pending.remove(&txid);
                out.push(dropped_event(
                    txid,
                    "it left the mempool without a block (replaced, evicted or expired)",
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_core::{Amount, Hash256};

    fn tx(n: u8, from: u8, to: u8) -> TxBrief {
        TxBrief {
            txid: TxId(Hash256([n; 32])),
            from: Address([from; 32]),
            to: Address([to; 32]),
            amount: Amount::from_base_units(1),
            fee: Amount::from_base_units(1),
        }
    }

    fn block(height: u64, n: u8, txs: Vec<TxBrief>) -> BlockBrief {
        BlockBrief {
            height: Height(height),
            hash: BlockHash(Hash256([n; 32])),
            timestamp_ms: apiary_core::TimestampMs(0),
            miner: Address([0; 32]),
            txs,
        }
    }

    fn watch(confirmations: u64) -> AddressWatch {
        AddressWatch {
            address: Address([7; 32]),
            pending: HashSet::new(),
            confirmed: HashMap::new(),
            max_confirmations: confirmations,
        }
    }

    fn events(values: &[AddressEvent]) -> Vec<(String, String)> {
        values
            .iter()
            .map(|v| {
                let kind = serde_json::to_value(v.event).unwrap();
                (
                    kind.as_str().unwrap().to_string(),
                    v.txid.to_string()[..2].to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn a_reorg_returns_a_confirmed_tx_to_pending_or_drops_it() {
        let prefix = AddressPrefix::new("ap").unwrap();
        let mut w = watch(6);
        let (kept, lost, other) = (tx(1, 7, 9), tx(2, 9, 7), tx(3, 8, 9));
        let b1 = block(1, 0xb1, vec![kept.clone(), lost.clone(), other]);
        let confirmed = w.follow(std::slice::from_ref(&b1), &[], &[], &mut |_| false, &prefix);
        let mut said = events(&confirmed);
        said.sort();
        assert_eq!(
            said,
            vec![
                ("confirmed".into(), "01".into()),
                ("confirmed".into(), "02".into())
            ]
        );
        assert_eq!(confirmed.len(), 2, "the third tx is not this address's");
        // b1 leaves the chain; `kept` went back to the mempool, `lost` did not.
        let b1b = block(1, 0xc1, vec![]);
        let undone = w.follow(&[b1b], &[b1], &[], &mut |txid| *txid == kept.txid, &prefix);
        let mut said = events(&undone);
        said.sort();
        assert_eq!(
            said,
            vec![
                ("dropped".into(), "02".into()),
                ("pending".into(), "01".into())
            ]
        );
        assert!(w.pending.contains(&kept.txid));
        assert!(w.confirmed.is_empty());
    }

    #[test]
    fn confirmations_grow_to_the_asked_depth_then_stop() {
        let prefix = AddressPrefix::new("ap").unwrap();
        let mut w = watch(2);
        let paid = tx(1, 9, 7);
        let b1 = block(1, 0xb1, vec![paid]);
        let first = w.follow(&[b1], &[], &[], &mut |_| false, &prefix);
        assert_eq!(first[0].confirmations, Some(1));
        let second = w.follow(&[block(2, 0xb2, vec![])], &[], &[], &mut |_| false, &prefix);
        assert_eq!(second[0].confirmations, Some(2));
        let third = w.follow(&[block(3, 0xb3, vec![])], &[], &[], &mut |_| false, &prefix);
        assert!(third.is_empty(), "{third:?}");
    }

    #[test]
    fn a_pending_tx_that_leaves_the_pool_without_a_block_is_dropped() {
        let prefix = AddressPrefix::new("ap").unwrap();
        let mut w = watch(6);
        let paid = tx(1, 9, 7);
        assert!(w.accepted(&paid, &prefix).is_some());
        assert!(w.accepted(&paid, &prefix).is_none(), "told once");
        let said = w.follow(&[block(1, 0xb1, vec![])], &[], &[], &mut |_| false, &prefix);
        assert_eq!(events(&said), vec![("dropped".into(), "01".into())]);
    }
}
