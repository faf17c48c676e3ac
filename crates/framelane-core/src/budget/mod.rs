//! The daemon's memory ceiling: one byte budget that every queue and encode job draws from.
//!
//! An item that holds bytes while it waits (a chunk of steps for the store writer, a kept frame
//! for the store, the snapshot writer or a video encoder, an open encode job's buffers) takes a
//! [`Charge`] of its size before it is queued and gives it back when it is dropped, wherever
//! that happens. When the ceiling is reached the sender either waits for room (with a
//! deadline) or gives up at once, by the policy of the queue it sends to
//! ([`WhenFull`]); both are counted. An item is always let in when nothing else is charged, so
//! one item larger than the whole ceiling still moves, alone.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The daemon's default ceiling: 1 GiB.
pub const DEFAULT_LIMIT: u64 = 1 << 30;

/// The smallest ceiling accepted: 16 MiB.
pub const MIN_LIMIT: u64 = 16 << 20;

/// What a sender does when its item does not fit under the ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room until the deadline, then give up.
    Wait(Instant),
    /// Give up at once.
    Shed,
}

/// Figures of the budget, for Health and the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetFigures {
    pub limit: u64,
    pub used: u64,
    pub peak: u64,
    /// Charges that had to wait for room.
    pub waits: u64,
    /// Charges refused (the sender shed its item).
    pub refused: u64,
}

/// One byte budget shared by the daemon's queues.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
    peak: AtomicU64,
    waits: AtomicU64,
    refused: AtomicU64,
    /// Senders waiting now (threads and tasks); releases wake them only when there are some.
    waiting: AtomicUsize,
    lock: Mutex<()>,
    room: Condvar,
    async_room: tokio::sync::Notify,
}

/// Bytes held against a budget, given back on drop.
#[derive(Debug)]
pub struct Charge {
    budget: Option<Arc<MemoryBudget>>,
    bytes: u64,
}

