//! The encoder service: a configured number of named worker threads (`encode-0`, ...), each fed
//! by its own bounded [`FrameQueue`]. A job is one episode (or any sequence of frames) going
//! into one file, cut into segments of at most `max_frames_per_file`; a job is pinned to the
//! worker with the fewest jobs, so several episodes encode in parallel.
//!
//! Producer cost: one queue lock, at most `max_wait` of waiting, never an encoder call. When an
//! encode fails the job turns *failed*: its file keeps what was written, every later frame goes
//! to a raw spool file beside it (`<file>.failed.raw` + `.json`), and the failure is reported.
//! Nothing is dropped silently.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::budget::Charge;
use crate::bus::RawPixelFormat;

use super::probe::probe;
use super::queue::{FrameQueue, QueuedFrame, Refused, WorkItem};
use super::settings::{Container, EncoderSettings};
use super::video_file::{finalize_faststart, FinishedFile, VideoFileWriter};
use super::EncodeError;

/// Service-wide configuration.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Worker threads (files encoded in parallel).
    pub workers: usize,
    /// Frames queued per worker before the policy applies.
    pub queue_frames: usize,
    /// How long a producer may wait for room before the oldest frame is shed.
    pub max_wait: Duration,
    /// A file is cut into segments of at most this many frames.
    pub max_frames_per_file: u64,
    /// Scheduling niceness of the encoders' own threads (x264, SVT-AV1), so producers (capture,
    /// ingest, the GUI) win the CPU when it is short (Linux; 0: unchanged). The worker threads
    /// themselves keep normal priority.
    pub nice: i32,
    /// A worker busy with one item (a frame, a file's finish) for longer than this is
    /// *stalled*: producers stop waiting for it, its jobs are let go to other workers and
    /// `Health` lists it until it moves again.
    pub stall_limit: Duration,
    /// A fault for tests: each worker thread panics when it takes its frame n+1. None in every
    /// real configuration (nothing on the command line reaches it).
    pub fault_panic_after_frames: Option<u64>,
    /// A fault for tests: worker `encode-0` hangs for the given time when it takes its frame
    /// n+1 (once). None in every real configuration (nothing on the command line reaches it).
    pub fault_hang_after_frames: Option<(u64, Duration)>,
}

impl Default for ServiceConfig {
    /// Two workers, 64 frames per worker, 2 ms wait, 10-minute segments at 30 fps.
    fn default() -> Self {
        Self {
            workers: 2,
            queue_frames: 64,
            max_wait: Duration::from_millis(2),
            max_frames_per_file: 18_000,
            nice: 10,
            stall_limit: DEFAULT_STALL_LIMIT,
            fault_panic_after_frames: None,
            fault_hang_after_frames: None,
        }
    }
}

impl ServiceConfig {
    /// A service whose producers wait for the encoder as long as it takes (dataset encoding,
    /// tests): nothing is ever shed, and no item is ever taken for a stall (a slow frame of a
    /// big AV1 dataset must not fail the encode).
    pub fn never_shed(workers: usize) -> Self {
        Self {
            workers,
            queue_frames: 8,
            max_wait: Duration::from_secs(24 * 3600),
            max_frames_per_file: u64::MAX,
            nice: 0,
            stall_limit: Duration::MAX,
            fault_panic_after_frames: None,
            fault_hang_after_frames: None,
        }
    }
}

/// How long one item may keep a worker busy before it counts as stalled: far above one
/// frame's encode (tens of ms at 1080p here) or a long file's finish, so only a hang trips it.
pub const DEFAULT_STALL_LIMIT: Duration = Duration::from_secs(10);

/// What a job encodes and where.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub run_id: String,
    /// The worker whose frames the job encodes ('' when the caller has none).
    pub worker_id: String,
    /// The agent whose frames the job encodes ('' when the caller has none).
    pub agent_id: String,
    pub episode: u64,
    /// File of the first segment; later segments add `-partN` before the extension.
    pub path: PathBuf,
    pub settings: EncoderSettings,
}

/// A segment file as the frame index records it.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub run_id: String,
    pub worker_id: String,
    pub agent_id: String,
    pub episode: u64,
    pub segment: u32,
    pub path: PathBuf,
    pub encoder: String,
    pub fps: u32,
    pub gop: u32,
    pub width: u32,
    pub height: u32,
}

/// How a segment ended.
#[derive(Debug, Clone)]
pub struct SegmentOutcome {
    /// "finished" or "failed".
    pub status: &'static str,
    pub frames: u64,
    pub error: Option<String>,
}

/// Receives the frame index: which step is which frame of which file.
pub trait IndexSink: Send + Sync {
    fn segment_opened(&self, segment: &SegmentInfo);
    /// (step, frame number in the segment), in encode order.
    fn frames_written(&self, segment: &SegmentInfo, frames: &[(u64, u64)]);
    fn segment_closed(&self, segment: &SegmentInfo, outcome: &SegmentOutcome);
}

