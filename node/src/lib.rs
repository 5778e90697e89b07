//! The Apiary full node around the consensus rules of `apiary-core`: the store (RocksDB)
//! and the state tree in it, the chain (fork choice, reorg), the mempool, the miner, the
//! sync machine, the libp2p network, JSON-RPC and WebSocket, and metrics. The README's
//! "Layout" names the layers; `tests/tests/structure.rs` keeps them free of circles.

pub mod cache;
pub mod chain;
pub mod config;
pub mod events;
pub mod health;
pub mod mempool;
pub mod metrics;
pub mod miner;
pub mod misbehaviour;
pub mod node;
pub mod p2p;
pub mod protocol;
pub mod reindex;
pub mod rpc;
pub mod state;
pub mod store;
pub mod sync;
pub mod time;
mod warmer;

pub use node::{now_ms, Announcement, Node, NodeState, SubmitError};
