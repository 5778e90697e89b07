//! The rules. Stateless checks (size, proof of work, Merkle root, signatures) need only the
//! block; contextual checks need its parent; `connect_block` applies it to the state. Each
//! rejection names the rule that failed.

use crate::address::Address;
use crate::amount::Amount;
use crate::block::{tx_merkle_root, Block, BlockHeader, Height, BLOCK_VERSION};
use crate::hash::{BlockHash, Hash256, TxId};
use crate::pow::{next_target, CompactTarget, TargetError};
use crate::spec::ChainSpec;
use crate::state::{
    tree, Account, Nonce, SourceError, StateDelta, StateSource, StateUndo, TreeUpdate,
};
pub use crate::tx::TxError;
use crate::tx::{verify_signatures, KeyCache, SignedTransaction};
use crate::units::TimestampMs;
use std::collections::HashSet;

/// Why a block (or a header) is invalid. Each says what the rules wanted (`expected`,
/// a limit) and what the block has (`found`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Its encoding is larger than the chain allows.
    #[error("block is {size} bytes, the limit is {max}")]
    TooLarge {
        /// Bytes of its encoding.
        size: usize,
        /// The chain's `max_block_bytes`.
        max: usize,
    },
    /// It holds more transactions than the chain allows.
    #[error("block has {count} transactions, the limit is {max}")]
    TooManyTxs {
        /// Its transactions.
        count: usize,
        /// The chain's `max_block_txs`.
        max: usize,
    },
    /// A header version these rules do not know.
    #[error("unknown block version {0}")]
    BadVersion(u32),
    /// Bits that are no target.
    #[error("bad target: {0}")]
    BadBits(#[from] TargetError),
    /// Bits other than the retarget requires.
    #[error("target {found:?} is not the required {expected:?}")]
    WrongBits {
        /// What the retarget (ASERT) gives.
        expected: CompactTarget,
        /// What the header says.
        found: CompactTarget,
    },
    /// A target easier than the chain's proof-of-work limit.
    #[error("target {0:?} is easier than the chain's proof-of-work limit")]
    BitsAboveLimit(CompactTarget),
    /// The header's hash is above its target.
    #[error("block hash {0} does not meet its target")]
    InsufficientWork(BlockHash),
    /// The header commits to other transactions than the block holds.
    #[error("Merkle root {found} in header, {expected} from the transactions")]
    BadTxRoot {
        /// The root of the block's transactions.
        expected: Hash256,
        /// The header's.
        found: Hash256,
    },
    /// The same transaction twice.
    #[error("transaction {0} appears twice")]
    DuplicateTx(TxId),
    /// A height that is not its parent's plus one.
    #[error("height {found} does not follow the parent's {expected}", expected = expected.0 - 1)]
    BadHeight {
        /// The parent's height plus one.
        expected: Height,
        /// The header's.
        found: Height,
    },
    /// A timestamp not after the median of the last ones.
    #[error("timestamp {timestamp_ms} is not after the median time past {median_ms}")]
    TimestampTooOld {
        /// The header's.
        timestamp_ms: TimestampMs,
        /// The median time past it must be after.
        median_ms: TimestampMs,
    },
    /// A timestamp further ahead of this node's clock than the chain allows (not wrong
    /// for ever: valid once its time comes).
    #[error("timestamp {timestamp_ms} is more than the allowed drift ahead of now ({limit_ms})")]
    TimestampTooFarAhead {
        /// The header's.
        timestamp_ms: TimestampMs,
        /// Now plus the chain's `max_future_drift_ms`.
        limit_ms: TimestampMs,
    },
    /// One of its transactions is invalid where it stands.
    #[error("transaction {index} ({txid}): {source}")]
    InvalidTx {
        /// Its position in the block.
        index: usize,
        /// Its id.
        txid: TxId,
        /// Why it is invalid.
        source: TxError,
    },
    /// The header's state root is not the state the block leads to.
    #[error("state root {found} in header, {expected} after applying the block")]
    BadStateRoot {
        /// The root after applying the block.
        expected: Hash256,
        /// The header's.
        found: Hash256,
    },
    /// The miner's reward would take its balance past what an amount holds.
    #[error("miner's balance would overflow")]
    RewardOverflow,
}

