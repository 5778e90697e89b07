//! The RocksDB store: one column family per kind of record. Block changes commit through
//! `StoreBatch` as one atomic write each: per block connect, disconnect or reorg (bodies,
//! undo data, main-chain index, tip). A state flush writes the accounts (with the block
//! they are the state after), the tx index and the address index as sorted table files
//! that RocksDB ingests whole (`Store::ingest_*`). `open` decides when a store may be
//! created and when one is refused as damaged; `salvage` reads what a damaged one holds.

mod open;
pub mod salvage;
mod tuning;

pub(crate) use open::{is_no_space, sync_dir};
pub use open::{sibling, RECOVERY_ADVICE};
pub use tuning::Tuning;

use apiary_core::{
    Address, Amount, Block, BlockHash, BlockHeader, Hash256, Height, StateUndo, TxId, Work,
};
use borsh::{BorshDeserialize, BorshSerialize};
use rocksdb::{
    ColumnFamily, IngestExternalFileOptions, SstFileWriter, WriteBatch, WriteOptions, DB,
};
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;

/// Bump when the layout of any column family changes. 4: address index values carry
/// what the address received and sent. 5: the state tree's pages beside the accounts. 6: the
/// accounts in the tree's leaves, the pages alone.
pub const SCHEMA_VERSION: u32 = 6;

const CF_META: &str = "meta";
const CF_HEADERS: &str = "headers";
const CF_BODIES: &str = "bodies";
const CF_HEIGHTS: &str = "heights";
/// The state: accounts under their 32-byte addresses, the tree's pages under 33-byte keys
/// (`page_key`), and the state tip under the empty key. One column family, so that one
/// file ingestion changes all three together.
const CF_ACCOUNTS: &str = "accounts";
const CF_UNDO: &str = "undo";
const CF_TXINDEX: &str = "txindex";
/// Address ‖ height ‖ position → txid: every main-chain tx an address sent or received,
/// and (at position `AddressTx::REWARD`) → block hash: every block reward it was paid.
const CF_ADDRINDEX: &str = "addrindex";
const COLUMN_FAMILIES: [&str; 8] = [
    CF_META,
    CF_HEADERS,
    CF_BODIES,
    CF_HEIGHTS,
    CF_ACCOUNTS,
    CF_UNDO,
    CF_TXINDEX,
    CF_ADDRINDEX,
];

const KEY_SCHEMA: &[u8] = b"schema_version";
const KEY_GENESIS: &[u8] = b"genesis_hash";
const KEY_TIP: &[u8] = b"tip";
/// Written only to learn whether the store takes writes again.
const KEY_PROBE: &[u8] = b"probe";
/// In the accounts' column family: the block whose resulting state the accounts are (at
/// or behind the tip). It lives beside them, so that one file ingestion changes both; the
/// empty key sorts before every address.
const KEY_STATE_TIP: &[u8] = b"";
/// Where a state flush writes its table files before RocksDB takes them in (a directory
/// inside the store's; RocksDB leaves subdirectories alone).
const INGEST_DIR: &str = "ingest";

/// What to do about a store of another schema version.
fn schema_mismatch(path: &std::path::Path, found: u32, expected: u32) -> String {
    let path = path.display();
    if found < STATE_TREE_SCHEMA {
        // The state root changed with it, and with it every genesis hash.
        format!("the store in {path} has schema version {found}, made before the state root changed (version {STATE_TREE_SCHEMA}): its chain is another chain now; move the data dir aside, or start once with --resync to set it aside and download the chain")
    } else {
        format!("the store in {path} has schema version {found}, this node reads version {expected}; start once with --reindex to rebuild it from the blocks it holds (or --resync to download the chain)")
    }
}

