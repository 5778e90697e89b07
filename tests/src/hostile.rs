//! A hostile peer built on stock libp2p: it speaks the node's protocols (gossipsub,
//! identify, the sync protocol through a raw codec) and says whatever a test makes it
//! say — claims it cannot back, headers no honest node sends, frames no honest codec makes.

use apiary_core::{Block, BlockHash, CompactBlock};
use apiary_node::protocol::{sync_protocol, SyncRequest, SyncResponse};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use std::time::{Duration, Instant};

/// Reads requests as their borsh bytes and writes whatever bytes it is given, length
/// prefix and all: for frames no honest codec makes.
#[derive(Clone, Default)]
pub struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;
    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        io.read_exact(&mut body).await?;
        Ok(body)
    }
    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        io.read_to_end(&mut buf).await?;
        Ok(buf)
    }
    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }
    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()> {
        io.write_all(&res).await?;
        io.close().await
    }
}

/// A sync message framed as the protocol frames it (length, then borsh).
pub fn frame<T: borsh::BorshSerialize>(message: &T) -> Vec<u8> {
    let body = borsh::to_vec(message).expect("borsh to a Vec");
    let mut framed = (body.len() as u32).to_be_bytes().to_vec();
    framed.extend(body);
    framed
}

#[derive(NetworkBehaviour)]
pub struct HostileBehaviour {
    pub gossipsub: gossipsub::Behaviour,
    pub identify: identify::Behaviour,
    pub sync: request_response::Behaviour<RawCodec>,
}

pub struct Hostile {
    runtime: tokio::runtime::Runtime,
    pub swarm: Swarm<HostileBehaviour>,
    pub blocks: IdentTopic,
    pub txs: IdentTopic,
    /// The node it dialled.
    pub node: PeerId,
}

/// What a hostile peer does with a sync request the node sends it.
pub enum Answer {
    /// Send these bytes as the response.
    Bytes(Vec<u8>),
    /// Hold the request and never answer it.
    Silence,
}

impl Answer {
    pub fn with(response: &SyncResponse) -> Answer {
        Answer::Bytes(frame(response))
    }
}

impl Hostile {
    /// A fresh identity connected to `addr`, once the node has subscribed to both topics.
    pub fn connect(addr: &str, genesis: &BlockHash) -> Hostile {
        Hostile::try_connect(addr, genesis, false)
            .expect("the node never subscribed us to its topics")
    }

    /// `connect`, signing its gossip (which this chain's gossip must not be).
    pub fn connect_signing(addr: &str, genesis: &BlockHash) -> Hostile {
        Hostile::try_connect(addr, genesis, true)
            .expect("the node never subscribed us to its topics")
    }

