//! Checking a run of headers the way the chain will check their blocks, before anyone is
//! asked for a body: each on its own (version, the proof-of-work limit, its proof of work)
//! and against the one before (it follows it, the height, the target the retarget
//! requires, the median time past, the allowed drift ahead of the clock). The same
//! functions block validation uses; what a header cannot show (transactions, state) waits
//! for the body.

use crate::block::{BlockHeader, Height};
use crate::hash::BlockHash;
use crate::pow::{CompactTarget, Work};
use crate::spec::ChainSpec;
use crate::units::TimestampMs;
use crate::validate::{
    check_header_context, check_header_pow, median_time_past, BlockError, ParentContext,
};
use std::collections::VecDeque;

/// What the rules need of the block a header builds on: its context, the timestamps the
/// median time past is taken over, and the chain's total work up to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderAncestry {
    hash: BlockHash,
    height: Height,
    bits: CompactTarget,
    /// Up to `median_time_span` timestamps ending with this block's, oldest first.
    timestamps: VecDeque<TimestampMs>,
    /// This block's timestamp minus its parent's; None for genesis.
    solve_time_ms: Option<i64>,
    total_work: Work,
}

impl HeaderAncestry {
    /// The ancestry of a stored block: `timestamps` are those of it and its ancestors,
    /// newest first (as a walk back from it finds them), at least its own.
    pub fn new(
        hash: BlockHash,
        header: &BlockHeader,
        timestamps_newest_first: &[TimestampMs],
        total_work: Work,
        spec: &ChainSpec,
    ) -> HeaderAncestry {
        let span = spec.consensus.median_time_span.max(1) as usize;
        let timestamps: VecDeque<TimestampMs> = timestamps_newest_first
            .iter()
            .take(span)
            .rev()
            .copied()
            .collect();
        let solve_time_ms = (header.height.0 > 0)
            .then(|| timestamps_newest_first.get(1))
            .flatten()
            .map(|parent| header.timestamp_ms.signed_ms_since(*parent));
        HeaderAncestry {
            hash,
            height: header.height,
            bits: header.bits,
            timestamps,
            solve_time_ms,
            total_work,
        }
    }

    /// The hash of the last header taken.
    pub fn hash(&self) -> BlockHash {
        self.hash
    }

    /// The height of the last header taken.
    pub fn height(&self) -> Height {
        self.height
    }

    /// Total work of the chain up to and including this block.
    pub fn total_work(&self) -> Work {
        self.total_work
    }

    /// What a child of this block is checked against.
    pub fn context(&self) -> ParentContext {
        ParentContext {
            hash: self.hash,
            height: self.height,
            bits: self.bits,
            timestamp_ms: self.timestamps.back().copied().unwrap_or_default(),
            solve_time_ms: self.solve_time_ms,
            median_time_past_ms: median_time_past(
                &self.timestamps.iter().copied().collect::<Vec<_>>(),
            ),
        }
    }

    /// Moves to `header`, a checked child of this block whose hash is `hash`.
    fn advance(&mut self, header: &BlockHeader, hash: BlockHash, work: Work, span: usize) {
        let parent_time = self
            .timestamps
            .back()
            .copied()
            .unwrap_or(header.timestamp_ms);
        self.solve_time_ms = Some(header.timestamp_ms.signed_ms_since(parent_time));
        self.timestamps.push_back(header.timestamp_ms);
        while self.timestamps.len() > span {
            self.timestamps.pop_front();
        }
        self.hash = hash;
        self.height = header.height;
        self.bits = header.bits;
        self.total_work = self.total_work.checked_add(work).unwrap_or(self.total_work);
    }
}

/// Why a run of headers stopped before its end.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// It does not build on the header before it (or, first, on the block it was asked
    /// to follow).
    #[error("header {hash} builds on {found}, not on {expected}")]
    DoesNotFollow {
        /// The header's hash.
        hash: BlockHash,
        /// The hash it should build on.
        expected: BlockHash,
        /// Its `prev_hash`.
        found: BlockHash,
    },
    /// It breaks a rule of the chain.
    #[error("header {hash}: {error}")]
    Invalid {
        /// The header's hash.
        hash: BlockHash,
        /// The rule it breaks.
        error: BlockError,
    },
    /// It is further ahead of this node's clock than the chain allows: not invalid, not
    /// yet; its time comes at `valid_from_ms` by this clock.
    #[error("header {hash} is {ahead_ms} ms ahead of the allowed drift; it may be taken from {valid_from_ms}")]
    NotYet {
        /// The header's hash.
        hash: BlockHash,
        /// How far past the allowed drift its timestamp is.
        ahead_ms: u64,
        /// When this node's clock will take it.
        valid_from_ms: TimestampMs,
    },
}

