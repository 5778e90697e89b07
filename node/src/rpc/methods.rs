//! What each RPC method does. Parameters are named and checked by serde, so a misspelt or
//! missing one is an "invalid params" error that names it.

use super::{
    RpcContext, RpcError, INTERNAL_ERROR, MINING_FAILED, NOT_FOUND, STORAGE_DAMAGED, STORAGE_FULL,
    TX_REJECTED,
};
use crate::chain::Chain;
use crate::miner::{block_tx_budget, mine_block, MineError};
use crate::node::SubmitError;
use crate::store::{AddressTx, IndexEntry};
use apiary_api as api;
use apiary_api::Units;
use apiary_core::encoding::decode_exact;
use apiary_core::tx::MAX_TX_BYTES;
use apiary_core::{Address, Amount, Block, BlockHash, Height, SignedTransaction, TxId};
use serde::de::DeserializeOwned;

use serde_json::Value;

/// `dev_mine` mines at most this many blocks per call.
const MAX_DEV_MINE_BLOCKS: u32 = 10_000;

/// Named params into `T`; a wrong one is named in the error ("blocks: invalid type…").
pub(super) fn parse<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            RpcError::invalid_params(e.into_inner())
        } else {
            RpcError::invalid_params(format!("{path}: {}", e.into_inner()))
        }
    })
}

/// A chain or store error while answering: damage stops the node (its health says why),
/// and the caller is told so rather than given a bare internal error.
pub(super) fn chain_error(context: &RpcContext, error: crate::chain::ChainError) -> RpcError {
    let error = context.node.note_error(error);
    match &error {
        crate::chain::ChainError::Store(store) if store.is_damage() => {
            RpcError::new(STORAGE_DAMAGED, format!("the node is stopping: {error}"))
        }
        _ => internal(error),
    }
}

fn internal(error: impl std::fmt::Display) -> RpcError {
    RpcError::new(INTERNAL_ERROR, format!("internal error: {error}"))
}

pub(super) use apiary_api::NoParams;

/// A typed answer as JSON.
pub(super) fn answer<T: serde::Serialize>(result: Result<T, RpcError>) -> Result<Value, RpcError> {
    result.and_then(|value| serde_json::to_value(value).map_err(internal))
}

pub(super) fn parse_address(context: &RpcContext, text: &str) -> Result<Address, RpcError> {
    Address::parse(text, &context.node.spec().address_prefix).map_err(RpcError::invalid_params)
}

pub(super) fn node_info(
    context: &RpcContext,
    _: NoParams,
) -> Result<api::NodeInfoResult, RpcError> {
    let spec = context.node.spec();
    let height = context.node.published_tip().height;
    let network = context.network.as_ref();
    Ok(api::NodeInfoResult {
        version: env!("CARGO_PKG_VERSION").to_string(),
        chain_id: spec.chain_id.to_string(),
        genesis_hash: context.node.genesis_hash(),
        address_prefix: spec.address_prefix.as_str().to_string(),
        target_block_time_ms: spec.consensus.target_block_time_ms,
        peer_id: network.map(|n| n.peer_id.to_string()),
        syncing: network.is_some_and(|n| n.is_syncing()),
        sync: network.map(|n| n.sync_progress()),
        clock_warning: network.and_then(|n| n.clock_warning()),
        height,
        storage_full: context.node.health().storage_full(),
    })
}

pub(super) fn chain_tip(
    context: &RpcContext,
    _: NoParams,
) -> Result<api::ChainTipResult, RpcError> {
    // The published tip: never waits for a block being connected.
    let tip = context.node.published_tip();
    Ok(api::ChainTipResult {
        height: tip.height,
        hash: tip.hash,
        total_work: tip.work.to_string(),
        timestamp_ms: tip.timestamp_ms,
    })
}

