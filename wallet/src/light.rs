//! Believing no node: the balances, nonces and confirmed payments the wallet shows are
//! proved against its own header chain (`headers`). Each node is asked in turn; one whose
//! answer fails a check is named, skipped, and never believed for the rest of the command.

use crate::client::{Client, ClientError, Endpoint};
use crate::headers::{HeaderChain, HeaderSource, SyncError};
use apiary_api as api;
use apiary_core::hash::merkle_root_from_path;
use apiary_core::state::AccountProof;
use apiary_core::{
    decode_exact, Account, Address, BlockHash, BlockHeader, ChainSpec, Hash256, Height,
    SignedTransaction, TxId,
};
use std::path::PathBuf;

/// Why one node's answer is not used.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// It fails a proof or a rule: the node lies (or serves a chain it cannot prove).
    #[error("not believed: {0}")]
    Lie(String),
    /// It cannot be used now (down, behind, refusing): the next node is asked.
    #[error("{0}")]
    Unusable(String),
    /// The wallet's own files: no node can help.
    #[error("{0}")]
    Local(String),
}

impl From<ClientError> for Fault {
    fn from(error: ClientError) -> Fault {
        match error {
            ClientError::Unreadable { .. } => Fault::Lie(error.to_string()),
            other => Fault::Unusable(other.to_string()),
        }
    }
}

impl From<SyncError> for Fault {
    fn from(error: SyncError) -> Fault {
        match error {
            SyncError::Refused(crate::headers::HeadersRefused::Invalid(why)) => Fault::Lie(why),
            SyncError::Refused(other) => Fault::Unusable(other.to_string()),
            SyncError::Unanswered(why) => Fault::Unusable(why),
            SyncError::Disk(e) => Fault::Local(e.to_string()),
        }
    }
}

/// One node, asked through its own endpoint.
pub struct Node {
    pub url: String,
    pub client: Client,
}

impl HeaderSource for Node {
    fn tip(&self) -> Result<(Height, BlockHash), String> {
        let tip = self
            .client
            .ask::<api::ChainTip>(&api::NoParams {})
            .map_err(|e| e.to_string())?;
        Ok((tip.height, tip.hash))
    }

    fn headers(&self, from: u64, count: u32) -> Result<Vec<BlockHeader>, String> {
        let answer = self
            .client
            .ask::<api::HeadersGet>(&api::HeadersGetParams { from, count })
            .map_err(|e| e.to_string())?;
        if answer.headers.len() > count as usize {
            return Err(format!(
                "{} headers for {count} asked",
                answer.headers.len()
            ));
        }
        answer
            .headers
            .iter()
            .map(|text| {
                hex::decode(text)
                    .ok()
                    .and_then(|bytes| {
                        decode_exact::<BlockHeader>(
                            "header",
                            &bytes,
                            apiary_core::block::HEADER_BYTES,
                        )
                        .ok()
                    })
                    .ok_or_else(|| "a header that does not decode".to_string())
            })
            .collect()
    }
}

/// An account as proved against a header of the wallet's chain.
#[derive(Clone, Debug)]
pub struct ProvedAccount {
    pub account: Account,
    pub height: Height,
    pub block_hash: BlockHash,
}

/// A transaction proved to be in a block of the wallet's chain.
#[derive(Clone, Debug)]
pub struct ProvedTx {
    pub tx: SignedTransaction,
    pub height: Height,
    pub block_hash: BlockHash,
    pub confirmations: u64,
}

/// A node's hex of borsh bytes, as `what`; what does not decode is a lie.
fn from_hex<T: borsh::BorshDeserialize>(
    what: &'static str,
    text: &str,
    max: usize,
) -> Result<T, Fault> {
    hex::decode(text)
        .ok()
        .and_then(|bytes| decode_exact(what, &bytes, max).ok())
        .ok_or_else(|| Fault::Lie(format!("a {what} that does not decode")))
}

/// A proof of one account: at most 256 siblings and the account it ends at.
const MAX_PROOF_BYTES: usize = 4 + 256 * 32 + 1 + 32 + 16;
/// A signed transaction: far more than its fields and the longest chain id take.
const MAX_TX_BYTES: usize = 1_024;

/// A node may answer for a state this many blocks below the headers the wallet holds (it
/// heard of the newest block a moment later); older is a stale answer.
pub const MAX_LAG: u64 = 2;

