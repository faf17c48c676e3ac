//! The bounded queue in front of one encoder worker.
//!
//! Policy when full: the producer waits up to `max_wait` for room, then sheds the *oldest*
//! queued frame (of any job on this worker) to make room, and the shed frame is counted against
//! its job. Control commands (open, finish) never wait and are never shed. Frame buffers come
//! back to a small pool after encoding, so steady-state submission does not allocate.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::budget::Charge;
use crate::bus::RawPixelFormat;

/// A frame waiting for its encoder.
#[derive(Debug)]
pub struct QueuedFrame {
    pub job: u64,
    pub step: u64,
    pub width: u32,
    pub height: u32,
    pub format: RawPixelFormat,
    /// Tightly packed rows.
    pub pixels: Vec<u8>,
    /// The frame's bytes held against the daemon's memory ceiling until it is encoded or shed.
    pub charge: Charge,
}

/// What a worker is asked to do.
#[derive(Debug)]
pub enum WorkItem {
    Frame(QueuedFrame),
    /// The job's input is complete: finish its file.
    Finish(u64),
    /// Stop after what is queued.
    Stop,
}

/// Why a frame was handed back instead of queued.
#[derive(Debug)]
pub enum Refused {
    /// The queue is closed (its worker stopped).
    Closed(QueuedFrame),
    /// The queue was full and its worker stalled while the producer waited for room.
    Stalled(QueuedFrame),
}

/// How long a waiting producer sleeps before it looks again whether the worker has stalled.
const STALL_LOOK: Duration = Duration::from_millis(250);

/// How a submission went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Time spent waiting for room.
    pub waited: Duration,
    /// Job whose oldest frame was shed to make room, if any.
    pub shed_job: Option<u64>,
}

struct State {
    items: VecDeque<WorkItem>,
    frames: usize,
    pool: Vec<Vec<u8>>,
    closed: bool,
}

/// Bounded queue of frames (plus unbounded, rare control commands) for one worker.
pub struct FrameQueue {
    state: Mutex<State>,
    room: Condvar,
    work: Condvar,
    capacity: usize,
    max_wait: Duration,
}