impl BlockError {
    /// Every `reason` there is, so metrics can show each series from the start (at 0).
    pub const REASONS: [&'static str; 15] = [
        "too_large",
        "too_many_txs",
        "bad_version",
        "bad_bits",
        "wrong_bits",
        "bits_above_limit",
        "insufficient_work",
        "bad_tx_root",
        "duplicate_tx",
        "bad_height",
        "timestamp_too_old",
        "timestamp_too_far_ahead",
        "invalid_tx",
        "bad_state_root",
        "reward_overflow",
    ];

    /// A short name for the kind of fault, for metrics labels (one of `REASONS`).
    pub fn reason(&self) -> &'static str {
        match self {
            BlockError::TooLarge { .. } => "too_large",
            BlockError::TooManyTxs { .. } => "too_many_txs",
            BlockError::BadVersion(_) => "bad_version",
            BlockError::BadBits(_) => "bad_bits",
            BlockError::WrongBits { .. } => "wrong_bits",
            BlockError::BitsAboveLimit(_) => "bits_above_limit",
            BlockError::InsufficientWork(_) => "insufficient_work",
            BlockError::BadTxRoot { .. } => "bad_tx_root",
            BlockError::DuplicateTx(_) => "duplicate_tx",
            BlockError::BadHeight { .. } => "bad_height",
            BlockError::TimestampTooOld { .. } => "timestamp_too_old",
            BlockError::TimestampTooFarAhead { .. } => "timestamp_too_far_ahead",
            BlockError::InvalidTx { .. } => "invalid_tx",
            BlockError::BadStateRoot { .. } => "bad_state_root",
            BlockError::RewardOverflow => "reward_overflow",
        }
    }

    /// How much a peer that sent this block should be penalised (100 = ban). A block too
    /// far in the future may be honest clock skew, so it costs nothing.
    pub fn misbehavior_score(&self) -> u32 {
        match self {
            BlockError::TimestampTooFarAhead { .. } => 0,
            _ => 100,
        }
    }
}

/// What the rules need to know of a block's parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentContext {
    /// The parent's hash.
    pub hash: BlockHash,
    /// The parent's height.
    pub height: Height,
    /// The parent's target.
    pub bits: CompactTarget,
    /// The parent's timestamp.
    pub timestamp_ms: TimestampMs,
    /// parent.timestamp − grandparent.timestamp; None when the parent is genesis.
    pub solve_time_ms: Option<i64>,
    /// Median of the last `median_time_span` timestamps up to and including the parent.
    pub median_time_past_ms: TimestampMs,
}

