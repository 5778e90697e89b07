//! Mining by machines outside the node: `mining_template` (with long polling) and
//! `mining_submit`, as bitcoind's getblocktemplate/submitblock and CKB's
//! get_block_template/submit_block.

use super::methods::{chain_error, parse_address};
use super::{RpcContext, RpcError};
use crate::miner::templates::{SubmitError, Submitted, Template};
use crate::node::Node;
use apiary_api::{self as api, NonceParam, SubmitParams, SubmitStatus, TemplateParams, Units};
use apiary_core::block::HEADER_BYTES;
use apiary_core::encoding::decode_exact;
use apiary_core::{Amount, Block};
use std::time::{Duration, Instant};

/// Where the nonce (8 bytes, little-endian) sits in the 160-byte header.
pub const NONCE_OFFSET: usize = HEADER_BYTES - 8;
/// Where the timestamp (8 bytes, little-endian, ms) sits in the header.
pub const TIMESTAMP_OFFSET: usize = NONCE_OFFSET - 12;
/// A long poll answers within this even if nothing changed (under the 30 s a client
/// waits for a reply).
pub const LONGPOLL_MAX: Duration = Duration::from_secs(25);
/// A long poll also answers once a fresh template would pay this much more in fees.
const LONGPOLL_FEE_GAIN_PERCENT: u128 = 10;

/// What a long poll waits on: the tip it was built on and its fees.
fn longpoll_id(template: &Template) -> String {
    format!(
        "{}:{}",
        template.block.header.prev_hash,
        template.fees.base_units()
    )
}

pub(super) fn template_json(node: &Node, template: &Template, with_txs: bool) -> api::Template {
    let header = &template.block.header;
    let reward = node.spec().block_reward(header.height);
    let target = header
        .bits
        .to_target()
        .map(|t| t.to_hex())
        .unwrap_or_default();
    api::Template {
        id: format!("{:016x}", template.id),
        height: header.height,
        prev_hash: header.prev_hash,
        bits: format!("{:08x}", header.bits.0),
        target,
        timestamp_ms: header.timestamp_ms,
        header: hex::encode(borsh::to_vec(header).expect("a header encodes")),
        nonce_offset: NONCE_OFFSET,
        timestamp_offset: TIMESTAMP_OFFSET,
        reward: Units(reward.checked_add(template.fees).unwrap_or(reward)),
        fees: Units(template.fees),
        tx_count: template.block.txs.len(),
        longpoll_id: longpoll_id(template),
        txs: with_txs.then(|| {
            template
                .block
                .txs
                .iter()
                .map(|tx| hex::encode(tx.encode()))
                .collect()
        }),
    }
}

pub(super) fn mining_template(
    context: &RpcContext,
    params: TemplateParams,
) -> Result<api::Template, RpcError> {
    let miner = parse_address(context, &params.address)?;
    let node = &context.node;
    let with_txs = params.txs.unwrap_or(false);
    let template = context
        .templates
        .build(node, miner)
        .map_err(|e| chain_error(context, e))?;
    let Some(waiting_on) = params.longpoll_id else {
        return Ok(template_json(node, &template, with_txs));
    };
    if longpoll_id(&template) != waiting_on {
        return Ok(template_json(node, &template, with_txs));
    }
    let old_fees = template.fees.base_units() as u128;
    let mut tip = node.tip_watch();
    let started = Instant::now();
    // Runs on a blocking thread of the runtime: wait there for the tip to change.
    let runtime = tokio::runtime::Handle::try_current().ok();
    loop {
        let left = LONGPOLL_MAX.saturating_sub(started.elapsed());
        if left.is_zero() || node.is_shutting_down() {
            break;
        }
        let slice = left.min(Duration::from_secs(1));
        let tip_moved = match &runtime {
            Some(runtime) => runtime
                .block_on(tokio::time::timeout(slice, tip.changed()))
                .is_ok(),
            None => {
                std::thread::sleep(slice);
                tip.has_changed().unwrap_or(true)
            }
        };
        if tip_moved {
            break;
        }
        let fees = context
            .templates
            .fees_now(node, miner)
            .map_err(|e| chain_error(context, e))?;
        let gained = (fees.base_units() as u128)
            > old_fees + old_fees * LONGPOLL_FEE_GAIN_PERCENT / 100
            && fees > Amount::ZERO;
        if gained {
            break;
        }
    }
    let template = context
        .templates
        .build(node, miner)
        .map_err(|e| chain_error(context, e))?;
    Ok(template_json(node, &template, with_txs))
}

