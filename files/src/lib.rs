//! Files that must never be seen half-written and are for this user only: the node's key,
//! RPC cookie and addresses, the wallet's keystore and signed transactions, the pool's
//! books and their history.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Writes a file as a whole or not at all: into `<path>.tmp` (mode 0600), synced, then
/// renamed over `path`, then the directory synced. If `write` fails, `path` is untouched
/// and the temporary file is removed.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    let temporary = PathBuf::from(name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        write(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// `write_atomically` of `contents`.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_atomically(path, |file| file.write_all(contents))
}

/// Appends `contents` to `path` (made with mode 0600 if missing) and syncs it; a file just
/// made has its directory synced too, so the append survives a crash once this returns.
pub fn append_synced(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let existed = path.exists();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_data()?;
    if !existed {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_file_is_replaced_whole_or_not_at_all() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("cookie");
        write_private_file(&path, b"first").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let failed = write_atomically(&path, |file| {
            file.write_all(b"sec")?;
            Err(std::io::Error::other("interrupted"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert!(!dir.path().join("cookie.tmp").exists());
        write_private_file(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
    }

    #[test]
    fn appends_add_to_the_end_and_a_new_file_is_private() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("history");
        append_synced(&path, b"one\n").unwrap();
        append_synced(&path, b"two\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
