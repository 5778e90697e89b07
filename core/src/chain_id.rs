//! A chain's name, which every transaction carries (so that a transaction signed for one
//! chain is void on every other).

use crate::encoding::read_bounded_str;
use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt;

/// A name that is not a chain id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chain id {0:?} must be 1 to 32 of a-z, 0-9 and '-'")]
pub struct BadChainId(pub String);

/// A chain's name, e.g. `apiary-devnet`: 1 to 32 of `a-z`, `0-9`, `-`. Held inline (every
/// transaction carries one, so a heap string would cost an allocation per transaction
/// decoded, cloned or dropped); encoded as a borsh string.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChainId {
    len: u8,
    /// The name's bytes, then zeros.
    bytes: [u8; MAX_CHAIN_ID_LEN],
}

/// The longest chain id, in bytes.
pub const MAX_CHAIN_ID_LEN: usize = 32;

impl ChainId {
    /// `name`, if it is 1 to 32 of `a-z`, `0-9`, `-`.
    pub fn new(name: &str) -> Result<ChainId, BadChainId> {
        let ok = (1..=MAX_CHAIN_ID_LEN).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(BadChainId(name.to_string()));
        }
        let mut bytes = [0u8; MAX_CHAIN_ID_LEN];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(ChainId {
            len: name.len() as u8,
            bytes,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize])
            .expect("a chain id is checked ASCII when made")
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.as_str())
    }
}

impl BorshSerialize for ChainId {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        self.as_str().serialize(writer)
    }
}

impl BorshDeserialize for ChainId {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let mut buf = [0u8; MAX_CHAIN_ID_LEN];
        let name = read_bounded_str(reader, &mut buf)?;
        ChainId::new(name).map_err(crate::encoding::invalid_data)
    }
}