/// The result of checking a run of headers: the valid prefix, and why it ended early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedHeaders {
    /// Hashes of the headers that passed, in order.
    pub hashes: Vec<BlockHash>,
    /// Why the rest did not (the index is of the first header that failed).
    pub stopped: Option<(usize, HeaderError)>,
}

/// Checks `headers`, in order, as children of `ancestry` and each of the one before;
/// `ancestry` moves along to the last header that passed.
pub fn check_headers(
    ancestry: &mut HeaderAncestry,
    headers: &[BlockHeader],
    now: TimestampMs,
    spec: &ChainSpec,
) -> CheckedHeaders {
    let span = spec.consensus.median_time_span.max(1) as usize;
    let mut hashes = Vec::with_capacity(headers.len());
    for (index, header) in headers.iter().enumerate() {
        let hash = header.hash();
        let stop = |error| CheckedHeaders {
            hashes: hashes.clone(),
            stopped: Some((index, error)),
        };
        if header.prev_hash != ancestry.hash {
            return stop(HeaderError::DoesNotFollow {
                hash,
                expected: ancestry.hash,
                found: header.prev_hash,
            });
        }
        if let Err(error) = check_header_pow(header, spec) {
            return stop(HeaderError::Invalid { hash, error });
        }
        match check_header_context(header, &ancestry.context(), now, spec) {
            Ok(()) => {}
            Err(BlockError::TimestampTooFarAhead {
                timestamp_ms,
                limit_ms,
            }) => {
                return stop(HeaderError::NotYet {
                    hash,
                    ahead_ms: timestamp_ms.ms_since(limit_ms),
                    valid_from_ms: TimestampMs(
                        timestamp_ms
                            .0
                            .saturating_sub(spec.consensus.max_future_drift_ms),
                    ),
                })
            }
            Err(error) => return stop(HeaderError::Invalid { hash, error }),
        }
        let work = header
            .bits
            .to_target()
            .map(|t| t.work())
            .unwrap_or(Work::ZERO);
        ancestry.advance(header, hash, work, span);
        hashes.push(hash);
    }
    CheckedHeaders {
        hashes,
        stopped: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::block::{HeaderHasher, BLOCK_VERSION};
    use crate::hash::Hash256;
    use crate::pow::Target;
    use crate::spec::tests::test_spec;

    /// A header on `parent` at `timestamp_ms` with `bits`, its proof of work found.
    fn child(parent: &BlockHeader, timestamp_ms: TimestampMs, bits: CompactTarget) -> BlockHeader {
        let mut header = BlockHeader {
            version: BLOCK_VERSION,
            height: parent.height.next(),
            prev_hash: parent.hash(),
            tx_root: Hash256::ZERO,
            state_root: Hash256::ZERO,
            miner: Address([7; 32]),
            timestamp_ms,
            bits,
            nonce: 0,
        };
        let target = bits.to_target().unwrap();
        let mut hasher = HeaderHasher::new(&header);
        header.nonce = (0..)
            .find(|n| target.is_met_by(&hasher.hash_with_nonce(*n)))
            .unwrap();
        header
    }

    /// `count` valid headers on genesis, a second apart.
    fn run(spec: &ChainSpec, count: usize) -> Vec<BlockHeader> {
        let mut parent = spec.genesis_block().header;
        (0..count)
            .map(|_| {
                let header = child(
                    &parent,
                    parent.timestamp_ms + 1_000,
                    spec.consensus.genesis_bits,
                );
                parent = header.clone();
                header
            })
            .collect()
    }

    fn genesis_ancestry(spec: &ChainSpec) -> HeaderAncestry {
        let genesis = spec.genesis_block().header;
        let work = genesis.bits.to_target().unwrap().work();
        HeaderAncestry::new(
            genesis.hash(),
            &genesis,
            &[genesis.timestamp_ms],
            work,
            spec,
        )
    }

    const NOW: TimestampMs = TimestampMs(1_767_225_600_000 + 1_000_000);

    #[test]
    fn a_valid_run_passes_and_adds_its_work() {
        let spec = test_spec(vec![]);
        let headers = run(&spec, 20);
        let mut ancestry = genesis_ancestry(&spec);
        let checked = check_headers(&mut ancestry, &headers, NOW, &spec);
        assert_eq!(checked.stopped, None);
        assert_eq!(checked.hashes.len(), 20);
        assert_eq!(ancestry.hash(), headers[19].hash());
        assert_eq!(ancestry.height(), Height(20));
        let one = spec.consensus.genesis_bits.to_target().unwrap().work();
        let mut expected = one;
        for _ in 0..20 {
            expected = expected.checked_add(one).unwrap();
        }
        assert_eq!(ancestry.total_work(), expected);
        // Checked in two halves, the same.
        let mut halves = genesis_ancestry(&spec);
        check_headers(&mut halves, &headers[..7], NOW, &spec);
        let rest = check_headers(&mut halves, &headers[7..], NOW, &spec);
        assert_eq!((rest.stopped, halves), (None, ancestry));
    }

    #[test]
    fn a_header_that_does_not_follow_stops_the_run_there() {
        let spec = test_spec(vec![]);
        let mut headers = run(&spec, 6);
        headers.remove(3);
        let checked = check_headers(&mut genesis_ancestry(&spec), &headers, NOW, &spec);
        assert_eq!(checked.hashes.len(), 3);
        assert!(matches!(
            checked.stopped,
            Some((3, HeaderError::DoesNotFollow { .. }))
        ));
    }

    #[test]
    fn a_target_easier_than_the_limit_or_not_the_required_one_is_invalid() {
        let spec = test_spec(vec![]);
        let genesis = spec.genesis_block().header;
        let easiest = Target::for_expected_hashes(1).to_compact();
        let too_easy = child(&genesis, genesis.timestamp_ms + 1_000, easiest);
        let checked = check_headers(&mut genesis_ancestry(&spec), &[too_easy], NOW, &spec);
        assert!(matches!(
            checked.stopped,
            Some((
                0,
                HeaderError::Invalid {
                    error: BlockError::BitsAboveLimit(_),
                    ..
                }
            ))
        ));
        let harder = Target::for_expected_hashes(4).to_compact();
        let wrong = child(&genesis, genesis.timestamp_ms + 1_000, harder);
        let checked = check_headers(&mut genesis_ancestry(&spec), &[wrong], NOW, &spec);
        assert!(matches!(
            checked.stopped,
            Some((
                0,
                HeaderError::Invalid {
                    error: BlockError::WrongBits { .. },
                    ..
                }
            ))
        ));
    }

    #[test]
    fn a_header_ahead_of_the_clock_is_not_yet_and_an_old_one_is_invalid() {
        let spec = test_spec(vec![]);
        let genesis = spec.genesis_block().header;
        let ahead = genesis.timestamp_ms + 3_600_000;
        let early = child(&genesis, ahead, spec.consensus.genesis_bits);
        let now = genesis.timestamp_ms + 1_000;
        let checked = check_headers(&mut genesis_ancestry(&spec), &[early], now, &spec);
        let Some((0, HeaderError::NotYet { valid_from_ms, .. })) = checked.stopped else {
            panic!("{checked:?}");
        };
        assert_eq!(
            valid_from_ms.0,
            ahead.0 - spec.consensus.max_future_drift_ms
        );

        let headers = run(&spec, 12);
        let old = child(
            &headers[11],
            headers[5].timestamp_ms,
            spec.consensus.genesis_bits,
        );
        let mut all = headers.clone();
        all.push(old);
        let checked = check_headers(&mut genesis_ancestry(&spec), &all, NOW, &spec);
        assert!(matches!(
            checked.stopped,
            Some((
                12,
                HeaderError::Invalid {
                    error: BlockError::TimestampTooOld { .. },
                    ..
                }
            ))
        ));
    }
}
