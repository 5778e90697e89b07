//! Apiary consensus: what is a valid block and transaction, and what a valid block does
//! to the ledger. Pure and deterministic: no I/O, no clock, no async.

// Everything public here is what another implementation must agree with: say what it is.
#![warn(missing_docs)]

pub mod address;
pub mod amount;
pub mod block;
pub mod chain_id;
pub mod encoding;
pub mod hash;
pub mod hd;
pub mod headers;
pub mod pow;
pub mod spec;
pub mod state;
pub mod tx;
pub mod units;
pub mod validate;

pub use address::{Address, AddressError, AddressPrefix};
pub use amount::{Amount, AmountError, COIN};
pub use block::{tx_merkle_root, Block, BlockHeader, CompactBlock, Height};
/// The key type that signs transactions.
pub use ed25519_dalek::SigningKey;
pub use encoding::{decode_exact, DecodeError};
pub use hash::{BlockHash, Hash256, TxId};
pub use headers::{check_headers, CheckedHeaders, HeaderAncestry, HeaderError};
pub use pow::{CompactTarget, Target, Work};
pub use spec::{ChainId, ChainSpec, ConsensusParams};
pub use state::{Account, MemoryState, Nonce, StateUndo};
pub use tx::{SignedTransaction, Transaction};
pub use units::TimestampMs;
pub use validate::{BlockError, ParentContext, TxError};
