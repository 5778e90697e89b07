//! Choosing a block's transactions: the best fee first, each sender's in nonce order. The
//! senders that can go next are kept sorted by fee as the pool changes (`ready`), so a
//! template reads only the queues it takes transactions from: its cost grows with the
//! block, not with the pool.

use super::{Candidate, Mempool};
use apiary_core::{Address, Amount, Nonce};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

impl Mempool {
    /// Puts `sender` where it belongs in `ready` after its queue or nonce changed (and
    /// drops a queue left empty).
    pub(super) fn restate(&mut self, sender: Address) {
        let Mempool {
            by_sender,
            txs,
            ready,
            ..
        } = self;
        let Some(queue) = by_sender.get_mut(&sender) else {
            return;
        };
        let head = queue
            .by_nonce
            .first_key_value()
            .filter(|(nonce, _)| **nonce == queue.next)
            .map(|(_, txid)| txs[txid].tx.tx.fee);
        if head != queue.ready_fee {
            if let Some(old) = queue.ready_fee {
                ready.remove(&(old, Reverse(sender)));
            }
            if let Some(fee) = head {
                ready.insert((fee, Reverse(sender)));
            }
            queue.ready_fee = head;
        }
        if queue.by_nonce.is_empty() {
            by_sender.remove(&sender);
        }
    }

    /// Pending transactions for a block on the tip the pool follows, highest fee first
    /// (equal fees: the lower sender address first, the same choice on every run), each
    /// sender's in nonce order from its next nonce (transactions beyond a gap wait), at
    /// most `max_txs` and `max_bytes` in all.
    pub fn select(&self, max_txs: usize, max_bytes: usize) -> Vec<Candidate> {
        // Two sources, merged by fee: the senders not taken from yet, from `ready` in
        // order, and the next transaction of each sender taken from, in a heap.
        let mut heads = self.ready.iter().rev().peekable();
        let mut following: BinaryHeap<(Amount, Reverse<Address>, Nonce)> = BinaryHeap::new();
        let mut selected = Vec::with_capacity(max_txs.min(self.txs.len()));
        let mut bytes = 0;
        while selected.len() < max_txs {
            let take_head = match (heads.peek(), following.peek()) {
                (Some(&&(fee, sender)), Some(&(next_fee, next_sender, _))) => {
                    (fee, sender) > (next_fee, next_sender)
                }
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let (sender, nonce) = if take_head {
                let Some(&(_, Reverse(sender))) = heads.next() else {
                    break;
                };
                (sender, self.by_sender[&sender].next)
            } else {
                let Some((_, Reverse(sender), nonce)) = following.pop() else {
                    break;
                };
                (sender, nonce)
            };
            let queue = &self.by_sender[&sender];
            let txid = queue.by_nonce[&nonce];
            let entry = &self.txs[&txid];
            // Too big: the sender's later nonces cannot go without it.
            if bytes + entry.size > max_bytes {
                continue;
            }
            bytes += entry.size;
            selected.push(Candidate {
                tx: entry.tx.clone(),
                txid,
                size: entry.size,
            });
            let after = nonce.0.checked_add(1).map(Nonce);
            if let Some((after, txid)) = after.and_then(|n| Some((n, queue.by_nonce.get(&n)?))) {
                following.push((self.txs[txid].tx.tx.fee, Reverse(sender), after));
            }
        }
        selected
    }
}
