//! Survives a segment file cut shorter while it is mapped. Touching a mapped page past the end
//! of its file raises SIGBUS, and a reader's fstat before each read cannot close the window
//! between the check and the copy. A guarded mapping is registered here; a SIGBUS whose address
//! falls inside one replaces that whole mapping with zero pages (so the interrupted copy
//! finishes, reading zeros, and every later access is harmless) and marks it faulted, which the
//! reader then reports as a truncated segment. A SIGBUS anywhere else goes to the handler that
//! was installed before, or ends the process as it would have without this guard.
//!
//! The handler only reads atomics and calls mmap(2), which is async-signal-safe in practice
//! (Wayland compositors guard client pools the same way).

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

/// Mappings guarded at once; past it a mapping goes unguarded (the fstat checks remain).
const SLOTS: usize = 128;

#[allow(clippy::declare_interior_mutable_const)]
const FREE: AtomicUsize = AtomicUsize::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const CLEAR: AtomicBool = AtomicBool::new(false);

/// Start address of each guarded mapping (0: the slot is not active).
static STARTS: [AtomicUsize; SLOTS] = [FREE; SLOTS];
static LENS: [AtomicUsize; SLOTS] = [FREE; SLOTS];
/// Claimed by a guard (set before its range is published, cleared after it is withdrawn).
static CLAIMED: [AtomicBool; SLOTS] = [CLEAR; SLOTS];
static FAULTED: [AtomicBool; SLOTS] = [CLEAR; SLOTS];

static INSTALL: Once = Once::new();
/// The SIGBUS action in force before ours; written once, before ours is installed.
static mut PREVIOUS: MaybeUninit<libc::sigaction> = MaybeUninit::uninit();
static HAVE_PREVIOUS: AtomicBool = AtomicBool::new(false);

/// One guarded mapping; withdrawn on drop (drop it before the mapping is unmapped).
#[derive(Debug)]
pub struct BusGuard {
    slot: usize,
}

impl BusGuard {
    /// Guards `len` bytes from `start`; None when every slot is taken or the handler could not
    /// be installed.
    pub fn new(start: *const u8, len: usize) -> Option<Self> {
        if start.is_null() || len == 0 || !install() {
            return None;
        }
        let slot = (0..SLOTS).find(|&i| {
            CLAIMED[i]
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        FAULTED[slot].store(false, Ordering::Relaxed);
        LENS[slot].store(len, Ordering::Relaxed);
        STARTS[slot].store(start as usize, Ordering::Release);
        Some(Self { slot })
    }

    /// Whether a SIGBUS hit the mapping (its file was cut while mapped): it now reads zeros.
    pub fn faulted(&self) -> bool {
        FAULTED[self.slot].load(Ordering::Acquire)
    }
}

impl Drop for BusGuard {
    fn drop(&mut self) {
        STARTS[self.slot].store(0, Ordering::Release);
        LENS[self.slot].store(0, Ordering::Relaxed);
        CLAIMED[self.slot].store(false, Ordering::Release);
    }
}

/// Installs the handler once; false if it could not be.
fn install() -> bool {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    INSTALL.call_once(|| {
        // SAFETY: sigaction with a zeroed struct we fill in; PREVIOUS is written here only,
        // before the handler that reads it can run.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &action, &mut previous) == 0 {
                (*std::ptr::addr_of_mut!(PREVIOUS)).write(previous);
                HAVE_PREVIOUS.store(true, Ordering::Release);
                INSTALLED.store(true, Ordering::Release);
            }
        }
    });
    INSTALLED.load(Ordering::Acquire)
}

extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel hands a valid siginfo to an SA_SIGINFO handler.
    let address = unsafe { (*info).si_addr() } as usize;
    for slot in 0..SLOTS {
        let start = STARTS[slot].load(Ordering::Acquire);
        if start == 0 {
            continue;
        }
        let len = LENS[slot].load(Ordering::Acquire);
        if address >= start && address < start.saturating_add(len) {
            // SAFETY: replaces exactly the pages of a mapping its owner registered and still
            // holds (it withdraws the guard before unmapping); private anonymous pages read as
            // zeros and take writes harmlessly.
            let replaced = unsafe {
                libc::mmap(
                    start as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if replaced != libc::MAP_FAILED {
                FAULTED[slot].store(true, Ordering::Release);
                return;
            }
            break;
        }
    }
    pass_on(signal, info, context);
}

/// A SIGBUS that is not ours: the previous handler takes it, or the default action (the fault
/// repeats when the handler returns and the process ends as it would have).
fn pass_on(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: PREVIOUS was written before our handler was installed (HAVE_PREVIOUS says so);
    // the previous handler is called as the kind its flags say it is.
    unsafe {
        if HAVE_PREVIOUS.load(Ordering::Acquire) {
            let previous = (*std::ptr::addr_of!(PREVIOUS)).assume_init_ref();
            let handler = previous.sa_sigaction;
            if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
                if previous.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(handler);
                    f(signal, info, context);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
                    f(signal);
                }
                return;
            }
        }
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut default.sa_mask);
        libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_cut_under_a_guarded_mapping_reads_zeros_instead_of_killing_the_process() {
        let page = 4096;
        let path = std::env::temp_dir().join(format!("framelane-busguard-{}", std::process::id()));
        let mut file = std::fs::File::create(&path).expect("file");
        file.write_all(&vec![7u8; 3 * page]).expect("fill");
        let file = std::fs::File::open(&path).expect("open");
        // SAFETY: a private test file nobody else writes.
        let map = unsafe { memmap2::Mmap::map(&file).expect("map") };
        let guard = BusGuard::new(map.as_ptr(), map.len()).expect("guard");
        assert_eq!(map[2 * page], 7);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(page as u64))
            .expect("cut the file");
        // Without the guard this read is a SIGBUS that ends the test process.
        // SAFETY: reading inside the mapping; the guard makes a cut page read as zero.
        let past_the_end = unsafe { std::ptr::read_volatile(map.as_ptr().add(2 * page)) };
        assert_eq!(past_the_end, 0);
        assert!(guard.faulted());
        drop(guard);
        drop(map);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn guards_are_withdrawn_and_their_slots_reused() {
        let bytes = [1u8; 64];
        let guards: Vec<_> = (0..16)
            .map(|_| BusGuard::new(bytes.as_ptr(), bytes.len()).expect("a free slot"))
            .collect();
        let slots: Vec<usize> = guards.iter().map(|g| g.slot).collect();
        drop(guards);
        for slot in slots {
            assert_eq!(STARTS[slot].load(Ordering::Acquire), 0, "withdrawn");
        }
        let again = BusGuard::new(bytes.as_ptr(), bytes.len()).expect("a slot is free again");
        assert!(!again.faulted());
    }
}
