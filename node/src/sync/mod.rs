//! Catching up with peers, as a state machine without I/O. What a peer says of its chain is
//! a claim until its headers prove it: the node follows the peer with the most claimed
//! work, checks its headers in full as they come (`apiary_core::check_headers`), fetches
//! bodies only for a header chain whose proved work beats ours, and holds an empty, short
//! or late answer from a peer that claimed more against it. Events go in (a status, headers,
//! a check's result, bodies, a failed request, an import's result, our new tip, time);
//! actions come out (ask for headers or bodies, check headers, import, penalise). The
//! network service carries them out; tests drive the machine directly.

mod download;
mod progress;

pub use download::{Chunk, CHUNK_BLOCKS, CHUNK_TIMEOUT, WINDOW_CHUNKS};
pub use progress::SyncProgress;

pub use crate::events::OurTip;
use crate::misbehaviour::Misbehaviour;
use crate::protocol::{Status, MAX_HEADERS_PER_RESPONSE};
use apiary_core::{
    BlockHash, BlockHeader, CheckedHeaders, HeaderAncestry, HeaderError, Height, Work,
};
use download::Download;
use progress::Progress;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A headers request not answered in this long is the peer's failure.
pub const HEADERS_TIMEOUT: Duration = Duration::from_secs(15);
/// Checked headers kept in memory while their chain has no more work than ours. A chain
/// that still does not beat ours past this many costs its sender and is dropped (in the
/// spirit of Bitcoin Core's minimum chain work: low-work headers cost no storage and no
/// body downloads).
pub const MAX_PENDING_HEADERS: usize = 20_000;

/// What the service must do for the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<P> {
    /// Ask `peer` for the headers of its main chain after the first `locator` hash it has.
    AskHeaders {
        peer: P,
        locator: Vec<BlockHash>,
    },
    /// Check `headers` from `peer` (off the network loop) and report `HeadersChecked`:
    /// as children of `after`, or, when None, of the block the first one builds on.
    CheckHeaders {
        peer: P,
        headers: Vec<BlockHeader>,
        after: Option<HeaderAncestry>,
    },
    /// Ask `peer` for these blocks' bodies.
    AskBodies {
        peer: P,
        hashes: Vec<BlockHash>,
    },
    /// Connect these blocks (from `peer`) in order, and report `imported`.
    Import {
        peer: P,
        blocks: Vec<Vec<u8>>,
    },
    Penalise {
        peer: P,
        why: Misbehaviour,
    },
}

/// What checking a peer's headers came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadersChecked {
    Checked {
        checked: CheckedHeaders,
        /// Where the valid prefix ends (boxed: the other variant is small).
        ancestry: Box<HeaderAncestry>,
        /// Headers in the answer.
        count: usize,
        /// The clock the check used (ms since the epoch).
        now_ms: u64,
    },
    /// The first header builds on no block we know.
    Orphan,
}

/// Which request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Headers,
    Bodies,
}

/// The header chain being followed: one peer's, checked as it comes.
struct Following<P> {
    source: P,
    /// What it claimed when we began.
    claimed: Work,
    /// Where its checked headers end (None before the first batch).
    ancestry: Option<HeaderAncestry>,
    /// Checked headers whose chain does not beat ours yet, and the first one's height.
    pending: Vec<BlockHash>,
    pending_from: Height,
    /// When the outstanding headers request was sent.
    asked: Option<Instant>,
    /// Headers handed out for checking.
    checking: bool,
    /// The source has sent all it has (or all it may, before its time comes).
    done: bool,
    /// A headers answer that did not follow the last one was taken as a reorganisation
    /// once; a second time costs the peer.
    restarted: bool,
    /// A header ahead of our clock ended the run: what is missing of the claim is early,
    /// not undelivered.
    early: bool,
}

pub struct Sync<P> {
    ours: OurTip,
    /// Each connected peer's last status: its claim.
    claims: HashMap<P, Status>,
    following: Option<Following<P>>,
    download: Download<P>,
    /// Batches handed to the importer and not yet reported.
    importing: usize,
    /// Peers whose chain reached a header ahead of our clock: not followed before then.
    not_before: HashMap<P, Instant>,
    /// For those peers: when the first header held back becomes valid, by our clock (ms
    /// since the epoch), for `node_info` to say why the chain does not move.
    held_back_from_ms: HashMap<P, u64>,
    /// The best chain proved by checked headers beyond ours: its work and height.
    best_proved: Option<(Work, Height)>,
    progress: Progress,
}

impl<P: Copy + Eq + Hash + std::fmt::Debug> Sync<P> {
    pub fn new(ours: OurTip) -> Sync<P> {
        Sync {
            ours,
            claims: HashMap::new(),
            following: None,
            download: Download::default(),
            importing: 0,
            not_before: HashMap::new(),
            held_back_from_ms: HashMap::new(),
            best_proved: None,
            progress: Progress::default(),
        }
    }