pub(super) fn mining_submit(
    context: &RpcContext,
    params: SubmitParams,
) -> Result<api::SubmitResult, RpcError> {
    let node = &context.node;
    let outcome = match (params.id, params.nonce, params.block) {
        (Some(id), Some(nonce), None) => {
            let id = u64::from_str_radix(&id, 16)
                .map_err(|_| RpcError::invalid_params("id: the template's id (16 hex digits)"))?;
            let nonce = match nonce {
                NonceParam::Number(n) => n,
                NonceParam::Text(text) => text.parse().map_err(|_| {
                    RpcError::invalid_params("nonce: a whole number from 0 to 2^64-1")
                })?,
            };
            context
                .templates
                .submit(node, id, nonce, params.timestamp_ms)
        }
        (None, None, Some(hex)) => {
            if params.timestamp_ms.is_some() {
                return Err(RpcError::invalid_params(
                    "timestamp_ms goes with id and nonce, not with a whole block",
                ));
            }
            let bytes = hex::decode(&hex)
                .map_err(|e| RpcError::invalid_params(format!("block: not hex: {e}")))?;
            let max = node.spec().consensus.max_block_bytes as usize;
            let block: Block = decode_exact("block", &bytes, max)
                .map_err(|e| RpcError::invalid_params(format!("block: {e}")))?;
            let hash = block.hash();
            node.submit_mined_block(block)
                .map(|accepted| match accepted {
                    crate::chain::Accepted::NewTip(_) => Submitted::Accepted(hash),
                    _ => Submitted::Stale(hash),
                })
                .map_err(SubmitError::from)
        }
        _ => {
            return Err(RpcError::invalid_params(
                "give id and nonce (and timestamp_ms, if rolled), or block",
            ))
        }
    };
    Ok(match outcome {
        Ok(Submitted::Accepted(hash)) => api::SubmitResult {
            status: SubmitStatus::Accepted,
            hash: Some(hash),
            reason: None,
            reason_code: None,
        },
        Ok(Submitted::Stale(hash)) => api::SubmitResult {
            status: SubmitStatus::Stale,
            hash: Some(hash),
            reason: Some(
                "valid, but another block took this height first; mine on the new tip".into(),
            ),
            reason_code: None,
        },
        Err(error) => {
            let code = match &error {
                SubmitError::UnknownTemplate(_) => "unknown_template",
                SubmitError::TooEarly { .. } => "timestamp_too_early",
                SubmitError::InsufficientWork(_) => "insufficient_work",
                SubmitError::Refused(chain) => chain.reason(),
            };
            api::SubmitResult {
                status: SubmitStatus::Refused,
                hash: None,
                reason: Some(error.to_string()),
                reason_code: Some(code.to_string()),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_core::{Address, BlockHeader, Hash256, Height};

    #[test]
    fn the_offsets_name_the_nonce_and_the_timestamp() {
        let header = BlockHeader {
            version: 1,
            height: Height(7),
            prev_hash: apiary_core::BlockHash(Hash256([1; 32])),
            tx_root: Hash256([2; 32]),
            state_root: Hash256([3; 32]),
            miner: Address([4; 32]),
            timestamp_ms: apiary_core::TimestampMs(0x0102_0304_0506_0708),
            bits: apiary_core::pow::CompactTarget(0x1f00_ffff),
            nonce: 0x1112_1314_1516_1718,
        };
        let bytes = borsh::to_vec(&header).unwrap();
        assert_eq!(bytes.len(), HEADER_BYTES);
        assert_eq!(
            bytes[NONCE_OFFSET..NONCE_OFFSET + 8],
            header.nonce.to_le_bytes()
        );
        assert_eq!(
            bytes[TIMESTAMP_OFFSET..TIMESTAMP_OFFSET + 8],
            header.timestamp_ms.0.to_le_bytes()
        );
    }
}
