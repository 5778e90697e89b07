//! Answers to peers' sync requests. A status is answered at once from the tip the node last
//! published; headers and blocks are read off the network loop, on the blocking pool where
//! the chain's lock and RocksDB may be taken, a few at once for one peer
//! (`PeerLimits::max_requests_per_peer`) and within its allowance of block requests.

use super::peers::{Flood, Misbehaviour};
use super::swarm::Behaviour;
use super::{Service, Verdict};
use crate::protocol::{
    Inbound, SyncRequest, SyncResponse, MAX_BODIES_PER_REQUEST, MAX_HEADERS_PER_RESPONSE,
    RESPONSE_BYTES_TARGET,
};
use libp2p::request_response::ResponseChannel;
use libp2p::{PeerId, Swarm};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The longest a block request past its peer's allowance waits for its turn; one that
/// would wait longer is refused as a flood.
const MAX_REQUEST_DELAY: Duration = Duration::from_secs(2);

/// A request that reads the chain, answered off the loop.
enum Read {
    Headers {
        locator: Vec<apiary_core::BlockHash>,
        max: u32,
    },
    Bodies {
        hashes: Vec<apiary_core::BlockHash>,
    },
}

impl Service {
    pub(super) fn on_request(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        request: Inbound,
        channel: ResponseChannel<SyncResponse>,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
        let request = match request {
            Inbound::Malformed(reason) => {
                // Dropping the channel closes the stream without an answer.
                tracing::debug!(%peer, %reason, "malformed sync request");
                self.penalise(swarm, peer, Misbehaviour::MalformedRequest);
                return;
            }
            Inbound::Request(SyncRequest::Status(status)) => {
                let ours = self.our_status();
                let _ = swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, SyncResponse::Status(ours));
                self.learn_status(swarm, peer, status, verdicts);
                return;
            }
            Inbound::Request(SyncRequest::GetHeaders { locator, max }) => {
                Read::Headers { locator, max }
            }
            Inbound::Request(SyncRequest::GetBodies { hashes }) => Read::Bodies { hashes },
        };
        let now = Instant::now();
        if self.serving.get(&peer).copied().unwrap_or(0) >= self.max_requests_per_peer {
            self.penalise(swarm, peer, Misbehaviour::Flood(Flood::ConcurrentRequests));
            return;
        }
        // Past its allowance a peer's block request is answered late (a sync paced to the
        // allowance), and refused only when it is far past it.
        let mut delay = Duration::ZERO;
        if matches!(request, Read::Bodies { .. }) {
            match self
                .book
                .allow_within(peer, Flood::BlockRequests, now, MAX_REQUEST_DELAY)
            {
                Some(wait) => delay = wait,
                None => {
                    self.penalise(swarm, peer, Misbehaviour::Flood(Flood::BlockRequests));
                    return;
                }
            }
        }
        let serving = self.serving.entry(peer).or_default();
        // A peer missing transactions of the block we just mined may ask before we have
        // stored it.
        if let Read::Bodies { hashes } = &request {
            if let Some(blocks) = self.published.as_ref().and_then(|p| p.answer(hashes)) {
                let _ = swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, SyncResponse::Blocks(blocks));
                return;
            }
        }
        *serving += 1;
        let (node, verdicts) = (self.node.clone(), verdicts.clone());
        let read = move || {
            let response = match request {
                Read::Headers { locator, max } => {
                    let max = max.min(MAX_HEADERS_PER_RESPONSE);
                    SyncResponse::Headers(node.lock().chain.main_headers_after(&locator, max))
                }
                Read::Bodies { hashes } => {
                    let asked = &hashes[..hashes.len().min(MAX_BODIES_PER_REQUEST)];
                    let read = node.lock().chain.bodies(asked, RESPONSE_BYTES_TARGET);
                    // Damage found here stops the node like anywhere else.
                    SyncResponse::Blocks(read.map_err(|e| node.note_error(e)).unwrap_or_default())
                }
            };
            let _ = verdicts.send(Verdict::Served {
                peer,
                channel,
                response,
            });
        };
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let _ = tokio::task::spawn_blocking(read).await;
        });
    }

    pub(super) fn on_served(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        channel: ResponseChannel<SyncResponse>,
        response: SyncResponse,
    ) {
        if let Some(serving) = self.serving.get_mut(&peer) {
            *serving = serving.saturating_sub(1);
        }
        let _ = swarm.behaviour_mut().sync.send_response(channel, response);
    }
}