/// Progress and outcome of jobs, for the GUI and the CLI.
#[derive(Debug, Clone)]
pub enum EncodeEvent {
    Started {
        job: u64,
        path: PathBuf,
        encoder: String,
    },
    Progress {
        job: u64,
        encoded: u64,
        shed: u64,
        queued: usize,
    },
    SegmentFinished {
        job: u64,
        file: FinishedFile,
    },
    Finished {
        job: u64,
        frames: u64,
        shed: u64,
        files: u32,
    },
    Failed {
        job: u64,
        error: String,
        /// Where the frames that could not be encoded were kept.
        kept_input: Option<PathBuf>,
    },
}

/// Counters of one job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobStats {
    pub submitted: u64,
    pub encoded: u64,
    pub shed: u64,
    pub spooled: u64,
    pub failed: bool,
    pub finished: bool,
}

/// What `submit` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitOutcome {
    pub waited: Duration,
    /// The job whose frame (the oldest queued on this worker) was shed to make room.
    pub shed_job: Option<u64>,
}

/// Counters over every job since the service started, for the metrics.
#[derive(Debug)]
pub struct EncodeTotals {
    pub submitted: AtomicU64,
    pub encoded: AtomicU64,
    pub shed: AtomicU64,
    pub spooled: AtomicU64,
    /// Time to encode one frame (conversion and codec), per frame.
    pub frame_seconds: crate::metrics::Histogram,
}

impl Default for EncodeTotals {
    fn default() -> Self {
        Self {
            submitted: AtomicU64::new(0),
            encoded: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            spooled: AtomicU64::new(0),
            frame_seconds: crate::metrics::Histogram::seconds(),
        }
    }
}

struct JobShared {
    totals: Arc<EncodeTotals>,
    spec: JobSpec,
    worker: usize,
    submitted: AtomicU64,
    encoded: AtomicU64,
    shed: AtomicU64,
    spooled: AtomicU64,
    failed: AtomicBool,
    finished: AtomicBool,
}

impl JobShared {
    fn count(&self, counter: impl Fn(&EncodeTotals) -> &AtomicU64, job: &AtomicU64) {
        job.fetch_add(1, Ordering::AcqRel);
        counter(&self.totals).fetch_add(1, Ordering::Relaxed);
    }

    fn stats(&self) -> JobStats {
        JobStats {
            submitted: self.submitted.load(Ordering::Acquire),
            encoded: self.encoded.load(Ordering::Acquire),
            shed: self.shed.load(Ordering::Acquire),
            spooled: self.spooled.load(Ordering::Acquire),
            failed: self.failed.load(Ordering::Acquire),
            finished: self.finished.load(Ordering::Acquire),
        }
    }
}

/// Ended jobs whose counters stay queryable.
const DONE_KEPT: usize = 4096;

/// State the workers share with the service.
struct Shared {
    jobs: Mutex<HashMap<u64, Arc<JobShared>>>,
    /// Probe results by (family, disabled encoders), so each family is probed once.
    choices: Mutex<HashMap<String, Result<String, String>>>,
    /// Counters of ended jobs (the newest `DONE_KEPT`).
    done: Mutex<HashMap<u64, JobStats>>,
    events: broadcast::Sender<EncodeEvent>,
    index: Option<Arc<dyn IndexSink>>,
    active_per_worker: Mutex<Vec<usize>>,
    totals: Arc<EncodeTotals>,
}

impl Shared {
    fn job(&self, id: u64) -> Option<Arc<JobShared>> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    fn emit(&self, event: EncodeEvent) {
        let _ = self.events.send(event);
    }

    /// The encoder for these settings, probing once per family and disabled list.
    fn encoder_for(&self, settings: &EncoderSettings) -> Result<String, EncodeError> {
        let key = format!(
            "{}|{}",
            settings.family.label(),
            settings.disabled_encoders.join(",")
        );
        let mut choices = self.choices.lock().unwrap_or_else(|p| p.into_inner());
        let choice = choices
            .entry(key)
            .or_insert_with(|| probe(settings).map(|r| r.chosen).map_err(|e| e.to_string()));
        choice.clone().map_err(EncodeError::Codec)
    }
}

struct Worker {
    queue: Arc<FrameQueue>,
    thread: Option<JoinHandle<()>>,
    busy: Arc<BusyWatch>,
}

/// When a worker took the item it is working on (0 while it waits for one), in ns since the
/// service started: a stall shows as a time far in the past.
struct BusyWatch {
    epoch: Instant,
    since_ns: AtomicU64,
}

