//! The network: libp2p over TCP with noise and yamux. Transactions and blocks travel by
//! gossipsub and are validated before they are forwarded; a node behind asks a peer with
//! more work for blocks over a request-response sync protocol. Protocol names and topics
//! carry the genesis hash, and identify tells apart a peer of another chain at once.

mod allowance;
mod download;
pub mod protocol;
mod sync;

use crate::chain::{Accepted, ChainError, CheckedBlock};
use crate::health::CoreTask;
use crate::mempool::MempoolError;
use crate::node::{Announcement, ImportError, Node, SubmitError};
use allowance::PeerBudget;
use apiary_core::encoding::decode_exact;
use apiary_core::tx::MAX_TX_BYTES;
use apiary_core::validate::check_header_pow;
use apiary_core::{
    Block, BlockHash, BlockHeader, CompactBlock, Height, SignedTransaction, TxError, Work,
};
use apiary_files::write_private_file;
use download::Download;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, ValidationMode};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, kad, mdns, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use protocol::{
    sync_protocol, Inbound, Status, SyncCodec, SyncRequest, SyncResponse, MAX_BODIES_PER_REQUEST,
    MAX_HEADERS_PER_RESPONSE, RESPONSE_BYTES_TARGET,
};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A peer whose misbehaviour adds up to this is banned.
const BAN_SCORE: u32 = 100;
const BAN_TIME: Duration = Duration::from_secs(600);
/// The longest ban an operator may ask for (`net_disconnect`): a year.
pub const MAX_BAN: Duration = Duration::from_secs(365 * 24 * 3600);
/// How often lost bootnodes are dialled again and peers are asked where they stand (so a
/// node that missed gossip still learns it is behind).
const TICK_INTERVAL: Duration = Duration::from_secs(5);
/// Misbehaviour is forgiven at this many points per tick, so rare honest mistakes (a
/// race, a stale tx) never add up to a ban.
const SCORE_DECAY_PER_TICK: u32 = 5;
/// A block with an unknown parent makes us ask its sender for its status at most this often.
const STATUS_REASK: Duration = Duration::from_secs(1);
/// Below this many connections, Kademlia is asked for more peers on every tick.
const TARGET_PEERS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("node key {path}: {message}")]
    NodeKey { path: PathBuf, message: String },
    #[error("cannot listen on {addr}: {message}")]
    Listen { addr: Multiaddr, message: String },
    #[error("libp2p: {0}")]
    Setup(String),
}

pub struct NetworkConfig {
    pub listen: Vec<Multiaddr>,
    pub bootnodes: Vec<Multiaddr>,
    pub datadir: PathBuf,
    /// Discover peers on the LAN by multicast DNS.
    pub mdns: bool,
}

/// What RPC can see of the network.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerInfo {
    pub peer_id: String,
    pub addr: String,
    pub height: Option<u64>,
}

/// Operator commands (admin RPC), carried out by the network's event loop.
#[derive(Debug)]
pub enum NetCommand {
    /// Lift any ban on the address's peer and dial it.
    Connect(Multiaddr),
    /// Close every connection to the peer and refuse it for a while.
    Disconnect { peer: PeerId, ban: Duration },
}

/// How far behind the best peer the node is, and how fast it is catching up.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SyncProgress {
    #[serde(skip)]
    best_work: Work,
    /// Height of the best chain any peer has shown.
    pub best_known_height: u64,
    /// Blocks connected per second while syncing (0 when not syncing).
    pub blocks_per_s: f64,
    /// Seconds left at that rate, when syncing.
    pub eta_s: Option<u64>,
    /// Peers that have sent block bodies in the current (or last) download.
    pub download_peers: usize,
}

#[derive(Clone)]
pub struct NetworkHandle {
    pub peer_id: PeerId,
    peers: Arc<Mutex<HashMap<PeerId, PeerInfo>>>,
    sync: Arc<Mutex<SyncProgress>>,
    commands: mpsc::UnboundedSender<NetCommand>,
}

