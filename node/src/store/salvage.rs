//! Reading what a store still holds, damaged or not, for `--reindex`: the main chain's
//! blocks in height order, each read on its own, so damage in one file stops the walk at
//! that block instead of failing everything. A store RocksDB cannot open at all is first
//! repaired in a copy made of hard links; the store itself is never written.

use super::open::sibling;
use super::tuning::Tuning;
use super::{IndexEntry, StoreError, CF_BODIES, CF_HEADERS, CF_HEIGHTS, CF_META, KEY_TIP};
use apiary_core::{BlockHash, Height, Work};
use borsh::BorshDeserialize;
use rocksdb::{Options, DB};
use std::path::{Path, PathBuf};

pub struct Salvage {
    db: DB,
    /// The running node had found the store damaged (its marker file).
    marked_damaged: bool,
    /// The repaired copy read instead of the store, removed when done.
    repaired: Option<PathBuf>,
}

/// A main-chain block as the old store holds it.
pub struct SalvagedBlock {
    pub hash: BlockHash,
    pub bytes: Vec<u8>,
}

impl Salvage {
    /// Opens the store at `path` read-only, or, if RocksDB refuses it as it is (a missing
    /// CURRENT, MANIFEST or table file), a repaired copy of it.
    pub fn open(path: &Path) -> Result<Salvage, StoreError> {
        let marked_damaged = path.join(super::open::DAMAGED_FILE).exists();
        match open_read_only(path) {
            Ok(db) => {
                let mut salvage = Salvage {
                    db,
                    marked_damaged,
                    repaired: None,
                };
                salvage.marked_damaged |= salvage.lost_writes(path);
                Ok(salvage)
            }
            Err(refused) => {
                tracing::warn!(path = %path.display(), error = %refused, "the store cannot be opened as it is; reading a repaired copy");
                let copy = sibling(path, "salvage");
                let repaired = repair_copy(path, &copy).and_then(|()| open_read_only(&copy));
                match repaired {
                    Ok(db) => Ok(Salvage {
                        db,
                        marked_damaged,
                        repaired: Some(copy),
                    }),
                    Err(error) => {
                        let _ = std::fs::remove_dir_all(&copy);
                        Err(StoreError::Damaged {
                            path: path.to_path_buf(),
                            message: format!("{refused}; a repaired copy failed too: {error}"),
                        })
                    }
                }
            }
        }
    }

    /// Whether the store is behind the tip recorded beside it (see `Store::open`).
    fn lost_writes(&self, path: &Path) -> bool {
        let Some(recorded) = super::open::TipRecord::read_at(path) else {
            return false;
        };
        let work = |hash: &BlockHash| -> Option<Work> {
            let headers = self.db.cf_handle(CF_HEADERS)?;
            let bytes = self.db.get_cf(headers, hash.as_bytes()).ok()??;
            Some(IndexEntry::try_from_slice(&bytes).ok()?.total_work)
        };
        let tip = self
            .db
            .cf_handle(CF_META)
            .and_then(|meta| self.db.get_cf(meta, KEY_TIP).ok().flatten())
            .and_then(|bytes| BlockHash::try_from_slice(&bytes).ok());
        match (work(&recorded), tip.as_ref().and_then(work)) {
            (Some(recorded), Some(tip)) => tip < recorded,
            _ => true,
        }
    }

    /// Whether the store needed repair to be read, or the node had found it damaged.
    pub fn found_damage(&self) -> bool {
        self.repaired.is_some() || self.marked_damaged
    }

    /// The main chain's block at `height`: Ok(None) past the last one, Err when the store
    /// cannot give it (damage: the walk stops there).
    pub fn main_block(&self, height: Height) -> Result<Option<SalvagedBlock>, String> {
        let read = |cf: &str, key: &[u8]| -> Result<Option<Vec<u8>>, String> {
            let Some(handle) = self.db.cf_handle(cf) else {
                return Ok(None);
            };
            self.db.get_cf(handle, key).map_err(|e| e.into_string())
        };
        let Some(hash) = read(CF_HEIGHTS, &height.0.to_be_bytes())? else {
            return Ok(None);
        };
        let hash = BlockHash::try_from_slice(&hash)
            .map_err(|e| format!("main chain index at height {height}: {e}"))?;
        match read(CF_BODIES, hash.as_bytes())? {
            Some(bytes) => Ok(Some(SalvagedBlock { hash, bytes })),
            None => Err(format!("block {hash} at height {height} has no body")),
        }
    }
}

impl Drop for Salvage {
    fn drop(&mut self) {
        if let Some(copy) = &self.repaired {
            let _ = std::fs::remove_dir_all(copy);
        }
    }
}

/// Opens the column families the store at `path` has, without writing to it.
fn open_read_only(path: &Path) -> Result<DB, String> {
    let tuning = Tuning::default();
    let options = tuning.db_options(false);
    let present = DB::list_cf(&Options::default(), path).map_err(|e| e.into_string())?;
    let wanted = tuning
        .descriptors()
        .filter(|d| present.iter().any(|name| name == d.name()));
    DB::open_cf_descriptors_read_only(&options, path, wanted, false).map_err(|e| e.into_string())
}

/// Links every file of the store into `copy` and has RocksDB rebuild the copy's
/// MANIFEST from the table and log files it finds (RocksDB's RepairDB: files it cannot
/// read are set aside in the copy, the originals are never modified).
fn repair_copy(path: &Path, copy: &Path) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", copy.display());
    match std::fs::remove_dir_all(copy) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    std::fs::create_dir_all(copy).map_err(io)?;
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        if !entry.file_type().map_err(io)?.is_file() || name == "LOCK" {
            continue;
        }
        let target = copy.join(&name);
        if std::fs::hard_link(entry.path(), &target).is_err() {
            std::fs::copy(entry.path(), &target).map_err(io)?;
        }
    }
    DB::repair(&Tuning::default().db_options(true), copy).map_err(|e| e.into_string())
}
