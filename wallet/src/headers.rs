//! The wallet's own chain of headers, checked from genesis by the chain's rules (links,
//! proof of work, the retarget, the median time past) exactly as a node checks them, so a
//! balance or a payment can be proved against a header no node chose for it.
//!
//! On disk, in `<wallet-dir>/headers/`: `spec` (the chain spec, pinned the first time: its
//! hash is in the genesis header), `hashes` (every main-chain block hash by height, 32 bytes
//! each: 3.2 MB per 100,000 blocks) and `recent` (the last `max_reorg_depth` + 12 headers
//! whole, for reorganisations and the rules' context). A reorganisation deeper than the
//! chain's `max_reorg_depth` is refused, as nodes refuse it.

use apiary_core::{
    check_headers, BlockHash, BlockHeader, ChainSpec, HeaderAncestry, HeaderError, Height,
    TimestampMs, Work,
};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The largest chain spec taken (its allocations make it grow).
pub const MAX_SPEC_BYTES: usize = 16 << 20;

/// Headers asked for at a time (the node's limit).
pub const HEADERS_PER_REQUEST: u32 = 2_000;

/// Why a node's headers were not taken.
#[derive(Debug, thiserror::Error)]
pub enum HeadersRefused {
    /// They break a rule, or do not link: the node lies.
    #[error("{0}")]
    Invalid(String),
    /// The node follows a chain with no more work than ours, or one that forked deeper
    /// than any reorganisation the chain allows.
    #[error("{0}")]
    NotBetter(String),
}

/// Where the headers come from (a node, through one endpoint).
pub trait HeaderSource {
    /// The node's tip: its height and hash.
    fn tip(&self) -> Result<(Height, BlockHash), String>;
    /// Main-chain headers from `from`, at most `count` (fewer at the tip).
    fn headers(&self, from: u64, count: u32) -> Result<Vec<BlockHeader>, String>;
}

/// What a source's failure to answer is, beside headers it sent that were refused.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Refused(#[from] HeadersRefused),
    /// It did not answer (down, an error of its own).
    #[error("{0}")]
    Unanswered(String),
    /// The wallet's own files could not be written.
    #[error("cannot write the wallet's headers: {0}")]
    Disk(#[from] std::io::Error),
}

pub struct HeaderChain {
    dir: PathBuf,
    spec: ChainSpec,
    /// Every main-chain hash, by height.
    hashes: Vec<BlockHash>,
    /// The last headers, ending at the tip.
    recent: VecDeque<BlockHeader>,
}

fn now() -> TimestampMs {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    TimestampMs(ms)
}

fn work_of(header: &BlockHeader) -> Work {
    header
        .bits
        .to_target()
        .map(|t| t.work())
        .unwrap_or(Work::ZERO)
}

fn sum_work<'a>(headers: impl Iterator<Item = &'a BlockHeader>) -> Work {
    headers.fold(Work::ZERO, |sum, h| {
        sum.checked_add(work_of(h)).unwrap_or(sum)
    })
}

impl HeaderChain {
    /// The headers kept whole: enough for the deepest reorganisation and the median time
    /// past above it.
    fn keep(&self) -> usize {
        let c = &self.spec.consensus;
        (c.max_reorg_depth.min(100_000) as usize) + c.median_time_span.max(1) as usize + 1
    }

    pub fn spec_path(dir: &Path) -> PathBuf {
        dir.join("spec")
    }

    /// The chain in `dir`, or a new one holding only the genesis of `spec` (which is then
    /// pinned: the files say which chain they are).
    pub fn open(dir: &Path, spec: ChainSpec) -> std::io::Result<HeaderChain> {
        std::fs::create_dir_all(dir)?;
        let spec_path = Self::spec_path(dir);
        if !spec_path.exists() {
            apiary_files::write_private_file(&spec_path, &borsh::to_vec(&spec)?)?;
        }
        let genesis = spec.genesis_block().header;
        let mut chain = HeaderChain {
            dir: dir.to_path_buf(),
            hashes: vec![genesis.hash()],
            recent: VecDeque::from([genesis]),
            spec,
        };
        chain.load()?;
        Ok(chain)
    }