impl NetworkHandle {
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = self
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        peers
    }

    pub fn command(&self, command: NetCommand) -> bool {
        self.commands.send(command).is_ok()
    }

    /// Whether some peer has shown more work than `ours`.
    pub fn is_behind(&self, ours: Work) -> bool {
        self.sync_progress().best_work > ours
    }

    pub fn sync_progress(&self) -> SyncProgress {
        self.sync.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    /// Peer discovery: a DHT of this chain's nodes only (its protocol name holds the genesis).
    kad: kad::Behaviour<kad::store::MemoryStore>,
    /// LAN discovery, when asked for (`--mdns`).
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Loads the node's identity from `<datadir>/node_key`, creating it on first start.
pub fn load_or_create_identity(datadir: &Path) -> Result<Keypair, NetworkError> {
    let path = datadir.join("node_key");
    let error = |message: String| NetworkError::NodeKey {
        path: path.clone(),
        message,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            Keypair::from_protobuf_encoding(&bytes).map_err(|e| error(format!("unreadable: {e}")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| error(e.to_string()))?;
            write_private_file(&path, &bytes).map_err(|e| error(e.to_string()))?;
            Ok(keypair)
        }
        Err(e) => Err(error(e.to_string())),
    }
}

fn topics(genesis: &BlockHash) -> (IdentTopic, IdentTopic) {
    (
        IdentTopic::new(format!("apiary/{genesis}/blocks")),
        IdentTopic::new(format!("apiary/{genesis}/txs")),
    )
}

fn identify_version(genesis: &BlockHash) -> String {
    format!("/apiary/{genesis}")
}

/// Starts the network on the current tokio runtime.
pub fn start(node: Arc<Node>, config: NetworkConfig) -> Result<NetworkHandle, NetworkError> {
    let keypair = load_or_create_identity(&config.datadir)?;
    let genesis = node.spec().genesis_hash();
    let max_block = node.spec().consensus.max_block_bytes as usize;
    let (block_topic, tx_topic) = topics(&genesis);
    let blocks_hash = block_topic.hash();

    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .max_transmit_size(max_block + 4096)
        // Sized for 2 to 50 peers; kept mesh_outbound_min <= mesh_n_low <= mesh_n <= mesh_n_high.
        .mesh_outbound_min(1)
        .mesh_n_low(3)
        .mesh_n(6)
        .mesh_n_high(12)
        .heartbeat_interval(Duration::from_millis(500))
        // The message id is the object's own hash: a block's header hash, a txid.
        .message_id_fn(move |message: &gossipsub::Message| {
            let data = &message.data;
            let id =
                if message.topic == blocks_hash && data.len() >= apiary_core::block::HEADER_BYTES {
                    apiary_core::hash::sha256d(&data[..apiary_core::block::HEADER_BYTES])
                } else {
                    apiary_core::hash::sha256d(data)
                };
            gossipsub::MessageId::from(id.0.to_vec())
        })
        .build()
        .map_err(|e| NetworkError::Setup(e.to_string()))?;

    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetworkError::Setup(e.to_string()))?
        .with_behaviour(|key| {
            let gossipsub =
                gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)?;
            let identify = identify::Behaviour::new(identify::Config::new(
                identify_version(&genesis),
                key.public(),
            ));
            let sync = request_response::Behaviour::with_codec(
                SyncCodec {
                    max_response_bytes: (RESPONSE_BYTES_TARGET + max_block).max(16 << 20),
                },
                [(sync_protocol(&genesis), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            );
            let peer_id = key.public().to_peer_id();
            let kad_protocol = StreamProtocol::try_from_owned(format!("/apiary/{genesis}/kad/1"))
                .expect("a name starting with / is a valid protocol");
            let kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad::Config::new(kad_protocol),
            );
            let mdns = if config.mdns {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    peer_id,
                )?)
            } else {
                None
            };
            Ok(Behaviour {
                gossipsub,
                identify,
                sync,
                kad,
                mdns: mdns.into(),
            })
        })
        .map_err(|e| NetworkError::Setup(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&block_topic)
        .map_err(|e| NetworkError::Setup(e.to_string()))?;
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&tx_topic)
        .map_err(|e| NetworkError::Setup(e.to_string()))?;
    for addr in &config.listen {
        check_port_free(addr)?;
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetworkError::Listen {
                addr: addr.clone(),
                message: e.to_string(),
            })?;
    }
    swarm.behaviour_mut().kad.set_mode(Some(kad::Mode::Server));
    for addr in &config.bootnodes {
        if let Some(peer) = peer_of(addr) {
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, error = %e, "cannot dial bootnode");
        }
    }
    let (commands, command_rx) = mpsc::unbounded_channel();
    let handle = NetworkHandle {
        peer_id: *swarm.local_peer_id(),
        peers: Arc::new(Mutex::new(HashMap::new())),
        sync: Arc::new(Mutex::new(SyncProgress::default())),
        commands,
    };
    let service = Service {
        commands: command_rx,
        announcements: node.announcements(),
        node,
        genesis,
        block_topic,
        tx_topic,
        bootnodes: config.bootnodes,
        datadir: config.datadir,
        handle: handle.clone(),
        peer_status: HashMap::new(),
        scores: HashMap::new(),
        banned: HashMap::new(),
        budgets: HashMap::new(),
        asked_status: HashMap::new(),
        download: None,
        importing: 0,
        imports: None,
        importer: None,
        sync_started: None,
        sync_logged: Instant::now(),
        from_gossip: HashSet::new(),
        published: None,
        fetching: HashMap::new(),
        wrote_addr: false,
    };
    tokio::spawn(service.run(swarm));
    Ok(handle)
}

