//! Opening the store. A store is created only where there is none (no `db/`, or an empty
//! one), whole or not at all; an existing store is opened as it is, and one RocksDB or our
//! own checks find damaged is refused on every start, untouched, with what to do.

use super::tuning::Tuning;
use super::{
    Store, StoreError, CF_HEADERS, CF_META, INGEST_DIR, KEY_GENESIS, KEY_SCHEMA, SCHEMA_VERSION,
};
use apiary_core::{BlockHash, Hash256};
use rocksdb::{WriteBatch, WriteOptions, DB};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Our own file in the store's directory (RocksDB leaves files it did not name alone):
/// the tip of the last synced batch. A store whose tip is behind it lost writes it had
/// made durable (a damaged or removed write-ahead log), which RocksDB alone cannot tell
/// from a clean stop.
const TIP_FILE: &str = "APIARY-TIP";
/// Written when the running node finds the store damaged, so that every later start
/// refuses it too until it is rebuilt or set aside.
pub(super) const DAMAGED_FILE: &str = "APIARY-DAMAGED";

/// What a user can do about a damaged store; the store itself is left as it was.
pub const RECOVERY_ADVICE: &str = "nothing in it was changed. To recover, start apiary-node \
    with --reindex (rebuilds the chain from the blocks the store still holds, keeps the \
    damaged store beside the new one, and fetches the rest from peers), or with --resync \
    (sets the store aside and downloads the whole chain from peers)";

/// A sibling of the store's directory: `db` → `db.<suffix>`.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// Whether `path` holds no store yet: absent, or an empty directory.
fn is_new(path: &Path) -> Result<bool, StoreError> {
    let io = |e: std::io::Error| StoreError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    match std::fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io(e)),
    }
}

fn open_error(path: &Path, error: rocksdb::Error, existing: bool) -> StoreError {
    let message = error.into_string();
    if message.contains("lock")
        && (message.contains("Resource temporarily unavailable")
            || message.contains("No locks available"))
    {
        StoreError::Locked(path.to_path_buf())
    } else if existing {
        StoreError::Damaged {
            path: path.to_path_buf(),
            message,
        }
    } else {
        StoreError::Open {
            path: path.to_path_buf(),
            message,
        }
    }
}

/// Syncs a directory, so the renames and new files in it survive a power loss.
pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}

/// Creates the store at `path` for the chain of `genesis`: built beside it and renamed
/// into place once its identity is written, so `path` never holds half a store.
fn create(path: &Path, genesis: BlockHash, tuning: &Tuning) -> Result<(), StoreError> {
    let staging = sibling(path, "new");
    let io = |e: std::io::Error| StoreError::Open {
        path: staging.clone(),
        message: e.to_string(),
    };
    {
        // A staging store left by a crash is reused: it only ever holds the identity.
        let db = DB::open_cf_descriptors(&tuning.db_options(true), &staging, tuning.descriptors())
            .map_err(|e| open_error(&staging, e, false))?;
        let meta = db
            .cf_handle(CF_META)
            .expect("opened with every column family");
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, KEY_SCHEMA, SCHEMA_VERSION.to_le_bytes());
        batch.put_cf(meta, KEY_GENESIS, genesis.as_bytes());
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        db.write_opt(batch, &sync)
            .map_err(|e| open_error(&staging, e, false))?;
    }
    if path.exists() {
        // An empty directory (is_new said so).
        std::fs::remove_dir(path).map_err(io)?;
    }
    std::fs::rename(&staging, path).map_err(io)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent).map_err(io)?;
    }
    tracing::info!(path = %path.display(), "created a new store");
    Ok(())
}

impl Store {
    /// Opens the store for the chain with `genesis`, creating it if the data dir has none.
    /// An existing store is never replaced: if it cannot be read as it is, or lost writes
    /// it had made durable, it is refused (`StoreError::Damaged`) and left untouched.
    pub fn open(path: &Path, genesis: BlockHash) -> Result<Store, StoreError> {
        Store::open_tuned(path, genesis, Tuning::default())
    }