    /// The spec pinned in `dir`, if one is.
    pub fn pinned_spec(dir: &Path) -> std::io::Result<Option<ChainSpec>> {
        match std::fs::read(Self::spec_path(dir)) {
            Ok(bytes) => Ok(Some(apiary_core::decode_exact("chain spec", &bytes, MAX_SPEC_BYTES).map_err(|e| {
                std::io::Error::other(format!(
                    "{} is damaged ({e}): remove the headers folder and the wallet checks the chain again",
                    Self::spec_path(dir).display()
                ))
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads the files; keeps the longest prefix on which `hashes` and `recent` agree (a
    /// crash between writing one and the other leaves them apart).
    fn load(&mut self) -> std::io::Result<()> {
        let hashes = match std::fs::read(self.dir.join("hashes")) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let recent: Vec<BlockHeader> = match std::fs::read(self.dir.join("recent")) {
            Ok(bytes) => {
                apiary_core::decode_exact("recent headers", &bytes, bytes.len()).unwrap_or_default()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let hashes: Vec<BlockHash> = hashes
            .chunks_exact(32)
            .map(|c| BlockHash(apiary_core::Hash256(c.try_into().expect("32 bytes"))))
            .collect();
        if hashes.first() != self.hashes.first() {
            return Ok(());
        }
        // The highest recent header whose hash is the one recorded at its height.
        let agreed = recent
            .iter()
            .rposition(|h| hashes.get(h.height.0 as usize) == Some(&h.hash()));
        let Some(last) = agreed else {
            return Ok(());
        };
        let tip = recent[last].height.0 as usize;
        self.hashes = hashes[..=tip].to_vec();
        self.recent = recent[..=last].iter().cloned().collect();
        Ok(())
    }

    /// Writes `hashes` from height `from` on (dropping what was there) and `recent`.
    fn save(&self, from: usize) -> std::io::Result<()> {
        let path = self.dir.join("hashes");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        // A file shorter than asked (new, or cut by a crash) is written from its end.
        let from = from.min(file.metadata()?.len() as usize / 32);
        file.set_len((from * 32) as u64)?;
        drop(file);
        let bytes: Vec<u8> = self.hashes[from..]
            .iter()
            .flat_map(|h| h.as_bytes().to_vec())
            .collect();
        apiary_files::append_synced(&path, &bytes)?;
        let recent: Vec<&BlockHeader> = self.recent.iter().collect();
        apiary_files::write_atomically(&self.dir.join("recent"), |file| {
            file.write_all(&borsh::to_vec(&recent)?)
        })
    }

    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    pub fn tip(&self) -> Height {
        Height(self.hashes.len() as u64 - 1)
    }

    /// The main-chain hash at `height`, as this wallet checked it.
    pub fn hash_at(&self, height: Height) -> Option<BlockHash> {
        self.hashes.get(height.0 as usize).copied()
    }

    /// The whole header at `height`, if it is a recent one.
    pub fn recent_header(&self, height: Height) -> Option<&BlockHeader> {
        let first = self.recent.front()?.height.0;
        self.recent.get(height.0.checked_sub(first)? as usize)
    }

    /// The context to check children of the header at `height` (a recent one) against.
    fn ancestry_at(&self, height: Height) -> Option<HeaderAncestry> {
        let header = self.recent_header(height)?;
        let first = self.recent.front()?.height.0;
        let span = self.spec.consensus.median_time_span.max(1) as u64;
        let oldest = height.0.saturating_sub(span - 1);
        if oldest < first {
            return None;
        }
        let timestamps: Vec<TimestampMs> = (oldest..=height.0)
            .rev()
            .filter_map(|h| self.recent_header(Height(h)).map(|h| h.timestamp_ms))
            .collect();
        // Only differences of work are compared: the total is not needed.
        Some(HeaderAncestry::new(
            header.hash(),
            header,
            &timestamps,
            Work::ZERO,
            &self.spec,
        ))
    }

    /// Brings the chain to the source's tip when the source proves more work; returns the
    /// source's tip height (which may be below ours: a node that is behind).
    pub fn sync(&mut self, source: &impl HeaderSource) -> Result<Height, SyncError> {
        let (their_tip, their_hash) = source.tip().map_err(SyncError::Unanswered)?;
        let ours = self.tip();
        // The usual case: the source's chain contains our tip.
        let meet = if their_tip.0 >= ours.0 {
            let first = source.headers(ours.0, 1).map_err(SyncError::Unanswered)?;
            first
                .first()
                .filter(|h| Some(h.hash()) == self.hash_at(ours))
                .map(|_| ours)
        } else if self.hash_at(their_tip) == Some(their_hash) {
            return Ok(their_tip);
        } else {
            None
        };
        let meet = match meet {
            Some(meet) => meet,
            None => self.fork_point(source, their_tip)?,
        };
        let mut ancestry = self.ancestry_at(meet).ok_or_else(|| {
            HeadersRefused::NotBetter(format!(
                "its chain leaves this wallet's at height {meet}, deeper than the chain allows a reorganisation"
            ))
        })?;
        // Their headers above the meeting point, checked as they come. They are held only
        // until their branch outweighs ours above it (at once when ours has nothing there),
        // then taken and written batch by batch: a first sync of a million blocks never
        // holds them all.
        let mine = sum_work(self.recent.iter().filter(|h| h.height.0 > meet.0));
        let (mut theirs, mut their_work, mut taken_up_to) = (Vec::new(), Work::ZERO, None);
        let mut next = meet.0 + 1;
        while next <= their_tip.0 {
            let batch = source
                .headers(next, HEADERS_PER_REQUEST)
                .map_err(SyncError::Unanswered)?;
            if batch.is_empty() {
                break;
            }
            let checked = check_headers(&mut ancestry, &batch, now(), &self.spec);
            if let Some((index, error)) = &checked.stopped {
                if !matches!(error, HeaderError::NotYet { .. }) {
                    return Err(HeadersRefused::Invalid(format!(
                        "header {} of its chain: {error}",
                        next + *index as u64
                    ))
                    .into());
                }
            }
            let taken = checked.hashes.len();
            next += taken as u64;
            their_work = sum_work(batch[..taken].iter())
                .checked_add(their_work)
                .unwrap_or(their_work);
            theirs.extend(batch.into_iter().take(taken));
            if taken_up_to.is_some() || their_work > mine {
                let cut = taken_up_to.unwrap_or(meet);
                self.take(cut, std::mem::take(&mut theirs))?;
                taken_up_to = Some(self.tip());
            }
            // Ahead of our clock: not invalid, not yet; stop before it.
            if checked.stopped.is_some() {
                break;
            }
        }
        if taken_up_to.is_some() {
            return Ok(their_tip);
        }
        if theirs.is_empty() && meet == ours {
            return Ok(their_tip.min(ours));
        }
        Err(HeadersRefused::NotBetter(format!(
            "its chain (tip {their_tip}) has no more work than the headers this wallet checked (tip {ours})"
        ))
        .into())
    }

    /// Replaces the chain above `cut` with `headers` (checked, heavier) and writes it.
    fn take(&mut self, cut: Height, headers: Vec<BlockHeader>) -> std::io::Result<()> {
        self.hashes.truncate(cut.0 as usize + 1);
        while self.recent.back().is_some_and(|h| h.height > cut) {
            self.recent.pop_back();
        }
        for header in headers {
            self.hashes.push(header.hash());
            self.recent.push_back(header);
        }
        let keep = self.keep();
        while self.recent.len() > keep {
            self.recent.pop_front();
        }
        self.save(cut.0 as usize + 1)
    }

    /// The highest height at or below both tips where the source's chain and ours have
    /// the same block, among our recent headers.
    fn fork_point(
        &self,
        source: &impl HeaderSource,
        their_tip: Height,
    ) -> Result<Height, SyncError> {
        let first = self.recent.front().map_or(0, |h| h.height.0);
        let top = their_tip.0.min(self.tip().0);
        let mut from = first;
        let mut meet = None;
        while from <= top {
            let count = ((top - from + 1) as u32).min(HEADERS_PER_REQUEST);
            let batch = source.headers(from, count).map_err(SyncError::Unanswered)?;
            if batch.is_empty() {
                break;
            }
            for (i, header) in batch.iter().enumerate() {
                let height = Height(from + i as u64);
                if self.hash_at(height) == Some(header.hash()) {
                    meet = Some(height);
                }
            }
            from += batch.len() as u64;
        }
        meet.ok_or_else(|| {
            HeadersRefused::NotBetter(format!(
                "its chain shares no block with the last {} this wallet checked",
                self.recent.len()
            ))
            .into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_core::block::{HeaderHasher, BLOCK_VERSION};
    use apiary_core::{Address, AddressPrefix, ChainId, CompactTarget, ConsensusParams, Hash256};
    use std::cell::Cell;

    const BLOCK_MS: u64 = 1_000;

    fn spec() -> ChainSpec {
        let easiest = CompactTarget(0x207f_ffff);
        ChainSpec {
            chain_id: ChainId::new("headers-test").unwrap(),
            address_prefix: AddressPrefix::new("aptest").unwrap(),
            genesis_timestamp_ms: TimestampMs(now().0 - 3_600_000),
            consensus: ConsensusParams {
                target_block_time_ms: BLOCK_MS,
                asert_half_life_ms: 1_000_000_000,
                pow_limit: easiest,
                genesis_bits: easiest,
                max_block_bytes: 1 << 20,
                max_block_txs: 1_000,
                max_future_drift_ms: 15_000,
                median_time_span: 11,
                initial_reward: apiary_core::Amount::from_base_units(1),
                halving_interval: 0,
                max_reorg_depth: 20,
            },
            allocations: vec![],
        }
    }

    /// `count` headers after `parent`, on schedule, told apart by `branch`.
    fn extend(parent: &BlockHeader, count: usize, branch: u8) -> Vec<BlockHeader> {
        let mut headers: Vec<BlockHeader> = Vec::new();
        for _ in 0..count {
            let parent = headers.last().unwrap_or(parent);
            let mut header = BlockHeader {
                version: BLOCK_VERSION,
                height: parent.height.next(),
                prev_hash: parent.hash(),
                tx_root: Hash256([branch; 32]),
                state_root: Hash256::ZERO,
                miner: Address([branch; 32]),
                timestamp_ms: TimestampMs(parent.timestamp_ms.0 + BLOCK_MS),
                bits: parent.bits,
                nonce: 0,
            };
            let target = header.bits.to_target().unwrap();
            let mut hasher = HeaderHasher::new(&header);
            header.nonce = (0..)
                .find(|n| target.is_met_by(&hasher.hash_with_nonce(*n)))
                .unwrap();
            headers.push(header);
        }
        headers
    }

    /// A node serving `chain` (genesis first), counting the headers it sends.
    struct Source {
        chain: Vec<BlockHeader>,
        sent: Cell<usize>,
    }

    impl Source {
        fn new(chain: Vec<BlockHeader>) -> Source {
            Source {
                chain,
                sent: Cell::new(0),
            }
        }
    }

    impl HeaderSource for Source {
        fn tip(&self) -> Result<(Height, BlockHash), String> {
            let tip = self.chain.last().unwrap();
            Ok((tip.height, tip.hash()))
        }

        fn headers(&self, from: u64, count: u32) -> Result<Vec<BlockHeader>, String> {
            let from = from as usize;
            if from >= self.chain.len() {
                return Err("no block there".into());
            }
            let end = (from + count as usize).min(self.chain.len());
            self.sent.set(self.sent.get() + end - from);
            Ok(self.chain[from..end].to_vec())
        }
    }

    fn chain_of(spec: &ChainSpec, branches: &[(usize, u8)]) -> Vec<BlockHeader> {
        let mut chain = vec![spec.genesis_block().header];
        for &(count, branch) in branches {
            let more = extend(chain.last().unwrap(), count, branch);
            chain.extend(more);
        }
        chain
    }

    #[test]
    fn syncs_from_genesis_keeps_it_across_a_reopen_and_asks_only_for_what_is_new() {
        let dir = tempfile::TempDir::new().unwrap();
        let spec = spec();
        let mut source = Source::new(chain_of(&spec, &[(40, 1)]));
        let mut chain = HeaderChain::open(dir.path(), spec.clone()).unwrap();
        assert_eq!(chain.sync(&source).unwrap(), Height(40));
        assert_eq!(chain.hash_at(Height(40)), Some(source.chain[40].hash()));
        assert_eq!(
            chain.recent.len(),
            chain.keep(),
            "only the recent ones whole"
        );

        let more = extend(source.chain.last().unwrap(), 5, 1);
        source.chain.extend(more);
        source.sent.set(0);
        let mut reopened = HeaderChain::open(dir.path(), spec).unwrap();
        assert_eq!(reopened.tip(), Height(40));
        reopened.sync(&source).unwrap();
        assert_eq!(reopened.tip(), Height(45));
        assert_eq!(source.sent.get(), 6, "the old tip, then the five new");
        let bytes = std::fs::metadata(dir.path().join("hashes")).unwrap().len();
        assert_eq!(bytes, 46 * 32);
    }

    #[test]
    fn a_fork_with_more_work_replaces_ours_and_one_with_less_is_refused() {
        let dir = tempfile::TempDir::new().unwrap();
        let spec = spec();
        let ours = chain_of(&spec, &[(6, 1), (4, 2)]);
        let mut chain = HeaderChain::open(dir.path(), spec.clone()).unwrap();
        chain.sync(&Source::new(ours.clone())).unwrap();

        let longer = Source::new(chain_of(&spec, &[(6, 1), (8, 3)]));
        assert_eq!(chain.sync(&longer).unwrap(), Height(14));
        assert_eq!(chain.hash_at(Height(7)), Some(longer.chain[7].hash()));

        let shorter = Source::new(ours);
        let refused = chain.sync(&shorter).unwrap_err();
        assert!(matches!(
            refused,
            SyncError::Refused(HeadersRefused::NotBetter(_))
        ));
        assert_eq!(chain.hash_at(Height(14)), Some(longer.chain[14].hash()));
        let reopened = HeaderChain::open(dir.path(), spec).unwrap();
        assert_eq!(reopened.tip(), Height(14));
        assert_eq!(reopened.hash_at(Height(7)), Some(longer.chain[7].hash()));
    }

    #[test]
    fn a_header_that_breaks_a_rule_is_refused_and_nothing_after_it_kept() {
        let dir = tempfile::TempDir::new().unwrap();
        let spec = spec();
        let mut served = chain_of(&spec, &[(10, 1)]);
        // Block 6 claims to be mined a minute before its parent.
        served[6].timestamp_ms = TimestampMs(served[5].timestamp_ms.0 - 60_000);
        let mut chain = HeaderChain::open(dir.path(), spec).unwrap();
        let refused = chain.sync(&Source::new(served)).unwrap_err();
        assert!(matches!(
            refused,
            SyncError::Refused(HeadersRefused::Invalid(_))
        ));
        assert_eq!(
            chain.tip(),
            Height(0),
            "nothing is taken from a liar's batch"
        );
    }

    #[test]
    fn a_crash_between_the_two_files_keeps_what_both_agree_on() {
        let dir = tempfile::TempDir::new().unwrap();
        let spec = spec();
        let source = Source::new(chain_of(&spec, &[(30, 1)]));
        HeaderChain::open(dir.path(), spec.clone())
            .unwrap()
            .sync(&source)
            .unwrap();
        let hashes = dir.path().join("hashes");
        // Hashes written past `recent` (the crash came before `recent` was replaced)...
        apiary_files::append_synced(&hashes, &[7; 32 * 3 + 5]).unwrap();
        assert_eq!(
            HeaderChain::open(dir.path(), spec.clone()).unwrap().tip(),
            Height(30)
        );
        // ... or cut short of it.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&hashes)
            .unwrap();
        file.set_len(25 * 32).unwrap();
        let mut chain = HeaderChain::open(dir.path(), spec).unwrap();
        assert_eq!(chain.tip(), Height(24));
        chain.sync(&source).unwrap();
        assert_eq!(chain.tip(), Height(30));
    }
}