/// Median of up to `median_time_span` recent timestamps (any order).
pub fn median_time_past(timestamps: &[TimestampMs]) -> TimestampMs {
    let mut sorted = timestamps.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// The target every child of `parent` must carry.
pub fn required_bits(parent: &ParentContext, spec: &ChainSpec) -> CompactTarget {
    match parent.solve_time_ms {
        None => spec.consensus.genesis_bits,
        Some(solve_time) => match parent.bits.to_target() {
            Ok(target) => next_target(target, solve_time, &spec.retarget_params()).to_compact(),
            Err(_) => spec.consensus.pow_limit,
        },
    }
}

/// Checks that need only the block itself, cheapest first. Returns the txids.
pub fn check_block(
    block: &Block,
    encoded_size: usize,
    spec: &ChainSpec,
    keys: &KeyCache,
) -> Result<Vec<TxId>, BlockError> {
    check_block_with_txids(block, block.txids(), encoded_size, spec, keys)
}

/// `check_block` for a block whose txids are already known, because each transaction was
/// found under its own id (a block rebuilt from a mempool). `txids` must be exactly the
/// transactions' ids: the rules below trust them.
pub fn check_block_with_txids(
    block: &Block,
    txids: Vec<TxId>,
    encoded_size: usize,
    spec: &ChainSpec,
    keys: &KeyCache,
) -> Result<Vec<TxId>, BlockError> {
    debug_assert_eq!(txids, block.txids(), "txids of another block");
    let c = &spec.consensus;
    if encoded_size > c.max_block_bytes as usize {
        return Err(BlockError::TooLarge {
            size: encoded_size,
            max: c.max_block_bytes as usize,
        });
    }
    if block.txs.len() > c.max_block_txs as usize {
        return Err(BlockError::TooManyTxs {
            count: block.txs.len(),
            max: c.max_block_txs as usize,
        });
    }
    check_header_pow(&block.header, spec)?;
    let root = tx_merkle_root(&txids);
    if root != block.header.tx_root {
        return Err(BlockError::BadTxRoot {
            expected: root,
            found: block.header.tx_root,
        });
    }
    let mut seen = HashSet::with_capacity(txids.len());
    for txid in &txids {
        if !seen.insert(*txid) {
            return Err(BlockError::DuplicateTx(*txid));
        }
    }
    let invalid = |index: usize, source: TxError| BlockError::InvalidTx {
        index,
        txid: txids[index],
        source,
    };
    for (index, stx) in block.txs.iter().enumerate() {
        check_chain_id(stx, spec).map_err(|e| invalid(index, e))?;
    }
    verify_signatures(&block.txs, &txids, keys).map_err(|(index, e)| invalid(index, e))?;
    Ok(txids)
}

/// Version, target within the limit, and proof of work: all a header alone can show.
pub fn check_header_pow(header: &BlockHeader, spec: &ChainSpec) -> Result<(), BlockError> {
    if header.version != BLOCK_VERSION {
        return Err(BlockError::BadVersion(header.version));
    }
    let target = header.bits.to_target()?;
    if target > spec.pow_limit() {
        return Err(BlockError::BitsAboveLimit(header.bits));
    }
    let hash = header.hash();
    if !target.is_met_by(&hash.0) {
        return Err(BlockError::InsufficientWork(hash));
    }
    Ok(())
}

/// Whether `stx` was signed for this chain.
pub fn check_chain_id(stx: &SignedTransaction, spec: &ChainSpec) -> Result<(), TxError> {
    if stx.tx.chain_id != spec.chain_id {
        return Err(TxError::WrongChain {
            expected: Box::new(spec.chain_id.clone()),
            found: Box::new(stx.tx.chain_id.clone()),
        });
    }
    Ok(())
}

/// Checks of a header against its parent and the validating node's clock.
pub fn check_header_context(
    header: &BlockHeader,
    parent: &ParentContext,
    now: TimestampMs,
    spec: &ChainSpec,
) -> Result<(), BlockError> {
    let expected_height = parent.height.next();
    if header.height != expected_height {
        return Err(BlockError::BadHeight {
            expected: expected_height,
            found: header.height,
        });
    }
    let expected_bits = required_bits(parent, spec);
    if header.bits != expected_bits {
        return Err(BlockError::WrongBits {
            expected: expected_bits,
            found: header.bits,
        });
    }
    if header.timestamp_ms <= parent.median_time_past_ms {
        return Err(BlockError::TimestampTooOld {
            timestamp_ms: header.timestamp_ms,
            median_ms: parent.median_time_past_ms,
        });
    }
    let limit_ms = now.saturating_add_ms(spec.consensus.max_future_drift_ms);
    if header.timestamp_ms > limit_ms {
        return Err(BlockError::TimestampTooFarAhead {
            timestamp_ms: header.timestamp_ms,
            limit_ms,
        });
    }
    Ok(())
}

/// Applies one transaction to `state`, all or nothing; returns its fee. Its sender and
/// recipient must be loaded in `state`.
pub fn apply_tx(state: &mut StateDelta, stx: &SignedTransaction) -> Result<Amount, TxError> {
    let tx = &stx.tx;
    let sender = state.get(&tx.from);
    if tx.nonce != sender.nonce {
        return Err(TxError::BadNonce {
            expected: sender.nonce,
            found: tx.nonce,
        });
    }
    let needed = tx
        .amount
        .checked_add(tx.fee)
        .ok_or(TxError::AmountOverflow)?;
    let remaining = sender
        .balance
        .checked_sub(needed)
        .ok_or(TxError::Overdraft {
            balance: sender.balance,
            needed,
        })?;
    let next_nonce = Nonce(
        sender
            .nonce
            .0
            .checked_add(1)
            .ok_or(TxError::AmountOverflow)?,
    );
    // Every check before any change, so a failing transaction changes nothing. Paying
    // oneself credits the already-debited sender.
    let receiver = if tx.to == tx.from {
        Account {
            balance: remaining,
            nonce: next_nonce,
        }
    } else {
        state.get(&tx.to)
    };
    let received = receiver
        .balance
        .checked_add(tx.amount)
        .ok_or(TxError::AmountOverflow)?;
    state.set(
        tx.from,
        Account {
            balance: remaining,
            nonce: next_nonce,
        },
    );
    state.set(
        tx.to,
        Account {
            balance: received,
            nonce: receiver.nonce,
        },
    );
    Ok(tx.fee)
}

/// Pays the block reward and the fees to the block's miner.
pub fn pay_miner(
    state: &mut StateDelta,
    header: &BlockHeader,
    fees: Amount,
    spec: &ChainSpec,
) -> Result<(), BlockError> {
    let miner = state.get(&header.miner);
    let balance = miner
        .balance
        .checked_add(spec.block_reward(header.height))
        .and_then(|b| b.checked_add(fees))
        .ok_or(BlockError::RewardOverflow)?;
    state.set(
        header.miner,
        Account {
            balance,
            nonce: miner.nonce,
        },
    );
    Ok(())
}

/// What connecting a block does to the state of its parent: the accounts it changed
/// (sorted; None: removed), the record that undoes them, and the tree's new root and
/// pages. Nothing is changed until the caller keeps it.
#[derive(Debug)]
pub struct Connected {
    /// Each changed account's new value (None: removed), sorted by address.
    pub changes: Vec<(Address, Option<Account>)>,
    /// What puts the accounts back.
    pub undo: StateUndo,
    /// The tree's new root and the pages to write.
    pub tree: TreeUpdate,
}

/// Why a block could not be connected: it is invalid, or the state could not be read
/// (which says nothing of the block).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The block is invalid.
    #[error(transparent)]
    Invalid(#[from] BlockError),
    /// The state could not be read: no verdict on the block.
    #[error(transparent)]
    Unreadable(#[from] SourceError),
}

/// Every account a block may touch: its senders, recipients and miner.
pub fn touched_addresses(block: &Block) -> Vec<Address> {
    let mut addresses: Vec<Address> = block
        .txs
        .iter()
        .flat_map(|stx| [stx.tx.from, stx.tx.to])
        .collect();
    addresses.push(block.header.miner);
    addresses
}

/// Works out a block that passed `check_block` and `check_header_context` on the state
/// of its parent, and checks the header's state root against it.
pub fn connect_block(
    state: &impl StateSource,
    block: &Block,
    txids: &[TxId],
    spec: &ChainSpec,
) -> Result<Connected, ConnectError> {
    let state = tree::Remembering::new(state);
    let mut delta = StateDelta::load(&state, &touched_addresses(block))?;
    apply_block_body(&mut delta, block, txids, spec)?;
    let (changes, undo) = delta.finish();
    let tree = tree::update(&state, &changes)?;
    if tree.root != block.header.state_root {
        return Err(BlockError::BadStateRoot {
            expected: tree.root,
            found: block.header.state_root,
        }
        .into());
    }
    Ok(Connected {
        changes,
        undo,
        tree,
    })
}

/// Applies a block's transactions and its miner's pay to `state`.
pub fn apply_block_body(
    state: &mut StateDelta,
    block: &Block,
    txids: &[TxId],
    spec: &ChainSpec,
) -> Result<(), BlockError> {
    let mut fees = Amount::ZERO;
    for (index, stx) in block.txs.iter().enumerate() {
        let invalid = |source| BlockError::InvalidTx {
            index,
            txid: txids[index],
            source,
        };
        let fee = apply_tx(state, stx).map_err(invalid)?;
        fees = fees.checked_add(fee).ok_or(BlockError::RewardOverflow)?;
    }
    pay_miner(state, &block.header, fees, spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::block::HeaderHasher;
    use crate::spec::tests::test_spec;
    use crate::state::MemoryState;
    use crate::tx::tests::{key, transfer};
    use proptest::prelude::*;

    /// Builds and mines a valid child of `parent` carrying `txs`, applying it to `state`.
    pub(crate) fn mine_child(
        state: &mut MemoryState,
        spec: &ChainSpec,
        parent: &BlockHeader,
        txs: Vec<SignedTransaction>,
    ) -> Block {
        let txids: Vec<TxId> = txs.iter().map(SignedTransaction::txid).collect();
        let mut header = BlockHeader {
            version: BLOCK_VERSION,
            height: parent.height.next(),
            prev_hash: parent.hash(),
            tx_root: tx_merkle_root(&txids),
            state_root: Hash256::ZERO,
            miner: Address([0xee; 32]),
            timestamp_ms: parent.timestamp_ms + 1_000,
            bits: spec.consensus.genesis_bits,
            nonce: 0,
        };
        let mut block = Block {
            header: header.clone(),
            txs,
        };
        let mut delta = StateDelta::load(&*state, &touched_addresses(&block)).unwrap();
        apply_block_body(&mut delta, &block, &txids, spec).unwrap();
        state.apply(&delta.finish().0);
        header.state_root = state.root();
        let target = header.bits.to_target().unwrap();
        let mut hasher = HeaderHasher::new(&header);
        header.nonce = (0..)
            .find(|n| target.is_met_by(&hasher.hash_with_nonce(*n)))
            .unwrap();
        block.header = header;
        block
    }

    fn funded_spec() -> ChainSpec {
        let alice = Address(key(1).verifying_key().to_bytes());
        test_spec(vec![(alice, Amount::from_base_units(1_000_000))])
    }

    /// Connects `block` to `state`, keeping what it did.
    fn connect(
        state: &mut MemoryState,
        block: &Block,
        spec: &ChainSpec,
    ) -> Result<StateUndo, ConnectError> {
        let connected = connect_block(&*state, block, &block.txids(), spec)?;
        state.apply(&connected.changes);
        assert_eq!(state.root(), connected.tree.root);
        Ok(connected.undo)
    }

    #[test]
    fn valid_block_connects_and_pays_the_miner() {
        let spec = funded_spec();
        let genesis = spec.genesis_block();
        let mut state = spec.genesis_state();
        let bob = Address([2; 32]);
        let block = mine_child(
            &mut state,
            &spec,
            &genesis.header,
            vec![transfer(&key(1), bob, 500, 0)],
        );
        let mut fresh = spec.genesis_state();
        check_block(&block, block.encode().len(), &spec, &KeyCache::default()).unwrap();
        let undo = connect(&mut fresh, &block, &spec).unwrap();
        assert_eq!(fresh.get(&bob).unwrap().balance.base_units(), 500);
        let miner = fresh.get(&block.header.miner).unwrap();
        assert_eq!(
            miner.balance,
            spec.block_reward(Height(1))
                .checked_add(Amount::from_base_units(10))
                .unwrap()
        );
        fresh.apply_undo(&undo);
        assert_eq!(fresh.root(), genesis.header.state_root);
    }

    #[test]
    fn each_bad_transaction_is_named() {
        let spec = funded_spec();
        let state = spec.genesis_state();
        let bob = Address([2; 32]);
        let alice = Address(key(1).verifying_key().to_bytes());
        let stranger = Address(key(9).verifying_key().to_bytes());
        let mut delta = StateDelta::load(&state, &[alice, bob, stranger]).unwrap();
        assert_eq!(
            apply_tx(&mut delta, &transfer(&key(1), bob, 5, 3)),
            Err(TxError::BadNonce {
                expected: Nonce(0),
                found: Nonce(3)
            })
        );
        assert!(matches!(
            apply_tx(&mut delta, &transfer(&key(1), bob, 2_000_000, 0)),
            Err(TxError::Overdraft { .. })
        ));
        assert!(matches!(
            apply_tx(&mut delta, &transfer(&key(9), bob, 1, 0)),
            Err(TxError::Overdraft { .. })
        ));
        let mut wrong_chain = transfer(&key(1), bob, 1, 0);
        wrong_chain.tx.chain_id = crate::spec::ChainId::new("other").unwrap();
        assert!(matches!(
            check_chain_id(&wrong_chain, &spec),
            Err(TxError::WrongChain { .. })
        ));
        assert_eq!(delta.touched(), 0, "failed transactions change nothing");
    }

    #[test]
    fn header_context_rules() {
        let spec = funded_spec();
        let genesis = spec.genesis_block().header;
        let parent = ParentContext {
            hash: genesis.hash(),
            height: Height(0),
            bits: genesis.bits,
            timestamp_ms: genesis.timestamp_ms,
            solve_time_ms: None,
            median_time_past_ms: genesis.timestamp_ms,
        };
        let mut header = genesis.clone();
        header.height = Height(1);
        header.timestamp_ms = genesis.timestamp_ms + 1;
        let now = genesis.timestamp_ms;
        check_header_context(&header, &parent, now, &spec).unwrap();
        header.timestamp_ms = genesis.timestamp_ms;
        assert!(matches!(
            check_header_context(&header, &parent, now, &spec),
            Err(BlockError::TimestampTooOld { .. })
        ));
        header.timestamp_ms = now + spec.consensus.max_future_drift_ms + 1;
        assert!(matches!(
            check_header_context(&header, &parent, now, &spec),
            Err(BlockError::TimestampTooFarAhead { .. })
        ));
        header.timestamp_ms = now + 1;
        header.height = Height(2);
        assert!(matches!(
            check_header_context(&header, &parent, now, &spec),
            Err(BlockError::BadHeight { .. })
        ));
        header.height = Height(1);
        header.bits = CompactTarget(0x1d00ffff);
        assert!(matches!(
            check_header_context(&header, &parent, now, &spec),
            Err(BlockError::WrongBits { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// A body that does not match the header's Merkle root, or a header whose state
        /// root is not the state after the body, is rejected, and the state is untouched.
        #[test]
        fn mismatched_body_or_state_root_is_rejected(amounts in proptest::collection::vec(1u64..1000, 2..6), flip in 0usize..32) {
            let spec = funded_spec();
            let genesis = spec.genesis_block();
            let mut state = spec.genesis_state();
            let txs: Vec<_> = amounts.iter().enumerate()
                .map(|(i, a)| transfer(&key(1), Address([2; 32]), *a, i as u64)).collect();
            let block = mine_child(&mut state, &spec, &genesis.header, txs);
            let mut state = spec.genesis_state();
            let root_before = state.root();

            let mut dropped = block.clone();
            dropped.txs.pop();
            let is_bad_root = matches!(check_block(&dropped, 0, &spec, &KeyCache::default()), Err(BlockError::BadTxRoot { .. }));
            prop_assert!(is_bad_root);

            let mut wrong_state = block.clone();
            wrong_state.header.state_root.0[flip] ^= 1;
            let is_bad_state = matches!(connect(&mut state, &wrong_state, &spec), Err(ConnectError::Invalid(BlockError::BadStateRoot { .. })));
            prop_assert!(is_bad_state);
            prop_assert_eq!(state.root(), root_before);
        }

        /// Applying a block and then its undo is the identity on state.
        #[test]
        fn apply_then_undo_is_identity(amounts in proptest::collection::vec(0u64..400_000, 1..8)) {
            let spec = funded_spec();
            let genesis = spec.genesis_block();
            let mut state = spec.genesis_state();
            let txs: Vec<_> = amounts.iter().enumerate()
                .map(|(i, a)| transfer(&key(1), Address([i as u8 + 2; 32]), *a / 4, i as u64)).collect();
            let block = mine_child(&mut state, &spec, &genesis.header, txs);
            let mut state = spec.genesis_state();
            let before: Vec<_> = state.iter().map(|(a, acc)| (*a, *acc)).collect();
            let undo = connect(&mut state, &block, &spec).unwrap();
            state.apply_undo(&undo);
            let after: Vec<_> = state.iter().map(|(a, acc)| (*a, *acc)).collect();
            prop_assert_eq!(after, before);
            prop_assert_eq!(state.root(), genesis.header.state_root);
        }
    }
}
