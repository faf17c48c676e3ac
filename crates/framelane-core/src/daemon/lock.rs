//! One daemon per data directory: an exclusive advisory lock (`flock`) on
//! `<data dir>/daemon.lock`, held for the daemon's life and released by the kernel when the
//! process ends, however it ends (a kill -9 leaves nothing to clean up). The file holds the
//! holder's pid and listening address, so a second daemon's error names them and a GUI that
//! finds the directory taken can show the running daemon instead.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "daemon.lock";

/// Who holds a data directory, as its lock file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: Option<u32>,
    /// Where the holder listens (None while it is still starting).
    pub address: Option<SocketAddr>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "process {pid}")?,
            None => f.write_str("another process")?,
        }
        if let Some(address) = self.address {
            write!(f, ", listening on {address}")?;
        }
        Ok(())
    }
}

/// Why a data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("data directory {dir} is in use by another framelane daemon ({holder}); stop it, use another --data-dir, or connect to it")]
    Busy { dir: PathBuf, holder: LockHolder },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The lock on a data directory; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Creates the directory if needed and takes its lock, or says who holds it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // A new data directory is its owner's alone (recordings and telemetry are private).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| LockError::Io {
                path: dir.to_owned(),
                source,
            })?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(LockError::Busy {
                    dir: dir.to_owned(),
                    holder: read_holder(&path),
                });
            }
            return Err(io(err));
        }
        let mut lock = Self {
            file,
            path: path.clone(),
        };
        lock.write(None).map_err(io)?;
        Ok(lock)
    }

    /// Records the address the daemon listens on, for whoever finds the directory taken.
    pub fn publish(&mut self, address: SocketAddr) -> Result<(), LockError> {
        self.write(Some(address)).map_err(|source| LockError::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn write(&mut self, address: Option<SocketAddr>) -> std::io::Result<()> {
        let mut text = format!("{}\n", std::process::id());
        if let Some(address) = address {
            text.push_str(&format!("{address}\n"));
        }
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()
    }
}

/// The holder named in a lock file (fields it cannot read are None).
pub fn read_holder(path: &Path) -> LockHolder {
    let mut text = String::new();
    let _ = File::open(path).and_then(|f| f.take(256).read_to_string(&mut text));
    let mut lines = text.lines();
    LockHolder {
        pid: lines.next().and_then(|l| l.trim().parse().ok()),
        address: lines.next().and_then(|l| l.trim().parse().ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "framelane-lock-{tag}-{}-{}",
            std::process::id(),
            crate::fastlane::shm::monotonic_ns()
        ));
        std::fs::create_dir_all(&dir).expect("scratch");
        dir
    }

    #[test]
    fn a_second_lock_names_the_holder_and_a_released_lock_can_be_taken_again() {
        let dir = scratch("busy");
        let mut first = DataDirLock::acquire(&dir).expect("first lock");
        let address: SocketAddr = "127.0.0.1:50999".parse().expect("addr");
        first.publish(address).expect("publish");
        match DataDirLock::acquire(&dir) {
            Err(LockError::Busy { holder, .. }) => {
                assert_eq!(holder.pid, Some(std::process::id()));
                assert_eq!(holder.address, Some(address));
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(first);
        let again = DataDirLock::acquire(&dir).expect("lock after release");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_lock_file_replaced_by_a_link_is_not_followed() {
        let dir = scratch("link");
        let target = dir.join("elsewhere");
        std::fs::write(&target, b"keep me").expect("target");
        std::os::unix::fs::symlink(&target, dir.join(LOCK_FILE)).expect("link");
        assert!(matches!(
            DataDirLock::acquire(&dir),
            Err(LockError::Io { .. })
        ));
        assert_eq!(std::fs::read(&target).expect("target"), b"keep me");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
