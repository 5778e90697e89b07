//! Reading through a node: balances, history, and what a node knows of a transaction,
//! with amounts shown in coins.

use crate::Wallet;
use anyhow::{anyhow, Result};
use apiary_core::{Amount, TxId};
use apiary_wallet::client::amount_of;
use serde_json::{json, Value};

impl Wallet {
    pub(crate) fn balance(&self, address: Option<String>) -> Result<()> {
        let keystore = self.keystore()?;
        let address = self.address_or_default(&keystore, address)?;
        let client = self.client_for(&keystore)?;
        self.resend_lost(&client, &keystore)?;
        let account = client.call("account_get", json!({"address": address}))?;
        let balance = amount_of(&account["balance"]).unwrap_or(Amount::ZERO);
        let pending = amount_of(&account["pending"]["spend"]).unwrap_or(Amount::ZERO);
        self.print(account.clone(), || {
            let mut text = format!("{address}\nbalance: {balance} coins");
            if pending > Amount::ZERO {
                text.push_str(&format!(
                    "\npending: {pending} coins leaving in {} transaction(s)",
                    account["pending"]["count"]
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
        let mut params = json!({"address": address, "limit": limit});
        if let Some(cursor) = cursor {
            params["cursor"] = json!(cursor);
        }
        let client = self.client_for(&keystore)?;
        self.resend_lost(&client, &keystore)?;
        let page = client.call("account_history", params)?;
        self.print(page.clone(), || {
            let mut lines = vec![format!(
                "{:<10} {:<6} {:>20}  {:<18} counterparty",
                "height", "", "amount", "txid"
            )];
            let rows = page["pending"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(page["txs"].as_array().into_iter().flatten());
            for tx in rows {
                let outgoing = tx["from"] == address.as_str();
                let incoming = tx["to"] == address.as_str();
                let mined = json!("(block reward and fees)");
                let (direction, counterparty) = match (outgoing, incoming) {
                    _ if tx["kind"] == "reward" => ("mined", &mined),
                    (true, true) => ("self", &tx["to"]),
                    (true, false) => ("out", &tx["to"]),
                    _ => ("in", &tx["from"]),
                };
                let amount = amount_of(&tx["amount"]).unwrap_or(Amount::ZERO);
                let height = match tx["height"].as_u64() {
                    Some(h) => h.to_string(),
                    None => "pending".into(),
                };
                let sign = if direction == "out" { "-" } else { "+" };
                lines.push(format!(
                    "{height:<10} {direction:<6} {:>20}  {:<18} {}",
                    format!("{sign}{amount}"),
                    format!(
                        "{}…",
                        &tx["txid"].as_str().unwrap_or("")
                            [..16.min(tx["txid"].as_str().unwrap_or("").len())]
                    ),
                    counterparty.as_str().unwrap_or("")
                ));
            }
            if lines.len() == 1 {
                return format!("{address}: no transactions yet");
            }
            if let Some(next) = page["next_cursor"].as_str() {
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
            .call("tx_get", json!({"txid": txid}))?;
        self.print(status.clone(), || describe_tx(&status));
        Ok(())
    }
}

/// `tx_get`'s answer for people: where the transaction is, and its amounts in coins.
fn describe_tx(status: &Value) -> String {
    let txid = status["txid"].as_str().unwrap_or("");
    let mut lines = vec![match status["status"].as_str() {
        Some("confirmed") => format!(
            "{txid}: confirmed in block {} at height {} ({} confirmations)",
            status["block_hash"].as_str().unwrap_or(""),
            status["height"],
            status["confirmations"]
        ),
        Some("pending") => format!("{txid}: pending in the mempool"),
        _ => format!("{txid}: unknown to the node (never seen, or dropped)"),
    }];
    let tx = &status["tx"];
    if tx.is_object() {
        let coins = |v: &Value| amount_of(v).unwrap_or(Amount::ZERO).to_string();
        lines.push(format!("from:   {}", tx["from"].as_str().unwrap_or("")));
        lines.push(format!("to:     {}", tx["to"].as_str().unwrap_or("")));
        lines.push(format!("amount: {} coins", coins(&tx["amount"])));
        lines.push(format!("fee:    {} coins", coins(&tx["fee"])));
        lines.push(format!("nonce:  {}", tx["nonce"]));
    }
    lines.join("\n")
}
