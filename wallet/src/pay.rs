//! Paying: building and signing transactions, submitting them (after giving the node
//! whatever this wallet sent that it lost), waiting for them, and the outbox commands.

use crate::{parse_coins, Wallet};
use anyhow::{anyhow, bail, Context, Result};
use apiary_api as api;
use apiary_core::{
    Address, Amount, BlockHash, ChainId, Height, Nonce, SignedTransaction, Transaction,
};
use apiary_wallet::client::{Client, ClientError};
use apiary_wallet::keystore::Keystore;
use apiary_wallet::light::Light;
use apiary_wallet::outbox::{Fate, Outbox};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

impl Wallet {
    fn build_tx(
        &self,
        keystore: &Keystore,
        to: &str,
        amount: &str,
        fee: Amount,
        nonce: u64,
        account: u32,
    ) -> Result<Transaction> {
        let to = Address::parse(to, keystore.prefix()).context("not sent")?;
        let amount = parse_coins("amount", amount)?;
        if amount == Amount::ZERO {
            bail!("the amount must be more than 0");
        }
        let from = Address::parse(&keystore.account(account)?.address, keystore.prefix())?;
        Ok(Transaction {
            chain_id: ChainId::new(keystore.chain_id())
                .map_err(|e| anyhow!("keystore chain id: {e}"))?,
            from,
            to,
            amount,
            fee,
            nonce: Nonce(nonce),
        })
    }

    fn sign(
        &self,
        keystore: &Keystore,
        tx: Transaction,
        account: u32,
    ) -> Result<SignedTransaction> {
        let unlocked = keystore.unlock(self.password(false)?.as_bytes())?;
        Ok(tx.sign(&unlocked.key(account)))
    }

    pub(crate) fn send(
        &self,
        to: &str,
        amount: &str,
        fee: Option<&str>,
        wait: Option<u64>,
        timeout: u64,
        account: Option<u32>,
    ) -> Result<()> {
        let keystore = self.keystore()?;
        let account = account.unwrap_or(keystore.default_account());
        // Everything that can be checked offline is, before any node is asked.
        let fee = fee.map(|f| parse_coins("fee", f)).transpose()?;
        let draft = self.build_tx(
            &keystore,
            to,
            amount,
            fee.unwrap_or(Amount::ZERO),
            0,
            account,
        )?;
        let client = self.client_for(&keystore)?;
        // First what the node may have lost: else the next nonce would be one of theirs.
        let mut outbox = Outbox::load(&self.dir)?;
        self.rebroadcast_with(&client, &keystore, &mut outbox, false)?;
        let from_text = draft.from.to_text(keystore.prefix());
        let state = self.account_state(&keystore, &client, &from_text)?.info;
        let fee = match fee {
            Some(fee) => fee,
            None => client.ask::<api::FeeEstimate>(&api::NoParams {})?.fee.0,
        };
        let balance = state.balance.0;
        let pending = state.pending.spend();
        let needed = draft
            .amount
            .checked_add(fee)
            .and_then(|n| n.checked_add(pending))
            .ok_or_else(|| anyhow!("amount plus fee is more coins than can exist"))?;
        if needed > balance {
            bail!(
                "insufficient funds: {from_text} holds {balance} coins{}, this payment needs {} \
                 (amount {} + fee {fee}); nothing was signed",
                if pending > Amount::ZERO {
                    format!(" of which {pending} are pending in other payments")
                } else {
                    String::new()
                },
                draft.amount.checked_add(fee).unwrap_or(draft.amount),
                draft.amount,
            );
        }
        let nonce = state.pending.next_nonce;
        let tx = Transaction {
            fee,
            nonce,
            ..draft
        };
        let stx = self.sign(&keystore, tx, account)?;
        let txid = client
            .ask::<api::TxSubmit>(&api::TxSubmitParams {
                tx: hex::encode(stx.encode()),
            })?
            .txid;
        outbox.add(&stx)?;
        let Some(confirmations) = wait else {
            self.print(
                json!({"txid": txid, "status": "pending", "fee": fee.base_units().to_string(), "nonce": nonce.0}),
                || {
                    format!(
                        "sent {} coins to {to} (fee {fee})\ntxid: {txid}",
                        stx.tx.amount
                    )
                },
            );
            return Ok(());
        };
        let mut light = (!self.options.trust_node)
            .then(|| self.light(&keystore))
            .transpose()?;
        let result = self.wait_for(
            &client,
            light.as_mut(),
            &stx,
            &from_text,
            confirmations.max(1),
            timeout,
        )?;
        self.print(json!(result), || {
            format!(
                "sent {} coins to {to} (fee {fee})\ntxid: {txid}\nconfirmed in block {} at height {} ({} confirmation(s))",
                stx.tx.amount, result.block_hash, result.height, result.confirmations
            )
        });
        Ok(())
    }

