//! What a client that trusts no node asks for: main-chain headers to check from genesis,
//! and accounts with a proof against a header's state root (docs/protocol.md says how to
//! verify both).

use super::methods::{chain_error, parse_address};
use super::{RpcContext, RpcError, INTERNAL_ERROR, NOT_FOUND};
use crate::protocol::MAX_HEADERS_PER_RESPONSE;
use apiary_api as api;
use apiary_api::Units;
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
