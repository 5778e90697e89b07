//! Peers' mempools when they meet: on connecting, each side asks the other for the txids
//! its mempool holds (highest fee first, at most `MAX_INVENTORY`), then for those it
//! lacks, a thousand at a time, one request in flight per peer, and takes them as it takes
//! gossip (a bad signature costs the sender as much), without gossiping them again: they
//! were gossiped when new, and a peer that held them long since would see our echo as
//! useless traffic. So a payment accepted anywhere reaches a node that was down or cut off
//! when it was gossiped — a miner that restarts, say — without the sender's wallet acting.

use super::gossip::judge_submitted;
use super::peers::{Flood, Misbehaviour};
use super::swarm::Behaviour;
use super::{Service, Verdict};
use crate::protocol::{
    Inbound, MempoolRequest, MempoolResponse, MAX_INVENTORY, MAX_TXS_PER_REQUEST,
};
use apiary_core::{SignedTransaction, TxId};
use libp2p::gossipsub::MessageAcceptance;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::{PeerId, Swarm};
use std::collections::{HashSet, VecDeque};
use std::time::Instant;
use tokio::sync::mpsc;

/// What this node is pulling from one peer's mempool.
#[derive(Default)]
pub(super) struct Pull {
    /// The inventory request, or the transactions request, in flight.
    asked: Option<(OutboundRequestId, Asked)>,
    /// Txids still to ask for, a request's worth each.
    queued: VecDeque<Vec<TxId>>,
}

enum Asked {
    Inventory,
    Txs(HashSet<TxId>),
}

impl Service {
    /// Asks a peer that just connected what its mempool holds.
    pub(super) fn ask_inventory(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        let request = MempoolRequest::Inventory { max: MAX_INVENTORY };
        let id = swarm
            .behaviour_mut()
            .mempool
            .send_request(&peer, Inbound::Request(request));
        self.pulls.insert(
            peer,
            Pull {
                asked: Some((id, Asked::Inventory)),
                queued: VecDeque::new(),
            },
        );
    }

