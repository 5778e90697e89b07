//! The Apiary full node: storage (RocksDB), chain (fork choice, reorg), mempool, miner and
//! JSON-RPC, around the pure consensus rules of `apiary-core`.

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
