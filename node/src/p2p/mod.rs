//! The network: libp2p over TCP with noise and yamux. Transactions and blocks travel by
//! gossipsub and are judged before they are forwarded; a node behind follows the peer
//! with the most work over a request-response sync protocol (the decisions are the sync
//! machine's, `crate::sync`). This file is the event loop: it dispatches, and never takes
//! the node's lock or touches RocksDB — the tip comes through a watch channel, and reading
//! or checking anything runs on the blocking pool.

mod allowance;
mod clock;
mod events;
#[doc(hidden)]
pub mod fuzzing;
mod gossip;
mod handle;
mod ip_limits;
mod mempools;
pub mod peers;
mod ping;
mod serve;
mod swarm;
mod syncing;

pub use handle::{NetCommand, NetworkHandle, PeerInfo};
pub use peers::MAX_BAN;
pub use swarm::{check_dialable, load_or_create_identity, topics};

use crate::health::CoreTask;
use crate::node::{Announcement, Node};
use crate::protocol::{self, SyncResponse};
use crate::sync::{HeadersChecked, OurTip, Sync};
use apiary_core::BlockHash;
use clock::ClockWatch;
use futures::StreamExt;
use gossip::{Fetch, GossipedTx, Judgement, Published};
use handle::Shared;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{kad, Multiaddr, PeerId, Swarm};
use peers::{Misbehaviour, PeerBook, Verdict as BookVerdict};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use swarm::{check_port_free, peer_of, Behaviour, GRAYLIST_THRESHOLD};
use syncing::Pending;
use tokio::sync::{mpsc, watch};

/// How often lost bootnodes are dialled again, peers are asked where they stand (so a node
/// that missed gossip still learns it is behind), and scores decay.
const TICK_INTERVAL: Duration = Duration::from_secs(5);
/// How often the sync machine looks at its deadlines.
const SYNC_TICK: Duration = Duration::from_secs(1);
/// Below this many connections, Kademlia is asked for more peers on every tick.
const TARGET_PEERS: usize = 8;
/// Limits on what peers may hold of this node; each has a flag (`apiary-node --help`).
#[derive(Clone, Debug)]
pub struct PeerLimits {
    /// Established connections at most (`--max-peers`).
    pub max_peers: u32,
    /// Inbound connections, pending or established, from one IP address at most
    /// (`--max-peers-per-ip`).
    pub max_peers_per_ip: u32,
    /// Connections waiting for their handshakes, each way, at most
    /// (`--max-pending-connections`).
    pub max_pending: u32,
    /// Requests of one peer answered at once, at most (`--max-requests-per-peer`).
    pub max_requests_per_peer: usize,
    /// How long a connection's noise and yamux handshakes may take
    /// (`--handshake-timeout-secs`).
    pub handshake_timeout: Duration,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            max_peers: 64,
            max_peers_per_ip: 8,
            max_pending: 32,
            max_requests_per_peer: 2,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

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
    pub limits: PeerLimits,
}

/// Starts the network on the current tokio runtime.
pub fn start(node: Arc<Node>, config: NetworkConfig) -> Result<NetworkHandle, NetworkError> {
    let keypair = load_or_create_identity(&config.datadir)?;
    let genesis = node.genesis_hash();
    let max_block = node.spec().consensus.max_block_bytes as usize;
    let (block_topic, tx_topic) = topics(&genesis);
    let mut swarm = swarm::build(keypair, genesis, max_block, &config)?;
    for topic in [&block_topic, &tx_topic] {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(topic)
            .map_err(|e| NetworkError::Setup(e.to_string()))?;
    }
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
        shared: Arc::new(Mutex::new(Shared::default())),
        commands,
    };
    let tip = node.tip_watch();
    let ours = tip.borrow().clone();
    let service = Service {
        commands: command_rx,
        announcements: node.announcements(),
        clock: ClockWatch::new(node.spec().consensus.max_future_drift_ms),
        node,
        genesis,
        block_topic,
        tx_topic,
        bootnodes: config.bootnodes,
        bootnode_peers: HashMap::new(),
        datadir: config.datadir,
        handle: handle.clone(),
        tip,
        book: PeerBook::default(),
        sync: Sync::new(ours),
        requests: HashMap::new(),
        asked_status: HashMap::new(),
        serving: HashMap::new(),
        pulls: HashMap::new(),
        imports: None,
        importer: None,
        sync_logged: Instant::now(),
        max_requests_per_peer: config.limits.max_requests_per_peer,
        from_gossip: HashSet::new(),
        gossiped_txs: Vec::new(),
        checking_txs: false,
        published: None,
        wrote_addr: false,
    };
    tokio::spawn(service.run(swarm));
    Ok(handle)
}

