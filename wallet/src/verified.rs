//! What the wallet shows, proved against its own headers (the default) or on a node's word
//! (`--trust-node`): balances and nonces by state proofs, confirmed payments by Merkle
//! paths, and a whole history by adding it up to the proved balance.

use crate::Wallet;
use anyhow::Result;
use apiary_api as api;
use apiary_api::Units;
use apiary_core::{Address, Amount, Height, Nonce, TxId};
use apiary_wallet::client::Client;
use apiary_wallet::keystore::Keystore;
use apiary_wallet::light::{self, Fault, Light, Node, ProvedAccount, ProvedTx};

/// An account as `account_get` gives it, with balance and nonce proved unless trusted.
pub(crate) struct AccountState {
    pub info: api::AccountInfo,
    pub proved: Option<ProvedAccount>,
}

impl Wallet {
    pub(crate) fn light(&self, keystore: &Keystore) -> Result<Light> {
        Ok(Light::new(
            self.dir.clone(),
            self.endpoints()?,
            keystore.chain_id().to_string(),
        ))
    }

    /// `address`'s balance and nonce (proved, unless --trust-node) and what a node says it
    /// has pending (which no header can prove: only bounded by the proved nonce).
    pub(crate) fn account_state(
        &self,
        keystore: &Keystore,
        client: &Client,
        address: &str,
    ) -> Result<AccountState> {
        let mut info = client.ask::<api::AccountGet>(&api::AccountParams {
            address: address.to_string(),
        })?;
        if self.options.trust_node {
            return Ok(AccountState { info, proved: None });
        }
        let parsed = Address::parse(address, keystore.prefix())?;
        let proved = self
            .light(keystore)?
            .ask(&format!("the account {address}"), |node, chain| {
                light::proved_account(node, chain, &parsed, address)
            })?;
        let nonce = proved.account.nonce.0;
        info.balance = Units(proved.account.balance);
        info.nonce = proved.account.nonce;
        let count = info.pending.count as u64;
        info.pending.next_nonce = Nonce(
            info.pending
                .next_nonce
                .0
                .clamp(nonce, nonce.saturating_add(count)),
        );
        Ok(AccountState {
            info,
            proved: Some(proved),
        })
    }

    /// Where `txid` is confirmed, proved; None where the node that proves says it is in no
    /// block.
    pub(crate) fn proved_tx(&self, light: &mut Light, txid: &TxId) -> Result<Option<ProvedTx>> {
        light.ask(&format!("where {txid} is"), |node, chain| {
            light::proved_tx(node, chain, txid)
        })
    }

    /// A page of history, each confirmed entry proved in its block; a whole history (one
    /// page from the newest) also adds up to the proved balance and nonce, so an entry
    /// left out or changed shows.
    pub(crate) fn proved_history(
        &self,
        keystore: &Keystore,
        params: &api::AccountHistoryParams,
    ) -> Result<api::AccountHistoryResult> {
        let address = Address::parse(&params.address, keystore.prefix())?;
        let prefix = keystore.prefix().clone();
        self.light(keystore)?.ask(
            &format!("the history of {}", params.address),
            |node, chain| {
                // The proof first: the history asked after it holds every entry up to its
                // height.
                let whole = params.cursor.is_none();
                let proved = light::proved_account(node, chain, &address, &params.address)?;
                let page = node.client.ask::<api::AccountHistory>(params)?;
                for entry in &page.txs {
                    prove_entry(node, chain, &address, &prefix, entry)?;
                }
                if whole && page.next_cursor.is_none() {
                    adds_up(chain.spec(), &address, &page.txs, &proved)?;
                }
                Ok(page)
            },
        )
    }
}

/// One confirmed entry: a transfer by its Merkle path, with the fields shown; a reward by
/// its block's header naming this address as the miner.
fn prove_entry(
    node: &Node,
    chain: &mut apiary_wallet::headers::HeaderChain,
    address: &Address,
    prefix: &apiary_core::AddressPrefix,
    entry: &api::HistoryEntry,
) -> Result<(), Fault> {
    let (Some(height), Some(block_hash)) = (entry.height, entry.block_hash) else {
        return Err(Fault::Lie("a confirmed entry with no block".into()));
    };
    match entry.kind {
        api::EntryKind::Reward => {
            let header = light::header_at(node, chain, height)?;
            if header.hash() != block_hash || header.miner != *address {
                return Err(Fault::Lie(format!(
                    "it lists a reward at height {height} that block does not pay to this address"
                )));
            }
        }
        api::EntryKind::Transfer => {
            let txid = entry
                .txid
                .ok_or_else(|| Fault::Lie("a transfer with no txid".into()))?;
            let proved = light::proved_tx(node, chain, &txid)?.ok_or_else(|| {
                Fault::Lie(format!(
                    "it lists {txid} as confirmed but proves no block for it"
                ))
            })?;
            let tx = &proved.tx.tx;
            let same = proved.height == height
                && proved.block_hash == block_hash
                && entry.from.as_deref() == Some(tx.from.to_text(prefix).as_str())
                && entry.to == tx.to.to_text(prefix)
                && entry.amount.0 == tx.amount
                && entry.fee.0 == tx.fee;
            if !same {
                return Err(Fault::Lie(format!(
                    "its entry for {txid} is not the transaction its proof gives"
                )));
            }
        }
    }
    Ok(())
}

/// A whole history must add up to the proved account: the genesis allocation, plus what
/// came in, less what went out with fees, and one nonce per payment sent.
fn adds_up(
    spec: &apiary_core::ChainSpec,
    address: &Address,
    entries: &[api::HistoryEntry],
    proved: &ProvedAccount,
) -> Result<(), Fault> {
    let at_most = |h: Option<Height>| h.is_some_and(|h| h <= proved.height);
    let genesis = spec
        .genesis_accounts()
        .into_iter()
        .find(|(a, _)| a == address)
        .map_or(0, |(_, account)| account.balance.base_units());
    let mut balance = i128::from(genesis);
    let mut sent = 0u64;
    let ours = address.to_text(&spec.address_prefix);
    for entry in entries.iter().filter(|e| at_most(e.height)) {
        let amount = i128::from(entry.amount.0.base_units());
        let fee = i128::from(entry.fee.0.base_units());
        let to_us = entry.to == ours;
        let from_us = entry.from.as_deref() == Some(ours.as_str());
        if from_us {
            balance -= amount + fee;
            sent += 1;
        }
        if to_us {
            balance += amount;
        }
    }
    let expected = i128::from(proved.account.balance.base_units());
    if balance != expected || sent != proved.account.nonce.0 {
        return Err(Fault::Lie(format!(
            "its history adds up to {} coins and {sent} payments sent, but the proved account at \
             height {} holds {} with nonce {}: an entry is missing or changed",
            format_units(balance),
            proved.height,
            proved.account.balance,
            proved.account.nonce.0
        )));
    }
    Ok(())
}

fn format_units(units: i128) -> String {
    match u64::try_from(units) {
        Ok(units) => Amount::from_base_units(units).to_string(),
        Err(_) => format!("{units} base units"),
    }
}