    /// Waits for `confirmations`, showing a spinner: follows the sender's address
    /// subscription on a node's WebSocket, or polls `tx_get` where no node offers one. A
    /// node that lost the tx (it restarted without it, say) is given it again; an error
    /// if it refuses it then (replaced, no longer payable) or time runs out.
    fn wait_for(
        &self,
        client: &Client,
        mut light: Option<&mut Light>,
        stx: &SignedTransaction,
        from: &str,
        confirmations: u64,
        timeout: u64,
    ) -> Result<Confirmed> {
        let txid = &stx.txid().to_string();
        let spinner = if self.options.json || !std::io::stderr().is_terminal() {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new_spinner()
        };
        spinner.enable_steady_tick(Duration::from_millis(100));
        // A timeout past the clock's end is no deadline at all.
        let deadline = Instant::now().checked_add(Duration::from_secs(timeout));
        let mut tip = TipWatch::new(client);
        // Subscribed before the first look, so nothing between them is missed.
        let topic = json!({"topic": "address", "address": from, "confirmations": confirmations});
        let mut live = client.subscribe(topic.clone()).ok();
        loop {
            let asked = api::TxGetParams {
                txid: stx.txid(),
                raw: false,
            };
            let status = match client.ask::<api::TxGet>(&asked) {
                Ok(status) => Some(status),
                // Every node down for a moment: keep trying until the deadline.
                Err(ClientError::Unreachable(why)) => {
                    spinner.set_message(format!("no node answers ({} tried); retrying", why.len()));
                    None
                }
                Err(other) => return Err(other.into()),
            };
            match status.as_ref().map(|s| (s.status, s)) {
                Some((api::TxStatus::Confirmed, status)) => {
                    let have = status.confirmations;
                    if let (true, Some(height), Some(block_hash)) =
                        (have >= confirmations, status.height, status.block_hash)
                    {
                        if let Some(done) = self.proved_enough(
                            light.as_deref_mut(),
                            stx,
                            confirmations,
                            (height, block_hash, have),
                        )? {
                            spinner.finish_and_clear();
                            return Ok(done);
                        }
                    }
                    spinner.set_message(format!("{txid}: {have}/{confirmations} confirmations"));
                }
                Some((api::TxStatus::Pending, _)) => {
                    spinner.set_message(format!("{txid}: pending, waiting for a block"))
                }
                Some((api::TxStatus::Unknown, _)) => {
                    let again = api::TxSubmitParams {
                        tx: hex::encode(stx.encode()),
                    };
                    if let Err(refused) = client.ask::<api::TxSubmit>(&again) {
                        spinner.finish_and_clear();
                        bail!(
                            "transaction {txid} was dropped: the node no longer has it and \
                             refuses it again ({refused})"
                        );
                    }
                    spinner.set_message(format!("{txid}: the node had lost it; sent again"));
                }
                None => {}
            }
            if deadline.is_some_and(|deadline| Instant::now() > deadline) {
                spinner.finish_and_clear();
                bail!("gave up waiting for {txid} after {timeout} s; it may still confirm");
            }
            if let Some(stalled) = tip.stalled(client) {
                spinner.finish_and_clear();
                bail!(
                    "no new block for {} s (the tip stays at height {}): is any node mining? \
                     {txid} stays pending and confirms once blocks come",
                    stalled.as_secs(),
                    tip.height
                );
            }
            let Some(subscription) = live.as_mut() else {
                std::thread::sleep(Duration::from_millis(250));
                continue;
            };
            // Told, not polled: look again when something happens to this tx, or every
            // few seconds (for the deadline, a stalled chain, a node that lost it).
            let quiet_until = Instant::now() + Duration::from_secs(5);
            loop {
                let left = quiet_until.saturating_duration_since(Instant::now());
                match subscription.next_as::<api::AddressEvent>(left) {
                    Ok(Some(event)) if event.txid == stx.txid() => {
                        let have = event.confirmations.unwrap_or(0);
                        if let (api::AddressEventKind::Confirmed, true, Some(height), Some(hash)) = (
                            event.event,
                            have >= confirmations,
                            event.height,
                            event.block_hash,
                        ) {
                            if let Some(done) = self.proved_enough(
                                light.as_deref_mut(),
                                stx,
                                confirmations,
                                (height, hash, have),
                            )? {
                                spinner.finish_and_clear();
                                return Ok(done);
                            }
                        }
                        break;
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    // The node went away: the next look finds another, or polls.
                    Err(_) => {
                        live = client.subscribe(topic.clone()).ok();
                        break;
                    }
                }
            }
        }
    }

    /// A payment a node says is confirmed `claimed.2` deep: as it stands (trusting the
    /// node), or only once proved in a block of the wallet's headers at least
    /// `confirmations` deep; None until then.
    fn proved_enough(
        &self,
        light: Option<&mut Light>,
        stx: &SignedTransaction,
        confirmations: u64,
        claimed: (Height, BlockHash, u64),
    ) -> Result<Option<Confirmed>> {
        let Some(light) = light else {
            let (height, hash, have) = claimed;
            return Ok(Some(Confirmed::new(stx.txid(), height.0, hash, have)));
        };
        Ok(self
            .proved_tx(light, &stx.txid())?
            .filter(|proved| proved.confirmations >= confirmations)
            .map(|proved| {
                Confirmed::new(
                    stx.txid(),
                    proved.height.0,
                    proved.block_hash,
                    proved.confirmations,
                )
            }))
    }

    pub(crate) fn sign_offline(
        &self,
        to: &str,
        amount: &str,
        nonce: u64,
        fee: &str,
        account: Option<u32>,
        output: &Path,
    ) -> Result<()> {
        let keystore = self.keystore()?;
        let account = account.unwrap_or(keystore.default_account());
        let fee = parse_coins("fee", fee)?;
        let tx = self.build_tx(&keystore, to, amount, fee, nonce, account)?;
        let stx = self.sign(&keystore, tx, account)?;
        let hex = hex::encode(stx.encode());
        apiary_files::write_atomically(output, |out| {
            use std::io::Write;
            writeln!(out, "{hex}")
        })
        .with_context(|| format!("cannot write {}", output.display()))?;
        self.print(json!({"txid": stx.txid(), "file": output}), || {
            format!(
                "signed {}; submit it with `apiary-wallet broadcast {}`",
                stx.txid(),
                output.display()
            )
        });
        Ok(())
    }

    pub(crate) fn broadcast(&self, file: &Path) -> Result<()> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let bytes = hex::decode(text.trim())
            .with_context(|| format!("{} does not hold a hex transaction", file.display()))?;
        let stx: SignedTransaction =
            apiary_core::decode_exact("transaction", &bytes, apiary_core::tx::MAX_TX_BYTES)
                .with_context(|| format!("{} does not hold a transaction", file.display()))?;
        let keystore = self.keystore().ok();
        let client = match &keystore {
            Some(keystore) => self.client_for(keystore)?,
            None => self.client()?,
        };
        let reply = client.ask::<api::TxSubmit>(&api::TxSubmitParams {
            tx: hex::encode(stx.encode()),
        })?;
        if keystore.is_some() {
            Outbox::load(&self.dir)?.add(&stx)?;
        }
        self.print(json!(reply), || format!("submitted {}", reply.txid));
        Ok(())
    }