pub(super) fn block_get(
    context: &RpcContext,
    params: api::BlockGetParams,
) -> Result<api::BlockAnswer, RpcError> {
    let guard = context.node.lock();
    let chain = &guard.chain;
    let hash = match (params.height, params.hash) {
        (Some(height), None) => chain.main_hash(Height(height)).ok_or_else(|| {
            RpcError::new(
                NOT_FOUND,
                format!(
                    "no block at height {height}; the tip is at {}",
                    chain.height()
                ),
            )
        })?,
        (None, Some(hash)) => hash,
        _ => {
            return Err(RpcError::invalid_params(
                "give exactly one of \"height\" or \"hash\"",
            ))
        }
    };
    let entry = chain
        .entry(&hash)
        .ok_or_else(|| RpcError::new(NOT_FOUND, format!("block {hash} is not known")))?;
    let block = chain.body(&hash).map_err(|e| chain_error(context, e))?;
    if params.raw {
        return Ok(api::BlockAnswer::Raw {
            hash,
            hex: hex::encode(block.encode()),
        });
    }
    Ok(api::BlockAnswer::Fields(Box::new(block_info(
        chain, &hash, entry, &block,
    ))))
}

fn block_info(
    chain: &Chain,
    hash: &BlockHash,
    entry: &IndexEntry,
    block: &Block,
) -> api::BlockInfo {
    let prefix = &chain.spec().address_prefix;
    let header = &block.header;
    let main = chain.is_main(hash);
    let confirmations = if main {
        chain.height().0 - header.height.0 + 1
    } else {
        0
    };
    api::BlockInfo {
        hash: *hash,
        height: header.height,
        version: header.version,
        prev_hash: header.prev_hash,
        tx_root: header.tx_root.to_string(),
        state_root: header.state_root.to_string(),
        miner: header.miner.to_text(prefix),
        timestamp_ms: header.timestamp_ms,
        bits: format!("{:08x}", header.bits.0),
        nonce: header.nonce,
        total_work: entry.total_work.to_string(),
        status: format!("{:?}", entry.status).to_lowercase(),
        main_chain: main,
        confirmations,
        size: block.encode().len(),
        txs: block.txs.iter().map(|stx| tx_info(chain, stx)).collect(),
    }
}

pub(super) fn tx_info(chain: &Chain, stx: &SignedTransaction) -> api::TxInfo {
    let prefix = &chain.spec().address_prefix;
    let tx = &stx.tx;
    api::TxInfo {
        txid: stx.txid(),
        from: tx.from.to_text(prefix),
        to: tx.to.to_text(prefix),
        amount: Units(tx.amount),
        fee: Units(tx.fee),
        nonce: tx.nonce,
        chain_id: tx.chain_id.to_string(),
        signature: hex::encode(stx.signature),
    }
}

/// A transfer in an account's history, confirmed or pending.
fn transfer_entry(
    chain: &Chain,
    stx: &SignedTransaction,
    status: api::EntryStatus,
) -> api::HistoryEntry {
    let tx = tx_info(chain, stx);
    api::HistoryEntry {
        kind: api::EntryKind::Transfer,
        txid: Some(tx.txid),
        from: Some(tx.from),
        to: tx.to,
        amount: tx.amount,
        fee: tx.fee,
        nonce: Some(tx.nonce),
        chain_id: Some(tx.chain_id),
        signature: Some(tx.signature),
        status,
        height: None,
        block_hash: None,
        confirmations: None,
    }
}

pub(super) fn account_get(
    context: &RpcContext,
    params: api::AccountParams,
) -> Result<api::AccountInfo, RpcError> {
    let address = parse_address(context, &params.address)?;
    // The state is read without the node's lock; the lock only for the mempool's part.
    let account = context
        .node
        .ledger()
        .account_at(&address)
        .map_err(|e| chain_error(context, e.into()))?;
    let guard = context.node.lock();
    let pending = guard.mempool.pending_from(&address);
    // The nonce a new transaction takes: after the run of pending ones from the account's.
    let ready = guard.mempool.run_from(&address, account.nonce).count();
    let next_nonce = account.nonce.saturating_add(ready as u64);
    let spend: u128 = pending
        .iter()
        .map(|stx| u128::from(stx.tx.amount.base_units()) + u128::from(stx.tx.fee.base_units()))
        .sum();
    Ok(api::AccountInfo {
        address: params.address,
        balance: Units(account.balance),
        nonce: account.nonce,
        pending: api::PendingSpend {
            count: pending.len(),
            next_nonce,
            spend: spend.to_string(),
        },
    })
}

