//! Platform layer of the fast lane: the only code that maps shared memory, names segment files,
//! inspects other processes, sleeps on and wakes the publish word, and installs the termination
//! cleanup. Linux (`unix.rs`): POSIX shared memory as files under /dev/shm, futexes, signal
//! handlers. Windows (`windows.rs`): segment files in the user's local application data, mapped
//! with the same file-mapping calls, process checks through the process handle's creation time,
//! polling instead of a futex, a console control handler for cleanup.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