/// The schema that brought the paged state tree (and a new state root).
const STATE_TREE_SCHEMA: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data dir {0} is in use by another apiary-node (RocksDB lock held)")]
    Locked(PathBuf),
    #[error("cannot open the store in {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("{}", schema_mismatch(path, *found, *expected))]
    SchemaMismatch {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("the store in {path} is of another chain (genesis {found}), this node runs genesis {expected}; use another --datadir")]
    GenesisMismatch {
        path: PathBuf,
        found: BlockHash,
        expected: BlockHash,
    },
    #[error("the store is corrupt: {0}")]
    Corrupt(String),
    /// A read that would go over its bound of work.
    #[error("more than {0} entries to read")]
    TooMany(u64),
    /// RocksDB or our own checks found the store damaged; it is refused as it is.
    #[error("the store in {path} is damaged ({message}); {advice}", path = path.display(), advice = RECOVERY_ADVICE)]
    Damaged { path: PathBuf, message: String },
    /// The disk is full: nothing was written; the same write succeeds once there is room.
    #[error("the disk holding {path} is full: {message}", path = path.display())]
    NoSpace { path: PathBuf, message: String },
    /// An earlier write failed with an I/O error; none is tried until the store reopens.
    #[error(
        "the store takes no writes since one failed ({0}); it is reopened once the cause is gone"
    )]
    WritesStopped(String),
    #[error("RocksDB: {0}")]
    Db(#[from] rocksdb::Error),
}

impl StoreError {
    /// The store cannot be trusted until it is rebuilt or set aside.
    pub fn is_damage(&self) -> bool {
        matches!(self, StoreError::Damaged { .. } | StoreError::Corrupt(_))
    }

    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::NoSpace { .. })
    }
}

/// Where a block stands in the node's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum BlockStatus {
    /// Passed every check that needs no state; body stored; not (yet) on the main chain.
    Stored,
    /// Has been connected to the state, so it is fully valid.
    Valid,
    /// Failed a rule (or descends from a block that did): never considered again.
    Invalid,
}

/// A known header with what fork choice needs.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct IndexEntry {
    pub header: BlockHeader,
    pub total_work: Work,
    pub status: BlockStatus,
}

/// Where a transaction of the main chain is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxLocation {
    pub block: BlockHash,
    pub index: u32,
}

/// Where an address appears: the main-chain position of a tx it sent or received. Orders
/// as its key does, so the newest comes last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressTx {
    pub address: Address,
    pub height: Height,
    pub index: u32,
}

impl AddressTx {
    /// The position that stands for the block's reward to its miner (after every tx).
    pub const REWARD: u32 = u32::MAX;
    const KEY_BYTES: usize = 32 + 8 + 4;

    pub fn is_reward(&self) -> bool {
        self.index == Self::REWARD
    }

    fn key(&self) -> [u8; Self::KEY_BYTES] {
        let mut key = [0u8; Self::KEY_BYTES];
        key[..32].copy_from_slice(&self.address.0);
        key[32..40].copy_from_slice(&self.height.0.to_be_bytes());
        key[40..].copy_from_slice(&self.index.to_be_bytes());
        key
    }

    fn from_key(key: &[u8]) -> Option<AddressTx> {
        let key: &[u8; Self::KEY_BYTES] = key.try_into().ok()?;
        Some(AddressTx {
            address: Address(key[..32].try_into().ok()?),
            height: Height(u64::from_be_bytes(key[32..40].try_into().ok()?)),
            index: u32::from_be_bytes(key[40..].try_into().ok()?),
        })
    }
}

/// What an address index entry holds: the txid (for a reward, the block hash), and what
/// the address received and sent by it (a transfer's amount; its amount plus fee; a
/// reward's new coins plus the block's fees), so its totals need no block read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct AddressEntry {
    pub id: Hash256,
    pub received: Amount,
    pub sent: Amount,
}

impl AddressEntry {
    const BYTES: usize = 32 + 8 + 8;
}

/// What an address received and sent on the main chain, and in how many index entries
/// (its transfers, and the blocks it mined).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressTotals {
    pub received: Amount,
    pub sent: Amount,
    pub entries: u64,
}