    pub(super) fn on_mempool_event(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        event: request_response::Event<Inbound<MempoolRequest>, MempoolResponse>,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.serve_mempool(swarm, peer, request, channel, verdicts),
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => self.on_mempool_response(swarm, peer, request_id, response, verdicts),
            // A peer that does not speak the protocol (a stock libp2p peer), a closed
            // connection, a timeout: nothing more is pulled from it this time.
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "mempool request failed");
                self.pulls.remove(&peer);
            }
            request_response::Event::InboundFailure { .. }
            | request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Answers a peer's mempool request off the loop (it takes the node's lock).
    fn serve_mempool(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        request: Inbound<MempoolRequest>,
        channel: ResponseChannel<MempoolResponse>,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
        let now = Instant::now();
        let request = match request {
            Inbound::Malformed(reason) => {
                tracing::debug!(%peer, %reason, "malformed mempool request");
                self.penalise(swarm, peer, Misbehaviour::MalformedRequest);
                return;
            }
            Inbound::Request(MempoolRequest::GetTxs { txids })
                if txids.len() > MAX_TXS_PER_REQUEST =>
            {
                self.penalise(swarm, peer, Misbehaviour::MalformedRequest);
                return;
            }
            Inbound::Request(request) => request,
        };
        let flood = match request {
            MempoolRequest::Inventory { .. } => Flood::MempoolInventories,
            MempoolRequest::GetTxs { .. } => Flood::BlockRequests,
        };
        if !self.book.allow(peer, flood, now) {
            self.penalise(swarm, peer, Misbehaviour::Flood(flood));
            return;
        }
        let (node, verdicts) = (self.node.clone(), verdicts.clone());
        tokio::task::spawn_blocking(move || {
            let guard = node.lock();
            let response = match request {
                MempoolRequest::Inventory { max } => MempoolResponse::Inventory(
                    guard.mempool.inventory(max.min(MAX_INVENTORY) as usize),
                ),
                MempoolRequest::GetTxs { txids } => MempoolResponse::Txs(
                    txids
                        .iter()
                        .filter_map(|txid| guard.mempool.get(txid).cloned())
                        .collect(),
                ),
            };
            drop(guard);
            let _ = verdicts.send(Verdict::MempoolServed { channel, response });
        });
    }

    pub(super) fn on_mempool_served(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        channel: ResponseChannel<MempoolResponse>,
        response: MempoolResponse,
    ) {
        let _ = swarm
            .behaviour_mut()
            .mempool
            .send_response(channel, response);
    }

    fn on_mempool_response(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        id: OutboundRequestId,
        response: MempoolResponse,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
        let Some(pull) = self.pulls.get_mut(&peer) else {
            return;
        };
        let asked = match pull.asked.take() {
            Some((asked_id, asked)) if asked_id == id => asked,
            other => {
                pull.asked = other;
                return;
            }
        };
        let (node, verdicts) = (self.node.clone(), verdicts.clone());
        match (asked, response) {
            (Asked::Inventory, MempoolResponse::Inventory(txids))
                if txids.len() <= MAX_INVENTORY as usize =>
            {
                tokio::task::spawn_blocking(move || {
                    let guard = node.lock();
                    let missing: Vec<TxId> = txids
                        .into_iter()
                        .filter(|txid| !guard.mempool.contains(txid))
                        .collect();
                    drop(guard);
                    let _ = verdicts.send(Verdict::MempoolMissing { peer, missing });
                });
            }
            (Asked::Txs(wanted), MempoolResponse::Txs(txs))
                if txs.iter().all(|tx| wanted.contains(&tx.txid())) =>
            {
                tokio::task::spawn_blocking(move || {
                    let misbehaviour = judge_pulled(&node, txs);
                    let _ = verdicts.send(Verdict::TxsPulled { peer, misbehaviour });
                });
            }
            // More than asked for, or another kind of answer than the question.
            _ => {
                self.pulls.remove(&peer);
                self.penalise(swarm, peer, Misbehaviour::Unrequested);
            }
        }
    }

    /// The txids of `peer`'s inventory this node lacks: asked for in turn.
    pub(super) fn on_mempool_missing(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        missing: Vec<TxId>,
    ) {
        let Some(pull) = self.pulls.get_mut(&peer) else {
            return;
        };
        if !missing.is_empty() {
            tracing::debug!(%peer, missing = missing.len(), "pulling transactions from a peer's mempool");
        }
        pull.queued
            .extend(missing.chunks(MAX_TXS_PER_REQUEST).map(<[TxId]>::to_vec));
        self.pull_next(swarm, peer);
    }

    /// The transactions pulled from `peer` were judged: it pays for the invalid ones, and
    /// the next are asked for.
    pub(super) fn on_txs_pulled(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        misbehaviour: Vec<Misbehaviour>,
    ) {
        for why in misbehaviour {
            self.penalise(swarm, peer, why);
        }
        self.pull_next(swarm, peer);
    }

    fn pull_next(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        let Some(pull) = self.pulls.get_mut(&peer) else {
            return;
        };
        let Some(txids) = pull.queued.pop_front() else {
            self.pulls.remove(&peer);
            return;
        };
        let wanted = txids.iter().copied().collect();
        let request = MempoolRequest::GetTxs { txids };
        let id = swarm
            .behaviour_mut()
            .mempool
            .send_request(&peer, Inbound::Request(request));
        pull.asked = Some((id, Asked::Txs(wanted)));
    }
}

/// Takes pulled transactions into the mempool: what each says of the peer that sent it
/// (a bad signature, another chain's), as for gossip. Known, stale or unpayable ones may
/// be honest races and cost nothing.
fn judge_pulled(node: &crate::node::Node, txs: Vec<SignedTransaction>) -> Vec<Misbehaviour> {
    txs.into_iter()
        .filter_map(|stx| {
            let judgement = judge_submitted(node.take_pulled_tx(stx));
            (judgement.acceptance == MessageAcceptance::Reject)
                .then_some(judgement.misbehaviour)
                .flatten()
        })
        .collect()
}