/// Results of work done off the runtime, handed back to the event loop.
enum Verdict {
    /// A compact block names transactions we do not hold: fetch the whole block from
    /// the peer that sent it, then judge the message.
    FetchBody(Fetch),
    Gossip {
        message_id: gossipsub::MessageId,
        source: PeerId,
        judgement: Judgement,
        is_block: bool,
    },
    Synced {
        peer: PeerId,
        received: usize,
        penalty: u32,
    },
}

/// A gossiped compact block whose whole form we asked its sender for.
struct Fetch {
    message_id: gossipsub::MessageId,
    source: PeerId,
    hash: BlockHash,
}

/// A block this node announced, with its encoding while it may not be stored yet.
struct Published {
    hash: BlockHash,
    encoded: Option<Vec<u8>>,
}

impl Published {
    /// Its bytes, if `asked` is this block alone and we still hold them.
    fn answer(&self, asked: &[BlockHash]) -> Option<Vec<Vec<u8>>> {
        match (asked, &self.encoded) {
            ([hash], Some(bytes)) if *hash == self.hash => Some(vec![bytes.clone()]),
            _ => None,
        }
    }
}

struct Service {
    node: Arc<Node>,
    genesis: BlockHash,
    block_topic: IdentTopic,
    tx_topic: IdentTopic,
    bootnodes: Vec<Multiaddr>,
    datadir: PathBuf,
    announcements: mpsc::UnboundedReceiver<Announcement>,
    commands: mpsc::UnboundedReceiver<NetCommand>,
    handle: NetworkHandle,
    peer_status: HashMap<PeerId, Status>,
    scores: HashMap<PeerId, u32>,
    banned: HashMap<PeerId, Instant>,
    budgets: HashMap<PeerId, PeerBudget>,
    /// When each peer was last asked for its status because of a block we could not place.
    asked_status: HashMap<PeerId, Instant>,
    /// The block download under way, if any.
    download: Option<Download>,
    /// Downloaded batches handed to the importer and not yet connected.
    importing: usize,
    /// Batches go to one importer thread, which connects them in order.
    imports: Option<std::sync::mpsc::Sender<(PeerId, Vec<Vec<u8>>)>>,
    /// The importer thread, joined when the service ends: it holds the node, whose
    /// RocksDB must close before the process exits.
    importer: Option<std::thread::JoinHandle<()>>,
    /// When this stretch of syncing began, blocks received since, and the last log line.
    sync_started: Option<(Instant, u64)>,
    sync_logged: Instant,
    /// Ids of objects that came by gossip: gossipsub forwards them itself once accepted,
    /// so the node's own announcement of them is not published again.
    from_gossip: HashSet<Vec<u8>>,
    /// The last block this node published.
    published: Option<Published>,
    /// Whole blocks asked for because their compact form named transactions we lack,
    /// with the gossip message each one settles.
    fetching: HashMap<request_response::OutboundRequestId, Fetch>,
    wrote_addr: bool,
}

impl Service {
    async fn run(mut self, mut swarm: Swarm<Behaviour>) {
        let (verdicts, mut verdict_rx) = mpsc::unbounded_channel::<Verdict>();
        let (imports, import_rx) = std::sync::mpsc::channel::<(PeerId, Vec<Vec<u8>>)>();
        self.imports = Some(imports);
        let (node, importer_verdicts) = (self.node.clone(), verdicts.clone());
        let _running = CoreTask::new(self.node.clone(), "network service");
        let importer = std::thread::Builder::new()
            .name("sync-import".into())
            .spawn(move || {
                let _running = CoreTask::new(node.clone(), "sync importer");
                for (peer, blocks) in import_rx {
                    let (received, penalty) = sync::connect_in_order(&node, peer, blocks);
                    let _ = importer_verdicts.send(Verdict::Synced {
                        peer,
                        received,
                        penalty,
                    });
                }
            });
        let importer = match importer {
            Ok(importer) => importer,
            Err(error) => {
                self.node
                    .health()
                    .fail(format!("cannot start the sync importer: {error}"));
                return;
            }
        };
        self.importer = Some(importer);
        let mut tick = tokio::time::interval(TICK_INTERVAL);
        loop {
            tokio::select! {
                event = swarm.select_next_some() => self.on_swarm_event(&mut swarm, event, &verdicts),
                Some(announcement) = self.announcements.recv() => self.publish(&mut swarm, announcement),
                Some(verdict) = verdict_rx.recv() => self.on_verdict(&mut swarm, verdict),
                Some(command) = self.commands.recv() => self.on_command(&mut swarm, command),
                _ = tick.tick() => self.on_tick(&mut swarm),
            }
            if self.node.is_shutting_down() {
                return;
            }
        }
    }