impl AddressTotals {
    /// Adds `entry` (None: an amount past u64, which no valid chain reaches).
    pub fn with(self, entry: &AddressEntry) -> Option<AddressTotals> {
        Some(AddressTotals {
            received: self.received.checked_add(entry.received)?,
            sent: self.sent.checked_add(entry.sent)?,
            entries: self.entries + 1,
        })
    }
}

/// The address index entry under `iterator`, if it is one of `address`'s (None past them).
fn address_entry_at<'a>(
    iterator: &'a rocksdb::DBRawIterator,
    address: &Address,
) -> Result<Option<(AddressTx, &'a [u8])>, StoreError> {
    let (true, Some(key), Some(value)) = (iterator.valid(), iterator.key(), iterator.value())
    else {
        return Ok(None);
    };
    let entry = AddressTx::from_key(key)
        .ok_or_else(|| StoreError::Corrupt("address index key is not 44 bytes".into()))?;
    Ok((entry.address == *address).then_some((entry, value)))
}

/// An address index value as stored.
fn address_entry(value: &[u8]) -> Result<AddressEntry, StoreError> {
    apiary_core::decode_exact("address index value", value, AddressEntry::BYTES)
        .map_err(|e| StoreError::Corrupt(format!("address index value: {e}")))
}

pub struct Store {
    /// Always Some but while `reopen` swaps it. Shared by the chain and its readers;
    /// `reopen` takes it for itself once every read under way has finished.
    db: std::sync::RwLock<Option<DB>>,
    /// Its memory: the block cache and the memtables' bound.
    tuning: Tuning,
    /// Why writing stopped (an I/O error), until the store is reopened.
    writes_stopped: std::sync::Mutex<Option<String>>,
    path: PathBuf,
    tip_record: open::TipRecord,
}

fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("writing to a Vec cannot fail")
}

/// The open database, held for a read (or a batch being built).
pub(crate) struct Db<'a>(std::sync::RwLockReadGuard<'a, Option<DB>>);

impl std::ops::Deref for Db<'_> {
    type Target = DB;

    fn deref(&self) -> &DB {
        self.0
            .as_ref()
            .expect("the store is open but while it reopens")
    }
}

impl Db<'_> {
    fn cf(&self, name: &str) -> &ColumnFamily {
        self.cf_handle(name)
            .expect("every column family is opened with the store")
    }
}