/// Results of work done off the loop, handed back to it.
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
    /// The verdicts on a batch of gossiped transactions.
    TxsJudged(Vec<(gossipsub::MessageId, PeerId, Judgement)>),
    HeadersChecked {
        peer: PeerId,
        outcome: HeadersChecked,
    },
    Imported {
        peer: PeerId,
        received: usize,
        refused: Option<Misbehaviour>,
    },
    /// An answer to a peer's request, read off the loop.
    Served {
        peer: PeerId,
        channel: ResponseChannel<SyncResponse>,
        response: SyncResponse,
    },
    /// An answer to a peer's mempool request, read off the loop.
    MempoolServed {
        channel: ResponseChannel<protocol::MempoolResponse>,
        response: protocol::MempoolResponse,
    },
    /// What a peer's mempool holds that ours lacks.
    MempoolMissing {
        peer: PeerId,
        missing: Vec<apiary_core::TxId>,
    },
    /// Transactions pulled from a peer were judged: what they say of it.
    TxsPulled {
        peer: PeerId,
        misbehaviour: Vec<Misbehaviour>,
    },
}

struct Service {
    node: Arc<Node>,
    genesis: BlockHash,
    block_topic: IdentTopic,
    tx_topic: IdentTopic,
    bootnodes: Vec<Multiaddr>,
    /// Who answered at a bootnode address that names no peer id (`/dns4/node0/tcp/9798`,
    /// as in compose): while that peer is connected the address is not dialled again.
    bootnode_peers: HashMap<Multiaddr, PeerId>,
    datadir: PathBuf,
    announcements: mpsc::UnboundedReceiver<Announcement>,
    commands: mpsc::UnboundedReceiver<NetCommand>,
    handle: NetworkHandle,
    /// The node's tip, as it publishes it.
    tip: watch::Receiver<OurTip>,
    book: PeerBook<PeerId>,
    sync: Sync<PeerId>,
    /// Our requests in flight: to whom, and what for.
    requests: HashMap<OutboundRequestId, (PeerId, Pending)>,
    /// When each peer was last asked for its status because of a block we could not place.
    asked_status: HashMap<PeerId, Instant>,
    /// Requests of each peer being answered off the loop.
    serving: HashMap<PeerId, usize>,
    /// What is being pulled from each peer's mempool.
    pulls: HashMap<PeerId, mempools::Pull>,
    /// Batches go to one importer thread, which connects them in order.
    imports: Option<std::sync::mpsc::Sender<(PeerId, Vec<Vec<u8>>)>>,
    /// The importer thread, joined when the service ends: it holds the node, whose
    /// RocksDB must close before the process exits.
    importer: Option<std::thread::JoinHandle<()>>,
    sync_logged: Instant,
    /// Ids of objects that came by gossip: gossipsub forwards them itself once accepted,
    /// so the node's own announcement of them is not published again.
    from_gossip: HashSet<Vec<u8>>,
    /// Gossiped transactions waiting for the batch being checked to finish.
    gossiped_txs: Vec<GossipedTx>,
    /// Whether a batch of gossiped transactions is being checked.
    checking_txs: bool,
    /// The last block this node published.
    published: Option<Published>,
    clock: ClockWatch<PeerId>,
    /// Requests of one peer answered at once, at most.
    max_requests_per_peer: usize,
    wrote_addr: bool,
}

