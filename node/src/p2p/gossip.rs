//! Gossip: what this node announces (every block it mines or takes, every transaction it
//! accepts, whatever a sync is doing), and how a gossiped object is judged — off the
//! network loop, before gossipsub may forward it.

use super::peers::{Flood, Misbehaviour};
use super::swarm::Behaviour;
use super::{Pending, Service, Verdict};
use crate::chain::{Accepted, ChainError, CheckedBlock};
use crate::mempool::MempoolError;
use crate::node::{Announcement, Gossiped, Node, SubmitError};
use crate::protocol::SyncRequest;
use apiary_core::encoding::decode_exact;
use apiary_core::tx::MAX_TX_BYTES;
use apiary_core::{Block, BlockError, BlockHash, CompactBlock, SignedTransaction};
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::{PeerId, Swarm};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A block with an unknown parent makes us ask its sender for its status at most this often.
const STATUS_REASK: Duration = Duration::from_secs(1);

/// A gossiped compact block whose whole form we asked its sender for.
pub(super) struct Fetch {
    pub message_id: gossipsub::MessageId,
    pub source: PeerId,
    pub hash: BlockHash,
}

/// A block this node announced, with its encoding while it may not be stored yet.
pub(super) struct Published {
    pub hash: BlockHash,
    pub encoded: Option<Vec<u8>>,
}

impl Published {
    /// Its bytes, if `asked` is this block alone and we still hold them.
    pub fn answer(&self, asked: &[BlockHash]) -> Option<Vec<Vec<u8>>> {
        match (asked, &self.encoded) {
            ([hash], Some(bytes)) if *hash == self.hash => Some(vec![bytes.clone()]),
            _ => None,
        }
    }
}

/// What validating a gossiped object came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Judgement {
    pub acceptance: MessageAcceptance,
    /// What it says of the sender, if anything.
    pub misbehaviour: Option<Misbehaviour>,
    /// A block the sender can place and we cannot: it knows a chain we should sync.
    pub unknown_parent: bool,
    /// The timestamp of a block new to us (our new tip, or one early by our clock): what
    /// the clock check counts. Blocks we hold or cannot place say nothing of the time.
    pub block_time_ms: Option<u64>,
    /// A transaction that cost its signature check and was of no use (stale, known or
    /// unpayable by then): what the useless-transactions allowance counts.
    pub wasted: bool,
}

impl Judgement {
    fn new(acceptance: MessageAcceptance, misbehaviour: Option<Misbehaviour>) -> Judgement {
        Judgement {
            acceptance,
            misbehaviour,
            unknown_parent: false,
            block_time_ms: None,
            wasted: false,
        }
    }

    fn wasted() -> Judgement {
        Judgement {
            wasted: true,
            ..Judgement::ignore()
        }
    }

    fn accept() -> Judgement {
        Judgement::new(MessageAcceptance::Accept, None)
    }

    fn ignore() -> Judgement {
        Judgement::new(MessageAcceptance::Ignore, None)
    }

    fn reject(why: Misbehaviour) -> Judgement {
        Judgement::new(MessageAcceptance::Reject, Some(why))
    }

    /// A block the sender can place and we cannot: not forwarded, not held against it.
    fn unknown_parent() -> Judgement {
        Judgement {
            unknown_parent: true,
            ..Judgement::ignore()
        }
    }

    fn at(mut self, block_time_ms: u64) -> Judgement {
        self.block_time_ms = Some(block_time_ms);
        self
    }
}

pub(super) enum Judged {
    Done(Judgement),
    /// A compact block naming transactions we do not hold: the whole block is needed.
    NeedsBody(BlockHash),
}