impl Charge {
    /// A charge against no budget (items of parts that run without a ceiling).
    pub fn none() -> Self {
        Self {
            budget: None,
            bytes: 0,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Takes `other`'s bytes into this charge (both are given back together). A charge against
    /// no budget takes on `other`'s budget.
    pub fn absorb(&mut self, mut other: Charge) {
        let Some(budget) = other.budget.take() else {
            return;
        };
        match &self.budget {
            Some(mine) if Arc::ptr_eq(mine, &budget) => self.bytes += other.bytes,
            Some(_) => budget.release(other.bytes),
            None => {
                self.budget = Some(budget);
                self.bytes += other.bytes;
            }
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(budget) = self.budget.take() {
            budget.release(self.bytes);
        }
    }
}

/// Longest single sleep of a waiting thread before it looks again (a safety net: releases
/// wake waiters).
const RECHECK: Duration = Duration::from_millis(50);

impl MemoryBudget {
    /// A budget of `limit` bytes (at least [`MIN_LIMIT`]).
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(MIN_LIMIT),
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            lock: Mutex::new(()),
            room: Condvar::new(),
            async_room: tokio::sync::Notify::new(),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn figures(&self) -> BudgetFigures {
        BudgetFigures {
            limit: self.limit,
            used: self.used.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// Takes `bytes` if they fit (or if nothing else is charged); never waits, counts nothing.
    pub fn try_charge(self: &Arc<Self>, bytes: u64) -> Option<Charge> {
        self.try_take(bytes)
    }

    /// Whether `bytes` would fit now.
    pub fn has_room(&self, bytes: u64) -> bool {
        let used = self.used.load(Ordering::Relaxed);
        used == 0 || used.saturating_add(bytes) <= self.limit
    }

    fn try_take(self: &Arc<Self>, bytes: u64) -> Option<Charge> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let after = used.saturating_add(bytes);
            if after > self.limit && used > 0 {
                return None;
            }
            match self
                .used
                .compare_exchange_weak(used, after, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.peak.fetch_max(after, Ordering::Relaxed);
                    return Some(Charge {
                        budget: Some(Arc::clone(self)),
                        bytes,
                    });
                }
                Err(now) => used = now,
            }
        }
    }

    fn refuse(&self) -> Option<Charge> {
        self.refused.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Charges `bytes` from a thread, waiting by `when_full`; None: refused (and counted).
    pub fn charge_blocking(self: &Arc<Self>, bytes: u64, when_full: WhenFull) -> Option<Charge> {
        if let Some(charge) = self.try_take(bytes) {
            return Some(charge);
        }
        let WhenFull::Wait(deadline) = when_full else {
            return self.refuse();
        };
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let charge = loop {
            if let Some(charge) = self.try_take(bytes) {
                break Some(charge);
            }
            let now = Instant::now();
            if now >= deadline {
                break None;
            }
            guard = self
                .room
                .wait_timeout(guard, (deadline - now).min(RECHECK))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        };
        drop(guard);
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        charge.or_else(|| self.refuse())
    }

    /// Charges `bytes` from a task, waiting by `when_full`; None: refused (and counted).
    pub async fn charge(self: &Arc<Self>, bytes: u64, when_full: WhenFull) -> Option<Charge> {
        if let Some(charge) = self.try_take(bytes) {
            return Some(charge);
        }
        let WhenFull::Wait(deadline) = when_full else {
            return self.refuse();
        };
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let charge = loop {
            let notified = self.async_room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(charge) = self.try_take(bytes) {
                break Some(charge);
            }
            let now = Instant::now();
            if now >= deadline {
                break None;
            }
            let wake = tokio::time::Instant::from_std(deadline.min(now + RECHECK));
            let _ = tokio::time::timeout_at(wake, notified).await;
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        charge.or_else(|| self.refuse())
    }

    fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        if self.waiting.load(Ordering::Acquire) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.room.notify_all();
            drop(_guard);
            self.async_room.notify_waiters();
        }
    }
}

/// Parses a byte size as given on the command line: a number with an optional unit (B, KiB,
/// MiB, GiB, TiB; K, M, G, T are the same binary units), e.g. "512MiB", "2G", "1073741824".
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 512MiB, 2GiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        "t" | "tib" | "tb" => 1 << 40,
        other => {
            return Err(format!(
                "{other:?} is not a size unit (B, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let bytes = number * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn charges_are_given_back_on_drop() {
        let budget = MemoryBudget::new(32 * MIB);
        let a = budget.charge_blocking(20 * MIB, WhenFull::Shed).unwrap();
        assert!(budget.charge_blocking(20 * MIB, WhenFull::Shed).is_none());
        assert_eq!(budget.figures().used, 20 * MIB);
        drop(a);
        assert_eq!(budget.figures().used, 0);
        assert!(budget.charge_blocking(20 * MIB, WhenFull::Shed).is_some());
        let figures = budget.figures();
        assert_eq!((figures.peak, figures.refused), (20 * MIB, 1));
    }

    #[test]
    fn an_item_larger_than_the_ceiling_moves_alone() {
        let budget = MemoryBudget::new(16 * MIB);
        let big = budget.charge_blocking(64 * MIB, WhenFull::Shed);
        assert!(big.is_some(), "nothing else charged: let in");
        assert!(budget.charge_blocking(1, WhenFull::Shed).is_none());
    }

    #[test]
    fn a_waiting_thread_gets_room_when_another_item_is_dropped() {
        let budget = MemoryBudget::new(16 * MIB);
        let held = budget.charge_blocking(16 * MIB, WhenFull::Shed).unwrap();
        let waiter = {
            let budget = Arc::clone(&budget);
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                budget
                    .charge_blocking(MIB, WhenFull::Wait(deadline))
                    .map(|c| c.bytes())
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while budget.figures().waits == 0 {
            assert!(Instant::now() < deadline, "the waiter never waited");
            std::thread::yield_now();
        }
        drop(held);
        assert_eq!(waiter.join().unwrap(), Some(MIB));
        assert_eq!(budget.figures().refused, 0);
    }

    #[test]
    fn a_waiting_task_gives_up_at_its_deadline() {
        let budget = MemoryBudget::new(16 * MIB);
        let _held = budget.charge_blocking(16 * MIB, WhenFull::Shed).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_millis(100);
        let got = runtime.block_on(budget.charge(MIB, WhenFull::Wait(deadline)));
        assert!(got.is_none());
        assert!(Instant::now() >= deadline);
        let figures = budget.figures();
        assert_eq!((figures.waits, figures.refused), (1, 1));
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("512MiB"), Ok(512 * MIB));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1.5 GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("5 parsecs").unwrap_err().contains("unit"));
        assert!(parse_size("99999999999999T").is_err());
    }
}