    /// Whether a peer has proved a chain with more work than ours.
    pub fn is_behind(&self) -> bool {
        self.best_proved
            .is_some_and(|(work, _)| work > self.ours.work)
    }

    pub fn progress(&self) -> SyncProgress {
        let mut progress = self.progress.shown.clone();
        progress.best_known_height = match self.best_proved {
            Some((work, height)) if work > self.ours.work => height.0,
            _ => self.ours.height.0,
        };
        progress.held_back_until_ms = self.held_back_from_ms.values().min().copied();
        progress
    }

    /// Whether blocks are being downloaded or imported (for logs and tests).
    pub fn is_downloading(&self) -> bool {
        self.following.is_some() || !self.download.is_idle() || self.importing > 0
    }

    /// The peer whose headers are followed, if any.
    pub fn source(&self) -> Option<P> {
        self.following.as_ref().map(|f| f.source)
    }

    /// A peer told where its chain stands: a claim to test.
    pub fn status(&mut self, peer: P, status: Status, now: Instant) -> Vec<Action<P>> {
        self.claims.insert(peer, status);
        self.advance(now)
    }

    /// Our main chain moved.
    pub fn our_tip(&mut self, tip: OurTip, now: Instant) -> Vec<Action<P>> {
        self.ours = tip;
        self.advance(now)
    }

    /// `peer`'s connection closed.
    pub fn peer_gone(&mut self, peer: P, now: Instant) -> Vec<Action<P>> {
        self.claims.remove(&peer);
        self.not_before.remove(&peer);
        self.held_back_from_ms.remove(&peer);
        self.download.peer_lost(&peer);
        if self.source() == Some(peer) {
            self.stop_following();
        }
        self.advance(now)
    }

    /// A request to `peer` failed; `its_fault`: it timed out or broke the protocol (not a
    /// closed connection or a failed dial).
    pub fn request_failed(
        &mut self,
        peer: P,
        request: Request,
        its_fault: bool,
        now: Instant,
    ) -> Vec<Action<P>> {
        let mut actions = Vec::new();
        match request {
            Request::Headers if self.source() == Some(peer) => {
                if its_fault {
                    actions.push(Action::Penalise {
                        peer,
                        why: Misbehaviour::NoAnswer,
                    });
                }
                self.drop_claim(peer);
                self.stop_following();
            }
            Request::Headers => {}
            Request::Bodies => {
                self.download.peer_lost(&peer);
                if its_fault {
                    actions.push(Action::Penalise {
                        peer,
                        why: Misbehaviour::NoAnswer,
                    });
                }
            }
        }
        actions.extend(self.advance(now));
        actions
    }

    /// The answer to a headers request.
    pub fn headers(&mut self, peer: P, headers: Vec<BlockHeader>, now: Instant) -> Vec<Action<P>> {
        let Some(following) = self.following.as_mut() else {
            return Vec::new();
        };
        // A late answer (after a timeout) or one from a peer we stopped following.
        if following.source != peer || following.asked.is_none() {
            return Vec::new();
        }
        following.asked = None;
        if headers.len() > MAX_HEADERS_PER_RESPONSE as usize {
            return self.give_up(peer, Misbehaviour::TooManyHeaders, now);
        }
        if headers.is_empty() {
            return self.source_done(now);
        }
        following.checking = true;
        vec![Action::CheckHeaders {
            peer,
            headers,
            after: following.ancestry.clone(),
        }]
    }