/// Asks nodes and checks their answers.
pub struct Light {
    dir: PathBuf,
    endpoints: Vec<Endpoint>,
    chain_id: String,
    chain: Option<HeaderChain>,
    /// Nodes whose answer failed a check: not asked again.
    distrusted: Vec<String>,
}

impl Light {
    /// A verifier keeping its headers in `<wallet_dir>/headers`, for the chain `chain_id`.
    pub fn new(wallet_dir: PathBuf, endpoints: Vec<Endpoint>, chain_id: String) -> Light {
        Light {
            dir: wallet_dir.join("headers"),
            endpoints,
            chain_id,
            chain: None,
            distrusted: Vec::new(),
        }
    }

    /// Runs `ask` with each node in turn, its headers taken first, until one answer passes
    /// every check. A node that lies is named on stderr.
    pub fn ask<T>(
        &mut self,
        what: &str,
        mut ask: impl FnMut(&Node, &mut HeaderChain) -> Result<T, Fault>,
    ) -> anyhow::Result<T> {
        let mut failures = Vec::new();
        for endpoint in self.endpoints.clone() {
            if self.distrusted.contains(&endpoint.url) {
                continue;
            }
            let node = Node {
                url: endpoint.url.clone(),
                client: Client::new(vec![endpoint]),
            };
            let outcome = self
                .chain_with(&node)
                .and_then(|chain| {
                    chain.sync(&node)?;
                    Ok(chain)
                })
                .and_then(|chain| ask(&node, chain));
            match outcome {
                Ok(answer) => return Ok(answer),
                Err(Fault::Local(why)) => anyhow::bail!(why),
                Err(Fault::Lie(why)) => {
                    eprintln!("apiary-wallet: {}: not believed: {why}", node.url);
                    self.distrusted.push(node.url.clone());
                    failures.push(format!("{}: not believed: {why}", node.url));
                }
                Err(Fault::Unusable(why)) => failures.push(format!("{}: {why}", node.url)),
            }
        }
        anyhow::bail!(
            "no node gave {what} that proves against this wallet's headers: {} \
             (--trust-node takes a node's word instead)",
            failures.join("; ")
        )
    }

    /// The header chain, opened with the pinned spec, or with the node's the first time
    /// (checked against the genesis hash the node names and the wallet's chain id).
    fn chain_with(&mut self, node: &Node) -> Result<&mut HeaderChain, Fault> {
        let local = |e: std::io::Error| Fault::Local(e.to_string());
        let info = node.client.ask::<api::NodeInfo>(&api::NoParams {})?;
        if self.chain.is_none() {
            let spec = match HeaderChain::pinned_spec(&self.dir).map_err(local)? {
                Some(spec) => spec,
                None => {
                    let answer = node.client.ask::<api::ChainSpecGet>(&api::NoParams {})?;
                    let spec: ChainSpec =
                        from_hex("chain spec", &answer.spec, crate::headers::MAX_SPEC_BYTES)?;
                    if spec.genesis_hash() != answer.genesis_hash {
                        return Err(Fault::Lie(format!(
                            "its chain spec hashes to genesis {}, not the {} it names",
                            spec.genesis_hash(),
                            answer.genesis_hash
                        )));
                    }
                    if spec.chain_id.as_str() != self.chain_id {
                        return Err(Fault::Unusable(format!(
                            "it runs chain {:?}, this wallet is for {:?}",
                            spec.chain_id.as_str(),
                            self.chain_id
                        )));
                    }
                    spec
                }
            };
            self.chain = Some(HeaderChain::open(&self.dir, spec).map_err(local)?);
        }
        let chain = self.chain.as_mut().expect("opened above");
        let genesis = chain.hash_at(Height(0)).expect("genesis is always held");
        if info.genesis_hash != genesis {
            return Err(Fault::Unusable(format!(
                "it follows the chain of genesis {}, this wallet's headers that of {genesis}",
                info.genesis_hash
            )));
        }
        Ok(chain)
    }
}

/// The header at `height` of the wallet's chain: kept whole, or asked of the node and
/// checked against the hash the wallet holds.
pub fn header_at(node: &Node, chain: &HeaderChain, height: Height) -> Result<BlockHeader, Fault> {
    let expected = chain.hash_at(height).ok_or_else(|| {
        Fault::Unusable(format!(
            "height {height} is past this wallet's headers (tip {})",
            chain.tip()
        ))
    })?;
    if let Some(header) = chain.recent_header(height) {
        return Ok(header.clone());
    }
    let header = node
        .headers(height.0, 1)
        .map_err(Fault::Unusable)?
        .into_iter()
        .next()
        .ok_or_else(|| Fault::Unusable(format!("no header at {height}")))?;
    if header.hash() != expected {
        return Err(Fault::Lie(format!(
            "its header at height {height} is not the one this wallet checked"
        )));
    }
    Ok(header)
}