    fn our_status(&self) -> Status {
        let guard = self.node.lock();
        let entry = guard.chain.tip_entry();
        Status {
            genesis: self.genesis,
            height: entry.header.height,
            tip: guard.chain.tip(),
            total_work: entry.total_work,
        }
    }

    fn publish(&mut self, swarm: &mut Swarm<Behaviour>, announcement: Announcement) {
        let (topic, id) = match &announcement {
            // Blocks that came by sync are old news to the network: peers have them or
            // will sync them too. Only tips made or taken while caught up are announced.
            Announcement::Block { .. } if self.download.is_some() || self.importing > 0 => return,
            Announcement::Block { compact, .. } => (&self.block_topic, compact.hash().0),
            Announcement::Tx(txid, _) => (&self.tx_topic, txid.0),
        };
        // Gossipsub relays what came by gossip itself; a mined block is announced twice
        // (before and after it connects). Neither needs encoding again.
        let published_before = self.published.as_ref().is_some_and(|p| p.hash.0 == id);
        if self.from_gossip.contains(id.0.as_slice()) || published_before {
            return;
        }
        let topic = topic.clone();
        let bytes = match announcement {
            Announcement::Block { compact, encoded } => {
                self.published = Some(Published {
                    hash: BlockHash(id),
                    encoded,
                });
                compact.encode()
            }
            Announcement::Tx(_, stx) => stx.encode(),
        };
        match swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) | Err(gossipsub::PublishError::Duplicate) => {}
            Err(error) => tracing::debug!(%error, "nothing published"),
        }
    }

    fn on_command(&mut self, swarm: &mut Swarm<Behaviour>, command: NetCommand) {
        match command {
            NetCommand::Connect(addr) => {
                if let Some(peer) = peer_of(&addr) {
                    self.banned.remove(&peer);
                    self.scores.remove(&peer);
                }
                if let Err(error) = swarm.dial(addr.clone()) {
                    tracing::warn!(%addr, %error, "cannot dial");
                }
            }
            NetCommand::Disconnect { peer, ban } => {
                let ban = ban.min(MAX_BAN);
                tracing::info!(%peer, ban_seconds = ban.as_secs(), "disconnecting peer on request");
                if !ban.is_zero() {
                    // MAX_BAN is far below any clock's end; never panic the network on it.
                    let until = Instant::now().checked_add(ban);
                    self.banned
                        .insert(peer, until.unwrap_or_else(|| Instant::now() + BAN_TIME));
                }
                let _ = swarm.disconnect_peer_id(peer);
            }
        }
    }

    /// Dials peers the DHT found until the target peer count is reached.
    fn dial_discovered(&mut self, swarm: &mut Swarm<Behaviour>, found: Vec<kad::PeerInfo>) {
        let me = *swarm.local_peer_id();
        let mut wanted = TARGET_PEERS.saturating_sub(swarm.connected_peers().count());
        for peer in found {
            if wanted == 0 {
                return;
            }
            if peer.peer_id == me
                || swarm.is_connected(&peer.peer_id)
                || self.banned.contains_key(&peer.peer_id)
            {
                continue;
            }
            let dial = DialOpts::peer_id(peer.peer_id)
                .addresses(peer.addrs)
                .build();
            if swarm.dial(dial).is_ok() {
                wanted -= 1;
            }
        }
    }

    fn on_tick(&mut self, swarm: &mut Swarm<Behaviour>) {
        if let Some(download) = &mut self.download {
            for peer in download.overdue(Instant::now()) {
                tracing::debug!(%peer, "block download overdue; asking another peer");
            }
            self.advance_download(swarm);
        }
        self.banned.retain(|_, until| *until > Instant::now());
        self.scores.retain(|_, score| {
            *score = score.saturating_sub(SCORE_DECAY_PER_TICK);
            *score > 0
        });
        let status = self.our_status();
        let peers: Vec<PeerId> = swarm.connected_peers().copied().collect();
        if peers.len() < TARGET_PEERS && !peers.is_empty() {
            // A random key's neighbourhood: each lookup walks a different part of the DHT.
            swarm
                .behaviour_mut()
                .kad
                .get_closest_peers(PeerId::random());
        }
        for peer in peers {
            send_request(swarm, &peer, SyncRequest::Status(status.clone()));
        }
        for addr in &self.bootnodes {
            let peer = peer_of(addr);
            if peer.is_some_and(|p| swarm.is_connected(&p) || self.banned.contains_key(&p)) {
                continue;
            }
            let _ = swarm.dial(addr.clone());
        }
    }

    fn penalise(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId, penalty: u32, why: &str) {
        if penalty == 0 {
            return;
        }
        let score = self.scores.entry(peer).or_default();
        *score += penalty;
        tracing::warn!(%peer, penalty, score = *score, why, "peer misbehaved");
        if *score >= BAN_SCORE {
            tracing::warn!(%peer, "banning peer for {} s", BAN_TIME.as_secs());
            self.banned.insert(peer, Instant::now() + BAN_TIME);
            let _ = swarm.disconnect_peer_id(peer);
        }
    }

    fn budget(&mut self, peer: PeerId) -> &mut PeerBudget {
        self.budgets
            .entry(peer)
            .or_insert_with(|| PeerBudget::new(Instant::now()))
    }

    fn set_peer(&self, peer: PeerId, update: impl FnOnce(&mut PeerInfo)) {
        let mut peers = self.handle.peers.lock().unwrap_or_else(|e| e.into_inner());
        let info = peers.entry(peer).or_insert_with(|| PeerInfo {
            peer_id: peer.to_string(),
            addr: String::new(),
            height: None,
        });
        update(info);
    }

    fn on_swarm_event(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        event: SwarmEvent<BehaviourEvent>,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
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
                if self
                    .banned
                    .get(&peer_id)
                    .is_some_and(|until| *until > Instant::now())
                {
                    let _ = swarm.disconnect_peer_id(peer_id);
                    return;
                }
                let addr = endpoint.get_remote_address().to_string();
                self.set_peer(peer_id, |info| info.addr = addr);
                if num_established.get() == 1 {
                    send_request(swarm, &peer_id, SyncRequest::Status(self.our_status()));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.handle
                    .peers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&peer_id);
                self.peer_status.remove(&peer_id);
                self.budgets.remove(&peer_id);
                self.asked_status.remove(&peer_id);
                self.lose_peer(swarm, peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let ours = identify_version(&self.genesis);
                if info.protocol_version != ours {
                    tracing::warn!(
                        peer = %peer_id,
                        theirs = %info.protocol_version,
                        ours = %ours,
                        "peer runs another chain (genesis differs); disconnecting"
                    );
                    self.banned.insert(peer_id, Instant::now() + BAN_TIME);
                    let _ = swarm.disconnect_peer_id(peer_id);
                    return;
                }
                // Its own listen addresses go into the DHT, so others can find it.
                for addr in info.listen_addrs {
                    swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
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
                    if swarm.is_connected(&peer) || self.banned.contains_key(&peer) {
                        continue;
                    }
                    tracing::info!(%peer, %addr, "found a peer on the local network");
                    swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                    let _ = swarm.dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                }
            }
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
                } => {
                    // Block requests read megabytes from disk; status requests cost little.
                    let costly = matches!(request, Inbound::Request(SyncRequest::GetBodies { .. }));
                    if costly
                        && !self
                            .budget(peer)
                            .sync_requests
                            .take(allowance::SYNC_REQUESTS, Instant::now())
                    {
                        self.penalise(swarm, peer, 5, "block requests beyond its allowance");
                        return;
                    }
                    let response = match request {
                        Inbound::Malformed(reason) => {
                            // Dropping the channel closes the stream without an answer.
                            self.penalise(
                                swarm,
                                peer,
                                50,
                                &format!("malformed sync request: {reason}"),
                            );
                            return;
                        }
                        Inbound::Request(SyncRequest::Status(status)) => {
                            self.learn_status(swarm, peer, status);
                            SyncResponse::Status(self.our_status())
                        }
                        Inbound::Request(SyncRequest::GetHeaders { locator, max }) => {
                            let max = max.min(MAX_HEADERS_PER_RESPONSE);
                            SyncResponse::Headers(
                                self.node.lock().chain.main_headers_after(&locator, max),
                            )
                        }
                        Inbound::Request(SyncRequest::GetBodies { hashes }) => {
                            let asked = &hashes[..hashes.len().min(MAX_BODIES_PER_REQUEST)];
                            // A peer missing transactions of the block we just mined may
                            // ask before we have stored it.
                            let just_published =
                                self.published.as_ref().and_then(|p| p.answer(asked));
                            let blocks = just_published.or_else(|| {
                                let read =
                                    self.node.lock().chain.bodies(asked, RESPONSE_BYTES_TARGET);
                                // Damage found here stops the node like anywhere else.
                                read.map_err(|e| self.node.note_error(e)).ok()
                            });
                            SyncResponse::Blocks(blocks.unwrap_or_default())
                        }
                    };
                    let _ = swarm.behaviour_mut().sync.send_response(channel, response);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => match (self.fetching.remove(&request_id), response) {
                    (Some(fetch), SyncResponse::Blocks(blocks)) => {
                        self.on_fetched_body(swarm, fetch, blocks.into_iter().next(), verdicts)
                    }
                    (Some(fetch), _) => self.on_fetched_body(swarm, fetch, None, verdicts),
                    (None, SyncResponse::Status(status)) => self.learn_status(swarm, peer, status),
                    (None, SyncResponse::Headers(headers)) => self.on_headers(swarm, peer, headers),
                    (None, SyncResponse::Blocks(blocks)) => self.on_bodies(swarm, peer, blocks),
                },
            },
            SwarmEvent::Behaviour(BehaviourEvent::Sync(
                request_response::Event::OutboundFailure {
                    peer,
                    error,
                    request_id,
                    ..
                },
            )) => {
                tracing::debug!(%peer, %error, "sync request failed");
                if let Some(fetch) = self.fetching.remove(&request_id) {
                    self.on_fetched_body(swarm, fetch, None, verdicts);
                }
                self.lose_peer(swarm, peer);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(
                request_response::Event::InboundFailure { peer, error, .. },
            )) => {
                tracing::debug!(%peer, %error, "inbound sync request failed");
            }
            _ => {}
        }
    }

    fn on_gossip(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        source: PeerId,
        message_id: gossipsub::MessageId,
        message: gossipsub::Message,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
        if self.from_gossip.len() > 100_000 {
            self.from_gossip.clear();
        }
        self.from_gossip.insert(message_id.0.clone());
        let is_block = message.topic == self.block_topic.hash();
        if !is_block
            && !self
                .budget(source)
                .tx_messages
                .take(allowance::TX_MESSAGES, Instant::now())
        {
            // Not validated at all: a flood costs us a hash per message, not a signature.
            swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&message_id, &source, MessageAcceptance::Ignore);
            self.penalise(swarm, source, 1, "transactions beyond its allowance");
            return;
        }
        let data = message.data;
        let judge = move |node: &Node| {
            if is_block {
                judge_compact_block(node, &data)
            } else {
                Judged::Done(judge_tx(node, &data))
            }
        };
        self.judge_off_runtime(message_id, source, is_block, verdicts, judge);
    }

    /// The whole block a compact one left us to fetch, or its absence: either settles
    /// the gossip message it came from.
    fn on_fetched_body(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        fetch: Fetch,
        body: Option<Vec<u8>>,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
        let Fetch {
            message_id,
            source,
            hash,
        } = fetch;
        let Some(bytes) = body else {
            // It could not send it (yet): what it knows, a sync fetches.
            let judgement = Judgement::unknown_parent();
            self.on_verdict(
                swarm,
                Verdict::Gossip {
                    message_id,
                    source,
                    judgement,
                    is_block: true,
                },
            );
            return;
        };
        let judge = move |node: &Node| Judged::Done(judge_fetched_block(node, bytes, hash));
        self.judge_off_runtime(message_id, source, true, verdicts, judge);
    }

    /// Runs `judge` on the blocking pool (it may check signatures and connect blocks) and
    /// hands its verdict on `message_id` back to the event loop.
    fn judge_off_runtime(
        &self,
        message_id: gossipsub::MessageId,
        source: PeerId,
        is_block: bool,
        verdicts: &mpsc::UnboundedSender<Verdict>,
        judge: impl FnOnce(&Node) -> Judged + Send + 'static,
    ) {
        let node = self.node.clone();
        let verdicts = verdicts.clone();
        tokio::task::spawn_blocking(move || {
            let _ = verdicts.send(match judge(&node) {
                Judged::Done(judgement) => Verdict::Gossip {
                    message_id,
                    source,
                    judgement,
                    is_block,
                },
                Judged::NeedsBody(hash) => Verdict::FetchBody(Fetch {
                    message_id,
                    source,
                    hash,
                }),
            });
        });
    }

    fn on_verdict(&mut self, swarm: &mut Swarm<Behaviour>, verdict: Verdict) {
        match verdict {
            Verdict::FetchBody(fetch) => {
                let hashes = vec![fetch.hash];
                let request = send_request(swarm, &fetch.source, SyncRequest::GetBodies { hashes });
                self.fetching.insert(request, fetch);
            }
            Verdict::Gossip {
                message_id,
                source,
                judgement:
                    Judgement {
                        acceptance,
                        penalty,
                        unknown_parent,
                    },
                is_block,
            } => {
                swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &source, acceptance);
                self.penalise(swarm, source, penalty, "invalid gossip");
                if !is_block
                    && acceptance == MessageAcceptance::Ignore
                    && !self
                        .budget(source)
                        .useless_txs
                        .take(allowance::USELESS_TXS, Instant::now())
                {
                    self.penalise(
                        swarm,
                        source,
                        5,
                        "useless transactions beyond its allowance",
                    );
                }
                if unknown_parent && self.download.as_ref().is_none_or(|d| d.source != source) {
                    // The sender knows blocks we lack: ask where it stands, then sync. A burst
                    // of such blocks (a peer mining fast) asks once, not once per block.
                    let now = Instant::now();
                    let recently = self
                        .asked_status
                        .get(&source)
                        .is_some_and(|at| now.duration_since(*at) < STATUS_REASK);
                    if recently {
                        return;
                    }
                    self.asked_status.insert(source, now);
                    send_request(swarm, &source, SyncRequest::Status(self.our_status()));
                }
            }
            Verdict::Synced {
                peer,
                received,
                penalty,
            } => {
                self.importing = self.importing.saturating_sub(1);
                self.penalise(swarm, peer, penalty, "invalid block in sync");
                self.note_sync_progress(received as u64);
                if penalty > 0 {
                    // What follows builds on what failed: start over from the best peer.
                    self.download = None;
                    self.peer_status.remove(&peer);
                }
                self.advance_download(swarm);
                if self.download.is_none() {
                    self.sync_from_best(swarm);
                }
            }
        }
    }
}

