//! The chain spec: the chain's name, consensus parameters and initial allocations. The
//! genesis block follows from it deterministically and commits to all of it.

use crate::address::{Address, AddressPrefix};
use crate::amount::Amount;
use crate::block::{Block, BlockHeader, Height, BLOCK_VERSION};
use crate::hash::{sha256d, BlockHash, Hash256};
use crate::pow::{CompactTarget, RetargetParams, Target, TargetError};
use crate::state::{Account, MemoryState, Nonce};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::HashSet;

pub use crate::chain_id::{BadChainId, ChainId, MAX_CHAIN_ID_LEN};

/// The rules' numbers: block time, difficulty, sizes, rewards.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ConsensusParams {
    /// The block interval the difficulty aims at.
    pub target_block_time_ms: u64,
    /// ASERT half-life: how long blocks must run late (or early) to halve (double) difficulty.
    pub asert_half_life_ms: u64,
    /// The easiest target any block may have.
    pub pow_limit: CompactTarget,
    /// The target of block 1.
    pub genesis_bits: CompactTarget,
    /// The largest block encoding.
    pub max_block_bytes: u32,
    /// The most transactions a block holds.
    pub max_block_txs: u32,
    /// How far past the validating node's clock a block's timestamp may be.
    pub max_future_drift_ms: u64,
    /// A block's timestamp must exceed the median of this many previous timestamps.
    pub median_time_span: u32,
    /// New coins for each block's miner, before any halving.
    pub initial_reward: Amount,
    /// Blocks between halvings of the reward; 0 keeps the reward constant.
    pub halving_interval: u64,
    /// The deepest reorganisation a node performs; deeper forks are refused.
    pub max_reorg_depth: u64,
}

/// A chain: its name, its rules and who holds what at genesis. The genesis block commits
/// to all of it, so two specs that differ in anything are two chains.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ChainSpec {
    /// The name every transaction carries.
    pub chain_id: ChainId,
    /// The human-readable part of its addresses.
    pub address_prefix: AddressPrefix,
    /// The genesis block's timestamp.
    pub genesis_timestamp_ms: crate::units::TimestampMs,
    /// The rules' numbers.
    pub consensus: ConsensusParams,
    /// The accounts at genesis and their coins.
    pub allocations: Vec<(Address, Amount)>,
}

/// Why a spec is no chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A name that is not a chain id.
    #[error(transparent)]
    BadChainId(#[from] BadChainId),
    /// A number that must be positive is 0.
    #[error("{field} must be greater than zero")]
    Zero {
        /// Which.
        field: &'static str,
    },
    /// Bits that are no target.
    #[error("{field}: {source}")]
    Target {
        /// Which.
        field: &'static str,
        /// Why.
        source: TargetError,
    },
    /// Block 1 would be easier than any block may be.
    #[error("genesis_bits is easier than pow_limit")]
    GenesisEasierThanLimit,
    /// Blocks too small for a header and a transaction.
    #[error("max_block_bytes {0} cannot hold a header and one transaction")]
    BlockTooSmall(u32),
    /// One address allocated twice.
    #[error("address {0} is allocated twice")]
    DuplicateAllocation(String),
    /// More coins at genesis than an amount holds.
    #[error("allocations add up to more than the largest possible amount")]
    AllocationOverflow,
}

impl ChainSpec {
    /// Checks that the parameters make a chain that can run.
    pub fn validate(&self) -> Result<(), SpecError> {
        let c = &self.consensus;
        for (field, value) in [
            ("target_block_time_ms", c.target_block_time_ms),
            ("asert_half_life_ms", c.asert_half_life_ms),
            ("max_block_txs", c.max_block_txs as u64),
            ("median_time_span", c.median_time_span as u64),
        ] {
            if value == 0 {
                return Err(SpecError::Zero { field });
            }
        }
        let limit = c
            .pow_limit
            .to_target()
            .map_err(|source| SpecError::Target {
                field: "pow_limit",
                source,
            })?;
        let genesis = c
            .genesis_bits
            .to_target()
            .map_err(|source| SpecError::Target {
                field: "genesis_bits",
                source,
            })?;
        if genesis > limit {
            return Err(SpecError::GenesisEasierThanLimit);
        }
        if (c.max_block_bytes as usize) < crate::block::HEADER_BYTES + 4 + crate::tx::MAX_TX_BYTES {
            return Err(SpecError::BlockTooSmall(c.max_block_bytes));
        }
        let mut seen = HashSet::new();
        let mut total = Amount::ZERO;
        for (address, amount) in &self.allocations {
            if !seen.insert(*address) {
                return Err(SpecError::DuplicateAllocation(
                    address.to_text(&self.address_prefix),
                ));
            }
            total = total
                .checked_add(*amount)
                .ok_or(SpecError::AllocationOverflow)?;
        }
        Ok(())
    }

    /// Hash of the whole spec; the genesis header carries it, so the genesis hash (and
    /// with it every protocol name) differs whenever any parameter does.
    pub fn spec_hash(&self) -> Hash256 {
        sha256d(&borsh::to_vec(self).expect("writing to a Vec cannot fail"))
    }