    /// `open`, with the memory `tuning` allows.
    pub fn open_tuned(
        path: &Path,
        genesis: BlockHash,
        tuning: Tuning,
    ) -> Result<Store, StoreError> {
        if is_new(path)? {
            create(path, genesis, &tuning)?;
        }
        if let Ok(reason) = std::fs::read_to_string(path.join(DAMAGED_FILE)) {
            return Err(StoreError::Damaged {
                path: path.to_path_buf(),
                message: format!("found damaged while the node ran: {}", reason.trim()),
            });
        }
        let db = DB::open_cf_descriptors(&tuning.db_options(false), path, tuning.descriptors())
            .map_err(|e| open_error(path, e, true))?;
        let tip_record = TipRecord::open(path)?;
        let store = Store {
            db: std::sync::RwLock::new(Some(db)),
            tuning,
            writes_stopped: Default::default(),
            path: path.to_path_buf(),
            tip_record,
        };
        store.check_identity(genesis)?;
        store.check_tip_record()?;
        // Files a flush had not handed over when the node stopped: that flush did not
        // happen, and the replay from the state tip repeats it. Only after taking the
        // lock, so no other node's files are touched.
        let ingest = path.join(INGEST_DIR);
        let cleared = match std::fs::remove_dir_all(&ingest) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => std::fs::create_dir_all(&ingest),
        };
        cleared.map_err(|e| StoreError::Open {
            path: ingest,
            message: e.to_string(),
        })?;
        Ok(store)
    }

    fn check_identity(&self, genesis: BlockHash) -> Result<(), StoreError> {
        let damaged = |message: &str| StoreError::Damaged {
            path: self.path.clone(),
            message: message.into(),
        };
        let schema = self.get_raw(CF_META, KEY_SCHEMA)?;
        let stored_genesis = self.get_raw(CF_META, KEY_GENESIS)?;
        let Some(schema) = schema else {
            return Err(damaged("its schema version is missing"));
        };
        let found = u32::from_le_bytes(
            schema
                .as_slice()
                .try_into()
                .map_err(|_| damaged("its schema version is not 4 bytes"))?,
        );
        if found != SCHEMA_VERSION {
            return Err(StoreError::SchemaMismatch {
                path: self.path.clone(),
                found,
                expected: SCHEMA_VERSION,
            });
        }
        let found = stored_genesis
            .and_then(|g| <[u8; 32]>::try_from(g.as_slice()).ok())
            .map(|g| BlockHash(Hash256(g)))
            .ok_or_else(|| damaged("its genesis hash is missing"))?;
        if found != genesis {
            return Err(StoreError::GenesisMismatch {
                path: self.path.clone(),
                found,
                expected: genesis,
            });
        }
        Ok(())
    }

    /// The store must still hold the tip its last synced batch made durable, or one with
    /// as much work (a later tip).
    fn check_tip_record(&self) -> Result<(), StoreError> {
        let Some(recorded) = self.tip_record.read() else {
            return Ok(());
        };
        let lost = |detail: String| StoreError::Damaged {
            path: self.path.clone(),
            message: format!(
                "it lost writes it had made durable (its write-ahead log was damaged or \
                 removed): {detail}"
            ),
        };
        let Some(recorded_entry) = self.entry(&recorded)? else {
            return Err(lost(format!("block {recorded}, once its tip, is missing")));
        };
        let tip_work = match self.tip()? {
            Some(tip) => self.entry(&tip)?.map(|e| e.total_work),
            None => None,
        };
        if tip_work.is_none_or(|work| work < recorded_entry.total_work) {
            return Err(lost(format!(
                "its tip is behind block {recorded} at height {}, once its tip",
                recorded_entry.header.height
            )));
        }
        Ok(())
    }

    /// Closes and opens the store again: after a write failed for lack of room RocksDB
    /// refuses every write until it is reopened (its C API has no `Resume`). What was
    /// acknowledged is in its log and comes back; the failed write left nothing.
    pub fn reopen(&self) -> Result<(), StoreError> {
        // Waits for reads under way; none starts until the store is open again.
        let mut held = self.db.write().unwrap_or_else(|e| e.into_inner());
        drop(held.take());
        let db = DB::open_cf_descriptors(
            &self.tuning.db_options(false),
            &self.path,
            self.tuning.descriptors(),
        )
        .map_err(|e| open_error(&self.path, e, true))?;
        *held = Some(db);
        drop(held);
        *self
            .writes_stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    /// Whether any block is stored (a store with blocks must have a tip).
    pub fn has_blocks(&self) -> Result<bool, StoreError> {
        let db = self.db();
        let mut iterator = db.raw_iterator_cf(db.cf(CF_HEADERS));
        iterator.seek_to_first();
        let found = iterator.valid();
        iterator.status().map_err(|e| self.db_error(e))?;
        Ok(found)
    }

    /// Turns a RocksDB error into what it means for the node: damage found in a file
    /// (recorded, so every later start refuses the store), a full disk, or another error.
    pub(super) fn db_error(&self, error: rocksdb::Error) -> StoreError {
        let message = error.clone().into_string();
        if error.kind() == rocksdb::ErrorKind::Corruption {
            // Best effort: the refusal at the next start depends on it, the error does not.
            let _ =
                apiary_files::write_private_file(&self.path.join(DAMAGED_FILE), message.as_bytes());
            return StoreError::Damaged {
                path: self.path.clone(),
                message,
            };
        }
        if is_no_space(&message) {
            return StoreError::NoSpace {
                path: self.path.clone(),
                message,
            };
        }
        StoreError::Db(error)
    }

    /// Records `tip` as durable: called after a synced batch that made it the tip.
    pub(super) fn record_tip(&self, tip: &BlockHash) {
        if let Err(error) = self.tip_record.write(tip) {
            tracing::warn!(%error, "could not record the tip beside the store");
        }
    }
}

/// Whether an error message is the operating system's "disk full".
pub(crate) fn is_no_space(message: &str) -> bool {
    message.contains("No space left on device") || message.contains("ENOSPC")
}

fn parse_tip_record(file: &File) -> Option<BlockHash> {
    let mut text = [0u8; 65];
    let read = file.read_at(&mut text, 0).ok()?;
    let hex = std::str::from_utf8(&text[..read.min(64)]).ok()?;
    let bytes: [u8; 32] = hex::decode(hex).ok()?.try_into().ok()?;
    Some(BlockHash(Hash256(bytes)))
}

/// The tip record: the hex of a hash and a newline, overwritten in place (one write, no
/// sync: it only has to survive the process, as the store's own synced batch does; after
/// a power loss it can only be older than the store, which is not a refusal).
pub(super) struct TipRecord {
    file: Mutex<File>,
}

impl TipRecord {
    fn open(store: &Path) -> Result<TipRecord, StoreError> {
        let path = store.join(TIP_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::Open {
                path,
                message: e.to_string(),
            })?;
        Ok(TipRecord {
            file: Mutex::new(file),
        })
    }

    fn read(&self) -> Option<BlockHash> {
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        parse_tip_record(&file)
    }

    /// The tip recorded beside the store at `store`, without opening it for writing.
    pub(super) fn read_at(store: &Path) -> Option<BlockHash> {
        parse_tip_record(&File::open(store.join(TIP_FILE)).ok()?)
    }

    fn write(&self, tip: &BlockHash) -> std::io::Result<()> {
        let record = format!("{tip}\n");
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all_at(record.as_bytes(), 0)
    }
}