impl Drop for Service {
    /// Ends with the runtime or the node: the importer sees its queue close, finishes
    /// the batch in hand and lets go of the node.
    fn drop(&mut self) {
        self.imports = None;
        if let Some(importer) = self.importer.take() {
            let _ = importer.join();
        }
    }
}

/// Sends `request` to `peer` over the sync protocol.
fn send_request(
    swarm: &mut Swarm<Behaviour>,
    peer: &PeerId,
    request: SyncRequest,
) -> request_response::OutboundRequestId {
    swarm
        .behaviour_mut()
        .sync
        .send_request(peer, Inbound::Request(request))
}

/// libp2p listens with SO_REUSEPORT, so a second node could silently share a port with
/// the first; a plain bind first turns that into a clear error.
fn check_port_free(addr: &Multiaddr) -> Result<(), NetworkError> {
    use libp2p::multiaddr::Protocol;
    let mut parts = addr.iter();
    let ip: std::net::IpAddr = match parts.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    let Some(Protocol::Tcp(port)) = parts.next() else {
        return Ok(());
    };
    if port == 0 {
        return Ok(());
    }
    std::net::TcpListener::bind((ip, port))
        .map(drop)
        .map_err(|e| NetworkError::Listen {
            addr: addr.clone(),
            message: if e.kind() == std::io::ErrorKind::AddrInUse {
                "the port is already in use (another apiary-node?); choose another with --listen"
                    .into()
            } else {
                e.to_string()
            },
        })
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// What validating a gossiped object came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Judgement {
    acceptance: MessageAcceptance,
    /// Score the sender loses.
    penalty: u32,
    /// A block whose parent we lack: the sender knows a chain we should sync.
    unknown_parent: bool,
}

