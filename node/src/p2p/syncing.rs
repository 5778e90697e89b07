//! The network's side of catching up: carries out what the sync machine (`crate::sync`)
//! asks (requests, header checks on the blocking pool, imports on the importer thread,
//! penalties) and feeds it what comes back. Every request is remembered by id, so an
//! answer or a failure goes to what asked for it.

use super::gossip::Fetch;
use super::peers::Misbehaviour;
use super::swarm::Behaviour;
use super::{Service, Verdict};
use crate::node::Node;
use crate::protocol::{Inbound, Status, SyncRequest, SyncResponse, MAX_HEADERS_PER_RESPONSE};
use crate::sync::{Action, HeadersChecked, Request};
use apiary_core::{check_headers, BlockHash, BlockHeader, HeaderAncestry, HeaderError};
use libp2p::request_response::{OutboundFailure, OutboundRequestId};
use libp2p::{PeerId, Swarm};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What an outbound sync request was for.
pub(super) enum Pending {
    Status,
    Headers,
    Bodies,
    /// The whole block of a gossiped compact one.
    Fetch(Fetch),
}

impl Service {
    /// Our status, from the tip the node last published (no lock taken).
    pub(super) fn our_status(&self) -> Status {
        let tip = self.tip.borrow();
        Status {
            genesis: self.genesis,
            height: tip.height,
            tip: tip.hash,
            total_work: tip.work,
        }
    }