    /// What checking `peer`'s headers came to.
    pub fn headers_checked(
        &mut self,
        peer: P,
        outcome: HeadersChecked,
        now: Instant,
    ) -> Vec<Action<P>> {
        let Some(following) = self.following.as_mut().filter(|f| f.source == peer) else {
            return Vec::new();
        };
        following.checking = false;
        let (checked, ancestry, count, now_ms) = match outcome {
            HeadersChecked::Orphan => return self.give_up(peer, Misbehaviour::OrphanHeaders, now),
            HeadersChecked::Checked {
                checked,
                ancestry,
                count,
                now_ms,
            } => (checked, *ancestry, count, now_ms),
        };
        let continuing = following.ancestry.is_some();
        if !checked.hashes.is_empty() {
            if following.pending.is_empty() {
                following.pending_from =
                    Height(ancestry.height().0 + 1 - checked.hashes.len() as u64);
            }
            following.pending.extend_from_slice(&checked.hashes);
            following.ancestry = Some(ancestry.clone());
        }
        let mut actions = Vec::new();
        match checked.stopped {
            None => {
                if count < MAX_HEADERS_PER_RESPONSE as usize {
                    following.done = true;
                }
            }
            Some((_, HeaderError::NotYet { valid_from_ms, .. })) => {
                // Early, not wrong: take what came before it, and ask again when its time
                // comes (by our clock).
                let wait = Duration::from_millis(valid_from_ms.0.saturating_sub(now_ms));
                self.not_before.insert(peer, now + wait);
                self.held_back_from_ms.insert(peer, valid_from_ms.0);
                following.done = true;
                following.early = true;
            }
            Some((0, HeaderError::DoesNotFollow { .. })) if continuing && !following.restarted => {
                // Its chain changed between two answers (a reorganisation): start over
                // from ours, once.
                following.restarted = true;
                following.ancestry = None;
                following.pending.clear();
            }
            Some((_, error)) => {
                let why = Misbehaviour::of_header_error(&error)
                    .unwrap_or(Misbehaviour::DisconnectedHeaders);
                return self.give_up(peer, why, now);
            }
        }
        self.note_proved(&ancestry);
        if ancestry.total_work() > self.ours.work {
            self.queue_pending();
        } else if self
            .following
            .as_ref()
            .is_some_and(|f| f.pending.len() > MAX_PENDING_HEADERS)
        {
            return self.give_up(peer, Misbehaviour::LowWorkChain, now);
        }
        if self.following.as_ref().is_some_and(|f| f.done) {
            actions.extend(self.source_done(now));
        } else {
            actions.extend(self.advance(now));
        }
        actions
    }

    /// Bodies `peer` sent for the chunk it was asked for; `hash_of` reads a body's hash.
    pub fn bodies(
        &mut self,
        peer: P,
        bodies: Vec<Vec<u8>>,
        hash_of: impl Fn(&[u8]) -> Option<BlockHash>,
        now: Instant,
    ) -> Vec<Action<P>> {
        let mut actions = Vec::new();
        if self.download.on_bodies(peer, bodies, hash_of).is_err() {
            actions.push(Action::Penalise {
                peer,
                why: Misbehaviour::Unrequested,
            });
        }
        actions.extend(self.advance(now));
        actions
    }

    /// The importer took `received` blocks of a batch from `peer`; `refused`: what the
    /// first block it refused says of the peer.
    pub fn imported(
        &mut self,
        peer: P,
        received: usize,
        refused: Option<Misbehaviour>,
        now: Instant,
    ) -> Vec<Action<P>> {
        self.importing = self.importing.saturating_sub(1);
        self.note_imported(received as u64, now);
        let mut actions = Vec::new();
        if let Some(why) = refused {
            actions.push(Action::Penalise { peer, why });
            // What follows builds on what failed: start over from the best claim left.
            self.drop_claim(peer);
            self.stop_following();
        }
        actions.extend(self.advance(now));
        actions
    }

    /// Time passed: requests overdue, peers whose time came.
    pub fn tick(&mut self, now: Instant) -> Vec<Action<P>> {
        let mut actions = Vec::new();
        if let Some(following) = &self.following {
            if following
                .asked
                .is_some_and(|asked| now.saturating_duration_since(asked) > HEADERS_TIMEOUT)
            {
                let source = following.source;
                actions.extend(self.give_up(source, Misbehaviour::NoAnswer, now));
            }
        }
        for peer in self.download.overdue(now) {
            actions.push(Action::Penalise {
                peer,
                why: Misbehaviour::NoAnswer,
            });
        }
        self.not_before.retain(|_, until| *until > now);
        let not_before = &self.not_before;
        self.held_back_from_ms
            .retain(|peer, _| not_before.contains_key(peer));
        actions.extend(self.advance(now));
        actions
    }

    /// The source has sent all it has: what it proved must beat ours and reach its claim.
    fn source_done(&mut self, now: Instant) -> Vec<Action<P>> {
        let Some(following) = self.following.as_mut() else {
            return Vec::new();
        };
        following.done = true;
        let peer = following.source;
        let delivered = following
            .ancestry
            .as_ref()
            .map_or(Work::ZERO, HeaderAncestry::total_work);
        let mut actions = Vec::new();
        // A claim our chain has meanwhile caught up with was no lie, nor one whose rest
        // is ahead of our clock.
        if following.claimed > self.ours.work && delivered < following.claimed && !following.early {
            actions.push(Action::Penalise {
                peer,
                why: Misbehaviour::ClaimNotDelivered,
            });
            if let Some(claim) = self.claims.get_mut(&peer) {
                claim.total_work = delivered;
            }
        }
        if delivered <= self.ours.work {
            // Nothing to download: headers that do not beat ours are forgotten.
            self.stop_following();
        }
        actions.extend(self.advance(now));
        actions
    }

