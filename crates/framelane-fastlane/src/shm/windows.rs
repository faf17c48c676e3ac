//! The fast lane's platform layer on Windows: segment files in the user's local application data
//! (`%LOCALAPPDATA%\framelane\shm`), mapped shared by every process that opens them (the same
//! bytes as on Linux), process checks through the process's creation time, polling instead of a
//! futex (Windows has no cross-process address wait), and a console control handler for cleanup.
//!
//! Compile-checked on Linux with `cargo check -p framelane-fastlane --target
//! x86_64-pc-windows-gnu`; not run on Windows by the test suite.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::{Mmap, MmapMut, MmapOptions};
use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, STILL_ACTIVE};
use windows_sys::Win32::System::Console::SetConsoleCtrlHandler;
use windows_sys::Win32::System::Performance::{QueryPerformanceCounter, QueryPerformanceFrequency};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcessId, GetExitCodeProcess, GetProcessTimes, OpenProcess,
    PROCESS_QUERY_LIMITED_INFORMATION,
};

/// Readers, writers and deleters may all have a segment open at once, as on Linux.
const SHARE_ALL: u32 = 0x1 | 0x2 | 0x4; // FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE

/// The directory segments live in (created on first use).
pub fn segment_dir() -> PathBuf {
    let base = std::env::var_os("LOCALAPPDATA")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join("framelane").join("shm");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Path of the segment with this name.
pub fn segment_path(name: &str) -> PathBuf {
    segment_dir().join(name)
}

/// Identity of a segment file (its creation time stands in for the inode): a run restarted
/// under the same name has a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub device: u64,
    pub inode: u64,
}

impl FileIdentity {
    pub fn of(file: &File) -> io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            device: 0,
            inode: meta.creation_time(),
        })
    }

    pub fn of_path(path: &Path) -> io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            device: 0,
            inode: meta.creation_time(),
        })
    }
}

/// A writable mapping of a new segment file, created under a temporary name.
pub struct NewSegment {
    pub map: MmapMut,
    pub temp_path: PathBuf,
    pub identity: FileIdentity,
}

/// Creates a zero-filled segment of `len` bytes under a temporary name next to `final_path`.
pub fn create_segment(final_path: &Path, len: usize) -> io::Result<NewSegment> {
    let file_name = final_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment");
    let temp_path =
        final_path.with_file_name(format!(".{file_name}.creating-{}", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .share_mode(SHARE_ALL)
        .open(&temp_path)?;
    let result = file.set_len(len as u64).and_then(|()| {
        let identity = FileIdentity::of(&file)?;
        // SAFETY: the file was just created by this process with the given length.
        let map = unsafe { MmapOptions::new().len(len).map_mut(&file)? };
        Ok(NewSegment {
            map,
            temp_path: temp_path.clone(),
            identity,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp_path);
    }
    result
}

/// Replaces whatever is at `final_path` with the prepared segment.
pub fn publish_segment(segment: &NewSegment, final_path: &Path) -> io::Result<()> {
    std::fs::rename(&segment.temp_path, final_path)
}

/// An existing segment mapped read-only.
pub struct MappedSegment {
    pub map: Mmap,
    pub identity: FileIdentity,
    /// Kept open so the reader can check, before each read, that nobody cut the file shorter
    /// than the mapping (touching a page past the end of the file is SIGBUS).
    pub file: File,
}

impl MappedSegment {
    /// Always false: Windows refuses to cut a file that is mapped.
    pub fn cut_while_mapped(&self) -> bool {
        false
    }
}

/// Maps an existing segment read-only (the directory is the user's own).
pub fn map_segment(path: &Path) -> io::Result<MappedSegment> {
    let file = OpenOptions::new()
        .read(true)
        .share_mode(SHARE_ALL)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let identity = FileIdentity::of(&file)?;
    // SAFETY: as on Linux: the bytes change under us and are only read through atomics or a
    // seqlock check.
    let map = unsafe { Mmap::map(&file)? };
    Ok(MappedSegment {
        map,
        identity,
        file,
    })
}

/// Maps the header writable for the sleeper count (see the Linux side).
pub fn map_sleepers(path: &Path, identity: FileIdentity, len: usize) -> Option<MmapMut> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .share_mode(SHARE_ALL)
        .open(path)
        .ok()?;
    if FileIdentity::of(&file).ok()? != identity || file.metadata().ok()?.len() < len as u64 {
        return None;
    }
    // SAFETY: only the sleeper count is touched through this mapping, with atomics.
    unsafe { MmapOptions::new().len(len).map_mut(&file).ok() }
}

/// Nanoseconds of the performance counter, which all processes on one machine share.
pub fn monotonic_ns() -> u64 {
    let (mut count, mut frequency) = (0i64, 0i64);
    // SAFETY: both calls write into integers we own; they cannot fail on Windows XP and later.
    unsafe {
        QueryPerformanceCounter(&mut count);
        QueryPerformanceFrequency(&mut frequency);
    }
    if frequency <= 0 {
        return 0;
    }
    ((count as i128 * 1_000_000_000) / frequency as i128) as u64
}

/// No cross-process address wait on Windows: a reader polls (sleeps one millisecond at most).
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: std::time::Duration) {
    if word.load(Ordering::SeqCst) == expected {
        std::thread::sleep(timeout.min(std::time::Duration::from_millis(1)));
    }
}

/// Nothing to wake: readers poll.
pub fn futex_wake_all(_word: &AtomicU32) {}

/// Creation time of a running process (100 ns units), which tells it from a later process that
/// reused its id; None when it does not run.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    // SAFETY: OpenProcess returns null or a handle we close below; GetExitCodeProcess and
    // GetProcessTimes write into values we own.
    unsafe {
        let handle = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
        if handle.is_null() {
            return None;
        }
        let mut code = 0u32;
        let running = GetExitCodeProcess(handle, &mut code) != 0 && code == STILL_ACTIVE as u32;
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
        let timed = GetProcessTimes(handle, &mut created, &mut exited, &mut kernel, &mut user) != 0;
        CloseHandle(handle);
        (running && timed)
            .then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
    }
}

/// Creation time of this process, for the segment header.
pub fn own_start_ticks() -> u64 {
    // SAFETY: no arguments.
    process_start_ticks(unsafe { GetCurrentProcessId() }).unwrap_or(0)
}

// ---- cleanup on Ctrl-C, Ctrl-Break and console close ------------------------------------------

pub(super) type CleanupPath = PathBuf;

pub(super) fn cleanup_path(path: &Path) -> Option<CleanupPath> {
    Some(path.to_owned())
}

pub(super) fn install_handlers() {
    // SAFETY: installs a handler function with the documented signature.
    unsafe { SetConsoleCtrlHandler(Some(on_console_event), 1) };
}

/// Runs on a thread of its own (not in a signal context): invalidates and deletes every
/// registered segment, then lets the default handler end the process.
unsafe extern "system" fn on_console_event(_event: u32) -> i32 {
    super::take_cleanups(|entry| {
        // SAFETY: the flags word stays mapped while its registration lives.
        unsafe { (*entry.flags).fetch_or(entry.invalidated_bit, Ordering::SeqCst) };
        let _ = std::fs::remove_file(&entry.path);
    });
    0
}
