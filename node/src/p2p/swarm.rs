//! The libp2p side: the protocols this node speaks (gossipsub, identify, ping, Kademlia,
//! the request-response sync protocol, mDNS), the limits on connections, their settings,
//! and the swarm over TCP with noise and yamux. Everything here is stock libp2p; what is
//! chain-specific (protocol names, topics, message ids, no signatures) is in
//! `docs/protocol.md`.

use super::ip_limits::IpLimits;
use super::{NetworkConfig, NetworkError};
use crate::protocol::{
    mempool_protocol, sync_protocol, MempoolCodec, SyncCodec, MAX_MEMPOOL_RESPONSE_BYTES,
    RESPONSE_BYTES_TARGET,
};
use apiary_core::BlockHash;
use apiary_files::write_private_file;
use libp2p::core::upgrade::Version;
use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
    ValidationMode,
};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    connection_limits, dns, identify, kad, mdns, noise, tcp, yamux, Multiaddr, PeerId,
    StreamProtocol, Swarm, Transport,
};
use std::path::Path;
use std::time::Duration;

/// Connections to one peer (by id) at most.
pub const MAX_PER_PEER: u32 = 2;

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    /// First, so that a connection over a limit is refused before anything else sees it.
    pub limits: connection_limits::Behaviour,
    pub ip_limits: IpLimits,
    pub gossipsub: gossipsub::Behaviour,
    pub identify: identify::Behaviour,
    /// The standard ping (`/ipfs/ping/1.0.0`): other implementations' Kademlia and
    /// connection monitors use it.
    pub ping: super::ping::Behaviour,
    pub sync: request_response::Behaviour<SyncCodec>,
    /// What each side's mempool holds, pulled when peers meet.
    pub mempool: request_response::Behaviour<MempoolCodec>,
    /// Peer discovery: a DHT of this chain's nodes only (its protocol name holds the genesis).
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// LAN discovery, when asked for (`--mdns`).
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

/// The two gossip topics: blocks (compact form) and transactions.
pub fn topics(genesis: &BlockHash) -> (IdentTopic, IdentTopic) {
    (
        IdentTopic::new(format!("apiary/{genesis}/blocks")),
        IdentTopic::new(format!("apiary/{genesis}/txs")),
    )
}

/// What identify says this node runs. Informative only: peers are never refused on it.
pub fn identify_version(genesis: &BlockHash) -> String {
    format!("/apiary/{genesis}")
}

/// The genesis hash in an Apiary protocol name (`/apiary/<genesis>/…`), if it is one.
pub fn genesis_of_protocol(protocol: &str) -> Option<&str> {
    let rest = protocol.strip_prefix("/apiary/")?;
    let genesis = rest.split('/').next()?;
    (genesis.len() == 64 && genesis.bytes().all(|b| b.is_ascii_hexdigit())).then_some(genesis)
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

/// Gossipsub's settings: unsigned messages (their content is signed where it matters),
/// ids that are the objects' own hashes, a mesh sized for 2 to 50 peers, and room for
/// messages twice a block's size (what is over a topic's own limit is seen and penalised
/// by the node; what is over this closes the stream).
fn gossip_config(genesis: &BlockHash, max_block: usize) -> Result<gossipsub::Config, NetworkError> {
    let blocks_hash = topics(genesis).0.hash();
    gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .max_transmit_size(2 * (max_block + 4096))
        // Kept mesh_outbound_min <= mesh_n_low <= mesh_n <= mesh_n_high.
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
        .map_err(|e| NetworkError::Setup(e.to_string()))
}

/// Gossipsub's peer scoring, for what it drops itself (a signed envelope on this unsigned
/// network, a malformed frame) and what the node rejects: each invalid message costs
/// `INVALID_WEIGHT`; a peer below the graylist threshold is ignored by gossipsub, and
/// banned by the node (it would otherwise never reach the ban score: gossipsub drops its
/// messages before the node's validation sees them).
/// Mesh-delivery and IP-colocation penalties stay off: honest peers of a quiet network, or
/// of one machine, would pay them.
/// Gossipsub ignores a peer scored below this; the node bans it (`Misbehaviour::Graylisted`).
pub(super) const GRAYLIST_THRESHOLD: f64 = -80.0;

fn gossip_scoring(genesis: &BlockHash) -> (PeerScoreParams, PeerScoreThresholds) {
    const INVALID_WEIGHT: f64 = -10.0;
    let topic = TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_WEIGHT,
        invalid_message_deliveries_decay: 0.9,
        ..TopicScoreParams::default()
    };
    let (blocks, txs) = topics(genesis);
    let params = PeerScoreParams {
        topics: [(blocks.hash(), topic.clone()), (txs.hash(), topic)]
            .into_iter()
            .collect(),
        ip_colocation_factor_weight: 0.0,
        app_specific_weight: 0.0,
        behaviour_penalty_weight: -1.0,
        // Off, unlike gossipsub's default (-0.2 for each message dropped because the peer
        // reads slower than we send): under load every honest peer is slow at times, and
        // 400 drops graylisted it, which bans it here; five nodes at 5,000 tx/s banned each
        // other within seconds and stopped relaying. A slow peer's messages are dropped
        // anyway; it has done nothing wrong.
        slow_peer_weight: 0.0,
        ..PeerScoreParams::default()
    };
    let thresholds = PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: GRAYLIST_THRESHOLD,
        ..PeerScoreThresholds::default()
    };
    (params, thresholds)
}