    /// A fresh identity connected to `addr`; None if the node refuses or drops the
    /// connection before subscribing it to both topics.
    pub fn try_connect(addr: &str, genesis: &BlockHash, signing: bool) -> Option<Hostile> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let _guard = runtime.enter();
        let version = format!("/apiary/{genesis}");
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp")
            .with_behaviour(|key| {
                let config = gossipsub::ConfigBuilder::default()
                    .validation_mode(if signing {
                        ValidationMode::Strict
                    } else {
                        ValidationMode::Anonymous
                    })
                    .max_transmit_size(16 << 20)
                    .message_id_fn(|m: &gossipsub::Message| {
                        gossipsub::MessageId::from(apiary_core::hash::sha256d(&m.data).0.to_vec())
                    })
                    .build()
                    .expect("gossipsub config");
                let authenticity = if signing {
                    MessageAuthenticity::Signed(key.clone())
                } else {
                    MessageAuthenticity::Anonymous
                };
                HostileBehaviour {
                    gossipsub: gossipsub::Behaviour::new(authenticity, config).expect("gossipsub"),
                    identify: identify::Behaviour::new(identify::Config::new(
                        version,
                        key.public(),
                    )),
                    sync: request_response::Behaviour::with_codec(
                        RawCodec,
                        [(sync_protocol(genesis), ProtocolSupport::Full)],
                        request_response::Config::default()
                            .with_request_timeout(Duration::from_secs(120)),
                    ),
                }
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        let blocks = IdentTopic::new(format!("apiary/{genesis}/blocks"));
        let txs = IdentTopic::new(format!("apiary/{genesis}/txs"));
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&blocks)
            .expect("subscribe");
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&txs)
            .expect("subscribe");
        let addr: Multiaddr = addr.parse().expect("a multiaddr");
        let node = addr
            .iter()
            .find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
                _ => None,
            })
            .expect("the address names the node");
        swarm.dial(addr).expect("dial");
        let mut hostile = Hostile {
            runtime,
            swarm,
            blocks,
            txs,
            node,
        };
        let mut subscribed = 0;
        let mut refused = false;
        hostile.drive(Duration::from_secs(20), |_, event| {
            match event {
                SwarmEvent::Behaviour(HostileBehaviourEvent::Gossipsub(
                    gossipsub::Event::Subscribed { .. },
                )) => subscribed += 1,
                SwarmEvent::OutgoingConnectionError { .. }
                | SwarmEvent::ConnectionClosed {
                    num_established: 0, ..
                } => refused = true,
                _ => {}
            }
            subscribed >= 2 || refused
        });
        (subscribed >= 2 && !refused).then_some(hostile)
    }

    /// Polls the swarm until `done` says so or `limit` passes; returns whether it was done.
    /// `done` gets each event, and the swarm to answer it with.
    pub fn drive(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Swarm<HostileBehaviour>, SwarmEvent<HostileBehaviourEvent>) -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        let swarm = &mut self.swarm;
        self.runtime.block_on(async {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, swarm.select_next_some()).await {
                    Ok(event) => {
                        if done(swarm, event) {
                            return true;
                        }
                    }
                    Err(_) => return false,
                }
            }
        })
    }

    /// Answers the node's sync requests with `answer` for up to `limit`, or until the node
    /// closes the connection; returns whether it did, and the requests it made.
    pub fn serve(
        &mut self,
        limit: Duration,
        mut answer: impl FnMut(&SyncRequest) -> Answer,
    ) -> (bool, Vec<SyncRequest>) {
        let mut asked = Vec::new();
        let mut held: Vec<ResponseChannel<Vec<u8>>> = Vec::new();
        let dropped = self.drive(limit, |swarm, event| match event {
            SwarmEvent::Behaviour(HostileBehaviourEvent::Sync(
                request_response::Event::Message {
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                },
            )) => {
                let Ok(request) = borsh::from_slice::<SyncRequest>(&request) else {
                    return false;
                };
                match answer(&request) {
                    Answer::Bytes(bytes) => {
                        let _ = swarm.behaviour_mut().sync.send_response(channel, bytes);
                    }
                    Answer::Silence => held.push(channel),
                }
                asked.push(request);
                false
            }
            SwarmEvent::ConnectionClosed {
                num_established: 0, ..
            } => true,
            _ => false,
        });
        (dropped, asked)
    }

    /// Sends the node a request of its own (its answer is read and dropped).
    pub fn send(&mut self, request: Vec<u8>) {
        let node = self.node;
        self.swarm.behaviour_mut().sync.send_request(&node, request);
    }

    /// Announces `block` as honest nodes do: in compact form.
    pub fn publish_compact(&mut self, block: &Block) {
        self.publish_block(CompactBlock::new(block, &block.txids()).encode());
    }

    pub fn publish_block(&mut self, bytes: Vec<u8>) {
        let topic = self.blocks.clone();
        let _ = self.swarm.behaviour_mut().gossipsub.publish(topic, bytes);
    }

    pub fn publish_tx(&mut self, bytes: Vec<u8>) {
        let topic = self.txs.clone();
        let _ = self.swarm.behaviour_mut().gossipsub.publish(topic, bytes);
    }

    /// Whether the node closes the connection (bans us) within `limit`.
    pub fn is_dropped(&mut self, limit: Duration) -> bool {
        self.is_dropped_serving(limit, Vec::new())
    }

    /// Like `is_dropped`, answering every request the node makes meanwhile with `blocks`
    /// (it asks for the whole block when a compact one names transactions it lacks).
    pub fn is_dropped_serving(&mut self, limit: Duration, blocks: Vec<Vec<u8>>) -> bool {
        let response = SyncResponse::Blocks(blocks);
        self.serve(limit, |_| Answer::with(&response)).0
    }

    /// Lets the swarm run for `how_long` (to flush what it was asked to send).
    pub fn run_for(&mut self, how_long: Duration) {
        self.drive(how_long, |_, _| false);
    }
}