    /// The accounts at genesis, sorted by address (a later allocation to an address
    /// replaces an earlier; an empty one is no account).
    pub fn genesis_accounts(&self) -> Vec<(Address, Account)> {
        let mut accounts: std::collections::BTreeMap<Address, Account> = Default::default();
        for (address, amount) in &self.allocations {
            let account = Account {
                balance: *amount,
                nonce: Nonce(0),
            };
            if account.is_empty() {
                accounts.remove(address);
            } else {
                accounts.insert(*address, account);
            }
        }
        accounts.into_iter().collect()
    }

    /// The state at genesis, in memory.
    pub fn genesis_state(&self) -> MemoryState {
        MemoryState::from_accounts(self.genesis_accounts())
    }

    /// The genesis state's root, without holding its pages.
    pub fn genesis_state_root(&self) -> crate::hash::Hash256 {
        crate::state::root_of_sorted(&self.genesis_accounts())
    }

    /// Block 0: it pays nobody and commits to the whole spec and the genesis state.
    pub fn genesis_block(&self) -> Block {
        let header = BlockHeader {
            version: BLOCK_VERSION,
            height: Height(0),
            prev_hash: BlockHash::ZERO,
            tx_root: self.spec_hash(),
            state_root: self.genesis_state_root(),
            miner: Address::default(),
            timestamp_ms: self.genesis_timestamp_ms,
            bits: self.consensus.genesis_bits,
            nonce: 0,
        };
        Block {
            header,
            txs: Vec::new(),
        }
    }

    /// The genesis block's hash: the chain's identity on the network.
    pub fn genesis_hash(&self) -> BlockHash {
        self.genesis_block().hash()
    }

    /// New coins paid to the miner of the block at `height`.
    pub fn block_reward(&self, height: Height) -> Amount {
        let c = &self.consensus;
        let halvings = height.0.checked_div(c.halving_interval).unwrap_or(0);
        if halvings >= 64 {
            return Amount::ZERO;
        }
        Amount::from_base_units(c.initial_reward.base_units() >> halvings)
    }

    /// What the difficulty adjustment (ASERT) needs.
    pub fn retarget_params(&self) -> RetargetParams {
        RetargetParams {
            target_block_time_ms: self.consensus.target_block_time_ms,
            half_life_ms: self.consensus.asert_half_life_ms,
            pow_limit: self.pow_limit(),
        }
    }

    /// The easiest target, expanded.
    pub fn pow_limit(&self) -> Target {
        self.consensus
            .pow_limit
            .to_target()
            .expect("checked by ChainSpec::validate")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::amount::COIN;

    /// A spec whose blocks need a handful of hashes, for tests.
    pub(crate) fn test_spec(allocations: Vec<(Address, Amount)>) -> ChainSpec {
        let easy = Target::for_expected_hashes(2).to_compact();
        ChainSpec {
            chain_id: ChainId::new("apiary-test").unwrap(),
            address_prefix: AddressPrefix::new("aptest").unwrap(),
            genesis_timestamp_ms: crate::TimestampMs(1_767_225_600_000),
            consensus: ConsensusParams {
                target_block_time_ms: 1_000,
                asert_half_life_ms: 3_600_000,
                pow_limit: easy,
                genesis_bits: easy,
                max_block_bytes: 1_000_000,
                max_block_txs: 5_000,
                max_future_drift_ms: 15_000,
                median_time_span: 11,
                initial_reward: Amount::from_base_units(50 * COIN),
                halving_interval: 1_000,
                max_reorg_depth: 100,
            },
            allocations,
        }
    }

    #[test]
    fn genesis_hash_commits_to_every_parameter() {
        let spec = test_spec(vec![(Address([1; 32]), Amount::from_base_units(5))]);
        spec.validate().unwrap();
        let mut other = spec.clone();
        other.consensus.target_block_time_ms += 1;
        assert_ne!(spec.genesis_hash(), other.genesis_hash());
        assert_eq!(spec.genesis_hash(), spec.clone().genesis_hash());
    }

    #[test]
    fn reward_halves_on_schedule() {
        let spec = test_spec(vec![]);
        assert_eq!(spec.block_reward(Height(999)).base_units(), 50 * COIN);
        assert_eq!(spec.block_reward(Height(1000)).base_units(), 25 * COIN);
        assert_eq!(spec.block_reward(Height(64_000)), Amount::ZERO);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let mut spec = test_spec(vec![
            (Address([1; 32]), Amount::MAX),
            (Address([2; 32]), Amount::MAX),
        ]);
        assert_eq!(spec.validate(), Err(SpecError::AllocationOverflow));
        spec.allocations = vec![
            (Address([1; 32]), Amount::ZERO),
            (Address([1; 32]), Amount::ZERO),
        ];
        assert!(matches!(
            spec.validate(),
            Err(SpecError::DuplicateAllocation(_))
        ));
        spec.allocations.clear();
        spec.consensus.target_block_time_ms = 0;
        assert_eq!(
            spec.validate(),
            Err(SpecError::Zero {
                field: "target_block_time_ms"
            })
        );
    }
}
