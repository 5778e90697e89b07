//! Maturity and payouts, once a second: a found block `maturity` deep and still on the
//! main chain moves its credits to the balances (one that left the chain voids them);
//! each balance is then paid in a transaction from the pool's key. A payout is written to
//! the books, signed, before it is sent, so after a crash the same transaction (same
//! nonce, same txid) is sent again rather than a second one. Settled entries beyond the
//! newest `--keep-settled` then move to the history file.

use crate::books::{BlockState, Payout, PayoutState};
use crate::Pool;
use apiary_api as api;
use apiary_core::{Address, Amount, Nonce, Transaction};
use std::time::Duration;

pub fn run(pool: &Pool, runtime: &tokio::runtime::Handle) {
    let client = pool.client();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if let Err(error) = round(pool, &client, runtime) {
            apiary_cmdline::say!("payouts: {error}; trying again");
        }
    }
}

fn round(
    pool: &Pool,
    client: &apiary_client::Client,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let tip = client.ask::<api::ChainTip>(&api::NoParams {})?.height.0;
    // Mature blocks: credit or void.
    let immature: Vec<(usize, String, u64)> = {
        let books = pool.books.lock().unwrap_or_else(|e| e.into_inner());
        books
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                b.state == BlockState::Immature
                    && tip.saturating_add(1) >= b.height.saturating_add(pool.maturity)
            })
            .map(|(i, b)| (i, b.hash.clone(), b.height))
            .collect()
    };
    let mut changed = false;
    for (index, hash, _) in immature {
        let asked = api::BlockGetParams {
            hash: hash.parse().ok(),
            ..Default::default()
        };
        let on_main = matches!(
            client.ask::<api::BlockGet>(&asked),
            Ok(api::BlockAnswer::Fields(block)) if block.main_chain
        );
        let mut books = pool.books.lock().unwrap_or_else(|e| e.into_inner());
        let block = books.blocks[index].clone();
        if on_main {
            for (miner, credit) in &block.credits {
                *books.balances.entry(miner.clone()).or_default() += credit;
            }
            books.blocks[index].state = BlockState::Credited;
        } else {
            books.blocks[index].state = BlockState::Orphaned;
        }
        changed = true;
    }
    // Sent payouts: confirmed, or given again to a node that lost them.
    let sent: Vec<(usize, String, String)> = {
        let books = pool.books.lock().unwrap_or_else(|e| e.into_inner());
        books
            .payouts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.state == PayoutState::Sent)
            .map(|(i, p)| (i, p.txid.clone(), p.tx_hex.clone()))
            .collect()
    };
    for (index, txid, hex) in sent {
        let Ok(txid) = txid.parse() else {
            continue;
        };
        let status = client.ask::<api::TxGet>(&api::TxGetParams { txid, raw: false })?;
        match status.status {
            api::TxStatus::Confirmed => {
                pool.books.lock().unwrap_or_else(|e| e.into_inner()).payouts[index].state =
                    PayoutState::Confirmed;
                changed = true;
            }
            api::TxStatus::Unknown => {
                let _ = client.ask::<api::TxSubmit>(&api::TxSubmitParams { tx: hex });
            }
            api::TxStatus::Pending => {}
        }
    }
    if changed {
        wait_written(pool, runtime);
    }
    archive(pool, runtime)?;
    // New payouts, each written down before it is sent.
    let fee = client
        .ask::<api::FeeEstimate>(&api::NoParams {})?
        .fee
        .0
        .base_units();
    let account = client.ask::<api::AccountGet>(&api::AccountParams {
        address: pool.address.to_text(&pool.prefix),
    })?;
    let node_next = account.pending.next_nonce.0;
    let mut spendable = account
        .balance
        .0
        .base_units()
        .saturating_sub(account.pending.spend().base_units());
    let owed: Vec<(String, u64)> = {
        let books = pool.books.lock().unwrap_or_else(|e| e.into_inner());
        books
            .balances
            .iter()
            .filter(|(_, owed)| **owed > fee)
            .map(|(m, o)| (m.clone(), *o))
            .collect()
    };
    // A sender may have 16 transactions waiting at most.
    for (miner, owed) in owed.into_iter().take(8) {
        if owed > spendable {
            continue;
        }
        let Ok(to) = Address::parse(&miner, &pool.prefix) else {
            continue;
        };
        let payout = {
            let mut books = pool.books.lock().unwrap_or_else(|e| e.into_inner());
            let nonce = books.next_nonce.max(node_next);
            let stx = Transaction {
                chain_id: pool.chain_id.clone(),
                from: pool.address,
                to,
                amount: Amount::from_base_units(owed - fee),
                fee: Amount::from_base_units(fee),
                nonce: Nonce(nonce),
            }
            .sign(&pool.key);
            let payout = Payout {
                txid: stx.txid().to_string(),
                to: miner.clone(),
                amount: owed - fee,
                fee,
                nonce,
                tx_hex: hex::encode(stx.encode()),
                state: PayoutState::Sent,
            };
            books.balances.insert(miner.clone(), 0);
            books.next_nonce = nonce + 1;
            books.payouts.push(payout.clone());
            payout
        };
        if !wait_written(pool, runtime) {
            anyhow::bail!("the books could not be written; nothing sent");
        }
        spendable -= owed;
        let submit = api::TxSubmitParams {
            tx: payout.tx_hex.clone(),
        };
        if let Err(error) = client.ask::<api::TxSubmit>(&submit) {
            apiary_cmdline::say!("payout {} to {miner} not taken yet: {error}", payout.txid);
        }
    }
    Ok(())
}

/// Moves settled entries beyond the newest `--keep-settled` to the history file: appended
/// and synced first, only then dropped from the books (written at any moment), so each is
/// always in one or the other.
fn archive(pool: &Pool, runtime: &tokio::runtime::Handle) -> anyhow::Result<()> {
    let old = pool
        .books
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .settled_beyond(pool.keep_settled);
    if old.is_empty() {
        return Ok(());
    }
    let mut lines = Vec::new();
    for entry in &old {
        serde_json::to_writer(&mut lines, entry)?;
        lines.push(b'\n');
    }
    apiary_files::append_synced(&pool.history_path, &lines)
        .map_err(|e| anyhow::anyhow!("cannot append to {}: {e}", pool.history_path.display()))?;
    pool.books
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .forget(&old);
    wait_written(pool, runtime);
    Ok(())
}

fn wait_written(pool: &Pool, runtime: &tokio::runtime::Handle) -> bool {
    let generation = pool.mark_dirty();
    runtime.block_on(pool.persisted(generation))
}
