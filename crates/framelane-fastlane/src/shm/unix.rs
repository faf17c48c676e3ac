//! The fast lane's platform layer on Linux: POSIX shared memory as files under /dev/shm,
//! futexes on the publish word, /proc for process checks, signal handlers for cleanup.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use memmap2::{Mmap, MmapMut, MmapOptions};

/// Directory that holds POSIX shared-memory objects on Linux.
pub const SEGMENT_DIR: &str = "/dev/shm";

/// The directory segments live in.
pub fn segment_dir() -> PathBuf {
    PathBuf::from(SEGMENT_DIR)
}

/// Path of the shared-memory object with this name.
pub fn segment_path(name: &str) -> PathBuf {
    Path::new(SEGMENT_DIR).join(name)
}

/// Identity of a segment file, used to notice that a run was restarted under the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub device: u64,
    pub inode: u64,
}

impl FileIdentity {
    pub fn of(file: &File) -> io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            device: meta.dev(),
            inode: meta.ino(),
        })
    }

    pub fn of_path(path: &Path) -> io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            device: meta.dev(),
            inode: meta.ino(),
        })
    }
}

/// A writable mapping of a new segment file, created under a temporary name.
pub struct NewSegment {
    pub map: MmapMut,
    pub temp_path: PathBuf,
    pub identity: FileIdentity,
}

/// Creates a zero-filled segment of `len` bytes under a temporary name next to `final_path`;
/// [`publish_segment`] moves it into place once its header is written, so a reader never maps a
/// half-initialised header.
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
        .mode(0o600)
        .open(&temp_path)?;
    let result = reserve(&file, len).and_then(|()| {
        let identity = FileIdentity::of(&file)?;
        // SAFETY: the file was just created by this process with the given length; no other
        // process knows its temporary name.
        let map = unsafe { MmapOptions::new().len(len).map_mut(&file)? };
        Ok((map, identity))
    });
    match result {
        Ok((map, identity)) => Ok(NewSegment {
            map,
            temp_path,
            identity,
        }),
        Err(err) => {
            let _ = std::fs::remove_file(&temp_path);
            Err(err)
        }
    }
}

/// Gives the file its length with the space really allocated, so a full /dev/shm is a clear
/// error now rather than a SIGBUS in the producer on its first write to a sparse page.
fn reserve(file: &File, len: usize) -> io::Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
    // SAFETY: posix_fallocate on a descriptor this function borrows; no memory is passed.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        libc::ENOSPC => Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "no room for a {len}-byte segment in {SEGMENT_DIR} (shared memory is full; free it or give the container a larger /dev/shm)"
            ),
        )),
        // File systems without fallocate: a plain length (sparse), as before.
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(len as u64),
        code => Err(io::Error::from_raw_os_error(code)),
    }
}

/// Atomically replaces whatever is at `final_path` with the prepared segment.
pub fn publish_segment(segment: &NewSegment, final_path: &Path) -> io::Result<()> {
    std::fs::rename(&segment.temp_path, final_path)
}

/// An existing segment mapped read-only, with the identity of the file that was mapped.
pub struct MappedSegment {
    /// Turns a SIGBUS from a file cut while mapped into zero pages and a flag (dropped before
    /// the mapping: fields drop in order).
    guard: Option<super::bus_guard::BusGuard>,
    pub map: Mmap,
    pub identity: FileIdentity,
    /// Kept open so the reader can check, before each read, that nobody cut the file shorter
    /// than the mapping (touching a page past the end of the file is SIGBUS).
    pub file: File,
}