impl BusyWatch {
    fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            since_ns: AtomicU64::new(0),
        }
    }

    fn now_ns(&self) -> u64 {
        // +1: a stamp is never 0, which means idle.
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    fn start(&self) {
        self.since_ns.store(self.now_ns(), Ordering::Release);
    }

    fn idle(&self) {
        self.since_ns.store(0, Ordering::Release);
    }

    /// How long the current item has kept the worker busy (zero while idle).
    fn busy_for(&self) -> Duration {
        match self.since_ns.load(Ordering::Acquire) {
            0 => Duration::ZERO,
            since => Duration::from_nanos(self.now_ns().saturating_sub(since)),
        }
    }
}

/// Background encoders with bounded queues. Dropping it finishes every open job.
pub struct EncoderService {
    workers: Vec<Worker>,
    shared: Arc<Shared>,
    next_job: AtomicU64,
    config: ServiceConfig,
}

impl EncoderService {
    pub fn start(
        config: ServiceConfig,
        index: Option<Arc<dyn IndexSink>>,
    ) -> Result<Self, EncodeError> {
        super::init_ffmpeg();
        let (events, _) = broadcast::channel(1024);
        let workers_n = config.workers.max(1);
        let shared = Arc::new(Shared {
            jobs: Mutex::new(HashMap::new()),
            done: Mutex::new(HashMap::new()),
            choices: Mutex::new(HashMap::new()),
            events,
            index,
            active_per_worker: Mutex::new(vec![0; workers_n]),
            totals: Arc::default(),
        });
        let mut workers = Vec::with_capacity(workers_n);
        let epoch = Instant::now();
        for n in 0..workers_n {
            let queue = Arc::new(FrameQueue::new(config.queue_frames, config.max_wait));
            let busy = Arc::new(BusyWatch::new(epoch));
            let (q, s, max_frames) = (queue.clone(), shared.clone(), config.max_frames_per_file);
            let (nice, b) = (config.nice, busy.clone());
            let faults = WorkerFaults {
                panic_after: config.fault_panic_after_frames,
                hang_after: config.fault_hang_after_frames.filter(|_| n == 0),
            };
            let thread = std::thread::Builder::new()
                .name(format!("encode-{n}"))
                .spawn(move || {
                    let _stage = tracing::info_span!("encoder", worker = n).entered();
                    let _closer = AbandonOnExit {
                        queue: Arc::clone(&q),
                        shared: Arc::clone(&s),
                        worker: n,
                    };
                    worker_loop(n, (q, b), s, (max_frames, nice), faults)
                })
                .map_err(EncodeError::Thread)?;
            workers.push(Worker {
                queue,
                thread: Some(thread),
                busy,
            });
        }
        Ok(Self {
            workers,
            shared,
            next_job: AtomicU64::new(1),
            config,
        })
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Workers whose thread has stopped (panicked) while the service runs: their jobs are not
    /// encoded any more.
    pub fn stopped_workers(&self) -> Vec<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.thread.as_ref().is_some_and(|t| t.is_finished()))
            .map(|(n, _)| n)
            .collect()
    }

    /// Workers still running but busy with one item for longer than the stall limit, with
    /// how long: their jobs make no progress.
    pub fn stalled_workers(&self) -> Vec<(usize, Duration)> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.thread.as_ref().is_some_and(|t| !t.is_finished()))
            .map(|(n, w)| (n, w.busy.busy_for()))
            .filter(|(_, busy)| *busy > self.config.stall_limit)
            .collect()
    }

    /// The worker `job` is pinned to.
    pub fn job_worker(&self, job: u64) -> Option<usize> {
        self.shared.job(job).map(|j| j.worker)
    }

    /// The worker of `job` and how long it has been stuck, when it is stalled.
    pub fn job_stalled(&self, job: u64) -> Option<(usize, Duration)> {
        let worker = self.shared.job(job)?.worker;
        self.stalled(worker).map(|busy| (worker, busy))
    }

    fn stalled(&self, worker: usize) -> Option<Duration> {
        let busy = self.workers.get(worker)?.busy.busy_for();
        (busy > self.config.stall_limit).then_some(busy)
    }

    /// Progress and outcome events of every job.
    pub fn events(&self) -> broadcast::Receiver<EncodeEvent> {
        self.shared.events.subscribe()
    }

    /// Opens a job on the least busy worker still running and not stalled; the file is
    /// created with its first frame. With no worker left: [`EncodeError::Stopped`]; with every
    /// one left stalled: [`EncodeError::Stalled`].
    pub fn open_job(&self, spec: JobSpec) -> Result<u64, EncodeError> {
        spec.settings.validate()?;
        let stopped = self.stopped_workers();
        let stalled = self.stalled_workers();
        let worker = {
            let mut active = self
                .shared
                .active_per_worker
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let running: Vec<usize> = (0..active.len()).filter(|n| !stopped.contains(n)).collect();
            let is_stalled = |n: &usize| stalled.iter().any(|(s, _)| s == n);
            if running.is_empty() {
                return Err(EncodeError::Stopped);
            }
            let Some(index) = running
                .iter()
                .copied()
                .filter(|n| !is_stalled(n))
                .min_by_key(|n| active[*n])
            else {
                let (worker, busy) = stalled
                    .first()
                    .copied()
                    .unwrap_or((running[0], Duration::ZERO));
                return Err(EncodeError::Stalled {
                    worker,
                    seconds: busy.as_secs(),
                });
            };
            active[index] += 1;
            index
        };
        let id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let job = Arc::new(JobShared {
            totals: Arc::clone(&self.shared.totals),
            spec,
            worker,
            submitted: AtomicU64::new(0),
            encoded: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            spooled: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        });
        self.shared
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, job);
        Ok(id)
    }

    /// A pooled buffer for a frame of `len` bytes for `job`'s worker (avoids allocating).
    pub fn buffer_for(&self, job: u64, len: usize) -> Vec<u8> {
        match self.shared.job(job) {
            Some(shared) => self.workers[shared.worker].queue.buffer(len),
            None => vec![0; len],
        }
    }

    /// Queues a frame (tightly packed rows) under the queue policy.
    pub fn submit(
        &self,
        job: u64,
        step: u64,
        width: u32,
        height: u32,
        format: RawPixelFormat,
        pixels: Vec<u8>,
    ) -> Result<SubmitOutcome, EncodeError> {
        self.submit_charged(
            job,
            step,
            (width, height, format),
            pixels,
            Charge::none(),
            None,
        )
    }

    /// Queues a frame holding `charge` until it is encoded or shed; `max_wait` replaces the
    /// queue's own wait for room before the oldest frame is shed.
    pub fn submit_charged(
        &self,
        job: u64,
        step: u64,
        (width, height, format): (u32, u32, RawPixelFormat),
        pixels: Vec<u8>,
        charge: Charge,
        max_wait: Option<Duration>,
    ) -> Result<SubmitOutcome, EncodeError> {
        let shared = self.shared.job(job).ok_or(EncodeError::UnknownJob(job))?;
        let expected = width as usize * height as usize * format.bytes_per_pixel();
        if pixels.len() != expected {
            return Err(EncodeError::FrameSize {
                expected: format!("{width}x{height} {} = {expected} bytes", format.label()),
                got: format!("{} bytes", pixels.len()),
            });
        }
        // A stalled worker takes nothing: waiting for its room would hold the producer for as
        // long as the hang lasts (a `wait` profile up to its whole limit per frame).
        if let Some(busy) = self.stalled(shared.worker) {
            return Err(EncodeError::Stalled {
                worker: shared.worker,
                seconds: busy.as_secs(),
            });
        }
        let queue = &self.workers[shared.worker].queue;
        let frame = QueuedFrame {
            job,
            step,
            width,
            height,
            format,
            pixels,
            charge,
        };
        let worker = shared.worker;
        let pushed = match max_wait {
            Some(wait) => queue.push_frame_within(frame, wait, || self.stalled(worker).is_some()),
            None => queue.push_frame(frame),
        };
        let outcome = pushed.map_err(|refused| match refused {
            Refused::Closed(_) => EncodeError::Stopped,
            Refused::Stalled(_) => EncodeError::Stalled {
                worker,
                seconds: self.stalled(worker).map_or(0, |busy| busy.as_secs()),
            },
        })?;
        shared.count(|t| &t.submitted, &shared.submitted);
        if let Some(victim) = outcome.shed_job {
            if let Some(victim) = self.shared.job(victim) {
                victim.count(|t| &t.shed, &victim.shed);
            }
        }
        Ok(SubmitOutcome {
            waited: outcome.waited,
            shed_job: outcome.shed_job,
        })
    }

    /// Copies a frame (rows `stride` bytes apart) into a pooled buffer and submits it.
    #[allow(clippy::too_many_arguments)]
    pub fn submit_copy(
        &self,
        job: u64,
        step: u64,
        width: u32,
        height: u32,
        format: RawPixelFormat,
        pixels: &[u8],
        stride: usize,
    ) -> Result<SubmitOutcome, EncodeError> {
        let row = width as usize * format.bytes_per_pixel();
        if stride < row || pixels.len() < stride * (height as usize).saturating_sub(1) + row {
            return Err(EncodeError::FrameSize {
                expected: format!("{width}x{height} {} with stride {stride}", format.label()),
                got: format!("{} bytes", pixels.len()),
            });
        }
        let mut buffer = self.buffer_for(job, row * height as usize);
        for (y, dst) in buffer.chunks_exact_mut(row).enumerate() {
            dst.copy_from_slice(&pixels[y * stride..y * stride + row]);
        }
        self.submit(job, step, width, height, format, buffer)
    }

    /// No more frames for `job`: its file is finished in the background.
    pub fn finish_job(&self, job: u64) -> Result<(), EncodeError> {
        let shared = self.shared.job(job).ok_or(EncodeError::UnknownJob(job))?;
        self.workers[shared.worker]
            .queue
            .push_control(WorkItem::Finish(job));
        Ok(())
    }

    pub fn job_stats(&self, job: u64) -> Option<JobStats> {
        self.shared.job(job).map(|j| j.stats()).or_else(|| {
            self.shared
                .done
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&job)
                .copied()
        })
    }

    /// Counters over every job since the service started.
    pub fn totals(&self) -> &EncodeTotals {
        &self.shared.totals
    }

    /// Jobs open now.
    pub fn open_jobs(&self) -> usize {
        self.shared
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Frames queued on all workers.
    pub fn queued_frames(&self) -> usize {
        self.workers.iter().map(|w| w.queue.depth()).sum()
    }

    /// Waits until `job` is finished or failed (or `timeout` passes); returns its counters.
    pub fn wait_job(&self, job: u64, timeout: Duration) -> Option<JobStats> {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.job_stats(job)?;
            if stats.finished || Instant::now() >= deadline {
                return Some(stats);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Finishes every open job, then stops the workers.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let open: Vec<(u64, usize)> = self
            .shared
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, j)| !j.finished.load(Ordering::Acquire))
            .map(|(id, j)| (*id, j.worker))
            .collect();
        for (id, worker) in open {
            self.workers[worker]
                .queue
                .push_control(WorkItem::Finish(id));
        }
        for worker in &self.workers {
            worker.queue.push_control(WorkItem::Stop);
        }
        for n in 0..self.workers.len() {
            if let Some(thread) = self.workers[n].thread.take() {
                self.join_unless_stalled(n, thread);
            }
        }
    }

    /// Waits for worker `n` to finish its queue and stop, for as long as it makes progress;
    /// a worker stuck on one item past the stall limit is left behind, so one hung encoder
    /// cannot hold the caller's shutdown forever. Its thread ends with the process; its open
    /// files stay `recording` in the index until the next start marks them `interrupted`.
    fn join_unless_stalled(&self, n: usize, thread: JoinHandle<()>) {
        loop {
            if thread.is_finished() {
                let _ = thread.join();
                return;
            }
            if let Some(busy) = self.stalled(n) {
                tracing::warn!(
                    worker = n,
                    seconds = busy.as_secs(),
                    "encoder worker encode-{n} is stuck on one item; stopping without it"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for EncoderService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes the calling thread (and the threads it starts later) nicer by `nice`.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, nice) != 0 {
            tracing::debug!("could not lower the encoder thread's priority");
        }
    }
}

/// The file of segment `n` of a job.
pub fn segment_path(first: &Path, segment: u32) -> PathBuf {
    if segment == 0 {
        return first.to_owned();
    }
    let stem = first
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = first
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mp4".into());
    first.with_file_name(format!("{stem}-part{segment}.{ext}"))
}

/// Frames that could not be encoded, kept as raw frames with a JSON description.
struct Spool {
    raw: File,
    path: PathBuf,
    steps: Vec<u64>,
    meta: serde_json::Value,
    /// Size and layout of every frame in this spool (its description names one).
    shape: (u32, u32, RawPixelFormat),
}

impl Spool {
    /// A new spool beside `file`: `<file>.failed.raw`, or `.failed-N.raw` when that exists (a
    /// spool is never appended to by another job, so its description and frames agree).
    fn create(file: &Path, frame: &QueuedFrame, fps: u32, error: &str) -> std::io::Result<Self> {
        let mut attempt = 0u32;
        let (raw, path) = loop {
            let path = if attempt == 0 {
                PathBuf::from(format!("{}.failed.raw", file.display()))
            } else {
                PathBuf::from(format!("{}.failed-{attempt}.raw", file.display()))
            };
            match File::options().write(true).create_new(true).open(&path) {
                Ok(raw) => break (raw, path),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && attempt < 10_000 => {
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        };
        let meta = serde_json::json!({
            "width": frame.width,
            "height": frame.height,
            "format": frame.format.label(),
            "fps": fps,
            "error": error,
        });
        Ok(Self {
            raw,
            path,
            steps: Vec::new(),
            meta,
            shape: (frame.width, frame.height, frame.format),
        })
    }

    fn append(&mut self, frame: &QueuedFrame) -> std::io::Result<()> {
        self.raw.write_all(&frame.pixels)?;
        self.steps.push(frame.step);
        Ok(())
    }

    /// Writes the description beside the raw frames (through a temporary name); returns its
    /// path.
    fn close(mut self) -> std::io::Result<PathBuf> {
        self.raw.flush()?;
        self.meta["steps"] = serde_json::json!(self.steps);
        let json_path = self.path.with_extension("json");
        let part = self.path.with_extension("json.part");
        std::fs::write(&part, serde_json::to_vec_pretty(&self.meta)?)?;
        std::fs::rename(&part, &json_path)?;
        Ok(json_path)
    }
}

/// One job as its worker sees it.
struct ActiveJob {
    shared: Arc<JobShared>,
    writer: Option<VideoFileWriter>,
    segment: Option<SegmentInfo>,
    next_segment: u32,
    index_rows: Vec<(u64, u64)>,
    /// Frames of the current segment named in the index so far.
    indexed: u64,
    files: u32,
    spool: Option<Spool>,
    error: Option<String>,
    last_progress: Instant,
}

/// Closes a worker's queue when its thread ends, however it ends: the frames still queued are
/// counted as shed by their jobs (`encoded + shed = submitted` still holds).
struct AbandonOnExit {
    queue: Arc<FrameQueue>,
    shared: Arc<Shared>,
    worker: usize,
}

impl Drop for AbandonOnExit {
    fn drop(&mut self) {
        let dropped = self.queue.abandon();
        for job in &dropped {
            if let Some(job) = self.shared.job(*job) {
                job.count(|t| &t.shed, &job.shed);
            }
        }
        if std::thread::panicking() {
            tracing::error!(
                worker = self.worker,
                frames_lost = dropped.len(),
                "encoder worker stopped by a panic; its queue is closed and new frames for its jobs are refused"
            );
        }
    }
}

/// The jobs a worker has open. When its thread ends with some still open (a panic; a normal
/// stop finishes every job first), their segments are closed in the index as `interrupted`
/// with the frames indexed so far, and the jobs end as failed: the index never says
/// `recording` for a file that nobody writes any more.
struct OpenJobs {
    jobs: HashMap<u64, ActiveJob>,
    shared: Arc<Shared>,
    worker: usize,
}

impl Drop for OpenJobs {
    fn drop(&mut self) {
        let error = format!("encoder worker encode-{} stopped", self.worker);
        for (id, job) in self.jobs.drain() {
            if let (Some(index), Some(segment)) = (&self.shared.index, &job.segment) {
                index.segment_closed(
                    segment,
                    &SegmentOutcome {
                        status: "interrupted",
                        frames: job.indexed,
                        error: Some(error.clone()),
                    },
                );
            }
            job.shared.failed.store(true, Ordering::Release);
            job.shared.finished.store(true, Ordering::Release);
            self.shared.emit(EncodeEvent::Failed {
                job: id,
                error: error.clone(),
                kept_input: None,
            });
        }
    }
}

/// Faults a test can inject into every worker (none in real configurations).
#[derive(Clone, Copy)]
struct WorkerFaults {
    panic_after: Option<u64>,
    hang_after: Option<(u64, Duration)>,
}

fn worker_loop(
    worker: usize,
    (queue, busy): (Arc<FrameQueue>, Arc<BusyWatch>),
    shared: Arc<Shared>,
    (max_frames, nice): (u64, i32),
    faults: WorkerFaults,
) {
    let mut open = OpenJobs {
        jobs: HashMap::new(),
        shared: Arc::clone(&shared),
        worker,
    };
    let mut taken = 0u64;
    loop {
        busy.idle();
        let item = queue.pop();
        busy.start();
        match item {
            WorkItem::Frame(frame) => {
                taken += 1;
                if faults.panic_after.is_some_and(|n| taken > n) {
                    if let Some(job) = shared.job(frame.job) {
                        job.count(|t| &t.shed, &job.shed);
                    }
                    panic!("injected fault: encoder worker {worker} panics at frame {taken}");
                }
                if let Some((n, hang)) = faults.hang_after {
                    if taken == n + 1 {
                        tracing::warn!(worker, "injected fault: encoder worker hangs for {hang:?}");
                        std::thread::sleep(hang);
                    }
                }
                let Some(job) = active_job(&mut open.jobs, &shared, frame.job) else {
                    queue.recycle(frame.pixels);
                    continue;
                };
                encode_frame(job, &frame, &shared, (max_frames, nice), &queue);
                queue.recycle(frame.pixels);
            }
            WorkItem::Finish(id) => {
                let job = active_job(&mut open.jobs, &shared, id);
                if let Some(job) = job {
                    finish(id, job, &shared);
                }
                open.jobs.remove(&id);
                // Counters move to `done` before the job leaves `jobs`, so a query never
                // finds neither.
                if let Some(ended) = shared.job(id) {
                    let mut done = shared.done.lock().unwrap_or_else(|p| p.into_inner());
                    if done.len() >= DONE_KEPT {
                        if let Some(oldest) = done.keys().min().copied() {
                            done.remove(&oldest);
                        }
                    }
                    done.insert(id, ended.stats());
                }
                shared
                    .jobs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                let mut counts = shared
                    .active_per_worker
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                counts[worker] = counts[worker].saturating_sub(1);
            }
            WorkItem::Stop => break,
        }
    }
}

fn active_job<'a>(
    active: &'a mut HashMap<u64, ActiveJob>,
    shared: &Shared,
    id: u64,
) -> Option<&'a mut ActiveJob> {
    match active.entry(id) {
        std::collections::hash_map::Entry::Occupied(entry) => Some(entry.into_mut()),
        std::collections::hash_map::Entry::Vacant(entry) => {
            let job = shared.job(id)?;
            Some(entry.insert(ActiveJob {
                shared: job,
                writer: None,
                segment: None,
                next_segment: 0,
                index_rows: Vec::with_capacity(64),
                indexed: 0,
                files: 0,
                spool: None,
                error: None,
                last_progress: Instant::now(),
            }))
        }
    }
}

fn encode_frame(
    job: &mut ActiveJob,
    frame: &QueuedFrame,
    shared: &Shared,
    (max_frames, nice): (u64, i32),
    queue: &FrameQueue,
) {
    let id = frame.job;
    if job.error.is_none() {
        // A new segment when the size changes or the segment is full.
        let roll = job.writer.as_ref().is_some_and(|w| {
            w.input() != (frame.format, frame.width, frame.height) || w.submitted() >= max_frames
        });
        if roll {
            close_segment(id, job, shared);
        }
        if job.writer.is_none() {
            if let Err(err) = open_segment(id, job, frame, shared, nice) {
                fail(job, err.to_string());
            }
        }
        if let Some(writer) = job.writer.as_mut() {
            let row = frame.width as usize * frame.format.bytes_per_pixel();
            let encoding = std::time::Instant::now();
            match writer.write_frame(&frame.pixels, row) {
                Ok(number) => {
                    job.shared.count(|t| &t.encoded, &job.shared.encoded);
                    job.shared
                        .totals
                        .frame_seconds
                        .observe_duration(encoding.elapsed());
                    job.index_rows.push((frame.step, number));
                    // The index follows the file: as a fragment is cut, rows go out for the
                    // frames it made durable (not those still inside the encoder).
                    if writer.frames_in_fragment() == 0 {
                        let durable = writer.durable_frames();
                        flush_index(job, shared, durable);
                    }
                }
                Err(err) => fail(job, err.to_string()),
            }
        }
    }
    if let Some(error) = job.error.clone() {
        spool_frame(job, frame, &error);
    }
    if job.last_progress.elapsed() >= Duration::from_millis(250) {
        job.last_progress = Instant::now();
        shared.emit(EncodeEvent::Progress {
            job: id,
            encoded: job.shared.encoded.load(Ordering::Acquire),
            shed: job.shared.shed.load(Ordering::Acquire),
            queued: queue.depth(),
        });
    }
}

fn open_segment(
    id: u64,
    job: &mut ActiveJob,
    frame: &QueuedFrame,
    shared: &Shared,
    nice: i32,
) -> Result<(), EncodeError> {
    let settings = &job.shared.spec.settings;
    let encoder = shared.encoder_for(settings)?;
    // An existing recording is never overwritten: a (run, episode) opened again (a daemon
    // restart mid-episode, a frame after its episode's end) starts the next free segment.
    let mut segment = job.next_segment;
    while segment_path(&job.shared.spec.path, segment).exists() && segment < u32::MAX {
        segment += 1;
    }
    job.next_segment = segment;
    let path = segment_path(&job.shared.spec.path, segment);
    // The encoder is opened on a short-lived thread made nicer first: the threads the encoder
    // starts (x264, SVT-AV1) inherit its niceness, while this worker, which shares the queue
    // lock with producers, keeps normal priority (no priority inversion on that lock).
    let writer = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                lower_priority(nice);
                VideoFileWriter::create(
                    &path,
                    &encoder,
                    frame.format,
                    frame.width,
                    frame.height,
                    settings,
                )
            })
            .join()
            .unwrap_or_else(|_| Err(EncodeError::Codec("opening the encoder panicked".into())))
    })?;
    let info = SegmentInfo {
        run_id: job.shared.spec.run_id.clone(),
        worker_id: job.shared.spec.worker_id.clone(),
        agent_id: job.shared.spec.agent_id.clone(),
        episode: job.shared.spec.episode,
        segment,
        path: path.clone(),
        encoder: encoder.clone(),
        fps: settings.fps,
        gop: settings.gop_frames(),
        width: frame.width,
        height: frame.height,
    };
    if let Some(index) = &shared.index {
        index.segment_opened(&info);
    }
    shared.emit(EncodeEvent::Started {
        job: id,
        path,
        encoder,
    });
    job.next_segment += 1;
    job.writer = Some(writer);
    job.segment = Some(info);
    job.indexed = 0;
    Ok(())
}

