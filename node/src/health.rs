//! The node's health. A fatal fault (a core task ended, the store is damaged, a thread
//! panicked while changing the chain) stops the node with a non-zero exit so a supervisor
//! restarts it: never a half-alive node that still answers RPC. A full disk only pauses
//! what writes (mining, accepting blocks and transactions) until there is room again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// If the disk has room again but the store still refuses writes this long after, the
/// node stops (exit ≠ 0), so that a restart reopens it.
pub const STUCK_AFTER_ROOM: Duration = Duration::from_secs(60);
/// The free space is looked at no more often than this on the way of a write.
const ROOM_CHECK_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct Health {
    fatal: Mutex<Option<String>>,
    fatal_notify: tokio::sync::Notify,
    storage_full: Mutex<Option<StorageFull>>,
    /// The store's directory and the room kept free on its disk.
    store: OnceLock<(PathBuf, u64)>,
    /// When the free space was last looked at, in ms since `started`.
    room_checked_ms: AtomicU64,
    started: OnceLock<Instant>,
}

#[derive(Clone, Debug)]
pub struct StorageFull {
    pub path: PathBuf,
    pub message: String,
    /// When the disk was first seen to have room again, while writes still failed.
    room_since: Option<Instant>,
}

/// Room the node keeps free on the store's disk, so that RocksDB rarely runs out in the
/// middle of a write (a memtable flush writes up to 64 MiB): a twentieth of the disk,
/// between 1 MiB and 64 MiB. Writing pauses below it and resumes at twice it.
pub fn reserve_for(path: &Path) -> u64 {
    disk_bytes(path)
        .map(|total| (total / 20).clamp(1 << 20, 64 << 20))
        .unwrap_or(64 << 20)
}

impl Health {
    /// Watches the free space of the disk holding the store at `path` from now on.
    pub fn watch_store(&self, path: &Path) {
        let _ = self.store.set((path.to_path_buf(), reserve_for(path)));
        let _ = self.started.set(Instant::now());
    }

    /// The store's directory, once watched.
    pub fn store_path(&self) -> Option<PathBuf> {
        self.store.get().map(|(path, _)| path.clone())
    }

    /// Records a fatal fault (the first one is what the node exits with) and wakes
    /// whoever waits in `failed`.
    pub fn fail(&self, reason: impl Into<String>) {
        let reason = reason.into();
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            tracing::error!(%reason, "fatal: the node stops");
            *fatal = Some(reason);
            self.fatal_notify.notify_one();
        }
    }

    pub fn fatal_reason(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves with the reason once the node has failed.
    pub async fn failed(&self) -> String {
        loop {
            if let Some(reason) = self.fatal_reason() {
                return reason;
            }
            self.fatal_notify.notified().await;
        }
    }

    /// A write failed because the disk holding `path` is full: pause writing.
    pub fn storage_is_full(&self, path: &Path, message: &str) {
        let mut full = self.storage_full.lock().unwrap_or_else(|e| e.into_inner());
        if full.is_none() {
            tracing::error!(
                path = %path.display(),
                free_bytes = free_bytes(path).unwrap_or(0),
                reason = %message,
                "the disk is full: mining and accepting blocks and transactions pause until there is room"
            );
        }
        *full = Some(StorageFull {
            path: path.to_path_buf(),
            message: message.to_string(),
            room_since: full.as_ref().and_then(|f| f.room_since),
        });
    }

    /// Why writing is paused, if it is: a message for users. On the way of every write:
    /// it also pauses writing when the disk has less room than the node keeps free.
    pub fn storage_full(&self) -> Option<String> {
        self.check_room();
        let full = self.storage_full.lock().unwrap_or_else(|e| e.into_inner());
        full.as_ref().map(|f| {
            format!(
                "storage full: the disk holding {} has {} bytes free; the node resumes once there is room ({})",
                f.path.display(),
                free_bytes(&f.path).unwrap_or(0),
                f.message
            )
        })
    }

    /// Pauses writing if the store's disk has less room than the reserve (looked at
    /// every `ROOM_CHECK_INTERVAL` at most).
    fn check_room(&self) {
        let (Some((path, reserve)), Some(started)) = (self.store.get(), self.started.get()) else {
            return;
        };
        let now = started.elapsed().as_millis() as u64;
        let last = self.room_checked_ms.load(Ordering::Acquire);
        if now.saturating_sub(last) < ROOM_CHECK_INTERVAL.as_millis() as u64
            || self
                .room_checked_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let free = free_bytes(path).unwrap_or(u64::MAX);
        if free < *reserve {
            self.storage_is_full(
                path,
                &format!("{free} bytes free, less than the {reserve} the node keeps free"),
            );
        }
    }

    /// While paused: once the disk has twice the reserve free, `recover` makes the store
    /// take writes again (reopening it if a write failed) and writing resumes.
    pub fn check_storage(&self, recover: impl FnOnce() -> Result<(), String>) {
        let Some(full) = self
            .storage_full
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return;
        };
        let reserve = self.store.get().map_or(64 << 20, |(_, r)| *r);
        let free = free_bytes(&full.path).unwrap_or(0);
        if free < reserve.saturating_mul(2) {
            return;
        }
        match recover() {
            Ok(()) => {
                tracing::info!(path = %full.path.display(), free_bytes = free, "the disk has room again: resuming");
                *self.storage_full.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            Err(error) => {
                let since = full.room_since.unwrap_or_else(Instant::now);
                if since.elapsed() >= STUCK_AFTER_ROOM {
                    self.fail(format!(
                        "the store still refuses writes {} s after the disk has room again: {error}",
                        STUCK_AFTER_ROOM.as_secs()
                    ));
                }
                if let Some(f) = self
                    .storage_full
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                {
                    f.room_since = Some(since);
                }
            }
        }
    }
}

/// Size of the file system holding `path`.
fn disk_bytes(path: &Path) -> Option<u64> {
    statvfs(path).map(|s| s.f_blocks.saturating_mul(s.f_frsize))
}

fn statvfs(path: &Path) -> Option<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed struct statvfs fills.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat)
}

/// Bytes free for unprivileged use on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    statvfs(path).map(|s| s.f_bavail.saturating_mul(s.f_frsize))
}

/// Held by a core task (the network, the sync importer, the miner) for as long as it
/// runs: if the task ends while the node is not stopping, by returning or by a panic, the
/// node fails, saying which task and how.
pub struct CoreTask {
    node: std::sync::Arc<crate::Node>,
    name: &'static str,
}

impl CoreTask {
    pub fn new(node: std::sync::Arc<crate::Node>, name: &'static str) -> CoreTask {
        CoreTask { node, name }
    }
}

impl Drop for CoreTask {
    fn drop(&mut self) {
        if self.node.is_shutting_down() {
            return;
        }
        let how = if std::thread::panicking() {
            "panicked (see the error above)"
        } else {
            "stopped"
        };
        self.node.health().fail(format!("the {} {how}", self.name));
    }
}
