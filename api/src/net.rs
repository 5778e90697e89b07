//! The node's peers, and the operator's hold on them; development mining.

use crate::{method, NoParams};
use apiary_core::BlockHash;
use serde::{Deserialize, Serialize};

method!(
    /// Connected peers.
    NetPeers, "net_peers", NoParams => Vec<PeerInfo>
);
method!(
    /// Lifts any ban on a peer and dials it.
    NetConnect, "net_connect", NetConnectParams => NetConnectResult
);
method!(
    /// Closes every connection to a peer and refuses it for a while.
    NetDisconnect, "net_disconnect", NetDisconnectParams => NetDisconnectResult
);
method!(
    /// Mines blocks now, on the node's threads (development chains).
    DevMine, "dev_mine", DevMineParams => DevMineResult
);

/// What RPC can see of a peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub peer_id: String,
    pub addr: String,
    /// It dialled us.
    pub inbound: bool,
    /// The height its last status claimed.
    pub height: Option<u64>,
    /// Misbehaviour points it has now (a ban at 100).
    pub score: u32,
    /// Gossipsub's own score of it (below −80 its messages are ignored).
    pub gossip_score: Option<f64>,
    /// The gossip topics it has subscribed to: blocks and transactions reach it by gossip
    /// only once it has (a peer connected a moment ago may not have yet).
    pub topics: Vec<String>,
    /// Its answer to our last ping, in ms (None before the first, or if it does not speak
    /// ping).
    pub rtt_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConnectParams {
    /// A multiaddr ending in /p2p/<peer id>.
    pub addr: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetConnectResult {
    pub dialing: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetDisconnectParams {
    pub peer_id: String,
    /// Refuse the peer for this long (0: it may come back at once).
    #[serde(default)]
    pub ban_seconds: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetDisconnectResult {
    pub disconnected: String,
    pub ban_seconds: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevMineParams {
    pub blocks: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevMineResult {
    pub hashes: Vec<BlockHash>,
}