impl Judgement {
    fn new(acceptance: MessageAcceptance, penalty: u32) -> Judgement {
        Judgement {
            acceptance,
            penalty,
            unknown_parent: false,
        }
    }

    /// A block the sender can place and we cannot: not forwarded, not held against it.
    fn unknown_parent() -> Judgement {
        Judgement {
            acceptance: MessageAcceptance::Ignore,
            penalty: 0,
            unknown_parent: true,
        }
    }
}

enum Judged {
    Done(Judgement),
    /// A compact block naming transactions we do not hold: the whole block is needed.
    NeedsBody(BlockHash),
}

/// Validates a gossiped compact block, rebuilding it from the mempool. Its proof of work
/// is checked first, so only a block that cost real work can make us fetch anything.
fn judge_compact_block(node: &Node, bytes: &[u8]) -> Judged {
    let max = CompactBlock::max_encoded_bytes(node.spec().consensus.max_block_txs as usize);
    let compact = match decode_exact::<CompactBlock>("compact block", bytes, max) {
        Ok(compact) => compact,
        Err(_) => return Judged::Done(Judgement::new(MessageAcceptance::Reject, BAN_SCORE / 2)),
    };
    if let Err(error) = check_header_pow(&compact.header, node.spec()) {
        return Judged::Done(Judgement::new(
            MessageAcceptance::Reject,
            error.misbehavior_score(),
        ));
    }
    let hash = compact.hash();
    let txs: Vec<Option<SignedTransaction>> = {
        let guard = node.lock();
        // A block we already hold needs no second look.
        if guard.chain.entry(&hash).is_some() {
            return Judged::Done(Judgement::new(MessageAcceptance::Ignore, 0));
        }
        if guard.chain.entry(&compact.header.prev_hash).is_none() {
            return Judged::Done(Judgement::unknown_parent());
        }
        compact
            .txids
            .iter()
            .map(|txid| guard.mempool.get(txid).cloned())
            .collect()
    };
    let missing = txs.iter().filter(|tx| tx.is_none()).count();
    if missing > 0 {
        tracing::info!(
            %hash,
            missing,
            of = txs.len(),
            "block names transactions not in our mempool; fetching it whole"
        );
        return Judged::NeedsBody(hash);
    }
    let block = Block {
        header: compact.header,
        txs: txs.into_iter().flatten().collect(),
    };
    let bytes = block.encode();
    Judged::Done(judge_checked(
        node,
        node.check_rebuilt_block(block, compact.txids, bytes),
    ))
}

