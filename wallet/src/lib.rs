//! The Apiary wallet: a keystore on the user's machine, transactions built and signed
//! locally, and a JSON-RPC client that fails over between nodes. A node never sees a secret.

pub mod client;
pub mod keystore;
pub mod outbox;