/// Most index entries `account_totals` adds up (the chain is held meanwhile: ~10 ms).
pub const MAX_TOTALED: u64 = 20_000;

pub(super) fn account_totals(
    context: &RpcContext,
    params: api::AccountParams,
) -> Result<api::AccountTotalsResult, RpcError> {
    let address = parse_address(context, &params.address)?;
    let guard = context.node.lock();
    let totals = match guard.chain.address_totals(&address, MAX_TOTALED) {
        Ok(totals) => totals,
        Err(crate::chain::ChainError::Store(crate::store::StoreError::TooMany(max))) => {
            return Err(RpcError::new(
                super::TOO_MUCH_WORK,
                format!(
                    "{} has over {max} transactions and rewards: too many to add up in one \
                     call; page through account_history instead",
                    params.address
                ),
            ))
        }
        Err(error) => return Err(chain_error(context, error)),
    };
    let balance = guard
        .chain
        .account(&address)
        .map_err(|e| chain_error(context, e))?
        .balance;
    let spec = guard.chain.spec();
    let allocated = spec
        .allocations
        .iter()
        .filter(|(to, _)| *to == address)
        .try_fold(Amount::ZERO, |sum, (_, coins)| sum.checked_add(*coins))
        .ok_or_else(|| internal("allocations overflow"))?;
    Ok(api::AccountTotalsResult {
        address: address.to_text(&spec.address_prefix),
        allocated: Units(allocated),
        received: Units(totals.received),
        sent: Units(totals.sent),
        entries: totals.entries,
        balance: Units(balance),
    })
}

/// Most history entries one call returns.
const MAX_HISTORY_PAGE: usize = 500;

pub(super) fn account_history(
    context: &RpcContext,
    params: api::AccountHistoryParams,
) -> Result<api::AccountHistoryResult, RpcError> {
    let address = parse_address(context, &params.address)?;
    let limit = params.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_HISTORY_PAGE {
        return Err(RpcError::invalid_params(format!(
            "limit must be between 1 and {MAX_HISTORY_PAGE}"
        )));
    }
    let before = params
        .cursor
        .as_deref()
        .map(|text| {
            let parsed = text
                .split_once(':')
                .and_then(|(h, i)| Some((h.parse().ok()?, i.parse().ok()?)));
            let (height, index) = parsed.ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "cursor {text:?} is not a next_cursor this node gave (HEIGHT:INDEX)"
                ))
            })?;
            Ok(AddressTx {
                address,
                height: Height(height),
                index,
            })
        })
        .transpose()?;
    let guard = context.node.lock();
    let chain = &guard.chain;
    let page = chain
        .address_txs(&address, before, limit)
        .map_err(|e| chain_error(context, e))?;
    let mut txs = Vec::with_capacity(page.len());
    let mut block: Option<(BlockHash, Block)> = None;
    for (entry, value) in &page {
        let hash = chain
            .main_hash(entry.height)
            .ok_or_else(|| internal("indexed height is above the tip"))?;
        let mut found = if entry.is_reward() {
            // New coins plus the fees of the block's transactions, as the index holds.
            api::HistoryEntry {
                kind: api::EntryKind::Reward,
                txid: None,
                from: None,
                to: address.to_text(&chain.spec().address_prefix),
                amount: Units(value.received),
                fee: Units(Amount::ZERO),
                nonce: None,
                chain_id: None,
                signature: None,
                status: api::EntryStatus::Confirmed,
                height: None,
                block_hash: None,
                confirmations: None,
            }
        } else {
            if block.as_ref().is_none_or(|(h, _)| *h != hash) {
                block = Some((
                    hash,
                    chain.body(&hash).map_err(|e| chain_error(context, e))?,
                ));
            }
            let (_, body) = block.as_ref().expect("just read");
            let stx = body
                .txs
                .get(entry.index as usize)
                .ok_or_else(|| internal("indexed tx is not in its block"))?;
            let mut found = transfer_entry(chain, stx, api::EntryStatus::Confirmed);
            found.txid = Some(TxId(value.id));
            found
        };
        found.height = Some(entry.height);
        found.block_hash = Some(hash);
        found.confirmations = Some(chain.height().0 - entry.height.0 + 1);
        txs.push(found);
    }
    let next_cursor = (page.len() == limit)
        .then(|| {
            page.last()
                .map(|(e, _)| format!("{}:{}", e.height.0, e.index))
        })
        .flatten();
    // Pending ones come with the first page only.
    let pending = if before.is_none() {
        guard
            .mempool
            .involving(&address)
            .into_iter()
            .map(|stx| transfer_entry(chain, stx, api::EntryStatus::Pending))
            .collect()
    } else {
        Vec::new()
    };
    Ok(api::AccountHistoryResult {
        address: params.address,
        txs,
        next_cursor,
        pending,
    })
}

