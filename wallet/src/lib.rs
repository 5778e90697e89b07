//! The Apiary wallet: a keystore on the user's machine, transactions built and signed
//! locally, and a JSON-RPC client that fails over between nodes. A node never sees a
//! secret, and by default none is believed: balances, nonces and confirmed payments are
//! proved against the wallet's own chain of headers (`headers`, `light`).

/// The RPC client lives in its own crate (apiary-cli uses it too).
pub use apiary_client as client;
pub mod headers;
pub mod keystore;
pub mod light;
pub mod outbox;