impl Store {
    fn db(&self) -> Db<'_> {
        Db(self.db.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn get_raw(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db();
        db.get_cf(db.cf(cf), key).map_err(|e| self.db_error(e))
    }

    fn get<T: BorshDeserialize>(&self, cf: &str, key: &[u8]) -> Result<Option<T>, StoreError> {
        let db = self.db();
        let found = db
            .get_pinned_cf(db.cf(cf), key)
            .map_err(|e| self.db_error(e))?;
        match found {
            None => Ok(None),
            Some(bytes) => T::try_from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("record in {cf} does not decode: {e}"))),
        }
    }

    fn write_raw(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        self.check_writable()?;
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db()
            .write_opt(batch, &options)
            .map_err(|e| self.write_error(e))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Whether a write failed and none is tried until `reopen`.
    pub fn writes_stopped(&self) -> bool {
        self.writes_stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// After a write failed with an I/O error (a full disk), RocksDB must not be written
    /// to again until it is reopened: it refuses, and some builds abort on the attempt.
    fn check_writable(&self) -> Result<(), StoreError> {
        let stopped = self
            .writes_stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match stopped {
            None => Ok(()),
            Some(message) if open::is_no_space(&message) => Err(StoreError::NoSpace {
                path: self.path.clone(),
                message,
            }),
            Some(message) => Err(StoreError::WritesStopped(message)),
        }
    }

    /// `db_error` for a failed write: an I/O error stops writing until `reopen`.
    fn write_error(&self, error: rocksdb::Error) -> StoreError {
        if error.kind() == rocksdb::ErrorKind::IOError {
            *self
                .writes_stopped
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(error.clone().into_string());
        }
        self.db_error(error)
    }

    /// Writes every column family's memtable to table files.
    pub fn flush_memtables(&self) -> Result<(), StoreError> {
        self.check_writable()?;
        let db = self.db();
        for name in COLUMN_FAMILIES {
            db.flush_cf(db.cf(name)).map_err(|e| self.write_error(e))?;
        }
        Ok(())
    }

    /// Compacts every column family whole, waiting until it is done (tools and
    /// benchmarks: a store filled in bulk carries compaction work a node would have done
    /// over its months).
    pub fn compact(&self) -> Result<(), StoreError> {
        self.check_writable()?;
        let db = self.db();
        for name in COLUMN_FAMILIES {
            db.compact_range_cf(db.cf(name), None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// Bytes of table files of each column family (the state's is `accounts`), and the
    /// block cache's use: what the ledger costs on disk and in memory.
    pub fn family_bytes(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let db = self.db();
        COLUMN_FAMILIES
            .iter()
            .map(|name| {
                let bytes = db
                    .property_int_value_cf(db.cf(name), "rocksdb.total-sst-files-size")
                    .map_err(|e| self.db_error(e))?;
                Ok((*name, bytes.unwrap_or(0)))
            })
            .collect()
    }

    /// Bytes in RocksDB's block cache now.
    pub fn cache_usage(&self) -> usize {
        self.tuning.cache_usage()
    }

    /// A small synced write: whether the store takes writes (after the disk was full).
    pub fn probe(&self) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.db().cf(CF_META),
            KEY_PROBE,
            crate::time::now_ms().to_le_bytes(),
        );
        self.write_raw(batch, true)
    }

    pub fn tip(&self) -> Result<Option<BlockHash>, StoreError> {
        self.get(CF_META, KEY_TIP)
    }

    pub fn state_tip(&self) -> Result<Option<BlockHash>, StoreError> {
        self.get(CF_ACCOUNTS, KEY_STATE_TIP)
    }

    /// A record of the state column family (an account or a page), as stored.
    pub fn state_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_raw(CF_ACCOUNTS, key)
    }

    pub fn entry(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, StoreError> {
        self.get(CF_HEADERS, hash.as_bytes())
    }

    pub fn body(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError> {
        self.get(CF_BODIES, hash.as_bytes())
    }

    /// A block's stored borsh bytes, as sent to peers.
    pub fn body_bytes(&self, hash: &BlockHash) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_raw(CF_BODIES, hash.as_bytes())
    }

    pub fn undo(&self, hash: &BlockHash) -> Result<Option<StateUndo>, StoreError> {
        self.get(CF_UNDO, hash.as_bytes())
    }

    pub fn main_hash(&self, height: Height) -> Result<Option<BlockHash>, StoreError> {
        self.get(CF_HEIGHTS, &height.0.to_be_bytes())
    }

    pub fn tx_location(&self, txid: &TxId) -> Result<Option<TxLocation>, StoreError> {
        self.get(CF_TXINDEX, txid.as_bytes())
    }

    /// `address`'s stored index entries before `before` (exclusive; all when None), newest
    /// first, at most `limit`.
    pub fn address_txs(
        &self,
        address: &Address,
        before: Option<AddressTx>,
        limit: usize,
    ) -> Result<Vec<(AddressTx, AddressEntry)>, StoreError> {
        let upper = before.unwrap_or(AddressTx {
            address: *address,
            height: Height(u64::MAX),
            index: u32::MAX,
        });
        let db = self.db();
        let mut iterator = db.raw_iterator_cf(db.cf(CF_ADDRINDEX));
        iterator.seek_for_prev(upper.key());
        let mut found = Vec::new();
        while found.len() < limit {
            let Some((entry, value)) = address_entry_at(&iterator, address)? else {
                break;
            };
            if Some(entry) != before {
                found.push((entry, address_entry(value)?));
            }
            iterator.prev();
        }
        iterator.status().map_err(|e| self.db_error(e))?;
        Ok(found)
    }

    /// Sums `address`'s stored index entries, except those `skip` says (changed since the
    /// last flush); more than `max` entries is an error (the work is bounded).
    pub fn address_totals(
        &self,
        address: &Address,
        skip: impl Fn(&AddressTx) -> bool,
        max: u64,
    ) -> Result<AddressTotals, StoreError> {
        let db = self.db();
        let mut iterator = db.raw_iterator_cf(db.cf(CF_ADDRINDEX));
        iterator.seek(address.0);
        let mut totals = AddressTotals::default();
        while let Some((entry, value)) = address_entry_at(&iterator, address)? {
            if !skip(&entry) {
                if totals.entries >= max {
                    return Err(StoreError::TooMany(max));
                }
                totals = totals
                    .with(&address_entry(value)?)
                    .ok_or_else(|| StoreError::Corrupt("address totals overflow".into()))?;
            }
            iterator.next();
        }
        iterator.status().map_err(|e| self.db_error(e))?;
        Ok(totals)
    }

    /// Every stored header, in no particular order.
    pub fn entries(&self) -> Result<Vec<(BlockHash, IndexEntry)>, StoreError> {
        Ok(self
            .decoded(CF_HEADERS, None)?
            .into_iter()
            .map(|(k, v)| (BlockHash(apiary_core::Hash256(k)), v))
            .collect())
    }

    /// Every (height, hash) of the main chain, lowest first.
    pub fn main_chain(&self) -> Result<Vec<(Height, BlockHash)>, StoreError> {
        let db = self.db();
        db.iterator_cf(db.cf(CF_HEIGHTS), rocksdb::IteratorMode::Start)
            .map(|item| {
                let (key, value) = item.map_err(|e| self.db_error(e))?;
                let height = <[u8; 8]>::try_from(&*key)
                    .map_err(|_| StoreError::Corrupt("height key is not 8 bytes".into()))?;
                let hash = BlockHash::try_from_slice(&value)
                    .map_err(|e| StoreError::Corrupt(format!("height index value: {e}")))?;
                Ok((Height(u64::from_be_bytes(height)), hash))
            })
            .collect()
    }

    /// The records of `cf` under 32-byte keys, decoded; `except`: another record's key.
    fn decoded<T: BorshDeserialize>(
        &self,
        cf: &'static str,
        except: Option<&'static [u8]>,
    ) -> Result<Vec<([u8; 32], T)>, StoreError> {
        let db = self.db();
        db.iterator_cf(db.cf(cf), rocksdb::IteratorMode::Start)
            .filter(move |item| match (item, except) {
                (Ok((key, _)), Some(except)) => **key != *except,
                _ => true,
            })
            .map(move |item| {
                let (key, value) = item.map_err(|e| self.db_error(e))?;
                let key = <[u8; 32]>::try_from(&*key)
                    .map_err(|_| StoreError::Corrupt(format!("key in {cf} is not 32 bytes")))?;
                let value = T::try_from_slice(&value)
                    .map_err(|e| StoreError::Corrupt(format!("record in {cf}: {e}")))?;
                Ok((key, value))
            })
            .collect()
    }

    pub fn batch(&self) -> StoreBatch<'_> {
        StoreBatch {
            store: self,
            batch: WriteBatch::default(),
            tip: None,
        }
    }

    /// Applies tx index changes, sorted by txid with each txid once (None: removed).
    pub fn ingest_tx_index(
        &self,
        changes: &[(TxId, Option<TxLocation>)],
    ) -> Result<(), StoreError> {
        let records = changes
            .iter()
            .map(|(txid, location)| (txid.as_bytes(), location.as_ref().map(encode)));
        self.ingest(CF_TXINDEX, records)
    }

    /// Applies address index changes, sorted with each entry once (None: removed).
    pub fn ingest_address_index(
        &self,
        changes: &[(AddressTx, Option<AddressEntry>)],
    ) -> Result<(), StoreError> {
        let records = changes
            .iter()
            .map(|(entry, value)| (entry.key(), value.as_ref().map(encode)));
        self.ingest(CF_ADDRINDEX, records)
    }

    /// Writes the accounts that changed, sorted by address with each once (None or empty:
    /// removed), and that they are now the state after `state_tip`: both or neither.
    pub fn ingest_state(
        &self,
        state_tip: &BlockHash,
        records: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        // The empty key of the state tip sorts first.
        let tip = (KEY_STATE_TIP.to_vec(), Some(state_tip.as_bytes().to_vec()));
        self.ingest(CF_ACCOUNTS, std::iter::once(tip).chain(records))
    }

    /// Writes `records` (keys in strictly ascending order; None: removed) to `cf` as one
    /// table file and has RocksDB take it in whole: atomic, durable when this returns, and
    /// several times cheaper for the hundreds of thousands of keys of a flush than
    /// inserting them into the memtable and the log one by one. RocksDB refuses keys out
    /// of order. Nothing to write is no file.
    fn ingest<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        cf: &'static str,
        records: impl IntoIterator<Item = (K, Option<V>)>,
    ) -> Result<(), StoreError> {
        let mut records = records.into_iter().peekable();
        if records.peek().is_none() {
            return Ok(());
        }
        self.check_writable()?;
        let options = self.tuning.table_options(cf);
        let mut file = SstFileWriter::create(&options);
        let path = self.path.join(INGEST_DIR).join(format!("{cf}.sst"));
        let failed = |e| self.db_error(e);
        file.open(&path).map_err(failed)?;
        for (key, value) in records {
            match value {
                Some(value) => file.put(key, value),
                None => file.delete(key),
            }
            .map_err(failed)?;
        }
        file.finish().map_err(failed)?;
        let mut ingest = IngestExternalFileOptions::default();
        // Linked into the store, not copied: the file is on the same disk already.
        ingest.set_move_files(true);
        let db = self.db();
        db.ingest_external_file_cf_opts(db.cf(cf), &ingest, vec![path])
            .map_err(|e| self.write_error(e))?;
        Ok(())
    }
}

