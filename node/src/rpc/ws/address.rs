//! The `address` topic: one address's transactions as they go pending, confirmed (deeper
//! each block, up to the depth asked for) and dropped.

use crate::events::{BlockBrief, TxBrief};
use apiary_core::{Address, AddressPrefix, BlockHash, TxId};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

pub(super) struct AddressWatch {
    pub(super) address: Address,
    /// Seen entering the mempool, not yet in a block.
    pub(super) pending: HashSet<TxId>,
    /// In a main-chain block: (height, block) until reported `max_confirmations` deep.
    pub(super) confirmed: HashMap<TxId, (u64, BlockHash, TxBrief)>,
    pub(super) max_confirmations: u64,
}

pub(super) fn tx_json(tx: &TxBrief, event: &str, prefix: &AddressPrefix) -> Value {
    json!({
        "event": event,
        "txid": tx.txid.to_string(),
        "from": tx.from.to_text(prefix),
        "to": tx.to.to_text(prefix),
        "amount": tx.amount.base_units().to_string(),
        "fee": tx.fee.base_units().to_string(),
    })
}

impl AddressWatch {
    /// A transaction entered the mempool: pending, if it is this address's and new.
    pub(super) fn accepted(&mut self, tx: &TxBrief, prefix: &AddressPrefix) -> Option<Value> {
        let new = tx.touches(&self.address)
            && !self.confirmed.contains_key(&tx.txid)
            && self.pending.insert(tx.txid);
        new.then(|| tx_json(tx, "pending", prefix))
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
    ) -> Vec<Value> {
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
                    out.push(tx_json(tx, "pending", prefix));
                } else {
                    let mut dropped = tx_json(tx, "dropped", prefix);
                    dropped["reason"] =
                        json!("its block left the main chain and it is not valid on the new one");
                    out.push(dropped);
                }
            }
        }
        for (txid, reason) in dropped {
            if self.pending.remove(txid) {
                out.push(json!({"event": "dropped", "txid": txid.to_string(), "reason": reason}));
            }
        }
        let tip = connected.last().map_or(0, |b| b.height);
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
            let confirmations = tip.saturating_sub(*height) + 1;
            let mut confirmed = tx_json(tx, "confirmed", prefix);
            confirmed["height"] = json!(height);
            confirmed["block_hash"] = json!(hash.to_string());
            confirmed["confirmations"] = json!(confirmations);
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
                out.push(json!({
                    "event": "dropped",
                    "txid": txid.to_string(),
                    "reason": "it left the mempool without a block (replaced, evicted or expired)",
                }));
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
            height,
            hash: BlockHash(Hash256([n; 32])),
            timestamp_ms: 0,
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

    fn events(values: &[Value]) -> Vec<(String, String)> {
        values
            .iter()
            .map(|v| {
                (
                    v["event"].as_str().unwrap().to_string(),
                    v["txid"].as_str().unwrap()[..2].to_string(),
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
        assert_eq!(first[0]["confirmations"], 1);
        let second = w.follow(&[block(2, 0xb2, vec![])], &[], &[], &mut |_| false, &prefix);
        assert_eq!(second[0]["confirmations"], 2);
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
