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
        let account = client.ask::<api::AccountGet>(&api::AccountParams {
            address: address.clone(),
        })?;
        let balance = account.balance.0;
        let pending = account.pending.spend();
        self.print(json!(account), || {
            let mut text = format!("{address}\nbalance: {balance} coins");
            if pending > Amount::ZERO {
                text.push_str(&format!(
                    "\npending: {pending} coins leaving in {} transaction(s)",
                    account.pending.count
                ));
            }
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
        let page = client.ask::<api::AccountHistory>(&params)?;
        self.print(json!(page), || {
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
        let status = self
            .client_for(&keystore)?
            .ask::<api::TxGet>(&api::TxGetParams { txid, raw: false })?;
        self.print(json!(status), || describe_tx(&status));
        Ok(())
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