    /// Stops following `peer` after it misbehaved: its claim and what it sent go.
    fn give_up(&mut self, peer: P, why: Misbehaviour, now: Instant) -> Vec<Action<P>> {
        self.drop_claim(peer);
        self.stop_following();
        let mut actions = vec![Action::Penalise { peer, why }];
        actions.extend(self.advance(now));
        actions
    }

    fn drop_claim(&mut self, peer: P) {
        self.claims.remove(&peer);
    }

    /// Forgets the header chain followed, and bodies not yet handed to the importer.
    fn stop_following(&mut self) {
        self.following = None;
        self.download = Download::default();
        self.best_proved = None;
    }

    /// Checked headers whose chain beats ours go to the body download.
    fn queue_pending(&mut self) {
        if let Some(following) = self.following.as_mut() {
            if !following.pending.is_empty() {
                let pending = std::mem::take(&mut following.pending);
                self.download.add_headers(&pending, following.pending_from);
            }
        }
    }

    fn note_proved(&mut self, ancestry: &HeaderAncestry) {
        let proved = (ancestry.total_work(), ancestry.height());
        if proved.0 > self.ours.work && self.best_proved.is_none_or(|best| proved.0 > best.0) {
            self.best_proved = Some(proved);
        }
    }

    fn note_imported(&mut self, received: u64, now: Instant) {
        let target = self.progress().best_known_height;
        self.progress
            .imported(received, self.ours.height.0, target, now);
    }

    /// Whatever can be done next: start following the best claim, ask for more headers,
    /// hand finished chunks to the importer, ask idle peers for bodies, end a download.
    fn advance(&mut self, now: Instant) -> Vec<Action<P>> {
        let mut actions = Vec::new();
        if self
            .best_proved
            .is_some_and(|(work, _)| work <= self.ours.work)
        {
            self.best_proved = None;
        }
        if self.following.is_none() && self.download.is_idle() && self.importing == 0 {
            self.start_following(now, &mut actions);
        }
        if let Some(following) = self.following.as_mut() {
            let waiting = self
                .not_before
                .get(&following.source)
                .is_some_and(|until| *until > now);
            if !following.done
                && following.asked.is_none()
                && !following.checking
                && !waiting
                && self.download.queued() < WINDOW_CHUNKS
            {
                let mut locator: Vec<BlockHash> = following
                    .ancestry
                    .iter()
                    .map(HeaderAncestry::hash)
                    .collect();
                locator.extend_from_slice(&self.ours.locator);
                following.asked = Some(now);
                actions.push(Action::AskHeaders {
                    peer: following.source,
                    locator,
                });
            }
        }
        for (peer, blocks) in self.download.ready() {
            self.importing += 1;
            actions.push(Action::Import { peer, blocks });
        }
        let source = self.following.as_ref().map(|f| {
            let proved = f
                .ancestry
                .as_ref()
                .map_or(Height(0), HeaderAncestry::height);
            (f.source, proved)
        });
        let peers: Vec<(P, Height)> = self
            .claims
            .iter()
            .map(|(peer, status)| match source {
                // The source has at least the headers it sent, whatever its status said.
                Some((source, proved)) if source == *peer => (*peer, status.height.max(proved)),
                _ => (*peer, status.height),
            })
            .collect();
        for (peer, chunk) in self.download.assign(&peers, self.importing, now) {
            actions.push(Action::AskBodies {
                peer,
                hashes: chunk.hashes,
            });
        }
        // The current download's suppliers, or the last one's once it is over.
        if !self.download.suppliers.is_empty() {
            self.progress.shown.download_peers = self.download.suppliers.len();
        }
        let finished = self.following.as_ref().is_some_and(|f| f.done)
            && self.download.is_idle()
            && self.importing == 0;
        if finished {
            self.following = None;
            self.download = Download::default();
            self.start_following(now, &mut actions);
        }
        actions
    }

    /// Begins following the peer with the most claimed work beyond ours, if any.
    fn start_following(&mut self, now: Instant, actions: &mut Vec<Action<P>>) {
        let ours = self.ours.work;
        let best = self
            .claims
            .iter()
            .filter(|(peer, status)| {
                status.total_work > ours
                    && self.not_before.get(*peer).is_none_or(|until| *until <= now)
            })
            .max_by_key(|(_, status)| status.total_work)
            .map(|(peer, status)| (*peer, status.total_work));
        let Some((source, claimed)) = best else {
            return;
        };
        self.following = Some(Following {
            source,
            claimed,
            ancestry: None,
            pending: Vec::new(),
            pending_from: Height(0),
            asked: Some(now),
            checking: false,
            done: false,
            restarted: false,
            early: false,
        });
        actions.push(Action::AskHeaders {
            peer: source,
            locator: self.ours.locator.clone(),
        });
    }
}

#[cfg(test)]
mod tests;
