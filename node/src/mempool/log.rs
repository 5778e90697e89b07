//! The mempool's log, so that accepted transactions survive a restart or a crash: each
//! accepted transaction is appended as it is accepted (one write, no sync: like the
//! process's other writes it survives `kill -9`), and the log is rewritten whole from the
//! pool at a clean stop and whenever it has grown well past the pool (mined transactions
//! are never deleted from it one by one). On start every record is checked again.
//!
//! A record: payload length (u32 LE), arrival time in ms since the Unix epoch (u64 LE),
//! the transaction's borsh bytes, and the first 4 bytes of the SHA-256 of the time and the
//! bytes. Reading stops at the first record that is short or does not check (a torn end).

use apiary_core::encoding::decode_exact;
use apiary_core::tx::MAX_TX_BYTES;
use apiary_core::SignedTransaction;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const HEADER_BYTES: usize = 4 + 8;
const CHECK_BYTES: usize = 4;
/// A log this many records past the pool (or more than twice its size) is rewritten.
const SLACK_RECORDS: usize = 10_000;

pub struct MempoolLog {
    file: File,
    path: PathBuf,
    /// Records in the file now.
    records: usize,
}

/// A transaction read back from the log, with when it first arrived.
pub struct Logged {
    pub arrived_ms: u64,
    pub tx: SignedTransaction,
}

fn check(arrived_ms: u64, payload: &[u8]) -> [u8; CHECK_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(arrived_ms.to_le_bytes());
    hasher.update(payload);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn record(arrived_ms: u64, tx: &SignedTransaction) -> Vec<u8> {
    let payload = tx.encode();
    let mut record = Vec::with_capacity(HEADER_BYTES + payload.len() + CHECK_BYTES);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&arrived_ms.to_le_bytes());
    record.extend_from_slice(&payload);
    record.extend_from_slice(&check(arrived_ms, &payload));
    record
}

/// The records of `bytes` up to the first bad one, and how many bytes they take.
fn parse(bytes: &[u8]) -> (Vec<Logged>, usize) {
    let mut logged = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER_BYTES) {
        let length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let arrived_ms = u64::from_le_bytes(header[4..].try_into().expect("8 bytes"));
        if length > MAX_TX_BYTES {
            break;
        }
        let start = at + HEADER_BYTES;
        let (Some(payload), Some(sum)) = (
            bytes.get(start..start + length),
            bytes.get(start + length..start + length + CHECK_BYTES),
        ) else {
            break;
        };
        if sum != check(arrived_ms, payload) {
            break;
        }
        let Ok(tx) = decode_exact::<SignedTransaction>("transaction", payload, MAX_TX_BYTES) else {
            break;
        };
        logged.push(Logged { arrived_ms, tx });
        at = start + length + CHECK_BYTES;
    }
    (logged, at)
}

impl MempoolLog {
    /// Opens the log at `path` (creating it), returning what it holds. A torn end is cut
    /// off, so that what is appended next can be read back.
    pub fn open(path: &Path) -> std::io::Result<(MempoolLog, Vec<Logged>)> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (logged, good) = parse(&bytes);
        if good < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                cut = bytes.len() - good,
                "the mempool log ends in a torn record; cutting it off"
            );
            file.set_len(good as u64)?;
        }
        let log = MempoolLog {
            file,
            path: path.to_path_buf(),
            records: logged.len(),
        };
        Ok((log, logged))
    }

    /// Appends one accepted transaction.
    pub fn append(&mut self, arrived_ms: u64, tx: &SignedTransaction) -> std::io::Result<()> {
        self.file.write_all(&record(arrived_ms, tx))?;
        self.records += 1;
        Ok(())
    }

    /// Whether the log has grown enough past a pool of `pool_len` to rewrite it.
    pub fn wants_rewrite(&self, pool_len: usize) -> bool {
        self.records > pool_len.saturating_mul(2).saturating_add(SLACK_RECORDS)
    }

    /// Replaces the log with exactly `txs` (written beside it, synced, renamed over it).
    pub fn rewrite<'a>(
        &mut self,
        txs: impl IntoIterator<Item = (u64, &'a SignedTransaction)>,
    ) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        let mut records = 0;
        for (arrived_ms, tx) in txs {
            bytes.extend_from_slice(&record(arrived_ms, tx));
            records += 1;
        }
        apiary_files::write_private_file(&self.path, &bytes)?;
        self.file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.records = records;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_core::spec::ChainId;
    use apiary_core::{Address, Amount, Nonce, SigningKey, Transaction};

    fn tx(nonce: u64) -> SignedTransaction {
        let key = SigningKey::from_bytes(&[7; 32]);
        Transaction {
            chain_id: ChainId::new("apiary-test").unwrap(),
            from: Address(key.verifying_key().to_bytes()),
            to: Address([1; 32]),
            amount: Amount::from_base_units(5),
            fee: Amount::from_base_units(1_000),
            nonce: Nonce(nonce),
        }
        .sign(&key)
    }

    #[test]
    fn appended_records_come_back_and_a_torn_end_is_cut_off() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("mempool.log");
        let (mut log, found) = MempoolLog::open(&path).unwrap();
        assert!(found.is_empty());
        log.append(11, &tx(0)).unwrap();
        log.append(12, &tx(1)).unwrap();
        drop(log);
        // Half a record at the end, as a crash in the middle of a write leaves.
        let torn = record(13, &tx(2));
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(file);

        let (mut log, found) = MempoolLog::open(&path).unwrap();
        let read: Vec<(u64, u64)> = found
            .iter()
            .map(|l| (l.arrived_ms, l.tx.tx.nonce.0))
            .collect();
        assert_eq!(read, vec![(11, 0), (12, 1)]);
        log.append(14, &tx(3)).unwrap();
        drop(log);
        let (_, found) = MempoolLog::open(&path).unwrap();
        assert_eq!(found.len(), 3, "what follows a cut-off end reads back");
    }

    #[test]
    fn a_flipped_byte_ends_the_log_there() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("mempool.log");
        let (mut log, _) = MempoolLog::open(&path).unwrap();
        for nonce in 0..3 {
            log.append(nonce, &tx(nonce)).unwrap();
        }
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        let second = record(0, &tx(0)).len() + HEADER_BYTES + 5;
        bytes[second] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let (_, found) = MempoolLog::open(&path).unwrap();
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn a_rewrite_holds_exactly_what_it_was_given() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("mempool.log");
        let (mut log, _) = MempoolLog::open(&path).unwrap();
        for nonce in 0..5 {
            log.append(nonce, &tx(nonce)).unwrap();
        }
        let keep = [tx(3), tx(4)];
        log.rewrite(keep.iter().map(|t| (9, t))).unwrap();
        log.append(10, &tx(5)).unwrap();
        drop(log);
        let (_, found) = MempoolLog::open(&path).unwrap();
        let nonces: Vec<u64> = found.iter().map(|l| l.tx.tx.nonce.0).collect();
        assert_eq!(nonces, vec![3, 4, 5]);
    }
}