    /// `rebroadcast`: gives the node every transaction of the outbox it lost, and says
    /// what became of each.
    pub(crate) fn rebroadcast(&self) -> Result<()> {
        let keystore = self.keystore()?;
        let client = self.client_for(&keystore)?;
        let mut outbox = Outbox::load(&self.dir)?;
        let fates = self.rebroadcast_with(&client, &keystore, &mut outbox, true)?;
        let rows: Vec<Value> = fates
            .iter()
            .map(|(txid, fate)| json!({"txid": txid, "fate": fate_text(fate)}))
            .collect();
        self.print(json!({"sent": rows}), || {
            if fates.is_empty() {
                return "the outbox is empty: nothing sent is waiting".into();
            }
            fates
                .iter()
                .map(|(txid, fate)| format!("{txid}  {}", fate_text(fate)))
                .collect::<Vec<_>>()
                .join("\n")
        });
        Ok(())
    }

    /// Rebroadcasts the outbox; unless `quiet`, says on stderr what it had to resend or
    /// gave up on (a command's own output stays as it was).
    pub(crate) fn rebroadcast_with(
        &self,
        client: &Client,
        keystore: &Keystore,
        outbox: &mut Outbox,
        quiet: bool,
    ) -> Result<Vec<(String, Fate)>> {
        let fates = outbox.rebroadcast(client, keystore.prefix())?;
        if !quiet {
            for (txid, fate) in &fates {
                if !matches!(fate, Fate::Known | Fate::Final) {
                    eprintln!("note: sent transaction {txid}: {}", fate_text(fate));
                }
            }
        }
        Ok(fates)
    }
}