impl Service {
    async fn run(mut self, mut swarm: Swarm<Behaviour>) {
        let _running = CoreTask::new(self.node.clone(), "network service");
        let (verdicts, mut verdict_rx) = mpsc::unbounded_channel::<Verdict>();
        if let Err(error) = self.start_importer(&verdicts) {
            self.node
                .health()
                .fail(format!("cannot start the sync importer: {error}"));
            return;
        }
        let mut tick = tokio::time::interval(TICK_INTERVAL);
        let mut sync_tick = tokio::time::interval(SYNC_TICK);
        loop {
            tokio::select! {
                event = swarm.select_next_some() => self.on_swarm_event(&mut swarm, event, &verdicts),
                Some(announcement) = self.announcements.recv() => self.publish(&mut swarm, announcement),
                Some(verdict) = verdict_rx.recv() => self.on_verdict(&mut swarm, verdict, &verdicts),
                Some(command) = self.commands.recv() => self.on_command(&mut swarm, command),
                Ok(()) = self.tip.changed() => {
                    let tip = self.tip.borrow_and_update().clone();
                    let actions = self.sync.our_tip(tip, Instant::now());
                    self.carry_out(&mut swarm, actions, &verdicts);
                }
                _ = sync_tick.tick() => {
                    self.ban_graylisted(&mut swarm);
                    let actions = self.sync.tick(Instant::now());
                    self.carry_out(&mut swarm, actions, &verdicts);
                }
                _ = tick.tick() => self.on_tick(&mut swarm),
            }
            if self.node.is_shutting_down() {
                return;
            }
        }
    }

    /// The importer: one thread connecting downloaded batches in order.
    fn start_importer(&mut self, verdicts: &mpsc::UnboundedSender<Verdict>) -> std::io::Result<()> {
        let (imports, import_rx) = std::sync::mpsc::channel::<(PeerId, Vec<Vec<u8>>)>();
        let (node, verdicts) = (self.node.clone(), verdicts.clone());
        let importer = std::thread::Builder::new()
            .name("sync-import".into())
            .spawn(move || {
                let _running = CoreTask::new(node.clone(), "sync importer");
                for (peer, blocks) in import_rx {
                    let count = blocks.len();
                    let (received, refused) = match node.connect_in_order(blocks) {
                        Ok(()) => (count, None),
                        Err(stopped) => {
                            tracing::warn!(%peer, error = %stopped.error, "block from sync refused");
                            let why = Misbehaviour::of_import_error(&stopped.error);
                            (stopped.position, why)
                        }
                    };
                    let _ = verdicts.send(Verdict::Imported {
                        peer,
                        received,
                        refused,
                    });
                }
            })?;
        self.imports = Some(imports);
        self.importer = Some(importer);
        Ok(())
    }

    fn on_verdict(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        verdict: Verdict,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
        let now = Instant::now();
        match verdict {
            Verdict::FetchBody(fetch) => self.fetch_body(swarm, fetch),
            Verdict::Gossip {
                message_id,
                source,
                judgement,
                is_block,
            } => self.on_judged(swarm, message_id, source, judgement, is_block),
            Verdict::TxsJudged(judged) => {
                for (message_id, source, judgement) in judged {
                    self.on_judged(swarm, message_id, source, judgement, false);
                }
                self.checking_txs = false;
                self.check_gossiped_txs(verdicts);
            }
            Verdict::HeadersChecked { peer, outcome } => {
                self.note_held_back(peer, &outcome, now);
                let actions = self.sync.headers_checked(peer, outcome, now);
                self.carry_out(swarm, actions, verdicts);
            }
            Verdict::Imported {
                peer,
                received,
                refused,
            } => {
                let actions = self.sync.imported(peer, received, refused, now);
                self.carry_out(swarm, actions, verdicts);
            }
            Verdict::Served {
                peer,
                channel,
                response,
            } => self.on_served(swarm, peer, channel, response),
            Verdict::MempoolServed { channel, response } => {
                self.on_mempool_served(swarm, channel, response)
            }
            Verdict::MempoolMissing { peer, missing } => {
                self.on_mempool_missing(swarm, peer, missing)
            }
            Verdict::TxsPulled { peer, misbehaviour } => {
                self.on_txs_pulled(swarm, peer, misbehaviour)
            }
        }
    }