/// The changes of one block connect, disconnect or reorg, committed together or not at all.
pub struct StoreBatch<'a> {
    store: &'a Store,
    batch: WriteBatch,
    /// The tip this batch sets, recorded beside the store once it is durable.
    tip: Option<BlockHash>,
}

impl StoreBatch<'_> {
    pub fn put_entry(&mut self, hash: &BlockHash, entry: &IndexEntry) {
        self.batch.put_cf(
            self.store.db().cf(CF_HEADERS),
            hash.as_bytes(),
            encode(entry),
        );
    }

    pub fn put_body(&mut self, hash: &BlockHash, block: &Block) {
        self.put_encoded_body(hash, &encode(block));
    }

    /// Stores a block's body from its borsh bytes as received (checked to decode to it).
    pub fn put_encoded_body(&mut self, hash: &BlockHash, bytes: &[u8]) {
        self.batch
            .put_cf(self.store.db().cf(CF_BODIES), hash.as_bytes(), bytes);
    }

    pub fn put_undo(&mut self, hash: &BlockHash, undo: &StateUndo) {
        self.batch
            .put_cf(self.store.db().cf(CF_UNDO), hash.as_bytes(), encode(undo));
    }

    pub fn set_main(&mut self, height: Height, hash: &BlockHash) {
        self.batch.put_cf(
            self.store.db().cf(CF_HEIGHTS),
            height.0.to_be_bytes(),
            hash.as_bytes(),
        );
    }

    pub fn unset_main(&mut self, height: Height) {
        self.batch
            .delete_cf(self.store.db().cf(CF_HEIGHTS), height.0.to_be_bytes());
    }

    pub fn set_tip(&mut self, hash: &BlockHash) {
        self.batch
            .put_cf(self.store.db().cf(CF_META), KEY_TIP, hash.as_bytes());
        self.tip = Some(*hash);
    }

    /// Commits everything at once. `sync`: on disk before returning (survives power loss).
    pub fn commit(self, sync: bool) -> Result<(), StoreError> {
        self.store.write_raw(self.batch, sync)?;
        if let (Some(tip), true) = (self.tip, sync) {
            self.store.record_tip(&tip);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_core::{Account, Hash256};

    fn hash(byte: u8) -> BlockHash {
        BlockHash(Hash256([byte; 32]))
    }

    #[test]
    fn another_chain_another_schema_or_a_second_opener_is_refused() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path, hash(1)).unwrap();
        assert!(matches!(
            Store::open(&path, hash(1)),
            Err(StoreError::Locked(_))
        ));
        drop(store);

        let error = Store::open(&path, hash(2)).err().unwrap();
        assert!(matches!(error, StoreError::GenesisMismatch { .. }));
        assert!(error.to_string().contains("another chain"), "{error}");

        let store = Store::open(&path, hash(1)).unwrap();
        let mut batch = WriteBatch::default();
        batch.put_cf(store.db().cf(CF_META), KEY_SCHEMA, 99u32.to_le_bytes());
        store.write_raw(batch, true).unwrap();
        drop(store);
        let error = Store::open(&path, hash(1)).err().unwrap();
        assert!(
            matches!(
                error,
                StoreError::SchemaMismatch {
                    found: 99,
                    expected: SCHEMA_VERSION,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("--reindex"), "{error}");
    }

    #[test]
    fn a_store_from_before_the_state_tree_is_told_to_resync_not_reindex() {
        // Its genesis carries the old state root: its blocks are another chain's.
        let error = StoreError::SchemaMismatch {
            path: "/data/db".into(),
            found: 5,
            expected: SCHEMA_VERSION,
        }
        .to_string();
        assert!(error.contains("--resync"), "{error}");
        assert!(!error.contains("--reindex"), "{error}");
    }

    fn account(balance: u64, nonce: u64) -> Account {
        Account {
            balance: apiary_core::Amount::from_base_units(balance),
            nonce: apiary_core::Nonce(nonce),
        }
    }

    fn stored(store: &Store, address: &Address) -> Option<Account> {
        let bytes = store.state_record(&address.0).unwrap()?;
        Some(borsh::from_slice(&bytes).unwrap())
    }

    /// Account records as a flush writes them.
    fn records<const N: usize>(
        accounts: [(Address, Option<Account>); N],
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        accounts
            .into_iter()
            .map(|(a, account)| (a.0.to_vec(), account.map(|acc| encode(&acc))))
            .collect()
    }

    #[test]
    fn a_flush_puts_and_removes_records_and_they_survive_a_reopen() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("db");
        let (a, b) = (Address([1; 32]), Address([2; 32]));
        let store = Store::open(&path, hash(1)).unwrap();
        store
            .ingest_state(
                &hash(10),
                records([(a, Some(account(5, 0))), (b, Some(account(7, 1)))]),
            )
            .unwrap();
        store
            .ingest_state(&hash(11), records([(a, None), (b, Some(account(3, 2)))]))
            .unwrap();
        let txid = TxId(Hash256([9; 32]));
        let location = TxLocation {
            block: hash(11),
            index: 4,
        };
        store.ingest_tx_index(&[(txid, Some(location))]).unwrap();
        drop(store);

        let store = Store::open(&path, hash(1)).unwrap();
        assert_eq!(store.state_tip().unwrap(), Some(hash(11)));
        assert_eq!(
            (stored(&store, &a), stored(&store, &b)),
            (None, Some(account(3, 2)))
        );
        assert_eq!(store.tx_location(&txid).unwrap(), Some(location));
        store.ingest_tx_index(&[(txid, None)]).unwrap();
        assert_eq!(store.tx_location(&txid).unwrap(), None);
    }

    #[test]
    fn a_refused_flush_changes_neither_accounts_nor_state_tip() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = Store::open(&dir.path().join("db"), hash(1)).unwrap();
        let (a, b) = (Address([1; 32]), Address([2; 32]));
        store
            .ingest_state(&hash(10), records([(a, Some(account(5, 0)))]))
            .unwrap();
        // Out of order: RocksDB refuses the file before anything is taken in.
        let refused = store.ingest_state(
            &hash(11),
            records([(b, Some(account(1, 1))), (a, Some(account(2, 1)))]),
        );
        assert!(matches!(refused, Err(StoreError::Db(_))), "{refused:?}");
        assert_eq!(store.state_tip().unwrap(), Some(hash(10)));
        assert_eq!(
            (stored(&store, &a), stored(&store, &b)),
            (Some(account(5, 0)), None)
        );
    }

    #[test]
    fn garbage_in_the_data_dir_is_refused_as_damage() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("db");
        drop(Store::open(&path, hash(1)).unwrap());
        let current = std::fs::read_to_string(path.join("CURRENT")).unwrap();
        std::fs::write(path.join(current.trim()), b"not a manifest").unwrap();
        let error = Store::open(&path, hash(1)).err().unwrap();
        assert!(matches!(error, StoreError::Damaged { .. }), "{error}");
        assert!(error.to_string().contains("--reindex"), "{error}");
    }

    fn file_names(path: &Path) -> std::collections::BTreeSet<String> {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    #[test]
    fn a_store_without_current_is_refused_every_time_and_never_replaced() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("db");
        drop(Store::open(&path, hash(1)).unwrap());
        std::fs::remove_file(path.join("CURRENT")).unwrap();
        let before = file_names(&path);
        for _ in 0..3 {
            let error = Store::open(&path, hash(1)).err().unwrap();
            assert!(matches!(error, StoreError::Damaged { .. }), "{error}");
            assert!(!path.join("CURRENT").exists());
        }
        // RocksDB may rotate its own text log; no store file appeared or went.
        let ignore = |names: std::collections::BTreeSet<String>| -> Vec<String> {
            names
                .into_iter()
                .filter(|n| !n.starts_with("LOG"))
                .collect()
        };
        assert_eq!(ignore(file_names(&path)), ignore(before));
    }

    #[test]
    fn a_new_store_is_made_in_an_empty_dir_only() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("db");
        std::fs::create_dir(&path).unwrap();
        drop(Store::open(&path, hash(1)).unwrap());
        assert!(path.join("CURRENT").exists());
        assert!(!open::sibling(&path, "new").exists());
    }

    #[test]
    fn a_store_whose_tip_went_back_is_refused() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path, hash(1)).unwrap();
        let entry = |height: u64, work: u8| IndexEntry {
            header: BlockHeader {
                version: 1,
                height: Height(height),
                prev_hash: BlockHash::ZERO,
                tx_root: Hash256::ZERO,
                state_root: Hash256::ZERO,
                miner: Address([0; 32]),
                timestamp_ms: apiary_core::TimestampMs(0),
                bits: apiary_core::CompactTarget(0),
                nonce: 0,
            },
            total_work: Work::from_be_bytes(&[work; 32]),
            status: BlockStatus::Valid,
        };
        let mut batch = store.batch();
        batch.put_entry(&hash(10), &entry(0, 1));
        batch.set_tip(&hash(10));
        batch.commit(true).unwrap();
        let mut batch = store.batch();
        batch.put_entry(&hash(11), &entry(1, 2));
        batch.set_tip(&hash(11));
        batch.commit(true).unwrap();
        // As if the log holding the last batch were lost: the tip is the older block.
        let mut batch = WriteBatch::default();
        batch.put_cf(store.db().cf(CF_META), KEY_TIP, hash(10).as_bytes());
        store.write_raw(batch, true).unwrap();
        drop(store);
        let error = Store::open(&path, hash(1)).err().unwrap();
        assert!(matches!(error, StoreError::Damaged { .. }), "{error}");
        assert!(error.to_string().contains("lost writes"), "{error}");
    }
}