fn fate_text(fate: &Fate) -> String {
    match fate {
        Fate::Known => "known to the node".into(),
        Fate::Resent => "the node had lost it: sent again".into(),
        Fate::Final => "confirmed deep enough: done".into(),
        Fate::Replaced => {
            "its nonce was taken by another transaction: it will never confirm".into()
        }
        Fate::Refused(why) => format!("the node had lost it and refuses it now: {why}"),
    }
}

/// Whether the chain is moving while a payment waits for blocks.
struct TipWatch {
    height: u64,
    since: Instant,
    /// No block for this long means nobody is mining: 20 block times, 10 s to 10 min.
    patience: Duration,
}

impl TipWatch {
    fn new(client: &Client) -> TipWatch {
        let block_time_ms = client
            .ask::<api::NodeInfo>(&api::NoParams {})
            .map_or(10_000, |info| info.target_block_time_ms);
        TipWatch {
            height: 0,
            since: Instant::now(),
            patience: Duration::from_millis(block_time_ms.saturating_mul(20))
                .clamp(Duration::from_secs(10), Duration::from_secs(600)),
        }
    }

    /// How long the tip has not moved, once that is past patience.
    fn stalled(&mut self, client: &Client) -> Option<Duration> {
        if let Ok(height) = client
            .ask::<api::ChainTip>(&api::NoParams {})
            .map(|tip| tip.height.0)
        {
            if height != self.height {
                self.height = height;
                self.since = Instant::now();
            }
        }
        let still = self.since.elapsed();
        (still > self.patience).then_some(still)
    }
}

/// A payment confirmed deep enough, as `send --wait` reports it.
#[derive(serde::Serialize)]
struct Confirmed {
    txid: apiary_core::TxId,
    status: &'static str,
    height: u64,
    block_hash: apiary_core::BlockHash,
    confirmations: u64,
}

impl Confirmed {
    fn new(
        txid: apiary_core::TxId,
        height: u64,
        block_hash: apiary_core::BlockHash,
        confirmations: u64,
    ) -> Confirmed {
        Confirmed {
            txid,
            status: "confirmed",
            height,
            block_hash,
            confirmations,
        }
    }
}
