//! The swarm's events, each handed to what it concerns: connections opening and closing,
//! what identify, Kademlia and mDNS learn of peers, gossip, sync requests and answers,
//! and pings.

use super::handle::PeerInfo;
use super::peers::Misbehaviour;
use super::swarm::{genesis_of_protocol, Behaviour, BehaviourEvent};
use super::{ping, Service, Verdict};
use apiary_files::write_private_file;
use libp2p::gossipsub;
use libp2p::request_response;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, kad, mdns, Swarm};
use std::time::Instant;
use tokio::sync::mpsc;

impl Service {
    pub(super) fn on_swarm_event(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        event: SwarmEvent<BehaviourEvent>,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
        let now = Instant::now();
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address
                    .clone()
                    .with(libp2p::multiaddr::Protocol::P2p(*swarm.local_peer_id()));
                tracing::info!(addr = %full, "p2p listening");
                if !self.wrote_addr {
                    self.wrote_addr = true;
                    let _ = write_private_file(
                        &self.datadir.join("p2p.addr"),
                        full.to_string().as_bytes(),
                    );
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if self.book.is_banned(&peer_id, now) {
                    let _ = swarm.disconnect_peer_id(peer_id);
                    return;
                }
                if let libp2p::core::ConnectedPoint::Dialer { address, .. } = &endpoint {
                    if self.bootnodes.contains(address) {
                        self.bootnode_peers.insert(address.clone(), peer_id);
                    }
                }
                let addr = endpoint.get_remote_address().to_string();
                let score = self.book.score(&peer_id);
                let mut shared = self.handle.shared();
                // A second connection to the peer keeps what its first learned.
                let topics = shared
                    .peers
                    .get(&peer_id)
                    .map(|p| p.topics.clone())
                    .unwrap_or_default();
                shared.peers.insert(
                    peer_id,
                    PeerInfo {
                        peer_id: peer_id.to_string(),
                        addr,
                        inbound: !endpoint.is_dialer(),
                        height: None,
                        score,
                        gossip_score: None,
                        topics,
                        rtt_ms: None,
                    },
                );
                drop(shared);
                if num_established.get() == 1 {
                    self.ask_status(swarm, peer_id);
                    self.ask_inventory(swarm, peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.handle.shared().peers.remove(&peer_id);
                self.asked_status.remove(&peer_id);
                self.serving.remove(&peer_id);
                self.pulls.remove(&peer_id);
                self.book.disconnected(&peer_id);
                self.clock.forget(&peer_id);
                self.handle.set_clock_warning(self.clock.warning(now));
                let actions = self.sync.peer_gone(peer_id, now);
                self.carry_out(swarm, actions, verdicts);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                // Not gated on identify's version string (other implementations put their
                // own there): a peer of another chain shows in the protocols it speaks.
                let ours = self.genesis.to_string();
                let other = info
                    .protocols
                    .iter()
                    .filter_map(|p| genesis_of_protocol(p.as_ref()))
                    .find(|genesis| *genesis != ours);
                if let Some(theirs) = other {
                    tracing::warn!(
                        peer = %peer_id,
                        theirs,
                        ours = %ours,
                        "peer runs another chain (its genesis differs); disconnecting"
                    );
                    self.penalise(swarm, peer_id, Misbehaviour::OtherChain);
                    let _ = swarm.disconnect_peer_id(peer_id);
                    return;
                }
                // Its own listen addresses go into the DHT, so others can find it.
                for addr in info.listen_addrs {
                    swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, rtt })) => {
                self.set_peer(peer, |info| info.rtt_ms = Some(rtt.as_millis() as u64));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(found)),
                ..
            })) => {
                self.dial_discovered(swarm, found.peers);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                // mDNS answers are not scoped to a chain: identify sorts out other chains.
                for (peer, addr) in found {
                    if swarm.is_connected(&peer) || self.book.is_banned(&peer, now) {
                        continue;
                    }
                    tracing::info!(%peer, %addr, "found a peer on the local network");
                    swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                    let _ = swarm.dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                peer_id,
                topic,
            })) => {
                // Only our two topics are recorded: a peer may subscribe to any number of
                // others, and none of them is of use to us.
                let ours = [&self.block_topic, &self.tx_topic]
                    .into_iter()
                    .any(|t| t.hash() == topic);
                if ours {
                    self.set_peer(peer_id, |info| {
                        let topic = topic.into_string();
                        if !info.topics.contains(&topic) {
                            info.topics.push(topic);
                        }
                    });
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Unsubscribed {
                peer_id,
                topic,
            })) => self.set_peer(peer_id, |info| {
                info.topics.retain(|t| *t != topic.as_str());
            }),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                self.on_gossip(swarm, propagation_source, message_id, message, verdicts);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_request(swarm, peer, request, channel, verdicts),
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_response(swarm, peer, request_id, response, verdicts),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Sync(
                request_response::Event::OutboundFailure {
                    peer,
                    error,
                    request_id,
                    ..
                },
            )) => self.on_request_failed(swarm, peer, request_id, &error, verdicts),
            SwarmEvent::Behaviour(BehaviourEvent::Mempool(event)) => {
                self.on_mempool_event(swarm, event, verdicts)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(
                request_response::Event::InboundFailure { peer, error, .. },
            )) => {
                tracing::debug!(%peer, %error, "inbound sync request failed");
            }
            _ => {}
        }
    }
}