/// Validates the whole block fetched for a compact one whose hash is `expected`.
fn judge_fetched_block(node: &Node, bytes: Vec<u8>, expected: BlockHash) -> Judgement {
    let max = node.spec().consensus.max_block_bytes as usize;
    match decode_exact::<Block>("block", &bytes, max) {
        Ok(block) if block.hash() == expected => {
            judge_checked(node, node.check_block(block, bytes))
        }
        // Not what it announced: as bad as an undecodable message.
        _ => Judgement::new(MessageAcceptance::Reject, BAN_SCORE / 2),
    }
}

/// Takes a block that came by gossip, once its stateless checks came to `checked`.
fn judge_checked(node: &Node, checked: Result<CheckedBlock, ChainError>) -> Judgement {
    match checked.and_then(|checked| node.accept_block(checked)) {
        Ok(Accepted::NewTip(_)) | Ok(Accepted::SideBranch) => {
            Judgement::new(MessageAcceptance::Accept, 0)
        }
        Ok(Accepted::Duplicate) => Judgement::new(MessageAcceptance::Ignore, 0),
        Err(ChainError::UnknownParent { .. }) => Judgement::unknown_parent(),
        // Our trouble, not the sender's (a full disk pauses writing; damage stops the node).
        Err(ChainError::StorageFull(_)) => Judgement::new(MessageAcceptance::Ignore, 0),
        Err(error @ ChainError::Store(_)) | Err(error @ ChainError::Inconsistent(_)) => {
            // Node::accept_block has reported it to the node's health already.
            tracing::error!(%error, "could not take a gossiped block");
            Judgement::new(MessageAcceptance::Ignore, 0)
        }
        Err(error) => Judgement::new(MessageAcceptance::Reject, error.misbehavior_score()),
    }
}

/// Validates a gossiped transaction.
fn judge_tx(node: &Node, bytes: &[u8]) -> Judgement {
    let stx: SignedTransaction = match decode_exact("transaction", bytes, MAX_TX_BYTES) {
        Ok(stx) => stx,
        Err(_) => return Judgement::new(MessageAcceptance::Reject, BAN_SCORE / 2),
    };
    match node.submit_tx(stx) {
        Ok(_) => Judgement::new(MessageAcceptance::Accept, 0),
        Err(SubmitError::Rejected(MempoolError::Invalid(
            TxError::BadSignature | TxError::SenderNotAKey | TxError::WrongChain { .. },
        ))) => Judgement::new(MessageAcceptance::Reject, 20),
        // Stale, duplicate, or not payable against our tip: may be honest; do not forward.
        Err(_) => Judgement::new(MessageAcceptance::Ignore, 0),
    }
}
