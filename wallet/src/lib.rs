//! The Apiary wallet: a keystore on the user's machine, transactions built and signed
//! locally, and a JSON-RPC client that fails over between nodes. A node never sees a secret.

/// The RPC client lives in its own crate (apiary-cli uses it too).
pub use apiary_client as client;
pub mod keystore;
pub mod outbox;
