//! How much memory the store may use: one block cache shared by every column family, which
//! holds their index and filter blocks too (so those stay bounded however large the store
//! grows), and memtables bounded in total. Point lookups of keys that are not there (a
//! new account's page, a tx never seen) are answered by bloom filters without a read.

use super::{CF_ACCOUNTS, CF_ADDRINDEX, CF_BODIES, CF_HEADERS, CF_TXINDEX, COLUMN_FAMILIES};
use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBRecoveryMode, Options};

/// Bits per key of the bloom filters (about 1 % false positives).
const BLOOM_BITS: f64 = 10.0;

#[derive(Clone)]
pub struct Tuning {
    cache: Cache,
    write_buffer_bytes: usize,
}

impl Default for Tuning {
    /// Small: for tests and tools. A node sizes it from `--cache-mb`.
    fn default() -> Tuning {
        Tuning::new(8 << 20, 16 << 20)
    }
}

impl Tuning {
    /// A block cache of `cache_bytes`, and at most `write_buffer_bytes` of memtables.
    pub fn new(cache_bytes: usize, write_buffer_bytes: usize) -> Tuning {
        Tuning {
            cache: Cache::new_lru_cache(cache_bytes),
            write_buffer_bytes,
        }
    }

    /// Bytes in the block cache now.
    pub fn cache_usage(&self) -> usize {
        self.cache.get_usage()
    }

    /// The options every open of the store uses; `create` only for a new one.
    pub(super) fn db_options(&self, create: bool) -> Options {
        let mut options = Options::default();
        options.create_if_missing(create);
        options.create_missing_column_families(create);
        options.set_max_open_files(512);
        options.increase_parallelism(2);
        options.set_db_write_buffer_size(self.write_buffer_bytes);
        // A torn last record is what a crash leaves; damage anywhere else in the log is
        // refused instead of silently cutting the log there (RocksDB's default).
        options.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        options.set_paranoid_checks(true);
        // RocksDB's own text log: a write to it after it once failed (a full disk) aborts
        // some builds of the library (Debian's keeps its assertions), so only fatal news.
        options.set_log_level(rocksdb::LogLevel::Fatal);
        options
    }

    /// The options of column family `cf`, and of the table files a flush writes for it.
    pub(super) fn table_options(&self, cf: &str) -> Options {
        let mut options = Options::default();
        if [CF_ACCOUNTS, CF_TXINDEX, CF_ADDRINDEX].contains(&cf) {
            // Hashes and keys: compressing them saves nothing and costs a fifth of a flush.
            options.set_compression_type(rocksdb::DBCompressionType::None);
        }
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_format_version(5);
        // Looked up by whole key (the address index is scanned by prefix instead).
        if [CF_ACCOUNTS, CF_TXINDEX, CF_HEADERS, CF_BODIES].contains(&cf) {
            table.set_bloom_filter(BLOOM_BITS, false);
        }
        options.set_block_based_table_factory(&table);
        options
    }

    pub(super) fn descriptors(&self) -> impl Iterator<Item = ColumnFamilyDescriptor> + '_ {
        COLUMN_FAMILIES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, self.table_options(name)))
    }
}
