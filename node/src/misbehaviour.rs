//! The table of what peers do wrong: one `Misbehaviour` per kind of wrong, each with its
//! score, derived from the typed errors of the rules. Below both the sync machine (which
//! judges headers and answers) and the network (which keeps the scores and bans).

use crate::chain::{ChainError, ImportError};
use apiary_core::{BlockError, HeaderError, TxError};

/// A peer whose score reaches this is banned.
pub const BAN_SCORE: u32 = 100;

/// Something a peer did that an honest node does not (or does rarely, by accident).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Misbehaviour {
    #[error("invalid block: {0}")]
    InvalidBlock(BlockError),
    #[error("a block on a branch already found invalid")]
    InvalidAncestor,
    #[error("invalid transaction: {0}")]
    InvalidTx(TxError),
    #[error("bytes that do not decode as the message they must be")]
    Undecodable,
    #[error("a sync request that does not decode")]
    MalformedRequest,
    #[error("invalid header: {0}")]
    InvalidHeader(BlockError),
    #[error("headers that do not build on each other or on what was asked")]
    DisconnectedHeaders,
    #[error("headers that build on no block we know, although we said where we stand")]
    OrphanHeaders,
    #[error("it claimed more chain work than the headers it then delivered")]
    ClaimNotDelivered,
    #[error("more headers than asked for")]
    TooManyHeaders,
    #[error("a header chain with no more work than ours, kept on past the limit")]
    LowWorkChain,
    #[error("no answer in time")]
    NoAnswer,
    #[error("blocks nobody asked for, or not the ones asked for")]
    Unrequested,
    #[error("over its allowance: {0}")]
    Flood(Flood),
    #[error("it runs another chain")]
    OtherChain,
    #[error("its gossip score ({0}) fell below the graylist threshold")]
    Graylisted(i64),
}

/// Which allowance a peer went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Flood {
    #[error("gossiped transactions")]
    Transactions,
    #[error("useless transactions (known, stale, unpayable)")]
    UselessTransactions,
    #[error("block requests")]
    BlockRequests,
    #[error("requests at once")]
    ConcurrentRequests,
    #[error("mempool inventories")]
    MempoolInventories,
}

impl Misbehaviour {
    /// Points it costs the peer; `BAN_SCORE` bans at once.
    pub fn score(&self) -> u32 {
        match self {
            Misbehaviour::InvalidBlock(error) | Misbehaviour::InvalidHeader(error) => {
                error.misbehavior_score()
            }
            // Gossipsub has judged it already (and ignores what it sends): what would keep
            // it connected is only the chance to be judged again.
            Misbehaviour::InvalidAncestor
            | Misbehaviour::OtherChain
            | Misbehaviour::Graylisted(_) => BAN_SCORE,
            Misbehaviour::InvalidTx(
                TxError::BadSignature | TxError::SenderNotAKey | TxError::WrongChain { .. },
            ) => 20,
            // Stale, replaced or unpayable: may be honest; never forwarded, costs nothing.
            Misbehaviour::InvalidTx(_) => 0,
            Misbehaviour::Undecodable
            | Misbehaviour::MalformedRequest
            | Misbehaviour::DisconnectedHeaders
            | Misbehaviour::TooManyHeaders
            | Misbehaviour::LowWorkChain
            | Misbehaviour::Unrequested => BAN_SCORE / 2,
            // Three lies in a row ban; one honest race (a reorg between status and
            // headers) does not.
            Misbehaviour::ClaimNotDelivered => 35,
            Misbehaviour::OrphanHeaders => 20,
            Misbehaviour::NoAnswer => 10,
            Misbehaviour::Flood(Flood::Transactions) => 1,
            Misbehaviour::Flood(_) => 5,
        }
    }

    /// What a block the chain refused says of whoever sent it (None: our own trouble, or
    /// nothing wrong with it).
    pub fn of_chain_error(error: &ChainError) -> Option<Misbehaviour> {
        match error {
            ChainError::Invalid { error, .. } => Some(Misbehaviour::InvalidBlock(error.clone())),
            ChainError::KnownInvalid(_) | ChainError::InvalidAncestor { .. } => {
                Some(Misbehaviour::InvalidAncestor)
            }
            _ => None,
        }
    }

    /// What a refused import says of the peer that sent the blocks.
    pub fn of_import_error(error: &ImportError) -> Option<Misbehaviour> {
        match error {
            ImportError::Decode(_) => Some(Misbehaviour::Undecodable),
            ImportError::Chain(error) => Misbehaviour::of_chain_error(error),
        }
    }

    /// What a header that stopped a run says of the peer that sent it (None: early, not
    /// wrong).
    pub fn of_header_error(error: &HeaderError) -> Option<Misbehaviour> {
        match error {
            HeaderError::DoesNotFollow { .. } => Some(Misbehaviour::DisconnectedHeaders),
            HeaderError::Invalid { error, .. } => Some(Misbehaviour::InvalidHeader(error.clone())),
            HeaderError::NotYet { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_come_from_the_typed_errors() {
        let early = BlockError::TimestampTooFarAhead {
            timestamp_ms: apiary_core::TimestampMs(2),
            limit_ms: apiary_core::TimestampMs(1),
        };
        assert_eq!(Misbehaviour::InvalidBlock(early.clone()).score(), 0);
        assert_eq!(Misbehaviour::InvalidHeader(early).score(), 0);
        let bad_work = BlockError::InsufficientWork(apiary_core::BlockHash::ZERO);
        assert_eq!(Misbehaviour::InvalidHeader(bad_work).score(), BAN_SCORE);
        assert_eq!(Misbehaviour::InvalidTx(TxError::BadSignature).score(), 20);
        assert_eq!(
            Misbehaviour::InvalidTx(TxError::BadNonce {
                expected: apiary_core::Nonce(1),
                found: apiary_core::Nonce(0)
            })
            .score(),
            0
        );
        // An undecodable message costs the same whichever way it came.
        assert_eq!(
            Misbehaviour::of_import_error(&ImportError::Decode(
                apiary_core::DecodeError::TrailingBytes {
                    what: "block",
                    extra: 1
                }
            )),
            Some(Misbehaviour::Undecodable)
        );
        let not_yet = HeaderError::NotYet {
            hash: apiary_core::BlockHash::ZERO,
            ahead_ms: 1,
            valid_from_ms: apiary_core::TimestampMs(1),
        };
        assert_eq!(Misbehaviour::of_header_error(&not_yet), None);
    }
}