    pub(super) fn request(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        request: SyncRequest,
        pending: Pending,
    ) -> OutboundRequestId {
        let id = swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, Inbound::Request(request));
        self.requests.insert(id, (peer, pending));
        id
    }

    pub(super) fn ask_status(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        let ours = self.our_status();
        self.request(swarm, peer, SyncRequest::Status(ours), Pending::Status);
    }

    /// A peer said where its chain stands.
    pub(super) fn learn_status(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        status: Status,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
        if status.genesis != self.genesis {
            tracing::warn!(%peer, theirs = %status.genesis, ours = %self.genesis, "peer runs another chain; disconnecting");
            self.penalise(swarm, peer, Misbehaviour::OtherChain);
            let _ = swarm.disconnect_peer_id(peer);
            return;
        }
        self.set_peer(peer, |info| info.height = Some(status.height.0));
        let actions = self.sync.status(peer, status, Instant::now());
        self.carry_out(swarm, actions, verdicts);
    }

    /// An answer to one of our requests.
    pub(super) fn on_response(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        id: OutboundRequestId,
        response: SyncResponse,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
        let Some((_, pending)) = self.requests.remove(&id) else {
            return;
        };
        let now = Instant::now();
        let actions = match (pending, response) {
            (Pending::Status, SyncResponse::Status(status)) => {
                self.learn_status(swarm, peer, status, verdicts);
                return;
            }
            (Pending::Headers, SyncResponse::Headers(headers)) => {
                self.sync.headers(peer, headers, now)
            }
            (Pending::Bodies, SyncResponse::Blocks(blocks)) => {
                self.sync.bodies(peer, blocks, body_hash, now)
            }
            (Pending::Fetch(fetch), SyncResponse::Blocks(blocks)) => {
                self.on_fetched_body(swarm, fetch, blocks.into_iter().next(), verdicts);
                return;
            }
            (Pending::Fetch(fetch), _) => {
                self.penalise(swarm, peer, Misbehaviour::Unrequested);
                self.on_fetched_body(swarm, fetch, None, verdicts);
                return;
            }
            // An answer of another kind than the question.
            (pending, _) => {
                self.penalise(swarm, peer, Misbehaviour::Unrequested);
                let request = match pending {
                    Pending::Headers => Request::Headers,
                    _ => Request::Bodies,
                };
                self.sync.request_failed(peer, request, false, now)
            }
        };
        self.carry_out(swarm, actions, verdicts);
    }

    /// One of our requests failed: no answer in time, a broken stream, a closed connection.
    pub(super) fn on_request_failed(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        id: OutboundRequestId,
        error: &OutboundFailure,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
        let Some((_, pending)) = self.requests.remove(&id) else {
            return;
        };
        tracing::debug!(%peer, %error, "sync request failed");
        // Timing out or breaking the protocol is the peer's doing; a closed connection, a
        // failed dial or a protocol it does not speak (a stock libp2p peer) is not.
        let its_fault = matches!(error, OutboundFailure::Timeout | OutboundFailure::Io(_));
        let now = Instant::now();
        let actions = match pending {
            Pending::Status => return,
            Pending::Fetch(fetch) => {
                self.on_fetched_body(swarm, fetch, None, verdicts);
                return;
            }
            Pending::Headers => self
                .sync
                .request_failed(peer, Request::Headers, its_fault, now),
            Pending::Bodies => self
                .sync
                .request_failed(peer, Request::Bodies, its_fault, now),
        };
        self.carry_out(swarm, actions, verdicts);
    }

    /// Does what the sync machine asks.
    pub(super) fn carry_out(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        actions: Vec<Action<PeerId>>,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
        for action in actions {
            match action {
                Action::AskHeaders { peer, locator } => {
                    let request = SyncRequest::GetHeaders {
                        locator,
                        max: MAX_HEADERS_PER_RESPONSE,
                    };
                    self.request(swarm, peer, request, Pending::Headers);
                }
                Action::CheckHeaders {
                    peer,
                    headers,
                    after,
                } => {
                    let (node, verdicts) = (self.node.clone(), verdicts.clone());
                    tokio::task::spawn_blocking(move || {
                        let outcome = check_peer_headers(&node, &headers, after);
                        let _ = verdicts.send(Verdict::HeadersChecked { peer, outcome });
                    });
                }
                Action::AskBodies { peer, hashes } => {
                    self.request(
                        swarm,
                        peer,
                        SyncRequest::GetBodies { hashes },
                        Pending::Bodies,
                    );
                }
                Action::Import { peer, blocks } => {
                    if let Some(imports) = &self.imports {
                        let _ = imports.send((peer, blocks));
                    }
                }
                Action::Penalise { peer, why } => self.penalise(swarm, peer, why),
            }
        }
        self.publish_sync_progress();
    }

    /// Headers of `peer`'s chain held back as not yet valid by our clock are its word on
    /// the time, for the clock check: with most peers saying so, it is our clock that is
    /// behind (and that is why the chain does not move).
    pub(super) fn note_held_back(&mut self, peer: PeerId, outcome: &HeadersChecked, now: Instant) {
        let HeadersChecked::Checked {
            checked, now_ms, ..
        } = outcome
        else {
            return;
        };
        if let Some((_, HeaderError::NotYet { valid_from_ms, .. })) = &checked.stopped {
            let stamped = valid_from_ms
                .0
                .saturating_add(self.node.spec().consensus.max_future_drift_ms);
            self.clock.observe(peer, stamped, *now_ms, now);
            self.handle.set_clock_warning(self.clock.warning(now));
        }
    }

    /// Tells RPC where syncing stands, and logs it every few seconds while it runs.
    pub(super) fn publish_sync_progress(&mut self) {
        let progress = self.sync.progress();
        let behind = self.sync.is_behind();
        if behind && self.sync_logged.elapsed() >= Duration::from_secs(2) {
            self.sync_logged = Instant::now();
            tracing::info!(
                height = self.tip.borrow().height.0,
                best_known = progress.best_known_height,
                blocks_per_s = progress.blocks_per_s,
                eta_s = progress.eta_s,
                "syncing"
            );
        }
        self.handle.set_sync(behind, progress);
    }
}

/// A body's block hash, read off its header bytes.
fn body_hash(bytes: &[u8]) -> Option<BlockHash> {
    (bytes.len() >= apiary_core::block::HEADER_BYTES).then(|| {
        BlockHash(apiary_core::hash::sha256d(
            &bytes[..apiary_core::block::HEADER_BYTES],
        ))
    })
}

/// Checks a peer's headers in full (on the blocking pool): after `after`, or after the
/// block the first one builds on, which must be one we know.
fn check_peer_headers(
    node: &Node,
    headers: &[BlockHeader],
    after: Option<HeaderAncestry>,
) -> HeadersChecked {
    let ancestry = after.or_else(|| {
        let first = headers.first()?;
        node.lock().chain.ancestry(&first.prev_hash)
    });
    let Some(mut ancestry) = ancestry else {
        return HeadersChecked::Orphan;
    };
    let now_ms = crate::time::now_ms();
    let now = apiary_core::TimestampMs(now_ms);
    let checked = check_headers(&mut ancestry, headers, now, node.spec());
    HeadersChecked::Checked {
        checked,
        ancestry: Box::new(ancestry),
        count: headers.len(),
        now_ms,
    }
}
