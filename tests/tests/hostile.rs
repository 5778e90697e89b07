//! A hostile peer built on libp2p: it speaks the node's protocols and sends what no honest
//! node would. The node stays up, forwards none of it, bans the sender, and honest traffic
//! keeps confirming.

use apiary_core::{Block, BlockHash, CompactBlock, Hash256};
use apiary_node::p2p::protocol::{sync_protocol, SyncResponse};
use apiary_system_tests::*;
use futures::{AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, noise, tcp, yamux, Multiaddr, StreamProtocol, Swarm};
use serde_json::json;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Writes whatever bytes it is given, length prefix and all: for frames no honest codec makes.
#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;
    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        Ok(Vec::new())
    }
    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        futures::AsyncReadExt::read_to_end(io, &mut buf).await?;
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

#[derive(NetworkBehaviour)]
struct HostileBehaviour {
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    sync: request_response::Behaviour<RawCodec>,
}

struct Hostile {
    runtime: tokio::runtime::Runtime,
    swarm: Swarm<HostileBehaviour>,
    blocks: IdentTopic,
    txs: IdentTopic,
}

impl Hostile {
    /// A fresh identity connected to `addr`, once the node has subscribed to both topics.
    fn connect(addr: &str, genesis: &BlockHash) -> Hostile {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let version = format!("/apiary/{genesis}");
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|key| {
                let config = gossipsub::ConfigBuilder::default()
                    .validation_mode(ValidationMode::Anonymous)
                    .max_transmit_size(8 << 20)
                    .message_id_fn(|m: &gossipsub::Message| {
                        gossipsub::MessageId::from(apiary_core::hash::sha256d(&m.data).0.to_vec())
                    })
                    .build()
                    .unwrap();
                HostileBehaviour {
                    gossipsub: gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config)
                        .unwrap(),
                    identify: identify::Behaviour::new(identify::Config::new(
                        version,
                        key.public(),
                    )),
                    sync: request_response::Behaviour::with_codec(
                        RawCodec,
                        [(sync_protocol(genesis), ProtocolSupport::Full)],
                        request_response::Config::default(),
                    ),
                }
            })
            .unwrap()
            .build();
        let blocks = IdentTopic::new(format!("apiary/{genesis}/blocks"));
        let txs = IdentTopic::new(format!("apiary/{genesis}/txs"));
        swarm.behaviour_mut().gossipsub.subscribe(&blocks).unwrap();
        swarm.behaviour_mut().gossipsub.subscribe(&txs).unwrap();
        swarm.dial(addr.parse::<Multiaddr>().unwrap()).unwrap();
        let mut hostile = Hostile {
            runtime,
            swarm,
            blocks,
            txs,
        };
        let mut subscribed = 0;
        hostile.drive(Duration::from_secs(20), |_, event| {
            if let SwarmEvent::Behaviour(HostileBehaviourEvent::Gossipsub(
                gossipsub::Event::Subscribed { .. },
            )) = event
            {
                subscribed += 1;
            }
            subscribed >= 2
        });
        assert_eq!(subscribed, 2, "the node never subscribed us to its topics");
        hostile
    }

    /// Polls the swarm until `done` says so or `limit` passes; returns whether it was done.
    /// `done` gets each event, and the swarm to answer it with.
    fn drive(
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

    /// Announces `block` as honest nodes do: in compact form.
    fn publish_compact(&mut self, block: &Block) {
        self.publish_block(CompactBlock::new(block, &block.txids()).encode());
    }

    fn publish_block(&mut self, bytes: Vec<u8>) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.blocks.clone(), bytes)
            .unwrap();
    }

    fn publish_tx(&mut self, bytes: Vec<u8>) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.txs.clone(), bytes)
            .unwrap();
    }

    /// Whether the node closes the connection (bans us) within `limit`.
    fn is_dropped(&mut self, limit: Duration) -> bool {
        self.is_dropped_serving(limit, Vec::new())
    }

    /// Like `is_dropped`, answering every request the node makes meanwhile with `blocks`
    /// (it asks for the whole block when a compact one names transactions it lacks).
    fn is_dropped_serving(&mut self, limit: Duration, blocks: Vec<Vec<u8>>) -> bool {
        let body = borsh::to_vec(&SyncResponse::Blocks(blocks)).unwrap();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend(body);
        self.drive(limit, |swarm, event| match event {
            SwarmEvent::Behaviour(HostileBehaviourEvent::Sync(
                request_response::Event::Message {
                    message: request_response::Message::Request { channel, .. },
                    ..
                },
            )) => {
                let _ = swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, frame.clone());
                false
            }
            SwarmEvent::ConnectionClosed {
                num_established: 0, ..
            } => true,
            _ => false,
        })
    }
}

fn genesis_block(spec_path: &std::path::Path) -> Block {
    apiary_genesis::load_spec(spec_path)
        .unwrap()
        .genesis_block()
}

