//! What a client that trusts no node asks for: the chain spec (to check against the
//! genesis hash it knows), main-chain headers to check from genesis, accounts with a proof
//! against a header's state root, and transactions with their Merkle path to a header's
//! tx root (docs/protocol.md says how to verify each).

use super::methods::{chain_error, parse_address};
use super::{RpcContext, RpcError, INTERNAL_ERROR, NOT_FOUND};
use crate::protocol::MAX_HEADERS_PER_RESPONSE;
use apiary_api as api;
use apiary_api::Units;
use apiary_core::hash::merkle_path;
use apiary_core::state::proof::prove;
use apiary_core::Height;

/// A proof is made without the chain's lock; a block connected meanwhile can leave it
/// matching no header, and it is made again, at most this many times.
const PROOF_ATTEMPTS: usize = 8;

pub(super) fn account_proof(
    context: &RpcContext,
    params: api::AccountProofParams,
) -> Result<api::AccountProofResult, RpcError> {
    let address = parse_address(context, &params.address)?;
    let node = &context.node;
    for _ in 0..PROOF_ATTEMPTS {
        let tip = node.published_tip();
        if let Some(height) = params.height.filter(|h| *h != tip.height.0) {
            return Err(RpcError::new(
                NOT_FOUND,
                format!(
                    "the state of height {height} is not kept, only the tip's (height {}): ask without height",
                    tip.height.0
                ),
            ));
        }
        let proof = prove(&**node.ledger(), &address)
            .map_err(|e| chain_error(context, crate::chain::ChainError::from(e)))?;
        let Some(header) = node.lock().chain.entry(&tip.hash).map(|e| e.header.clone()) else {
            continue;
        };
        // Checked here, so an answer always verifies against the header it names.
        let Ok(account) = proof.verify(&header.state_root, &address) else {
            continue;
        };
        return Ok(api::AccountProofResult {
            address: params.address,
            height: tip.height,
            block_hash: tip.hash,
            state_root: header.state_root.to_string(),
            account: account.map(|a| api::ProvedAccount {
                balance: Units(a.balance),
                nonce: a.nonce,
            }),
            proof: hex::encode(
                borsh::to_vec(&proof)
                    .map_err(|e| RpcError::new(INTERNAL_ERROR, format!("internal error: {e}")))?,
            ),
        });
    }
    Err(RpcError::new(
        INTERNAL_ERROR,
        "the tip moved under every attempt at a proof: try again",
    ))
}

pub(super) fn headers_get(
    context: &RpcContext,
    params: api::HeadersGetParams,
) -> Result<api::HeadersGetResult, RpcError> {
    if params.count == 0 || params.count > MAX_HEADERS_PER_RESPONSE {
        return Err(RpcError::invalid_params(format!(
            "count must be 1 to {MAX_HEADERS_PER_RESPONSE}"
        )));
    }
    let guard = context.node.lock();
    let chain = &guard.chain;
    let tip = chain.height();
    if params.from > tip.0 {
        return Err(RpcError::new(
            NOT_FOUND,
            format!("no block at height {}; the tip is at {tip}", params.from),
        ));
    }
    let last = tip.0.min(params.from + u64::from(params.count) - 1);
    let mut headers = Vec::with_capacity((last - params.from + 1) as usize);
    for height in params.from..=last {
        let header = chain
            .main_hash(Height(height))
            .and_then(|hash| chain.entry(&hash))
            .map(|entry| entry.header.encode())
            .ok_or_else(|| {
                RpcError::new(
                    INTERNAL_ERROR,
                    format!("internal error: no header at {height}"),
                )
            })?;
        headers.push(hex::encode(header));
    }
    Ok(api::HeadersGetResult {
        from: Height(params.from),
        headers,
        tip_height: tip,
    })
}

pub(super) fn tx_proof(
    context: &RpcContext,
    params: api::TxProofParams,
) -> Result<api::TxProofResult, RpcError> {
    let internal = |what: &str| RpcError::new(INTERNAL_ERROR, format!("internal error: {what}"));
    let guard = context.node.lock();
    let chain = &guard.chain;
    let Some(location) = chain
        .tx_location(&params.txid)
        .map_err(|e| chain_error(context, e))?
    else {
        return Err(RpcError::new(
            NOT_FOUND,
            format!(
                "transaction {} is not in a block of the main chain (pending, unknown or dropped: tx_get says which)",
                params.txid
            ),
        ));
    };
    let height = chain
        .entry(&location.block)
        .ok_or_else(|| internal("indexed block is not known"))?
        .header
        .height;
    let block = chain
        .body(&location.block)
        .map_err(|e| chain_error(context, e))?;
    drop(guard);
    let index = location.index as usize;
    let stx = block
        .txs
        .get(index)
        .ok_or_else(|| internal("indexed tx is not in its block"))?;
    let txids: Vec<apiary_core::Hash256> = block.txs.iter().map(|t| t.txid().0).collect();
    let path = merkle_path(&txids, index).ok_or_else(|| internal("no path to the tx"))?;
    Ok(api::TxProofResult {
        txid: params.txid,
        height,
        block_hash: location.block,
        index: location.index,
        tx_count: block.txs.len() as u32,
        path: path.iter().map(|h| h.to_string()).collect(),
        tx: hex::encode(stx.encode()),
    })
}

pub(super) fn chain_spec(
    context: &RpcContext,
    _: api::NoParams,
) -> Result<api::ChainSpecResult, RpcError> {
    let spec = context.node.spec();
    Ok(api::ChainSpecResult {
        genesis_hash: context.node.genesis_hash(),
        spec: hex::encode(
            borsh::to_vec(spec)
                .map_err(|e| RpcError::new(INTERNAL_ERROR, format!("internal error: {e}")))?,
        ),
    })
}