/// How long a resolved name is believed: a peer restarted at a new address (a container
/// given a new IP) is found again at the next dial after this, whatever TTL the server gave.
const DNS_ANSWER_LIFETIME: Duration = Duration::from_secs(5);

/// TCP with /dns, /dns4, /dns6 and /dnsaddr names resolved at dial time through the
/// system's resolver configuration (/etc/resolv.conf and /etc/hosts). Without one, names do
/// not resolve and each such dial says so; IP addresses work as before.
fn tcp_with_dns() -> dns::tokio::Transport<tcp::tokio::Transport> {
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    let (config, mut options) =
        hickory_resolver::system_conf::read_system_conf().unwrap_or_else(|error| {
            tracing::warn!(%error, "no DNS configuration: peers given by name will not resolve");
            let none = dns::ResolverConfig::from_name_servers(Vec::new());
            (none, dns::ResolverOpts::default())
        });
    options.positive_max_ttl = Some(DNS_ANSWER_LIFETIME);
    options.negative_max_ttl = Some(DNS_ANSWER_LIFETIME);
    dns::tokio::Transport::custom(tcp, config, options)
}

/// Builds the swarm of `config` for the chain of `genesis`.
pub(super) fn build(
    keypair: Keypair,
    genesis: BlockHash,
    max_block: usize,
    config: &NetworkConfig,
) -> Result<Swarm<Behaviour>, NetworkError> {
    let setup = |e: &dyn std::fmt::Display| NetworkError::Setup(e.to_string());
    let gossip_config = gossip_config(&genesis, max_block)?;
    let (score_params, score_thresholds) = gossip_scoring(&genesis);
    let limits = &config.limits;
    let handshake_timeout = limits.handshake_timeout;
    let max_per_ip = limits.max_peers_per_ip;
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_pending_incoming(Some(limits.max_pending))
        .with_max_pending_outgoing(Some(limits.max_pending))
        .with_max_established(Some(limits.max_peers))
        .with_max_established_per_peer(Some(MAX_PER_PEER));
    let mdns_wanted = config.mdns;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        // TCP, noise and yamux as `with_tcp` sets them up, plus a deadline for the
        // handshakes, so a connection that never finishes one does not hold a slot.
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(tcp_with_dns()
                .upgrade(Version::V1Lazy)
                .authenticate(noise)
                .multiplex(yamux::Config::default())
                .timeout(handshake_timeout))
        })
        .map_err(|e| setup(&e))?
        .with_behaviour(|key| {
            let mut gossipsub =
                gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)?;
            let mut metrics_config = libp2p_gossipsub::MetricsConfig::default();
            metrics_config.buckets_using_scoring_thresholds(&score_thresholds);
            gossipsub.with_peer_score(score_params, score_thresholds)?;
            let gossipsub = crate::metrics::metrics()
                .gossipsub(|registry| gossipsub.with_metrics(registry, metrics_config));
            let identify = identify::Behaviour::new(identify::Config::new(
                identify_version(&genesis),
                key.public(),
            ));
            let sync = request_response::Behaviour::with_codec(
                SyncCodec::new((RESPONSE_BYTES_TARGET + max_block).max(16 << 20)),
                [(sync_protocol(&genesis), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            );
            let mempool = request_response::Behaviour::with_codec(
                MempoolCodec::new(MAX_MEMPOOL_RESPONSE_BYTES),
                [(mempool_protocol(&genesis), ProtocolSupport::Full)],
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
            let mdns = if mdns_wanted {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    peer_id,
                )?)
            } else {
                None
            };
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                ip_limits: IpLimits::new(max_per_ip),
                gossipsub,
                identify,
                ping: super::ping::Behaviour::default(),
                sync,
                mempool,
                kad,
                mdns: mdns.into(),
            })
        })
        .map_err(|e| setup(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok(swarm)
}

/// libp2p listens with SO_REUSEPORT, so a second node could silently share a port with
/// the first; a plain bind first turns that into a clear error.
pub fn check_port_free(addr: &Multiaddr) -> Result<(), NetworkError> {
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

/// Whether this node's transport can dial `addr`: TCP to an IP or a DNS name
/// (`/ip4|/ip6|/dns|/dns4|/dns6/<host>/tcp/<port>`), or a `/dnsaddr/<name>`, then at most
/// a `/p2p/<id>`. Anything else (QUIC, WebSockets, a port 0) would only fail at every dial,
/// so a peer given at start or through `net_connect` is refused with the reason instead.
pub fn check_dialable(addr: &Multiaddr) -> Result<(), String> {
    use libp2p::multiaddr::Protocol;
    const FORM: &str = "this node dials TCP only: /ip4|/ip6|/dns|/dns4|/dns6/<host>/tcp/<port>[/p2p/<peer id>] or /dnsaddr/<name>";
    let mut parts = addr.iter();
    match parts.next() {
        Some(Protocol::Dnsaddr(_)) => {}
        Some(Protocol::Ip4(_) | Protocol::Ip6(_) | Protocol::Dns(_))
        | Some(Protocol::Dns4(_) | Protocol::Dns6(_)) => match parts.next() {
            Some(Protocol::Tcp(0)) => {
                return Err("port 0 cannot be dialled: give the peer's port".into())
            }
            Some(Protocol::Tcp(_)) => {}
            Some(other) => {
                return Err(format!(
                    "/{} is not a transport of this node: {FORM}",
                    other.tag()
                ))
            }
            None => return Err(format!("no /tcp/<port>: {FORM}")),
        },
        Some(other) => {
            return Err(format!(
                "/{} cannot start a peer's address: {FORM}",
                other.tag()
            ))
        }
        None => return Err(format!("an empty address: {FORM}")),
    }
    match parts.collect::<Vec<_>>().as_slice() {
        [] | [Protocol::P2p(_)] => Ok(()),
        [Protocol::P2p(_), other, ..] | [other, ..] => Err(format!(
            "/{} is not a transport of this node: {FORM}",
            other.tag()
        )),
    }
}

/// The peer id at the end of a multiaddr (`/p2p/<id>`), if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_by_ip_or_name_over_tcp_are_dialable_and_nothing_else() {
        let id = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
        for good in [
            format!("/ip4/192.0.2.7/tcp/9798/p2p/{id}"),
            "/ip6/::1/tcp/9798".into(),
            format!("/dns4/node-1/tcp/9798/p2p/{id}"),
            "/dns6/node-1.example/tcp/1".into(),
            "/dns/apiary-0.apiary/tcp/9798".into(),
            format!("/dnsaddr/bootstrap.example/p2p/{id}"),
        ] {
            let addr: Multiaddr = good.parse().unwrap();
            assert_eq!(check_dialable(&addr), Ok(()), "{good}");
        }
        for (bad, reason) in [
            ("/ip4/192.0.2.7/udp/9798/quic-v1", "/udp is not a transport"),
            ("/ip4/192.0.2.7/tcp/9798/ws", "/ws is not a transport"),
            ("/ip4/192.0.2.7/tcp/0", "port 0"),
            ("/ip4/192.0.2.7", "no /tcp/<port>"),
            ("/tcp/9798", "/tcp cannot start"),
            (
                &format!("/ip4/192.0.2.7/tcp/1/p2p/{id}/p2p-circuit"),
                "/p2p-circuit is not a transport",
            ),
        ] {
            let error = check_dialable(&bad.parse().unwrap()).unwrap_err();
            assert!(error.contains(reason), "{bad}: {error}");
        }
    }

    #[test]
    fn the_genesis_of_a_protocol_name_is_read_only_from_apiary_names() {
        let genesis = "ab".repeat(32);
        assert_eq!(
            genesis_of_protocol(&format!("/apiary/{genesis}/sync/2")),
            Some(genesis.as_str())
        );
        assert_eq!(genesis_of_protocol("/ipfs/ping/1.0.0"), None);
        assert_eq!(genesis_of_protocol("/apiary/short/sync/2"), None);
    }
}