pub(super) fn fee_estimate(
    context: &RpcContext,
    _: NoParams,
) -> Result<api::FeeEstimateResult, RpcError> {
    let guard = context.node.lock();
    let spec = guard.chain.spec();
    let fee = guard
        .mempool
        .fee_for_next_block(spec.consensus.max_block_txs as usize, block_tx_budget(spec));
    Ok(api::FeeEstimateResult {
        fee: Units(fee),
        min_fee: Units(guard.mempool.min_fee()),
        pending: guard.mempool.len(),
    })
}

pub(super) fn tx_submit(
    context: &RpcContext,
    params: api::TxSubmitParams,
) -> Result<api::TxSubmitResult, RpcError> {
    let bytes = hex::decode(params.tx.trim())
        .map_err(|e| RpcError::invalid_params(format!("tx is not hex: {e}")))?;
    let stx: SignedTransaction =
        decode_exact("transaction", &bytes, MAX_TX_BYTES).map_err(RpcError::invalid_params)?;
    let txid = context.node.submit_tx(stx).map_err(|e| match e {
        SubmitError::StorageFull(why) => RpcError::new(STORAGE_FULL, why),
        e @ SubmitError::NotLogged(_) => internal(e),
        SubmitError::Rejected(e) => {
            RpcError::new(TX_REJECTED, format!("transaction rejected: {e}"))
        }
    })?;
    Ok(api::TxSubmitResult { txid })
}

pub(super) fn tx_get(
    context: &RpcContext,
    params: api::TxGetParams,
) -> Result<api::TxGetResult, RpcError> {
    let guard = context.node.lock();
    let chain = &guard.chain;
    if let Some(location) = chain
        .tx_location(&params.txid)
        .map_err(|e| chain_error(context, e))?
    {
        let entry = chain
            .entry(&location.block)
            .ok_or_else(|| internal("indexed block is not known"))?;
        let height = entry.header.height;
        let block = chain
            .body(&location.block)
            .map_err(|e| chain_error(context, e))?;
        let stx = block
            .txs
            .get(location.index as usize)
            .ok_or_else(|| internal("indexed tx is not in its block"))?;
        return Ok(api::TxGetResult {
            txid: params.txid,
            status: api::TxStatus::Confirmed,
            height: Some(height),
            block_hash: Some(location.block),
            confirmations: chain.height().0 - height.0 + 1,
            tx: Some(tx_info(chain, stx)),
            hex: params.raw.then(|| hex::encode(stx.encode())),
        });
    }
    if let Some(stx) = guard.mempool.get(&params.txid) {
        return Ok(api::TxGetResult {
            txid: params.txid,
            status: api::TxStatus::Pending,
            height: None,
            block_hash: None,
            confirmations: 0,
            tx: Some(tx_info(chain, stx)),
            hex: params.raw.then(|| hex::encode(stx.encode())),
        });
    }
    Ok(api::TxGetResult {
        txid: params.txid,
        status: api::TxStatus::Unknown,
        height: None,
        block_hash: None,
        confirmations: 0,
        tx: None,
        hex: None,
    })
}

pub(super) fn mempool_info(
    context: &RpcContext,
    _: NoParams,
) -> Result<api::MempoolInfoResult, RpcError> {
    let guard = context.node.lock();
    Ok(api::MempoolInfoResult {
        count: guard.mempool.len(),
        bytes: guard.mempool.bytes(),
        min_fee: Units(guard.mempool.min_fee()),
    })
}

/// Most transactions `mempool_txs` lists.
const MAX_MEMPOOL_LIST: usize = 500;

