//! The wallet's outbox: every transaction it sent, kept in `<wallet-dir>/outbox.json` until
//! it is buried deep enough that no reorganisation will undo it. A node that no longer
//! knows one (it restarted without it, or lost it some other way) is given it again before
//! the wallet signs anything new, so a new payment never takes the nonce of a lost one.

use crate::client::{Client, ClientError};
use apiary_api as api;
use apiary_core::encoding::decode_exact;
use apiary_core::tx::MAX_TX_BYTES;
use apiary_core::{AddressPrefix, SignedTransaction};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A sent transaction this deep in the chain leaves the outbox.
pub const FINAL_CONFIRMATIONS: u64 = 6;
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot read the outbox {path}: {message}; move it aside to start a new one")]
    Unreadable { path: PathBuf, message: String },
    #[error("cannot write the outbox {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sent {
    pub txid: String,
    /// Hex of the signed transaction's borsh bytes, as submitted.
    pub tx: String,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    sent: Vec<Sent>,
}

pub struct Outbox {
    path: PathBuf,
    sent: Vec<Sent>,
}

/// What `Outbox::rebroadcast` did with one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// The node knows it (pending or confirmed); nothing to do.
    Known,
    /// The node had lost it and took it again.
    Resent,
    /// Deep enough: it left the outbox.
    Final,
    /// Its nonce was taken by another transaction that confirmed: it can never confirm,
    /// and left the outbox.
    Replaced,
    /// The node had lost it and refuses it now (the message says why); kept to try later.
    Refused(String),
}

impl Outbox {
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join("outbox.json")
    }

    /// The outbox in `dir` (empty if there is none yet).
    pub fn load(dir: &Path) -> Result<Outbox, OutboxError> {
        let path = Outbox::path_in(dir);
        let sent = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: File =
                    serde_json::from_slice(&bytes).map_err(|e| OutboxError::Unreadable {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                if file.version != FORMAT_VERSION {
                    return Err(OutboxError::Unreadable {
                        path,
                        message: format!("format version {} is not {FORMAT_VERSION}", file.version),
                    });
                }
                file.sent
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(OutboxError::Unreadable {
                    path,
                    message: e.to_string(),
                })
            }
        };
        Ok(Outbox { path, sent })
    }

    pub fn sent(&self) -> &[Sent] {
        &self.sent
    }

    /// Records a transaction just submitted.
    pub fn add(&mut self, stx: &SignedTransaction) -> Result<(), OutboxError> {
        let txid = stx.txid().to_string();
        if !self.sent.iter().any(|s| s.txid == txid) {
            self.sent.push(Sent {
                txid,
                tx: hex::encode(stx.encode()),
            });
        }
        self.save()
    }

    fn save(&self) -> Result<(), OutboxError> {
        let file = File {
            version: FORMAT_VERSION,
            sent: self.sent.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("the outbox serialises");
        apiary_files::write_private_file(&self.path, &bytes).map_err(|source| OutboxError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Asks the node about every transaction in the outbox: gives it again those it lost,
    /// drops those buried deep enough or whose nonce another transaction took. An
    /// unreadable entry is dropped.
    pub fn rebroadcast(
        &mut self,
        client: &Client,
        prefix: &AddressPrefix,
    ) -> Result<Vec<(String, Fate)>, OutboxError> {
        let mut fates = Vec::with_capacity(self.sent.len());
        for sent in &self.sent {
            let decoded = hex::decode(&sent.tx).ok().and_then(|bytes| {
                decode_exact::<SignedTransaction>("transaction", &bytes, MAX_TX_BYTES).ok()
            });
            let Some(stx) = decoded else {
                fates.push((sent.txid.clone(), Fate::Replaced));
                continue;
            };
            let status = client.ask::<api::TxGet>(&api::TxGetParams {
                txid: stx.txid(),
                raw: false,
            })?;
            let resend = api::TxSubmitParams {
                tx: sent.tx.clone(),
            };
            let fate = match status.status {
                api::TxStatus::Confirmed => {
                    if status.confirmations >= FINAL_CONFIRMATIONS {
                        Fate::Final
                    } else {
                        Fate::Known
                    }
                }
                api::TxStatus::Pending => Fate::Known,
                api::TxStatus::Unknown => match client.ask::<api::TxSubmit>(&resend) {
                    Ok(_) => Fate::Resent,
                    Err(ClientError::Rpc { message, .. }) => {
                        let address = stx.tx.from.to_text(prefix);
                        let account =
                            client.ask::<api::AccountGet>(&api::AccountParams { address })?;
                        // The chain moved past its nonce without it: never confirmable.
                        if account.nonce > stx.tx.nonce {
                            Fate::Replaced
                        } else {
                            Fate::Refused(message)
                        }
                    }
                    Err(unreachable) => return Err(unreachable.into()),
                },
            };
            fates.push((sent.txid.clone(), fate));
        }
        let before = self.sent.len();
        self.sent.retain(|s| {
            !fates
                .iter()
                .any(|(txid, fate)| *txid == s.txid && matches!(fate, Fate::Final | Fate::Replaced))
        });
        if self.sent.len() != before {
            self.save()?;
        }
        Ok(fates)
    }
}
