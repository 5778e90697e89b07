//! A lying peer for `propagation_liar`: a stock libp2p node that joins the gossip like any
//! peer, claims far more chain work than exists, and answers every headers or blocks
//! request with nothing — what used to make a node re-ask thousands of times a second and
//! stop announcing its own blocks.

use super::*;
use apiary_node::protocol::{sync_protocol, Inbound, Status, SyncCodec, SyncRequest, SyncResponse};
use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{gossipsub, identify, noise, tcp, yamux, Multiaddr};

#[derive(NetworkBehaviour)]
struct LiarBehaviour {
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
}

/// How far the liar got: connections it established (one per identity that got in).
#[derive(Default)]
pub(crate) struct LiarCounts {
    pub connections: std::sync::atomic::AtomicUsize,
}

/// Starts the liar on the current tokio runtime, dialling `addr`. Banned, it comes back
/// under a new identity, as a persistent attacker would.
pub(crate) fn spawn_liar(addr: Multiaddr, genesis: BlockHash) -> Result<Arc<LiarCounts>> {
    let first = liar_swarm(&addr, genesis)?;
    let counts = Arc::new(LiarCounts::default());
    let counted = counts.clone();
    tokio::spawn(async move {
        let mut swarm = first;
        loop {
            lie(&mut swarm, genesis, &counted).await;
            match liar_swarm(&addr, genesis) {
                Ok(next) => swarm = next,
                Err(_) => return,
            }
        }
    });
    Ok(counts)
}

/// A fresh identity dialling `addr`.
fn liar_swarm(addr: &Multiaddr, genesis: BlockHash) -> Result<libp2p::Swarm<LiarBehaviour>> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| {
            let config = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Anonymous)
                .build()?;
            Ok(LiarBehaviour {
                gossipsub: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Anonymous,
                    config,
                )?,
                identify: identify::Behaviour::new(identify::Config::new(
                    format!("/apiary/{genesis}"),
                    key.public(),
                )),
                sync: request_response::Behaviour::with_codec(
                    SyncCodec::new(1 << 20),
                    [(sync_protocol(&genesis), ProtocolSupport::Full)],
                    request_response::Config::default(),
                ),
            })
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(std::time::Duration::from_secs(600)))
        .build();
    let (blocks, txs) = apiary_node::p2p::topics(&genesis);
    swarm.behaviour_mut().gossipsub.subscribe(&blocks)?;
    swarm.behaviour_mut().gossipsub.subscribe(&txs)?;
    swarm.dial(addr.clone())?;
    Ok(swarm)
}

/// Claims and answers nothing until the node drops the connection.
async fn lie(swarm: &mut libp2p::Swarm<LiarBehaviour>, genesis: BlockHash, counts: &LiarCounts) {
    use libp2p::swarm::SwarmEvent;
    let claim = Status {
        genesis,
        height: Height(10_000_000),
        tip: BlockHash::ZERO,
        total_work: apiary_core::Work::from_be_bytes(&[0x0f; 32]),
    };
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(LiarBehaviourEvent::Sync(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) => {
                let answer = match request {
                    Inbound::Request(SyncRequest::Status(_)) => SyncResponse::Status(claim.clone()),
                    Inbound::Request(SyncRequest::GetHeaders { .. }) => {
                        SyncResponse::Headers(Vec::new())
                    }
                    _ => SyncResponse::Blocks(Vec::new()),
                };
                let _ = swarm.behaviour_mut().sync.send_response(channel, answer);
            }
            SwarmEvent::ConnectionEstablished { .. } => {
                counts
                    .connections
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            SwarmEvent::ConnectionClosed {
                num_established: 0, ..
            }
            | SwarmEvent::OutgoingConnectionError { .. } => return,
            _ => {}
        }
    }
}