/// Sends the index rows of frames numbered below `durable` (in the file for good); later
/// ones wait for a later cut.
fn flush_index(job: &mut ActiveJob, shared: &Shared, durable: u64) {
    let ready = job
        .index_rows
        .iter()
        .take_while(|(_, number)| *number < durable)
        .count();
    if ready == 0 {
        return;
    }
    if let (Some(index), Some(segment)) = (&shared.index, &job.segment) {
        index.frames_written(segment, &job.index_rows[..ready]);
    }
    let highest = job.index_rows[..ready].iter().map(|(_, n)| n + 1).max();
    job.indexed = job.indexed.max(highest.unwrap_or(0));
    job.index_rows.drain(..ready);
}

/// Finishes the current segment's file (and its fast-start copy).
fn close_segment(id: u64, job: &mut ActiveJob, shared: &Shared) {
    let Some(writer) = job.writer.take() else {
        return;
    };
    let faststart = job.shared.spec.settings.faststart_on_finish
        && job.shared.spec.settings.container == Container::FragmentedMp4;
    let finished = writer.finish();
    if finished.is_ok() {
        // The trailer is written: every frame is in the file.
        flush_index(job, shared, u64::MAX);
    }
    job.index_rows.clear();
    let segment = job.segment.take();
    match finished {
        Ok(file) => {
            if faststart {
                if let Err(err) = finalize_faststart(&file.path) {
                    // The fragmented file is complete and playable; only the rewrite failed.
                    tracing::warn!(error = %err, "fast-start rewrite failed; keeping the fragmented MP4");
                }
            }
            job.files += 1;
            if let (Some(index), Some(segment)) = (&shared.index, &segment) {
                index.segment_closed(
                    segment,
                    &SegmentOutcome {
                        status: "finished",
                        frames: file.frames,
                        error: None,
                    },
                );
            }
            shared.emit(EncodeEvent::SegmentFinished { job: id, file });
        }
        Err(err) => {
            job.segment = segment;
            fail(job, format!("finishing the file: {err}"));
        }
    }
}

