//! Platform layer of the fast lane: the only code that maps shared memory, names segment files,
//! inspects other processes, sleeps on and wakes the publish word, and installs the termination
//! cleanup. Linux (`unix.rs`): POSIX shared memory as files under /dev/shm, futexes, signal
//! handlers. Windows (`windows.rs`): segment files in the user's local application data, mapped
//! with the same file-mapping calls, process checks through the process handle's creation time,
//! polling instead of a futex, a console control handler for cleanup.

#[cfg(unix)]
mod bus_guard;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix::{cleanup_path, install_handlers, CleanupPath};
#[cfg(unix)]
pub use unix::{
    create_segment, futex_wait, futex_wake_all, map_segment, map_sleepers, monotonic_ns,
    own_start_ticks, process_start_ticks, publish_segment, segment_dir, segment_path, FileIdentity,
    MappedSegment, NewSegment, SEGMENT_DIR,
};

/// Keeps a SIGBUS from a file cut under a mapping from killing the process (Linux); see
/// `bus_guard.rs`.
#[cfg(unix)]
pub use bus_guard::BusGuard as MappingGuard;

/// Windows refuses to cut a mapped file: nothing to guard.
#[cfg(windows)]
#[derive(Debug)]
pub struct MappingGuard;

#[cfg(windows)]
impl MappingGuard {
    pub fn new(_start: *const u8, _len: usize) -> Option<Self> {
        Some(Self)
    }

    pub fn faulted(&self) -> bool {
        false
    }
}

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows::{cleanup_path, install_handlers, CleanupPath};
#[cfg(windows)]
pub use windows::{
    create_segment, futex_wait, futex_wake_all, map_segment, map_sleepers, monotonic_ns,
    own_start_ticks, process_start_ticks, publish_segment, segment_dir, segment_path, FileIdentity,
    MappedSegment, NewSegment,
};

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::Once;

/// Nanoseconds since the Unix epoch.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Whether the process that wrote a segment still runs: its pid exists and, when the segment
/// recorded one, it has the same start time.
pub fn writer_alive(pid: u32, start_ticks: u64) -> bool {
    if pid == 0 {
        return false;
    }
    match process_start_ticks(pid) {
        Some(ticks) => start_ticks == 0 || ticks == start_ticks,
        None => false,
    }
}

/// Removes a segment file; a missing file is not an error.
pub fn unlink_segment(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// The files in the segment directory: (name, size, modified).
pub fn list_segment_files() -> io::Result<Vec<(String, u64, std::time::SystemTime)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(segment_dir())? {
        let Ok(entry) = entry else { continue };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        out.push((name, meta.len(), modified));
    }
    Ok(out)
}

// ---- cleanup when the process is told to end ---------------------------------------------------

/// A segment to invalidate and remove if the process is terminated (SIGINT/SIGTERM on Linux,
/// console events on Windows).
struct CleanupEntry {
    path: CleanupPath,
    flags: *const AtomicU32,
    invalidated_bit: u32,
}

const CLEANUP_SLOTS: usize = 64;
static CLEANUP: [AtomicPtr<CleanupEntry>; CLEANUP_SLOTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; CLEANUP_SLOTS];
static INSTALL: Once = Once::new();

/// Handle of a registration; dropping it (or calling [`CleanupRegistration::release`]) removes it.
pub struct CleanupRegistration {
    slot: Option<usize>,
}

impl CleanupRegistration {
    /// Removes the entry so the handler no longer touches the segment.
    pub fn release(&mut self) {
        if let Some(slot) = self.slot.take() {
            let ptr = CLEANUP[slot].swap(std::ptr::null_mut(), Ordering::AcqRel);
            if !ptr.is_null() {
                // SAFETY: the pointer came from Box::into_raw in `register_cleanup` and was
                // swapped out, so nothing else can reach it.
                drop(unsafe { Box::from_raw(ptr) });
            }
        }
    }
}

impl Drop for CleanupRegistration {
    fn drop(&mut self) {
        self.release();
    }
}

/// A registration that cleans nothing up, for writers that opted out.
pub fn register_cleanup_disabled() -> CleanupRegistration {
    CleanupRegistration { slot: None }
}

/// Registers a segment for cleanup when the process is told to end, installing the handler
/// once. The flags word must stay mapped until the registration is released. Returns a
/// registration that does nothing when all slots are taken (the segment is then only cleaned up
/// on drop).
pub fn register_cleanup(
    path: &Path,
    flags: *const AtomicU32,
    invalidated_bit: u32,
) -> CleanupRegistration {
    INSTALL.call_once(install_handlers);
    let Some(path) = cleanup_path(path) else {
        return CleanupRegistration { slot: None };
    };
    let entry = Box::into_raw(Box::new(CleanupEntry {
        path,
        flags,
        invalidated_bit,
    }));
    for (i, slot) in CLEANUP.iter().enumerate() {
        if slot
            .compare_exchange(
                std::ptr::null_mut(),
                entry,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            return CleanupRegistration { slot: Some(i) };
        }
    }
    // SAFETY: never published, still owned here.
    drop(unsafe { Box::from_raw(entry) });
    CleanupRegistration { slot: None }
}

/// Takes every registered entry out of the table and hands it to `cleanup` (from the platform's
/// termination handler; entries are leaked: the process is ending). Allocation-free.
fn take_cleanups(mut cleanup: impl FnMut(&CleanupEntry)) {
    for slot in CLEANUP.iter() {
        let ptr = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !ptr.is_null() {
            // SAFETY: entries stay alive until swapped out; this one is ours now.
            cleanup(unsafe { &*ptr });
        }
    }
}