pub(super) fn mempool_txs(
    context: &RpcContext,
    params: api::MempoolTxsParams,
) -> Result<api::MempoolTxsResult, RpcError> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=MAX_MEMPOOL_LIST).contains(&limit) {
        return Err(RpcError::invalid_params(format!(
            "limit: 1 to {MAX_MEMPOOL_LIST}"
        )));
    }
    let guard = context.node.lock();
    let mut entries: Vec<_> = guard.mempool.entries().collect();
    entries.sort_by_key(|(_, added)| std::cmp::Reverse(*added));
    let now = std::time::Instant::now();
    let txs = entries
        .into_iter()
        .take(limit)
        .map(|(stx, added)| api::MempoolTx {
            tx: tx_info(&guard.chain, stx),
            age_ms: now.saturating_duration_since(added).as_millis() as u64,
        })
        .collect();
    Ok(api::MempoolTxsResult {
        count: guard.mempool.len(),
        txs,
    })
}

pub(super) fn block_arrivals(
    context: &RpcContext,
    _: NoParams,
) -> Result<Vec<api::Arrival>, RpcError> {
    Ok(context.node.events().arrivals())
}

pub(super) fn net_peers(context: &RpcContext, _: NoParams) -> Result<Vec<api::PeerInfo>, RpcError> {
    Ok(context
        .network
        .as_ref()
        .map(|n| n.peers())
        .unwrap_or_default())
}

fn network(context: &RpcContext) -> Result<&crate::p2p::NetworkHandle, RpcError> {
    context
        .network
        .as_ref()
        .ok_or_else(|| internal("the network is not running"))
}

pub(super) fn net_connect(
    context: &RpcContext,
    params: api::NetConnectParams,
) -> Result<api::NetConnectResult, RpcError> {
    let addr: libp2p::Multiaddr = params
        .addr
        .parse()
        .map_err(|e| RpcError::invalid_params(format!("addr: {e}")))?;
    crate::p2p::check_dialable(&addr)
        .map_err(|e| RpcError::invalid_params(format!("addr: {e}")))?;
    network(context)?.command(crate::p2p::NetCommand::Connect(addr));
    Ok(api::NetConnectResult {
        dialing: params.addr,
    })
}

pub(super) fn net_disconnect(
    context: &RpcContext,
    params: api::NetDisconnectParams,
) -> Result<api::NetDisconnectResult, RpcError> {
    let peer: libp2p::PeerId = params
        .peer_id
        .parse()
        .map_err(|e| RpcError::invalid_params(format!("peer_id: {e}")))?;
    let ban = std::time::Duration::from_secs(params.ban_seconds);
    if ban > crate::p2p::MAX_BAN {
        return Err(RpcError::invalid_params(format!(
            "ban_seconds: {} is more than the longest ban, {} (a year)",
            params.ban_seconds,
            crate::p2p::MAX_BAN.as_secs()
        )));
    }
    network(context)?.command(crate::p2p::NetCommand::Disconnect { peer, ban });
    Ok(api::NetDisconnectResult {
        disconnected: params.peer_id,
        ban_seconds: params.ban_seconds,
    })
}

pub(super) fn dev_mine(
    context: &RpcContext,
    params: api::DevMineParams,
) -> Result<api::DevMineResult, RpcError> {
    if params.blocks == 0 || params.blocks > MAX_DEV_MINE_BLOCKS {
        return Err(RpcError::invalid_params(format!(
            "blocks must be 1 to {MAX_DEV_MINE_BLOCKS}"
        )));
    }
    let miner = match &params.address {
        Some(text) => parse_address(context, text)?,
        None => context
            .miner_address
            .or_else(|| context.node.spec().allocations.first().map(|(a, _)| *a))
            .ok_or_else(|| {
                RpcError::invalid_params("no address given, and the node has no --miner-address")
            })?,
    };
    let mut hashes = Vec::with_capacity(params.blocks as usize);
    for _ in 0..params.blocks {
        let hash = mine_block(&context.node, miner, context.mine_threads).map_err(|e| match e {
            MineError::StorageFull(why) => RpcError::new(STORAGE_FULL, why),
            e => RpcError::new(MINING_FAILED, format!("mining failed: {e}")),
        })?;
        hashes.push(hash);
    }
    Ok(api::DevMineResult { hashes })
}