fn fail(job: &mut ActiveJob, error: String) {
    tracing::error!(run = %job.shared.spec.run_id, episode = job.shared.spec.episode, %error, "encode job failed; later frames are kept raw for a retry");
    job.shared.failed.store(true, Ordering::Release);
    job.writer = None;
    // Rows not sent yet name frames the failed file may not hold.
    job.index_rows.clear();
    job.error = Some(error);
}

fn spool_frame(job: &mut ActiveJob, frame: &QueuedFrame, error: &str) {
    // A frame of another size or layout goes to a spool of its own: a description names one.
    if job
        .spool
        .as_ref()
        .is_some_and(|s| s.shape != (frame.width, frame.height, frame.format))
    {
        if let Some(done) = job.spool.take() {
            match done.close() {
                Ok(path) => {
                    tracing::warn!(kept = %path.display(), "frames of a failed job kept raw; the size changed, a new spool starts")
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot describe the kept frames of a failed job")
                }
            }
        }
    }
    if job.spool.is_none() {
        match Spool::create(
            &segment_path(&job.shared.spec.path, job.next_segment.max(1) - 1),
            frame,
            job.shared.spec.settings.fps,
            error,
        ) {
            Ok(spool) => job.spool = Some(spool),
            Err(err) => {
                tracing::error!(error = %err, "cannot keep the frames of a failed encode job");
                job.shared.count(|t| &t.shed, &job.shared.shed);
                return;
            }
        }
    }
    if let Some(spool) = job.spool.as_mut() {
        match spool.append(frame) {
            Ok(()) => {
                job.shared.count(|t| &t.spooled, &job.shared.spooled);
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot keep a frame of a failed encode job");
                job.shared.count(|t| &t.shed, &job.shared.shed);
            }
        }
    }
}

fn finish(id: u64, job: &mut ActiveJob, shared: &Shared) {
    close_segment(id, job, shared);
    let stats = job.shared.stats();
    if let Some(error) = job.error.clone() {
        let kept_input = job.spool.take().and_then(|s| s.close().ok());
        if let (Some(index), Some(segment)) = (&shared.index, &job.segment) {
            index.segment_closed(
                segment,
                &SegmentOutcome {
                    status: "failed",
                    frames: stats.encoded,
                    error: Some(error.clone()),
                },
            );
        }
        shared.emit(EncodeEvent::Failed {
            job: id,
            error,
            kept_input,
        });
    } else {
        shared.emit(EncodeEvent::Finished {
            job: id,
            frames: stats.encoded,
            shed: stats.shed,
            files: job.files,
        });
    }
    job.shared.finished.store(true, Ordering::Release);
}