    fn on_command(&mut self, swarm: &mut Swarm<Behaviour>, command: NetCommand) {
        match command {
            NetCommand::Connect(addr) => {
                if let Some(peer) = peer_of(&addr) {
                    self.book.pardon(&peer);
                }
                if let Err(error) = swarm.dial(addr.clone()) {
                    tracing::warn!(%addr, %error, "cannot dial");
                }
            }
            NetCommand::Disconnect { peer, ban } => {
                tracing::info!(%peer, ban_seconds = ban.as_secs(), "disconnecting peer on request");
                if !ban.is_zero() {
                    self.book.ban(peer, ban, Instant::now());
                }
                let _ = swarm.disconnect_peer_id(peer);
            }
        }
    }

    /// Dials peers the DHT found until the target peer count is reached.
    fn dial_discovered(&mut self, swarm: &mut Swarm<Behaviour>, found: Vec<kad::PeerInfo>) {
        let me = *swarm.local_peer_id();
        let now = Instant::now();
        let mut wanted = TARGET_PEERS.saturating_sub(swarm.connected_peers().count());
        for peer in found {
            if wanted == 0 {
                return;
            }
            if peer.peer_id == me
                || swarm.is_connected(&peer.peer_id)
                || self.book.is_banned(&peer.peer_id, now)
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
        let now = Instant::now();
        self.book.tick(now);
        let peers: Vec<PeerId> = swarm.connected_peers().copied().collect();
        if peers.len() < TARGET_PEERS && !peers.is_empty() {
            // A random key's neighbourhood: each lookup walks a different part of the DHT.
            swarm
                .behaviour_mut()
                .kad
                .get_closest_peers(PeerId::random());
        }
        for peer in peers {
            let (score, gossip_score) = (
                self.book.score(&peer),
                swarm.behaviour().gossipsub.peer_score(&peer),
            );
            self.set_peer(peer, |info| {
                info.score = score;
                info.gossip_score = gossip_score;
            });
            self.ask_status(swarm, peer);
        }
        for addr in &self.bootnodes {
            let peer = peer_of(addr).or_else(|| self.bootnode_peers.get(addr).copied());
            if peer.is_some_and(|p| swarm.is_connected(&p) || self.book.is_banned(&p, now)) {
                continue;
            }
            let _ = swarm.dial(addr.clone());
        }
    }

    /// Bans the peers gossipsub's scoring has put below its graylist threshold: judged
    /// already, and deaf to, so no message of theirs would reach our own judgement again.
    fn ban_graylisted(&mut self, swarm: &mut Swarm<Behaviour>) {
        let graylisted: Vec<(PeerId, f64)> = swarm
            .connected_peers()
            .filter_map(|peer| {
                let score = swarm.behaviour().gossipsub.peer_score(peer)?;
                (score < GRAYLIST_THRESHOLD).then_some((*peer, score))
            })
            .collect();
        for (peer, score) in graylisted {
            self.penalise(swarm, peer, Misbehaviour::Graylisted(score.round() as i64));
        }
    }

    /// Charges `peer` for `why`; a ban disconnects it.
    fn penalise(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId, why: Misbehaviour) {
        if why.score() == 0 {
            return;
        }
        match self.book.penalise(peer, &why, Instant::now()) {
            BookVerdict::Kept { score } => {
                tracing::debug!(%peer, %why, score, "peer misbehaved");
            }
            BookVerdict::Banned { until } => {
                let seconds = until.saturating_duration_since(Instant::now()).as_secs();
                tracing::warn!(%peer, %why, ban_seconds = seconds, "banning peer");
                let _ = swarm.disconnect_peer_id(peer);
            }
        }
        let score = self.book.score(&peer);
        self.set_peer(peer, |info| info.score = score);
    }

    fn set_peer(&self, peer: PeerId, update: impl FnOnce(&mut PeerInfo)) {
        let mut shared = self.handle.shared();
        if let Some(info) = shared.peers.get_mut(&peer) {
            update(info);
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