/// Maps an existing segment read-only. Readers never write to a segment. Only a regular file
/// owned by this user is mapped: the name is opened without following a link and without
/// blocking (a FIFO named like a segment would otherwise hang the caller), then checked.
pub fn map_segment(path: &Path) -> io::Result<MappedSegment> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, device or directory is never mapped)",
        ));
    }
    // SAFETY: geteuid has no arguments and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("owned by user {}, not by this user ({me})", meta.uid()),
        ));
    }
    let identity = FileIdentity::of(&file)?;
    // SAFETY: the mapping is shared with a writer in another process that changes it
    // concurrently; every access goes through raw pointers with atomics or a seqlock check,
    // never through references that assume the bytes are immutable.
    let map = unsafe { Mmap::map(&file)? };
    let guard = super::bus_guard::BusGuard::new(map.as_ptr(), map.len());
    Ok(MappedSegment {
        guard,
        map,
        identity,
        file,
    })
}

impl MappedSegment {
    /// Whether the file was cut under the mapping while it was read (a guarded SIGBUS): the
    /// mapping now reads as zeros and the segment must be treated as truncated.
    pub fn cut_while_mapped(&self) -> bool {
        self.guard.as_ref().is_some_and(|g| g.faulted())
    }
}

/// Maps the first `len` bytes of the segment `identity` names, writable, for the one field a
/// reader writes: the count of readers sleeping on the publish futex. The rest of the segment
/// stays mapped read-only. None when the file is not that segment any more or cannot be opened
/// for writing (the reader then polls).
pub fn map_sleepers(path: &Path, identity: FileIdentity, len: usize) -> Option<memmap2::MmapMut> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    if FileIdentity::of(&file).ok()? != identity || file.metadata().ok()?.len() < len as u64 {
        return None;
    }
    // SAFETY: as in `map_segment`; only the sleeper count is ever touched through this mapping,
    // with atomics.
    unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file).ok() }
}

/// Nanoseconds on CLOCK_MONOTONIC, which all processes on one machine share.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Sleeps until `word` no longer holds `expected`, someone wakes it, or `timeout` passes. The
/// word lives in a shared mapping, so the futex is a shared (not process-private) one: a writer
/// in another process wakes it.
pub fn futex_wait(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: std::time::Duration,
) {
    #[cfg(target_os = "linux")]
    {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `word` is a valid, aligned u32 for the duration of the call; the kernel only
        // reads it. Spurious returns (EINTR, EAGAIN when the value already changed) are fine:
        // callers re-check what they wait for.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                &ts as *const libc::timespec,
                std::ptr::null::<u32>(),
                0u32,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (word, expected);
        std::thread::sleep(timeout.min(std::time::Duration::from_millis(1)));
    }
}

/// Wakes every thread (in any process) sleeping in [`futex_wait`] on `word`.
pub fn futex_wake_all(word: &std::sync::atomic::AtomicU32) {
    #[cfg(target_os = "linux")]
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not touch its value.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = word;
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat), which
/// tells a live writer from an unrelated process that reused its pid.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Start time of this process, for the segment header.
pub fn own_start_ticks() -> u64 {
    process_start_ticks(std::process::id()).unwrap_or(0)
}

// ---- cleanup on SIGINT / SIGTERM -------------------------------------------------------------

/// The path as the signal handler passes it to unlink(2) (no allocation in the handler).
pub(super) type CleanupPath = CString;

pub(super) fn cleanup_path(path: &Path) -> Option<CleanupPath> {
    CString::new(path.as_os_str().as_encoded_bytes()).ok()
}

extern "C" fn on_termination(signal: libc::c_int) {
    // Only async-signal-safe work: an atomic store and unlink(2) per registered segment. The
    // entries are leaked on purpose because the process is about to die.
    super::take_cleanups(|entry| {
        // SAFETY: the flags word stays mapped while its registration lives; the path is a
        // valid C string.
        unsafe {
            (*entry.flags).fetch_or(entry.invalidated_bit, Ordering::SeqCst);
            libc::unlink(entry.path.as_ptr());
        }
    });
    // SAFETY: restoring the default action and re-raising gives the usual exit status.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

pub(super) fn install_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: we install a handler that only does async-signal-safe work; an existing
        // non-default handler is kept rather than replaced.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if old.sa_sigaction != libc::SIG_DFL {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_termination as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}
