//! Reading through a node: balances, history, and what a node knows of a transaction,
//! with amounts shown in coins.

use crate::Wallet;
use anyhow::{anyhow, Result};
use apiary_api as api;
use apiary_core::{Amount, TxId};
use serde_json::json;

impl Wallet {
    pub(crate) fn balance(&self, address: Option<String>) -> Result<()> {
        let keystore = self.keystore()?;
        let address = self.address_or_default(&keystore, address)?;
        let client = self.client_for(&keystore)?;
        self.resend_lost(&client, &keystore)?;
        let state = self.account_state(&keystore, &client, &address)?;
        let account = state.info;
        let balance = account.balance.0;
        let pending = account.pending.spend();
        let mut value = json!(account);
        value["proved"] = proved_at(state.proved.as_ref().map(|p| (p.height, p.block_hash)));
        self.print(value, || {
            let mut text = format!("{address}\nbalance: {balance} coins");
            if pending > Amount::ZERO {
                text.push_str(&format!(
                    "\npending: {pending} coins leaving in {} transaction(s)",
                    account.pending.count
                ));
            }
            text.push_str(&proved_line(state.proved.as_ref().map(|p| p.height)));
            text
        });
        Ok(())
    }

    pub(crate) fn history(
        &self,
        address: Option<String>,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<()> {
        let keystore = self.keystore()?;
        let address = self.address_or_default(&keystore, address)?;
        let params = api::AccountHistoryParams {
            address: address.clone(),
            limit: Some(limit),
            cursor,
        };
        let client = self.client_for(&keystore)?;
        self.resend_lost(&client, &keystore)?;
        let page = if self.options.trust_node {
            client.ask::<api::AccountHistory>(&params)?
        } else {
            self.proved_history(&keystore, &params)?
        };
        let mut value = json!(page);
        value["proved"] = json!(!self.options.trust_node);
        self.print(value, || {
            let mut lines = vec![format!(
                "{:<10} {:<6} {:>20}  {:<18} counterparty",
                "height", "", "amount", "txid"
            )];
            for tx in page.pending.iter().chain(&page.txs) {
                let outgoing = tx.from.as_deref() == Some(address.as_str());
                let incoming = tx.to == address;
                let (direction, counterparty) = match (outgoing, incoming) {
                    _ if tx.kind == api::EntryKind::Reward => ("mined", "(block reward and fees)"),
                    (true, true) => ("self", tx.to.as_str()),
                    (true, false) => ("out", tx.to.as_str()),
                    _ => ("in", tx.from.as_deref().unwrap_or("")),
                };
                let amount = tx.amount.0;
                let height = match tx.height {
                    Some(h) => h.0.to_string(),
                    None => "pending".into(),
                };
                let sign = if direction == "out" { "-" } else { "+" };
                let txid = tx.txid.map(|t| t.to_string()).unwrap_or_default();
                lines.push(format!(
                    "{height:<10} {direction:<6} {:>20}  {:<18} {counterparty}",
                    format!("{sign}{amount}"),
                    format!("{}…", &txid[..16.min(txid.len())]),
                ));
            }
            if lines.len() == 1 {
                return format!("{address}: no transactions yet");
            }
            if let Some(next) = &page.next_cursor {
                lines.push(format!("more: --cursor {next}"));
            }
            lines.join("\n")
        });
        Ok(())
    }

    pub(crate) fn tx(&self, txid: &str) -> Result<()> {
        let txid: TxId = txid
            .parse()
            .map_err(|e| anyhow!("{txid:?} is not a txid (64 hex digits): {e}"))?;
        let keystore = self.keystore()?;
        let mut status = self
            .client_for(&keystore)?
            .ask::<api::TxGet>(&api::TxGetParams { txid, raw: false })?;
        let mut proved = None;
        if !self.options.trust_node {
            let mut light = self.light(&keystore)?;
            match self.proved_tx(&mut light, &txid)? {
                Some(found) => {
                    status.status = api::TxStatus::Confirmed;
                    status.height = Some(found.height);
                    status.block_hash = Some(found.block_hash);
                    status.confirmations = found.confirmations;
                    proved = Some((found.height, found.block_hash));
                }
                // Not proved in a block: whatever a node says, it is not confirmed.
                None if status.status == api::TxStatus::Confirmed => {
                    anyhow::bail!(
                        "a node says {txid} is confirmed, but none proves it in a block of this \
                         wallet's chain"
                    )
                }
                None => {}
            }
        }
        let mut value = json!(status);
        value["proved"] = proved_at(proved);
        self.print(value, || {
            describe_tx(&status) + &proved_line(proved.map(|(height, _)| height))
        });
        Ok(())
    }
}

/// The `proved` field of an answer: where it was proved, or null on a node's word.
fn proved_at(at: Option<(apiary_core::Height, apiary_core::BlockHash)>) -> serde_json::Value {
    match at {
        Some((height, block_hash)) => json!({"height": height, "block_hash": block_hash}),
        None => serde_json::Value::Null,
    }
}

/// The line that says what a reader may believe of an answer.
fn proved_line(height: Option<apiary_core::Height>) -> String {
    match height {
        Some(height) => format!("\nproved against block {height} of this wallet's headers"),
        None => String::new(),
    }
}

/// `tx_get`'s answer for people: where the transaction is, and its amounts in coins.
fn describe_tx(status: &api::TxGetResult) -> String {
    let txid = status.txid;
    let mut lines = vec![match (status.status, status.height, status.block_hash) {
        (api::TxStatus::Confirmed, Some(height), Some(hash)) => format!(
            "{txid}: confirmed in block {hash} at height {height} ({} confirmations)",
            status.confirmations
        ),
        (api::TxStatus::Pending, ..) => format!("{txid}: pending in the mempool"),
        _ => format!("{txid}: unknown to the node (never seen, or dropped)"),
    }];
    if let Some(tx) = &status.tx {
        lines.push(format!("from:   {}", tx.from));
        lines.push(format!("to:     {}", tx.to));
        lines.push(format!("amount: {} coins", tx.amount.0));
        lines.push(format!("fee:    {} coins", tx.fee.0));
        lines.push(format!("nonce:  {}", tx.nonce));
    }
    lines.join("\n")
}
