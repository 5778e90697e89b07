//! `apiary-wallet watch`: an address's transactions as they happen — pending, confirmed
//! (deeper each block), dropped — from a node's address subscription, or by polling its
//! history where no node offers WebSocket.

use crate::Wallet;
use anyhow::Result;
use apiary_core::Amount;
use apiary_wallet::client::{amount_of, Client};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// How often the polling fallback reads the history.
const POLL_EVERY: Duration = Duration::from_secs(2);

impl Wallet {
    pub(crate) fn watch(
        &self,
        address: Option<String>,
        confirmations: u64,
        count: Option<usize>,
        poll: bool,
    ) -> Result<()> {
        let keystore = self.keystore()?;
        let address = self.address_or_default(&keystore, address)?;
        let client = self.client_for(&keystore)?;
        let params =
            json!({"topic": "address", "address": address, "confirmations": confirmations});
        let mut shown = 0usize;
        let mut show = |event: &Value| -> bool {
            self.print(event.clone(), || describe(event, &address));
            shown += 1;
            count.is_some_and(|n| shown >= n)
        };
        if !poll {
            if let Ok(mut subscription) = client.subscribe(params.clone()) {
                if !self.options.json {
                    eprintln!(
                        "watching {address} through {} (Ctrl-C stops)",
                        subscription.url
                    );
                }
                loop {
                    match subscription.next(Duration::from_secs(30)) {
                        Ok(Some(event)) => {
                            if show(&event) {
                                return Ok(());
                            }
                        }
                        Ok(None) => {}
                        // That node went away: another, or the same once it is back.
                        Err(why) => {
                            eprintln!("{why}; reconnecting");
                            loop {
                                std::thread::sleep(Duration::from_secs(1));
                                if let Ok(again) = client.subscribe(params.clone()) {
                                    subscription = again;
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            if !self.options.json {
                eprintln!(
                    "no node offers subscriptions; polling every {} s",
                    POLL_EVERY.as_secs()
                );
            }
        }
        poll_history(&client, &address, confirmations, &mut show)
    }
}

/// The fallback: reads the first page of history every few seconds and reports what
/// changed, in the subscription's words.
fn poll_history(
    client: &Client,
    address: &str,
    confirmations: u64,
    show: &mut dyn FnMut(&Value) -> bool,
) -> Result<()> {
    // txid → what was last reported: "pending", or the confirmations.
    let mut known: HashMap<String, Value> = HashMap::new();
    let mut first = true;
    loop {
        let page = client.call("account_history", json!({"address": address, "limit": 50}))?;
        let entries = page["pending"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(page["txs"].as_array().into_iter().flatten())
            .filter(|e| e["kind"] == "transfer");
        for entry in entries {
            let Some(txid) = entry["txid"].as_str() else {
                continue;
            };
            let state = match entry["confirmations"].as_u64() {
                Some(n) if entry["status"] == "confirmed" => json!(n.min(confirmations)),
                _ => json!("pending"),
            };
            let before = known.insert(txid.to_string(), state.clone());
            // What was already confirmed when watching began is history, not news; what
            // is still pending is in flight and shown.
            if (first && state != "pending") || before.as_ref() == Some(&state) {
                continue;
            }
            let mut event = json!({
                "txid": txid,
                "from": entry["from"],
                "to": entry["to"],
                "amount": entry["amount"],
                "fee": entry["fee"],
            });
            if state == "pending" {
                event["event"] = json!("pending");
            } else {
                event["event"] = json!("confirmed");
                event["height"] = entry["height"].clone();
                event["block_hash"] = entry["block_hash"].clone();
                event["confirmations"] = state;
            }
            if show(&event) {
                return Ok(());
            }
        }
        first = false;
        std::thread::sleep(POLL_EVERY);
    }
}

fn describe(event: &Value, address: &str) -> String {
    let amount = amount_of(&event["amount"]).unwrap_or(Amount::ZERO);
    let sign = if event["from"] == address && event["to"] != address {
        "-"
    } else {
        "+"
    };
    let txid = event["txid"].as_str().unwrap_or("");
    match event["event"].as_str().unwrap_or("") {
        "confirmed" => format!(
            "confirmed ({}) {sign}{amount} coins  {txid}  height {}",
            event["confirmations"], event["height"]
        ),
        "dropped" => format!(
            "dropped   {txid}: {}",
            event["reason"].as_str().unwrap_or("")
        ),
        other => format!("{other:<13} {sign}{amount} coins  {txid}"),
    }
}
