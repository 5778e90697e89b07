//! `apiary-wallet watch`: an address's transactions as they happen — pending, confirmed
//! (deeper each block), dropped — from a node's address subscription, or by polling its
//! history where no node offers WebSocket.

use crate::Wallet;
use anyhow::Result;
use apiary_api::{self as api, AddressEvent, AddressEventKind};
use apiary_core::TxId;
use apiary_wallet::client::Client;
use serde_json::json;
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
        let mut show = |event: &AddressEvent| -> bool {
            self.print(json!(event), || describe(event, &address));
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
                    match subscription.next_as::<AddressEvent>(Duration::from_secs(30)) {
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
    show: &mut dyn FnMut(&AddressEvent) -> bool,
) -> Result<()> {
    // txid → what was last reported: None while pending, or the confirmations.
    let mut known: HashMap<TxId, Option<u64>> = HashMap::new();
    let mut first = true;
    let params = api::AccountHistoryParams {
        address: address.to_string(),
        limit: Some(50),
        cursor: None,
    };
    loop {
        let page = client.ask::<api::AccountHistory>(&params)?;
        let entries = page
            .pending
            .iter()
            .chain(&page.txs)
            .filter(|e| e.kind == api::EntryKind::Transfer);
        for entry in entries {
            let Some(txid) = entry.txid else {
                continue;
            };
            let state = match entry.confirmations {
                Some(n) if entry.status == api::EntryStatus::Confirmed => {
                    Some(n.min(confirmations))
                }
                _ => None,
            };
            let before = known.insert(txid, state);
            // What was already confirmed when watching began is history, not news; what
            // is still pending is in flight and shown.
            if (first && state.is_some()) || before == Some(state) {
                continue;
            }
            let kind = match state {
                None => AddressEventKind::Pending,
                Some(_) => AddressEventKind::Confirmed,
            };
            let event = AddressEvent {
                from: entry.from.clone(),
                to: Some(entry.to.clone()),
                amount: Some(entry.amount),
                fee: Some(entry.fee),
                height: state.and(entry.height),
                block_hash: state.and(entry.block_hash),
                confirmations: state,
                ..AddressEvent::bare(kind, txid)
            };
            if show(&event) {
                return Ok(());
            }
        }
        first = false;
        std::thread::sleep(POLL_EVERY);
    }
}

fn describe(event: &AddressEvent, address: &str) -> String {
    let amount = event.amount.unwrap_or_default().0;
    let sign = if event.from.as_deref() == Some(address) && event.to.as_deref() != Some(address) {
        "-"
    } else {
        "+"
    };
    let txid = event.txid;
    match event.event {
        AddressEventKind::Confirmed => format!(
            "confirmed ({}) {sign}{amount} coins  {txid}  height {}",
            event.confirmations.unwrap_or(0),
            event.height.unwrap_or_default()
        ),
        AddressEventKind::Dropped => format!(
            "dropped   {txid}: {}",
            event.reason.as_deref().unwrap_or("")
        ),
        AddressEventKind::Pending => format!("{:<13} {sign}{amount} coins  {txid}", "pending"),
    }
}