impl Service {
    /// Publishes what the node announces: every block it mines or takes and every
    /// transaction it accepts. Nothing waits on a sync under way.
    pub(super) fn publish(&mut self, swarm: &mut Swarm<Behaviour>, announcement: Announcement) {
        let (topic, id) = match &announcement {
            Announcement::Block { compact, .. } => (&self.block_topic, compact.hash().0),
            Announcement::Tx(txid, _) => (&self.tx_topic, txid.0),
        };
        // Gossipsub relays what came by gossip itself; a mined block is announced twice
        // (before and after it connects). Neither needs encoding again.
        let published_before = self.published.as_ref().is_some_and(|p| p.hash.0 == id);
        if self.from_gossip.contains(id.0.as_slice()) || published_before {
            return;
        }
        let topic = topic.clone();
        let bytes = match announcement {
            Announcement::Block { compact, encoded } => {
                self.published = Some(Published {
                    hash: BlockHash(id),
                    encoded,
                });
                compact.encode()
            }
            Announcement::Tx(_, stx) => stx.encode(),
        };
        match swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) | Err(gossipsub::PublishError::Duplicate) => {}
            Err(error) => tracing::debug!(%error, "nothing published"),
        }
    }

    pub(super) fn on_gossip(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        source: PeerId,
        message_id: gossipsub::MessageId,
        message: gossipsub::Message,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
        if self.from_gossip.len() > 100_000 {
            self.from_gossip.clear();
        }
        self.from_gossip.insert(message_id.0.clone());
        let is_block = message.topic == self.block_topic.hash();
        let now = Instant::now();
        if !is_block && !self.book.allow(source, Flood::Transactions, now) {
            // Not validated at all: a flood costs us a hash per message, not a signature.
            self.report(swarm, &message_id, source, MessageAcceptance::Ignore);
            self.penalise(swarm, source, Misbehaviour::Flood(Flood::Transactions));
            return;
        }
        let data = message.data;
        if !is_block {
            if self.gossiped_txs.len() >= MAX_TXS_WAITING {
                // Behind by this many already: let gossipsub forget it, blame nobody.
                self.report(swarm, &message_id, source, MessageAcceptance::Ignore);
                return;
            }
            self.gossiped_txs.push(GossipedTx {
                message_id,
                source,
                data,
            });
            self.check_gossiped_txs(verdicts);
            return;
        }
        let judge = move |node: &Node| judge_compact_block(node, &data);
        self.judge_off_runtime(message_id, source, is_block, verdicts, judge);
    }

    /// Checks the transactions gossiped so far, as one batch on the blocking pool, unless
    /// a batch is being checked: what arrives meanwhile waits for it and goes in the next.
    /// Under load batches grow (a signature costs a third as much in a batch, and the pool
    /// and the mempool's lock are taken once a batch); alone, a transaction waits for none.
    pub(super) fn check_gossiped_txs(&mut self, verdicts: &mpsc::UnboundedSender<Verdict>) {
        if self.checking_txs || self.gossiped_txs.is_empty() {
            return;
        }
        let take = self.gossiped_txs.len().min(MAX_TX_BATCH);
        let batch: Vec<GossipedTx> = self.gossiped_txs.drain(..take).collect();
        self.checking_txs = true;
        let node = self.node.clone();
        let reply = BatchReply(Some(verdicts.clone()));
        tokio::task::spawn_blocking(move || reply.send(judge_txs(&node, batch)));
    }

    /// The whole block a compact one left us to fetch, or its absence: either settles
    /// the gossip message it came from.
    pub(super) fn on_fetched_body(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        fetch: Fetch,
        body: Option<Vec<u8>>,
        verdicts: &mpsc::UnboundedSender<Verdict>,
    ) {
        let Fetch {
            message_id,
            source,
            hash,
        } = fetch;
        let Some(bytes) = body else {
            // It could not send it (yet): what it knows, a sync fetches.
            self.on_judged(swarm, message_id, source, Judgement::unknown_parent(), true);
            return;
        };
        let judge = move |node: &Node| Judged::Done(judge_fetched_block(node, bytes, hash));
        self.judge_off_runtime(message_id, source, true, verdicts, judge);
    }

    /// Runs `judge` on the blocking pool (it may check signatures and connect blocks) and
    /// hands its verdict on `message_id` back to the event loop.
    fn judge_off_runtime(
        &self,
        message_id: gossipsub::MessageId,
        source: PeerId,
        is_block: bool,
        verdicts: &mpsc::UnboundedSender<Verdict>,
        judge: impl FnOnce(&Node) -> Judged + Send + 'static,
    ) {
        let node = self.node.clone();
        let verdicts = verdicts.clone();
        tokio::task::spawn_blocking(move || {
            let _ = verdicts.send(match judge(&node) {
                Judged::Done(judgement) => Verdict::Gossip {
                    message_id,
                    source,
                    judgement,
                    is_block,
                },
                Judged::NeedsBody(hash) => Verdict::FetchBody(Fetch {
                    message_id,
                    source,
                    hash,
                }),
            });
        });
    }

    pub(super) fn fetch_body(&mut self, swarm: &mut Swarm<Behaviour>, fetch: Fetch) {
        let hashes = vec![fetch.hash];
        let source = fetch.source;
        self.request(
            swarm,
            source,
            SyncRequest::GetBodies { hashes },
            Pending::Fetch(fetch),
        );
    }

    /// Settles a gossip message: gossipsub forwards it or not, the sender pays for what it
    /// sent, and a block we cannot place makes us ask its sender where it stands.
    pub(super) fn on_judged(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        message_id: gossipsub::MessageId,
        source: PeerId,
        judgement: Judgement,
        is_block: bool,
    ) {
        let now = Instant::now();
        self.report(swarm, &message_id, source, judgement.acceptance);
        // A node catching up is not at the frontier: the blocks it takes may be old.
        if let Some(stamped) = judgement.block_time_ms.filter(|_| !self.sync.is_behind()) {
            self.clock
                .observe(source, stamped, crate::time::now_ms(), now);
            self.handle.set_clock_warning(self.clock.warning(now));
        }
        if let Some(why) = judgement.misbehaviour {
            self.penalise(swarm, source, why);
        }
        if !is_block
            && judgement.wasted
            && !self.book.allow(source, Flood::UselessTransactions, now)
        {
            self.penalise(
                swarm,
                source,
                Misbehaviour::Flood(Flood::UselessTransactions),
            );
        }
        if judgement.unknown_parent && self.sync.source() != Some(source) {
            // The sender knows blocks we lack: ask where it stands, then sync. A burst of
            // such blocks (a peer mining fast) asks once, not once per block.
            let recently = self
                .asked_status
                .get(&source)
                .is_some_and(|at| now.duration_since(*at) < STATUS_REASK);
            if !recently {
                self.asked_status.insert(source, now);
                self.ask_status(swarm, source);
            }
        }
    }

    fn report(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        message_id: &gossipsub::MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
    ) {
        swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(message_id, &source, acceptance);
    }
}

