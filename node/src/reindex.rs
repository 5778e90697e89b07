//! `--reindex` and `--resync`: rebuilding the store from the blocks an old one still holds
//! (every block re-checked and connected anew, into a new store beside it), or setting the
//! store aside to download the chain again. The old store is never written to; it is
//! deleted only when every block in it was read back, and otherwise kept beside the new
//! one for the operator.

use crate::cache::CacheBudget;
use crate::chain::{Chain, ChainError};
use crate::mempool::MempoolConfig;
use crate::node::Node;
use crate::store::salvage::Salvage;
use crate::store::{sibling, sync_dir, Store, StoreError};
use apiary_core::{ChainSpec, Height};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// In a rebuilt store, written once it is complete: from then on it replaces the old one,
/// even if the node stops before the swap (the next start finishes it).
const REBUILT_FILE: &str = "APIARY-REBUILT";
/// Blocks handed to the import pipeline at once.
const BATCH_BLOCKS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ReindexError {
    #[error("cannot read anything from the store in {path}: {source}; start with --resync to set it aside and download the chain from peers", path = path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("the store in {path} is of another chain (its genesis block is {found}); use another --datadir", path = path.display())]
    OtherChain { path: PathBuf, found: String },
    #[error("{action} {path}: {source}", path = path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ReindexError + 'a {
    move |source| ReindexError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What a rebuild recovered.
#[derive(Debug)]
pub struct Rebuilt {
    /// Height of the rebuilt store's tip.
    pub height: Height,
    /// Why the walk stopped before the old store's last block, if it did.
    pub stopped: Option<String>,
    /// Where the old store was kept (it had damage), if it was.
    pub kept: Option<PathBuf>,
}

fn seconds_now() -> u64 {
    crate::time::now_ms() / 1000
}

/// Finishes a rebuild that completed but was interrupted before its store took the old
/// one's place, and clears one that did not complete. Run before the store is opened.
pub fn finish_interrupted(db: &Path) -> Result<(), ReindexError> {
    let rebuilt = sibling(db, "reindex");
    if rebuilt.join(REBUILT_FILE).exists() {
        if db.exists() {
            let aside = sibling(db, &format!("replaced-{}", seconds_now()));
            std::fs::rename(db, &aside).map_err(io("cannot set aside", db))?;
            tracing::warn!(kept = %aside.display(), "a rebuild of the store was interrupted; the store it replaces was kept");
        }
        swap_in(&rebuilt, db)?;
    } else if rebuilt.exists() {
        std::fs::remove_dir_all(&rebuilt).map_err(io("cannot remove", &rebuilt))?;
    }
    Ok(())
}

fn swap_in(rebuilt: &Path, db: &Path) -> Result<(), ReindexError> {
    std::fs::rename(rebuilt, db).map_err(io("cannot move the rebuilt store to", db))?;
    if let Some(parent) = db.parent() {
        sync_dir(parent).map_err(io("cannot sync", parent))?;
    }
    std::fs::remove_file(db.join(REBUILT_FILE)).map_err(io("cannot finish", db))?;
    Ok(())
}

/// Moves the store at `db` aside, so the node starts a new one and downloads the chain
/// from its peers. Returns where it went (None: there was none).
pub fn resync(db: &Path) -> Result<Option<PathBuf>, ReindexError> {
    if !db.exists() {
        return Ok(None);
    }
    let aside = sibling(db, &format!("set-aside-{}", seconds_now()));
    std::fs::rename(db, &aside).map_err(io("cannot set aside", db))?;
    if let Some(parent) = db.parent() {
        sync_dir(parent).map_err(io("cannot sync", parent))?;
    }
    Ok(Some(aside))
}

/// Rebuilds the store at `db` from the main-chain blocks it still holds, re-checking and
/// connecting each into a new store, up to the first it cannot give or that is invalid.
/// Returns None when there is no store to rebuild.
pub fn reindex(
    db: &Path,
    spec: Arc<ChainSpec>,
    budget: &CacheBudget,
) -> Result<Option<Rebuilt>, ReindexError> {
    let has_store = std::fs::read_dir(db).is_ok_and(|mut entries| entries.next().is_some());
    if !has_store {
        return Ok(None);
    }
    let old = Salvage::open(db).map_err(|source| ReindexError::Unreadable {
        path: db.to_path_buf(),
        source,
    })?;
    let genesis = spec.genesis_hash();
    match old.main_block(Height(0)) {
        Ok(Some(block)) if block.hash != genesis => {
            return Err(ReindexError::OtherChain {
                path: db.to_path_buf(),
                found: block.hash.to_string(),
            })
        }
        _ => {}
    }
    let rebuilt = sibling(db, "reindex");
    let store = Store::open_tuned(&rebuilt, genesis, budget.store_tuning())?;
    let chain = Chain::open_with_budget(store, spec, budget)?;
    let node = Node::new(chain, MempoolConfig::default());
    let mut stopped = None;
    let mut height = 1;
    'walk: loop {
        let batch_start = height;
        let mut batch = Vec::with_capacity(BATCH_BLOCKS);
        let mut last = false;
        while batch.len() < BATCH_BLOCKS {
            match old.main_block(Height(height)) {
                Ok(Some(block)) => batch.push(block.bytes),
                Ok(None) => {
                    last = true;
                    break;
                }
                Err(damage) => {
                    stopped = Some(format!("block at height {height} cannot be read: {damage}"));
                    last = true;
                    break;
                }
            }
            height += 1;
        }
        if let Err(refused) = node.connect_in_order(batch) {
            let at = batch_start + refused.position as u64;
            stopped = Some(format!(
                "block at height {at} is refused: {}",
                refused.error
            ));
            break 'walk;
        }
        let connected = node.lock().chain.height();
        tracing::info!(height = connected.0, "reindex progress");
        if last {
            break;
        }
    }
    node.shutdown();
    let height = node.lock().chain.height();
    drop(node);
    let damaged = stopped.is_some() || old.found_damage();
    drop(old);

    // Complete: from here on the rebuilt store wins, even across a crash.
    apiary_files::write_private_file(&rebuilt.join(REBUILT_FILE), b"complete\n")
        .map_err(io("cannot mark complete", &rebuilt))?;
    let aside = sibling(
        db,
        &format!(
            "{}-{}",
            if damaged { "damaged" } else { "old" },
            seconds_now()
        ),
    );
    std::fs::rename(db, &aside).map_err(io("cannot set aside", db))?;
    swap_in(&rebuilt, db)?;
    let kept = if damaged {
        Some(aside)
    } else {
        std::fs::remove_dir_all(&aside).map_err(io("cannot remove", &aside))?;
        None
    };
    Ok(Some(Rebuilt {
        height,
        stopped,
        kept,
    }))
}