#[test]
fn hostile_peers_are_banned_and_nothing_they_send_is_forwarded() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let genesis = genesis_block(&spec);
    let victim = NodeProcess::start(&dir.path().join("victim"), Some(&spec), &[]).unwrap();
    let addr = victim.p2p_addr();
    let witness =
        NodeProcess::start(&dir.path().join("witness"), Some(&spec), &["--peer", &addr]).unwrap();
    wait_until(Duration::from_secs(30), "the witness to connect", || {
        witness.peer_count() == 1
    });
    let genesis_hash = genesis.hash();

    // 1. A block whose hash does not meet its target.
    let mut bad_pow = apiary_node::miner::assemble_block(
        &mut apiary_genesis::load_spec(&spec).unwrap().genesis_state(),
        &apiary_genesis::load_spec(&spec).unwrap(),
        &apiary_core::ParentContext {
            hash: genesis_hash,
            height: genesis.header.height,
            bits: genesis.header.bits,
            timestamp_ms: genesis.header.timestamp_ms,
            solve_time_ms: None,
            median_time_past_ms: genesis.header.timestamp_ms,
        },
        address(9),
        vec![],
        genesis.header.timestamp_ms + 1,
    );
    let target = bad_pow.header.bits.to_target().unwrap();
    bad_pow.header.nonce = (0..)
        .find(|n| {
            let mut h = bad_pow.header.clone();
            h.nonce = *n;
            !target.is_met_by(&h.hash().0)
        })
        .unwrap();
    let mut h1 = Hostile::connect(&addr, &genesis_hash);
    h1.publish_compact(&bad_pow);
    assert!(
        h1.is_dropped(Duration::from_secs(20)),
        "a bad proof of work gets the sender banned"
    );

    // 2. A well-formed block that overdraws an account (valid PoW, real signature). The
    //    victim lacks the overdraft (no mempool takes it), so it fetches the whole block.
    let overdraft = transfer(3, address(12), 5_000 * 100_000_000, 10_000, 0);
    let mut overdrawn = bad_pow.clone();
    overdrawn.txs = vec![overdraft];
    overdrawn.header.tx_root = apiary_core::tx_merkle_root(&overdrawn.txids());
    overdrawn.header.state_root = Hash256::ZERO;
    overdrawn.header.nonce =
        apiary_node::miner::search_nonce(&overdrawn.header, 0, 1, || false).unwrap();
    let mut h2 = Hostile::connect(&addr, &genesis_hash);
    h2.publish_compact(&overdrawn);
    assert!(
        h2.is_dropped_serving(Duration::from_secs(20), vec![overdrawn.encode()]),
        "an overdrawing block gets the sender banned"
    );

    // 3. Transactions with bad signatures, and garbage on both topics.
    let mut h3 = Hostile::connect(&addr, &genesis_hash);
    for i in 0..5u64 {
        let mut forged = transfer(2, address(13), 1_000 + i, 10_000, 0);
        forged.signature[5] ^= 0x10;
        h3.publish_tx(forged.encode());
    }
    h3.publish_block(b"not a block at all".to_vec());
    assert!(
        h3.is_dropped(Duration::from_secs(20)),
        "forged signatures and garbage get the sender banned"
    );

    // 4. An oversized frame on the sync protocol: refused before it is read.
    let mut h4 = Hostile::connect(&addr, &genesis_hash);
    let mut frame = (u32::MAX).to_be_bytes().to_vec();
    frame.extend(vec![0u8; 70_000]);
    let victim_peer = addr.rsplit("/p2p/").next().unwrap().parse().unwrap();
    h4.swarm
        .behaviour_mut()
        .sync
        .send_request(&victim_peer, frame.clone());
    h4.swarm
        .behaviour_mut()
        .sync
        .send_request(&victim_peer, frame);
    assert!(
        h4.is_dropped(Duration::from_secs(20)),
        "oversized sync frames get the sender banned"
    );

    // 5. A flood of transactions that duplicate one already in the mempool (same sender
    //    and nonce, paying no more): validly signed, so each costs a signature check.
    let honest = transfer(3, address(8), 7_000, 100_000, 0);
    victim.submit_tx(&honest);
    wait_until(
        Duration::from_secs(30),
        "the honest tx to reach the witness",
        || witness.mempool_count() == 1,
    );
    let mut h5 = Hostile::connect(&addr, &genesis_hash);
    for amount in 1..=1_000u64 {
        let duplicate = transfer(3, address(14), amount, 10_000, 0);
        let _ = h5
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(h5.txs.clone(), duplicate.encode());
    }
    assert!(
        h5.is_dropped(Duration::from_secs(30)),
        "a flood of duplicate transactions gets the sender banned"
    );

    // The victim is up, forwarded none of it, and honest traffic still confirms.
    assert_eq!(victim.tip().0, 0);
    assert_eq!(witness.tip().0, 0);
    assert_eq!(witness.mempool_count(), 1, "only the honest tx travelled");
    let stx = transfer(2, address(7), 42_000, 10_000, 0);
    witness.submit_tx(&stx);
    wait_until(
        Duration::from_secs(30),
        "the honest tx to reach the victim",
        || victim.mempool_count() == 2,
    );
    victim.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    wait_until(Duration::from_secs(30), "the witness to follow", || {
        witness.tip() == victim.tip()
    });
    assert_eq!(witness.balance(&address_text(7)), 42_000);
    assert_eq!(witness.balance(&address_text(8)), 7_000);
}
