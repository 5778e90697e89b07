//! Bodies of headers already checked: fetched in chunks from every peer that has them, one
//! chunk per peer at a time, and handed to the importer strictly in chain order. No I/O:
//! the sync machine feeds in what arrives and passes on what this asks for.

use apiary_core::{BlockHash, Height};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Blocks asked of one peer at once (a peer may send fewer, to keep its answer small).
pub const CHUNK_BLOCKS: usize = 128;
/// Chunks requested or downloaded but not yet handed to the importer, at most.
pub const WINDOW_CHUNKS: usize = 8;
/// A chunk not delivered in this long goes to another peer.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Height of the first block: chunks are imported by increasing height.
    pub first_height: Height,
    pub hashes: Vec<BlockHash>,
}

impl Chunk {
    /// Height of the last block: only peers that reach it are asked.
    pub fn last_height(&self) -> Height {
        Height(self.first_height.0 + self.hashes.len() as u64 - 1)
    }
}

pub struct Download<P> {
    /// Chunks known from headers and not yet asked for, lowest first.
    queue: VecDeque<Chunk>,
    in_flight: HashMap<P, (Chunk, Instant)>,
    /// Downloaded chunks waiting for the ones before them, by first height.
    arrived: BTreeMap<Height, (P, Vec<Vec<u8>>)>,
    /// Height of the next block the importer needs.
    next_import: Option<Height>,
    /// Peers that lacked a block they were asked for: not asked again in this download.
    lacking: HashSet<P>,
    /// Peers that delivered bodies, for the log.
    pub suppliers: HashSet<P>,
    /// Blocks per chunk (`CHUNK_BLOCKS`; smaller in tests).
    chunk_blocks: usize,
}

impl<P: Copy + Eq + Hash> Default for Download<P> {
    fn default() -> Self {
        Download {
            queue: VecDeque::new(),
            in_flight: HashMap::new(),
            arrived: BTreeMap::new(),
            next_import: None,
            lacking: HashSet::new(),
            suppliers: HashSet::new(),
            chunk_blocks: CHUNK_BLOCKS,
        }
    }
}

impl<P: Copy + Eq + Hash> Download<P> {
    /// Queues the blocks of checked, consecutive headers (`first_height` is the first's).
    pub fn add_headers(&mut self, hashes: &[BlockHash], first_height: Height) {
        self.next_import.get_or_insert(first_height);
        for (i, chunk) in hashes.chunks(self.chunk_blocks).enumerate() {
            self.queue.push_back(Chunk {
                first_height: Height(first_height.0 + (i * self.chunk_blocks) as u64),
                hashes: chunk.to_vec(),
            });
        }
    }

    /// Chunks not yet asked for.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Chunks to ask for now: the lowest waiting ones, each to an idle peer that reaches
    /// its height, while the window (with `importing` batches still at the importer) has
    /// room. `peers`: every peer and its chain height.
    pub fn assign(
        &mut self,
        peers: &[(P, Height)],
        importing: usize,
        now: Instant,
    ) -> Vec<(P, Chunk)> {
        let mut requests = Vec::new();
        while self.in_flight.len() + self.arrived.len() + importing < WINDOW_CHUNKS {
            let Some(chunk) = self.queue.front() else {
                break;
            };
            let idle = peers.iter().find(|(peer, height)| {
                *height >= chunk.last_height()
                    && !self.in_flight.contains_key(peer)
                    && !self.lacking.contains(peer)
            });
            let Some((peer, _)) = idle else {
                break;
            };
            let chunk = self.queue.pop_front().expect("just looked");
            self.in_flight.insert(*peer, (chunk.clone(), now));
            requests.push((*peer, chunk));
        }
        requests
    }

    /// Bodies from `peer`, which must be a prefix of the chunk it was asked for, each
    /// matching its hash (`hash_of` reads a body's header hash). The rest of a short
    /// answer goes back in front of the queue; a peer that sent none of the chunk is not
    /// asked again. Err: it sent something it was not asked for.
    pub fn on_bodies(
        &mut self,
        peer: P,
        bodies: Vec<Vec<u8>>,
        hash_of: impl Fn(&[u8]) -> Option<BlockHash>,
    ) -> Result<(), String> {
        let Some((chunk, _)) = self.in_flight.remove(&peer) else {
            return Err("blocks nobody asked it for".into());
        };
        if bodies.len() > chunk.hashes.len() {
            self.requeue(chunk);
            return Err("more blocks than asked for".into());
        }
        if let Some(i) = (0..bodies.len()).find(|&i| hash_of(&bodies[i]) != Some(chunk.hashes[i])) {
            self.requeue(chunk);
            return Err(format!("block {i} of its answer is not the one asked for"));
        }
        if bodies.is_empty() {
            self.lacking.insert(peer);
            self.requeue(chunk);
            return Ok(());
        }
        if bodies.len() < chunk.hashes.len() {
            self.requeue(Chunk {
                first_height: Height(chunk.first_height.0 + bodies.len() as u64),
                hashes: chunk.hashes[bodies.len()..].to_vec(),
            });
        }
        self.suppliers.insert(peer);
        self.arrived.insert(chunk.first_height, (peer, bodies));
        Ok(())
    }

    fn requeue(&mut self, chunk: Chunk) {
        let at = self
            .queue
            .iter()
            .position(|c| c.first_height > chunk.first_height)
            .unwrap_or(self.queue.len());
        self.queue.insert(at, chunk);
    }