/// Validates a gossiped compact block, rebuilding it from the mempool. Its proof of work
/// is checked first, so only a block that cost real work can make us fetch anything.
pub(super) fn judge_compact_block(node: &Node, bytes: &[u8]) -> Judged {
    let max = CompactBlock::max_encoded_bytes(node.spec().consensus.max_block_txs as usize);
    let compact = match decode_exact::<CompactBlock>("compact block", bytes, max) {
        Ok(compact) => compact,
        Err(_) => return Judged::Done(Judgement::reject(Misbehaviour::Undecodable)),
    };
    if let Err(error) = apiary_core::validate::check_header_pow(&compact.header, node.spec()) {
        crate::metrics::metrics().block_rejected(error.reason());
        return Judged::Done(Judgement::reject(Misbehaviour::InvalidBlock(error)));
    }
    let hash = compact.hash();
    let txs: Vec<Option<SignedTransaction>> = {
        let guard = node.lock();
        // A block we already hold needs no second look.
        if guard.chain.entry(&hash).is_some() {
            return Judged::Done(Judgement::ignore());
        }
        if guard.chain.entry(&compact.header.prev_hash).is_none() {
            return Judged::Done(Judgement::unknown_parent());
        }
        compact
            .txids
            .iter()
            .map(|txid| guard.mempool.get(txid).cloned())
            .collect()
    };
    let missing = txs.iter().filter(|tx| tx.is_none()).count();
    if missing > 0 {
        tracing::debug!(
            %hash,
            missing,
            of = txs.len(),
            "block names transactions not in our mempool; fetching it whole"
        );
        return Judged::NeedsBody(hash);
    }
    let block = Block {
        header: compact.header,
        txs: txs.into_iter().flatten().collect(),
    };
    let bytes = block.encode();
    Judged::Done(judge_checked(
        node,
        node.check_rebuilt_block(block, compact.txids, bytes),
    ))
}

/// Validates the whole block fetched for a compact one whose hash is `expected`.
pub(super) fn judge_fetched_block(node: &Node, bytes: Vec<u8>, expected: BlockHash) -> Judgement {
    let max = node.spec().consensus.max_block_bytes as usize;
    match decode_exact::<Block>("block", &bytes, max) {
        Ok(block) if block.hash() == expected => {
            judge_checked(node, node.check_block(block, bytes))
        }
        // Not what it announced: as bad as an undecodable message.
        Ok(_) => Judgement::reject(Misbehaviour::Unrequested),
        Err(_) => Judgement::reject(Misbehaviour::Undecodable),
    }
}