impl FrameQueue {
    pub fn new(capacity: usize, max_wait: Duration) -> Self {
        let capacity = capacity.max(1);
        Self {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity + 4),
                frames: 0,
                pool: Vec::with_capacity(capacity + 2),
                closed: false,
            }),
            room: Condvar::new(),
            work: Condvar::new(),
            capacity,
            max_wait,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Frames queued now.
    pub fn depth(&self) -> usize {
        self.lock().frames
    }

    /// A buffer of `len` bytes, reused from the pool when one is there (its old contents are
    /// left in place: the caller overwrites them, and zeroing a frame costs as much as
    /// copying one).
    pub fn buffer(&self, len: usize) -> Vec<u8> {
        let mut buffer = self.lock().pool.pop().unwrap_or_default();
        if buffer.len() != len {
            buffer.resize(len, 0);
        }
        buffer
    }

    /// Returns an encoded frame's buffer to the pool.
    pub fn recycle(&self, buffer: Vec<u8>) {
        let mut state = self.lock();
        if state.pool.len() < self.capacity + 2 {
            state.pool.push(buffer);
        }
    }

    /// Queues a frame under the policy; returns how long it waited and what was shed. A closed
    /// queue hands the frame back.
    pub fn push_frame(&self, frame: QueuedFrame) -> Result<PushOutcome, Refused> {
        self.push_frame_within(frame, self.max_wait, || false)
    }

    /// Queues a frame, waiting up to `max_wait` (instead of the queue's own) for room before
    /// the oldest frame is shed. While it waits it looks every 250 ms at `stalled`: once that
    /// says the worker is stuck, the frame is handed back at once rather than after the wait.
    pub fn push_frame_within(
        &self,
        frame: QueuedFrame,
        max_wait: Duration,
        stalled: impl Fn() -> bool,
    ) -> Result<PushOutcome, Refused> {
        let started = Instant::now();
        let deadline = started + max_wait;
        let mut state = self.lock();
        let mut outcome = PushOutcome::default();
        while state.frames >= self.capacity && !state.closed {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if stalled() {
                return Err(Refused::Stalled(frame));
            }
            state = self
                .room
                .wait_timeout(state, (deadline - now).min(STALL_LOOK))
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        if state.closed {
            return Err(Refused::Closed(frame));
        }
        if state.frames >= self.capacity {
            if let Some(index) = state
                .items
                .iter()
                .position(|item| matches!(item, WorkItem::Frame(_)))
            {
                if let Some(WorkItem::Frame(old)) = state.items.remove(index) {
                    outcome.shed_job = Some(old.job);
                    state.frames -= 1;
                    if state.pool.len() < self.capacity + 2 {
                        state.pool.push(old.pixels);
                    }
                }
            }
        }
        state.items.push_back(WorkItem::Frame(frame));
        state.frames += 1;
        outcome.waited = started.elapsed();
        drop(state);
        self.work.notify_one();
        Ok(outcome)
    }

    /// Queues a control command (never waits, never shed).
    pub fn push_control(&self, item: WorkItem) {
        let mut state = self.lock();
        if matches!(item, WorkItem::Stop) {
            state.closed = true;
        }
        state.items.push_back(item);
        drop(state);
        self.work.notify_one();
        self.room.notify_all();
    }

    /// Worker side, when the worker stops for good (a panic included): the queue closes, so
    /// producers are refused at once instead of waiting for room that never comes, and the
    /// frames still queued are dropped (their memory charges go back); returns the jobs of
    /// the dropped frames, one entry per frame.
    pub fn abandon(&self) -> Vec<u64> {
        let mut state = self.lock();
        state.closed = true;
        let mut dropped = Vec::new();
        state.items.retain(|item| match item {
            WorkItem::Frame(frame) => {
                dropped.push(frame.job);
                false
            }
            _ => true,
        });
        state.frames = 0;
        drop(state);
        self.room.notify_all();
        dropped
    }

    /// Worker side: the next item, waiting for one.
    pub fn pop(&self) -> WorkItem {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                if matches!(item, WorkItem::Frame(_)) {
                    state.frames -= 1;
                    drop(state);
                    self.room.notify_one();
                }
                return item;
            }
            state = self.work.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(job: u64, step: u64) -> QueuedFrame {
        QueuedFrame {
            job,
            step,
            width: 2,
            height: 2,
            format: RawPixelFormat::Rgb8,
            pixels: vec![0; 12],
            charge: Charge::none(),
        }
    }

    #[test]
    fn full_queue_waits_then_sheds_the_oldest_frame() {
        let queue = FrameQueue::new(2, Duration::from_millis(30));
        queue.push_control(WorkItem::Finish(9));
        assert_eq!(queue.push_frame(frame(1, 0)).unwrap().shed_job, None);
        assert_eq!(queue.push_frame(frame(2, 1)).unwrap().shed_job, None);
        let outcome = queue.push_frame(frame(3, 2)).unwrap();
        assert_eq!(outcome.shed_job, Some(1), "the oldest frame goes");
        assert!(outcome.waited >= Duration::from_millis(30));
        assert!(outcome.waited < Duration::from_millis(500));
        // Control command first (never shed), then frames 1 and 2 in order.
        assert!(matches!(queue.pop(), WorkItem::Finish(9)));
        assert!(matches!(queue.pop(), WorkItem::Frame(f) if f.step == 1));
        assert!(matches!(queue.pop(), WorkItem::Frame(f) if f.step == 2));
        assert_eq!(queue.depth(), 0);
    }

    #[test]
    fn a_waiting_producer_gets_room_when_the_worker_takes_a_frame() {
        let queue = std::sync::Arc::new(FrameQueue::new(1, Duration::from_secs(5)));
        queue.push_frame(frame(1, 0)).unwrap();
        let worker = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                queue.pop()
            })
        };
        let outcome = queue.push_frame(frame(1, 1)).unwrap();
        assert_eq!(outcome.shed_job, None);
        assert!(matches!(worker.join().unwrap(), WorkItem::Frame(f) if f.step == 0));
        // It did wait for room, and was woken by the pop: without the notify it would sleep
        // the whole 5 s policy before finding the room.
        assert!(
            outcome.waited > Duration::ZERO,
            "the queue was full: it must wait"
        );
        assert!(
            outcome.waited < Duration::from_millis(2500),
            "woken by the pop, not by the timeout (waited {:?})",
            outcome.waited
        );
    }

    #[test]
    fn a_producer_waiting_for_room_gives_up_as_soon_as_the_worker_is_stalled() {
        let queue = FrameQueue::new(1, Duration::from_secs(30));
        queue.push_frame(frame(1, 0)).unwrap();
        let stuck = std::sync::atomic::AtomicBool::new(false);
        let started = Instant::now();
        let refused = std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                stuck.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            queue.push_frame_within(frame(1, 1), Duration::from_secs(30), || {
                stuck.load(std::sync::atomic::Ordering::Relaxed)
            })
        });
        assert!(
            matches!(refused, Err(Refused::Stalled(ref f)) if f.step == 1),
            "{refused:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "given up within a look of the stall, not after the 30 s wait ({:?})",
            started.elapsed()
        );
        assert_eq!(queue.depth(), 1, "the queued frame stays; nothing was shed");
    }

    #[test]
    fn a_stopped_queue_hands_frames_back() {
        let queue = FrameQueue::new(1, Duration::from_millis(1));
        queue.push_control(WorkItem::Stop);
        assert!(queue.push_frame(frame(1, 0)).is_err());
    }
}