    /// Downloaded chunks that are next in line, in order, with who sent them.
    pub fn ready(&mut self) -> Vec<(P, Vec<Vec<u8>>)> {
        let mut ready = Vec::new();
        while let Some(next) = self.next_import {
            let Some(entry) = self.arrived.remove(&next) else {
                break;
            };
            self.next_import = Some(Height(next.0 + entry.1.len() as u64));
            ready.push(entry);
        }
        ready
    }

    /// `peer` is gone or failed: its chunk goes back to the queue.
    pub fn peer_lost(&mut self, peer: &P) {
        if let Some((chunk, _)) = self.in_flight.remove(peer) {
            self.requeue(chunk);
        }
    }

    /// Peers whose chunk is overdue; their chunks go back to the queue.
    pub fn overdue(&mut self, now: Instant) -> Vec<P> {
        let late: Vec<P> = self
            .in_flight
            .iter()
            .filter(|(_, (_, asked))| now.duration_since(*asked) > CHUNK_TIMEOUT)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &late {
            self.peer_lost(peer);
            self.lacking.insert(*peer);
        }
        late
    }

    /// Nothing asked for, waiting or on its way: every queued block went to the importer.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty() && self.arrived.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_core::Hash256;

    /// Chunks of 32 blocks, so that a few fit in heights one byte can name.
    fn download() -> Download<u32> {
        Download {
            chunk_blocks: 32,
            ..Download::default()
        }
    }

    fn hashes(range: std::ops::Range<u8>) -> Vec<BlockHash> {
        range.map(|b| BlockHash(Hash256([b; 32]))).collect()
    }

    /// Bodies are stood in for by their hash's first byte.
    fn bodies(hashes: &[BlockHash]) -> Vec<Vec<u8>> {
        hashes.iter().map(|h| vec![h.0 .0[0]]).collect()
    }

    fn hash_of(body: &[u8]) -> Option<BlockHash> {
        Some(BlockHash(Hash256([body[0]; 32])))
    }

    #[test]
    fn chunks_go_to_several_peers_and_come_out_in_order() {
        let (a, b, c) = (1u32, 2u32, 3u32);
        let mut download = download();
        let all = hashes(1..201); // heights 1..=200: chunks from 1, 33, 65, ...
        download.add_headers(&all, Height(1));
        let now = Instant::now();
        // c only reaches height 70: it gets no chunk ending above that.
        let peers = [(a, Height(200)), (b, Height(200)), (c, Height(70))];
        let asked = download.assign(&peers, 0, now);
        assert_eq!(
            asked
                .iter()
                .map(|(p, ch)| (*p, ch.first_height.0))
                .collect::<Vec<_>>(),
            vec![(a, 1), (b, 33)],
            "the third chunk ends at 96: c (at 70) is not asked for it"
        );

        // The second chunk arrives first: nothing is ready until the first does.
        let second = asked.iter().find(|(p, _)| *p == b).unwrap().1.clone();
        download
            .on_bodies(b, bodies(&second.hashes), hash_of)
            .unwrap();
        assert!(download.ready().is_empty());
        let first = asked.iter().find(|(p, _)| *p == a).unwrap().1.clone();
        download
            .on_bodies(a, bodies(&first.hashes), hash_of)
            .unwrap();
        let ready = download.ready();
        assert_eq!(ready.len(), 2);
        assert_eq!((ready[0].0, ready[1].0), (a, b));
        assert_eq!(download.suppliers.len(), 2);
    }

    #[test]
    fn wrong_short_lost_and_late_answers_put_the_chunk_back() {
        let (a, b) = (1u32, 2u32);
        let mut download = download();
        download.add_headers(&hashes(1..65), Height(1));
        let now = Instant::now();
        let peers = [(a, Height(64)), (b, Height(64))];
        let asked = download.assign(&peers, 0, now);
        assert_eq!(asked.len(), 2);
        let (first_peer, first) = asked[0].clone();

        // A body that is not the block asked for is an error, and the chunk is asked again.
        let mut wrong = bodies(&first.hashes);
        wrong[3] = vec![250];
        assert!(download.on_bodies(first_peer, wrong, hash_of).is_err());
        // Blocks nobody asked for are an error too.
        assert!(download.on_bodies(first_peer, vec![], hash_of).is_err());

        // A short answer is taken, and the rest asked for again (of whoever is idle).
        let (second_peer, second) = asked[1].clone();
        download
            .on_bodies(second_peer, bodies(&second.hashes[..10]), hash_of)
            .unwrap();
        let again = download.assign(&peers, 0, now);
        assert!(again
            .iter()
            .any(|(_, ch)| ch.first_height.0 == second.first_height.0 + 10));
        // An empty answer: that peer is not asked again in this download.
        let (empty_peer, _) = again[0];
        download.on_bodies(empty_peer, vec![], hash_of).unwrap();
        assert!(
            download.assign(&peers, 0, now).is_empty(),
            "the other peer is busy"
        );

        // A peer that vanishes, or is late, gives its chunk back.
        let other = if empty_peer == a { b } else { a };
        download.peer_lost(&other);
        let later = download.assign(&peers, 0, now);
        assert_eq!(later.len(), 1);
        assert_eq!(
            later[0].0, other,
            "the peer that sent nothing is not asked again"
        );
        assert_eq!(later[0].1.first_height, Height(1), "lowest first");
        assert_eq!(
            download.overdue(now + CHUNK_TIMEOUT + Duration::from_secs(1)),
            vec![other]
        );
        assert!(!download.is_idle());
    }
}