/// Takes a block that came by gossip, once its stateless checks came to `checked`.
fn judge_checked(node: &Node, checked: Result<CheckedBlock, ChainError>) -> Judgement {
    let timestamp_ms = checked
        .as_ref()
        .map(|c| c.block().header.timestamp_ms)
        .map_err(|_| ());
    match checked.and_then(|checked| node.accept_block(checked)) {
        Ok(Accepted::NewTip(_)) => match timestamp_ms {
            Ok(timestamp_ms) => {
                crate::metrics::metrics().block_propagated(timestamp_ms.0);
                Judgement::accept().at(timestamp_ms.0)
            }
            Err(()) => Judgement::accept(),
        },
        Ok(Accepted::SideBranch) => Judgement::accept(),
        Ok(Accepted::Duplicate) => Judgement::ignore(),
        Err(ChainError::UnknownParent { .. }) => Judgement::unknown_parent(),
        // Early, not wrong: not forwarded, not held against the sender; it comes again
        // (or by sync) once its time has come.
        Err(ChainError::Invalid {
            error: BlockError::TimestampTooFarAhead { timestamp_ms, .. },
            ..
        }) => Judgement::ignore().at(timestamp_ms.0),
        // Our trouble, not the sender's (a full disk pauses writing; damage stops the node).
        Err(ChainError::StorageFull(_)) => Judgement::ignore(),
        Err(error @ ChainError::Store(_)) | Err(error @ ChainError::Inconsistent(_)) => {
            // Node::accept_block has reported it to the node's health already.
            tracing::error!(%error, "could not take a gossiped block");
            Judgement::ignore()
        }
        Err(ChainError::ReorgTooDeep { .. }) => Judgement::ignore(),
        Err(error) => match Misbehaviour::of_chain_error(&error) {
            Some(why) => Judgement::reject(why),
            None => Judgement::ignore(),
        },
    }
}

/// The most gossiped transactions checked in one batch (the mempool's lock is held while
/// a batch is added: bounded, so a block waits for at most this many).
const MAX_TX_BATCH: usize = 1_024;
/// The most gossiped transactions waiting for a batch (each peer's rate is bounded too, but
/// not the number of peers times a slow batch): past it, new ones are ignored unjudged.
const MAX_TXS_WAITING: usize = 16 * MAX_TX_BATCH;

/// Where a batch's verdicts go. If the batch's work ends without them (a panic), an empty
/// answer still goes, so the next batch is checked: the messages of that one are left to
/// gossipsub's validation timeout, the node goes on.
struct BatchReply(Option<mpsc::UnboundedSender<Verdict>>);

impl BatchReply {
    fn send(mut self, judged: Vec<(gossipsub::MessageId, PeerId, Judgement)>) {
        if let Some(verdicts) = self.0.take() {
            let _ = verdicts.send(Verdict::TxsJudged(judged));
        }
    }
}

impl Drop for BatchReply {
    fn drop(&mut self) {
        if let Some(verdicts) = self.0.take() {
            let _ = verdicts.send(Verdict::TxsJudged(Vec::new()));
        }
    }
}

/// A transaction message waiting to be judged.
pub(super) struct GossipedTx {
    message_id: gossipsub::MessageId,
    source: PeerId,
    data: Vec<u8>,
}

/// Validates a batch of gossiped transactions: one judgement per message.
fn judge_txs(
    node: &Node,
    batch: Vec<GossipedTx>,
) -> Vec<(gossipsub::MessageId, PeerId, Judgement)> {
    let judgements = judge_tx_batch(node, batch.iter().map(|g| g.data.as_slice()));
    batch
        .into_iter()
        .zip(judgements)
        .map(|(gossiped, judgement)| (gossiped.message_id, gossiped.source, judgement))
        .collect()
}

/// Validates gossiped transactions' bytes, in one batch: one judgement each, in order.
pub(super) fn judge_tx_batch<'a>(
    node: &Node,
    messages: impl Iterator<Item = &'a [u8]>,
) -> Vec<Judgement> {
    let mut txs = Vec::new();
    // Which messages decoded (their transactions are in `txs`, in order), without a copy.
    let decoded: Vec<bool> = messages
        .map(
            |bytes| match decode_exact("transaction", bytes, MAX_TX_BYTES) {
                Ok(stx) => {
                    txs.push(stx);
                    true
                }
                Err(_) => false,
            },
        )
        .collect();
    let mut verdicts = node.take_gossiped_txs(txs).into_iter();
    decoded
        .into_iter()
        .map(|decoded| {
            if !decoded {
                return Judgement::reject(Misbehaviour::Undecodable);
            }
            match verdicts.next() {
                Some(Gossiped::Checked(submitted)) => judge_submitted(submitted),
                // Refused before its signature was checked: it cost a lookup, and may be
                // an honest race (a block took it while it travelled).
                Some(Gossiped::Skipped(_)) | None => Judgement::ignore(),
            }
        })
        .collect()
}

/// What the node's verdict on a transaction from a peer says of that peer.
pub(super) fn judge_submitted(submitted: Result<apiary_core::TxId, SubmitError>) -> Judgement {
    match submitted {
        Ok(_) => Judgement::accept(),
        Err(SubmitError::Rejected(MempoolError::Invalid(error))) => {
            let why = Misbehaviour::InvalidTx(error);
            if why.score() > 0 {
                Judgement::reject(why)
            } else {
                Judgement::wasted()
            }
        }
        // Stale, duplicate, or not payable against our tip: may be honest; do not forward.
        Err(_) => Judgement::wasted(),
    }
}