/// The node's block at `height` must be the wallet's: a block the wallet's chain does not
/// hold proves nothing.
fn on_our_chain(chain: &HeaderChain, height: Height, hash: &BlockHash) -> Result<(), Fault> {
    match chain.hash_at(height) {
        Some(ours) if ours == *hash => Ok(()),
        Some(ours) => Err(Fault::Lie(format!(
            "it answers from block {hash} at height {height}, where this wallet's chain has {ours}"
        ))),
        None => Err(Fault::Lie(format!(
            "it answers from height {height}, past the headers it serves (tip {})",
            chain.tip()
        ))),
    }
}

/// `address`'s account at the node's tip, proved against the state root of the wallet's
/// header there.
pub fn proved_account(
    node: &Node,
    chain: &mut HeaderChain,
    address: &Address,
    text: &str,
) -> Result<ProvedAccount, Fault> {
    let answer = node
        .client
        .ask::<api::AccountProof>(&api::AccountProofParams {
            address: text.to_string(),
            height: None,
        })?;
    if answer.height > chain.tip() {
        // A block came between the headers and the proof.
        chain.sync(node)?;
    }
    if chain.tip().0.saturating_sub(answer.height.0) > MAX_LAG {
        return Err(Fault::Lie(format!(
            "it answers with the state of height {}, but this wallet's headers reach {} (a stale tip)",
            answer.height,
            chain.tip()
        )));
    }
    on_our_chain(chain, answer.height, &answer.block_hash)?;
    let header = header_at(node, chain, answer.height)?;
    let proof: AccountProof = from_hex("account proof", &answer.proof, MAX_PROOF_BYTES)?;
    let proved = proof
        .verify(&header.state_root, address)
        .map_err(|e| Fault::Lie(format!("its proof of {text} fails: {e}")))?
        .unwrap_or_default();
    let claimed = answer.account.map_or(Account::default(), |a| Account {
        balance: a.balance.0,
        nonce: a.nonce,
    });
    if claimed != proved {
        return Err(Fault::Lie(format!(
            "it says {text} holds {} (nonce {}), its own proof says {} (nonce {})",
            claimed.balance, claimed.nonce.0, proved.balance, proved.nonce.0
        )));
    }
    Ok(ProvedAccount {
        account: proved,
        height: answer.height,
        block_hash: answer.block_hash,
    })
}

/// Where `txid` is confirmed, proved by its Merkle path to a header of the wallet's chain;
/// None where the node says it is in no block (pending, unknown: not provable either way).
pub fn proved_tx(
    node: &Node,
    chain: &mut HeaderChain,
    txid: &TxId,
) -> Result<Option<ProvedTx>, Fault> {
    let answer = match node
        .client
        .ask::<api::TxProof>(&api::TxProofParams { txid: *txid })
    {
        Ok(answer) => answer,
        Err(ClientError::Rpc { code, .. }) if code == api::codes::NOT_FOUND => return Ok(None),
        Err(other) => return Err(other.into()),
    };
    if answer.height > chain.tip() {
        chain.sync(node)?;
    }
    on_our_chain(chain, answer.height, &answer.block_hash)?;
    let header = header_at(node, chain, answer.height)?;
    let tx: SignedTransaction = from_hex("transaction", &answer.tx, MAX_TX_BYTES)?;
    if tx.txid() != *txid {
        return Err(Fault::Lie(format!(
            "it gives another transaction for {txid}"
        )));
    }
    let path: Vec<Hash256> = answer
        .path
        .iter()
        .map(|h| h.parse())
        .collect::<Result<_, _>>()
        .map_err(|_| Fault::Lie("a Merkle path that does not decode".into()))?;
    let root = merkle_root_from_path(
        txid.0,
        u64::from(answer.index),
        u64::from(answer.tx_count),
        &path,
    );
    if root != Some(header.tx_root) {
        return Err(Fault::Lie(format!(
            "its Merkle path does not put {txid} in block {} at height {}",
            answer.block_hash, answer.height
        )));
    }
    Ok(Some(ProvedTx {
        tx,
        height: answer.height,
        block_hash: answer.block_hash,
        confirmations: chain.tip().0 - answer.height.0 + 1,
    }))
}
