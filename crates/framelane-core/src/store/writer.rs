//! The store writer: one named thread that owns the write connection, batches rows into
//! transactions (at N rows or T ms, whichever comes first), acknowledges barriers only after
//! the commit that holds everything sent before them, and announces each commit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, Transaction};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{open_for_writing, StoreError};
use crate::budget::Charge;
use crate::bus::{
    EpisodeRecord, FrameIndexEntry, Payload, ShedCounters, StepRecord, VideoIndexEntry,
};
use crate::metrics::Histogram;

/// When a batch is committed: after `max_rows` rows or `max_delay`, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    pub max_rows: usize,
    pub max_delay: Duration,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            max_rows: 1000,
            max_delay: Duration::from_millis(50),
        }
    }
}

impl BatchPolicy {
    /// The stricter of two policies (a batch holding rows of several runs honours each).
    fn tighter(self, other: BatchPolicy) -> BatchPolicy {
        BatchPolicy {
            max_rows: self.max_rows.min(other.max_rows),
            max_delay: self.max_delay.min(other.max_delay),
        }
    }
}

/// Which publish stream a command came from; [`NO_ORIGIN`] for commands no stream waits on
/// (the encoder's index rows, kept frames). A command that fails is rolled back alone (a
/// savepoint per command) and its error goes to its stream's barrier; every other command of
/// the batch commits.
pub type Origin = u64;
pub const NO_ORIGIN: Origin = 0;

/// Streams whose failed commands are remembered until their barrier, at most; past it every
/// barrier in flight fails (as after a failed batch) rather than one being wrongly answered.
const FAILED_ORIGINS_KEPT: usize = 4096;

/// What the writer thread is asked to do.
#[derive(Debug)]
pub enum StoreCommand {
    /// Create the run if new, record its profile and batching, and the worker if given.
    Run {
        run_id: String,
        profile: String,
        batch: BatchPolicy,
        worker: Option<(String, String, String)>,
    },
    /// Steps in the order received (a publish stream hands over what it has ready at once).
    Steps {
        origin: Origin,
        steps: Vec<StepRecord>,
        /// The steps' bytes held against the daemon's memory ceiling until they are written.
        charge: Charge,
    },
    Episode {
        origin: Origin,
        episode: EpisodeRecord,
    },
    /// A kept frame's index entry (with its pixels when inline, and their charge).
    Frame(FrameIndexEntry, Charge),
    /// The encoder's frame index.
    Video(VideoIndexEntry),
    /// A recording rig's finished clip (listed once per folder; a re-send changes nothing).
    Clip(crate::bus::ClipEntry),
    /// Answered once everything sent before it is committed. `failed_at_start` is the
    /// writer's failed-batch count when the sender started sending: if a batch failed since,
    /// some of the sender's rows may be lost and the barrier fails; so does a barrier whose
    /// origin had a command refused.
    Barrier {
        /// Ok: the steps of this origin recognised as re-sends (by worker_seq).
        reply: oneshot::Sender<Result<u64, String>>,
        failed_at_start: u64,
        origin: Origin,
    },
    /// Commit what came before and stop; later commands are refused.
    Close,
}

/// Sent to subscribers after each commit, for every run it touched.
#[derive(Debug, Clone)]
pub struct CommitNotice {
    pub run_id: Arc<str>,
    /// Highest committed step sequence number of the run.
    pub steps: u64,
    /// Highest committed episode sequence number of the run.
    pub episodes: u64,
}

/// Counters of the writer, shared with whoever reports health, metrics or benchmarks.
#[derive(Debug)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub rows: AtomicU64,
    pub failed_batches: AtomicU64,
    /// Commands rolled back alone (their stream was told; the rest of their batch committed).
    pub failed_commands: AtomicU64,
    /// Why the newest batch failed, while no batch holding rows has committed since (None:
    /// the store is committing).
    pub failing: std::sync::Mutex<Option<String>>,
    pub checkpoints: AtomicU64,
    /// Time in `COMMIT` (the fsync of the WAL), per batch.
    pub commit_seconds: Histogram,
    /// Rows per committed batch.
    pub batch_rows: Histogram,
    /// Time of each background WAL checkpoint.
    pub checkpoint_seconds: Histogram,
}

impl Default for WriterStats {
    fn default() -> Self {
        Self {
            commits: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            failed_commands: AtomicU64::new(0),
            failing: std::sync::Mutex::new(None),
            checkpoints: AtomicU64::new(0),
            commit_seconds: Histogram::seconds(),
            batch_rows: Histogram::counts(),
            checkpoint_seconds: Histogram::seconds(),
        }
    }
}

#[derive(Clone)]
struct RunState {
    key: i64,
    steps: u64,
    episodes: u64,
    batch: BatchPolicy,
    touched: bool,
    /// Highest worker_seq per worker of the run (loaded from `worker_seqs` on first sight),
    /// and whether it moved since the last commit.
    seqs: HashMap<String, (u64, bool)>,
}

/// Handle to the writer thread. Dropping every sender ends the thread after a final commit.
pub struct StoreWriter {
    sender: mpsc::Sender<StoreCommand>,
    commits: broadcast::Sender<CommitNotice>,
    stats: Arc<WriterStats>,
    thread: Option<std::thread::JoinHandle<()>>,
    checkpointer: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    path: PathBuf,
}

/// WAL size beyond which the background checkpointer copies pages back into the database.
const CHECKPOINT_WAL_BYTES: u64 = 32 * 1024 * 1024;

impl StoreWriter {
    /// Opens (and migrates) the database and starts the writer and checkpointer threads.
    /// `queue_capacity` bounds the commands waiting for the writer.
    pub fn start(
        path: &Path,
        queue_capacity: usize,
        default_batch: BatchPolicy,
        shed: Arc<ShedCounters>,
    ) -> Result<Self, StoreError> {
        let conn = open_for_writing(path)?;
        let (sender, receiver) = mpsc::channel(queue_capacity.max(1));
        let (commits, _) = broadcast::channel(1024);
        let stats = Arc::new(WriterStats::default());
        let mut worker = WriterThread {
            conn,
            receiver,
            commits: commits.clone(),
            stats: Arc::clone(&stats),
            shed,
            runs: HashMap::new(),
            default_batch,
            carry: None,
            failed_origins: HashMap::new(),
            duplicates: HashMap::new(),
            last_batch_error: String::new(),
        };
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let _stage = tracing::info_span!("store_writer").entered();
                worker.run()
            })
            .map_err(StoreError::Thread)?;
        let checkpointer = spawn_checkpointer(path, Arc::clone(&stats))?;
        Ok(Self {
            sender,
            commits,
            stats,
            thread: Some(thread),
            checkpointer: Some(checkpointer),
            path: path.to_owned(),
        })
    }

    /// A sender for the writer's queue (bounded: `send` waits while it is full).
    pub fn sender(&self) -> mpsc::Sender<StoreCommand> {
        self.sender.clone()
    }

    /// Commit announcements.
    pub fn subscribe(&self) -> broadcast::Receiver<CommitNotice> {
        self.commits.subscribe()
    }

    /// The sender of commit announcements, for parts that hand out receivers later.
    pub fn commit_sender(&self) -> broadcast::Sender<CommitNotice> {
        self.commits.clone()
    }

    pub fn stats(&self) -> Arc<WriterStats> {
        Arc::clone(&self.stats)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until everything sent so far is committed.
    pub async fn flush(&self) -> Result<u64, StoreError> {
        barrier(
            &self.sender,
            self.stats.failed_batches.load(Ordering::Relaxed),
            NO_ORIGIN,
        )
        .await
    }

    /// Stops accepting commands, commits what is queued and joins the threads. Other senders
    /// must have been dropped first, or this waits for them.
    pub fn shutdown(mut self) {
        self.join();
    }

    fn join(&mut self) {
        if self.thread.is_some() {
            // Queued behind everything already sent, so all of it is committed first.
            let _ = self.sender.blocking_send(StoreCommand::Close);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some((stop, thread)) = self.checkpointer.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.join();
    }
}

/// Sends a barrier for `origin` and waits for the commit that covers everything sent before
/// it; returns how many of the origin's steps were re-sends (not stored again).
pub async fn barrier(
    sender: &mpsc::Sender<StoreCommand>,
    failed_batches_at_start: u64,
    origin: Origin,
) -> Result<u64, StoreError> {
    let (reply, done) = oneshot::channel();
    sender
        .send(StoreCommand::Barrier {
            reply,
            failed_at_start: failed_batches_at_start,
            origin,
        })
        .await
        .map_err(|_| StoreError::WriterStopped)?;
    match done.await {
        Ok(Ok(duplicates)) => Ok(duplicates),
        Ok(Err(message)) => Err(StoreError::CommitFailed(message)),
        Err(_) => Err(StoreError::WriterStopped),
    }
}

fn spawn_checkpointer(
    path: &Path,
    stats: Arc<WriterStats>,
) -> Result<(Arc<AtomicBool>, std::thread::JoinHandle<()>), StoreError> {
    let conn =
        Connection::open(path).map_err(StoreError::sql("opening the checkpoint connection"))?;
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            let _stage = tracing::info_span!("wal_checkpoint").entered();
            while !thread_stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                if size < CHECKPOINT_WAL_BYTES {
                    continue;
                }
                // PASSIVE never blocks the writer; pages it cannot copy yet wait for the next round.
                let started = Instant::now();
                match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
                    Ok(_) => {
                        stats.checkpoint_seconds.observe_duration(started.elapsed());
                        stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => tracing::warn!(error = %err, "WAL checkpoint failed"),
                }
            }
        })
        .map_err(StoreError::Thread)?;
    Ok((stop, thread))
}

struct WriterThread {
    conn: Connection,
    receiver: mpsc::Receiver<StoreCommand>,
    commits: broadcast::Sender<CommitNotice>,
    stats: Arc<WriterStats>,
    shed: Arc<ShedCounters>,
    runs: HashMap<String, RunState>,
    default_batch: BatchPolicy,
    /// Steps left over from a chunk that went past the last batch's row limit.
    carry: Option<(Origin, Vec<StepRecord>)>,
    /// Streams with a refused command, and why, until their barrier.
    failed_origins: HashMap<Origin, String>,
    /// Re-sent steps recognised per stream, until its barrier.
    duplicates: HashMap<Origin, u64>,
    /// Why the last failed batch failed, for the streams whose rows it held.
    last_batch_error: String,
}

pub const INSERT_STEP: &str = "INSERT INTO steps (run_key, seq, worker_id, agent_id, episode, step, reward, terminated, truncated, producer_unix_ns, received_unix_ns, action_json, action_raw, observation_json, observation_raw, extra_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";
const INSERT_EPISODE: &str = "INSERT INTO episodes (run_key, seq, worker_id, agent_id, episode, total_reward, steps, terminated, truncated, metadata_json, producer_unix_ns, received_unix_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
const INSERT_FRAME: &str = "INSERT OR REPLACE INTO frames (run_key, episode, step, agent_id, worker_id, kind, width, height, format, location, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

fn unix_ns() -> i64 {
    crate::fastlane::shm::unix_ns() as i64
}

fn split_payload(payload: &Option<Payload>) -> (Option<&str>, Option<&[u8]>) {
    match payload {
        Some(Payload::Json(text)) => (Some(text.as_str()), None),
        Some(Payload::Raw(bytes)) => (None, Some(bytes.as_slice())),
        None => (None, None),
    }
}

impl WriterThread {
    fn run(&mut self) {
        // A small runtime of this thread's own, only to wait on the queue with a timeout.
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(err) => {
                tracing::error!(error = %err, "store writer could not start its timer");
                return;
            }
        };
        loop {
            let first = match self.carry.take() {
                Some((origin, steps)) => StoreCommand::Steps {
                    origin,
                    steps,
                    charge: Charge::none(),
                },
                None => match self.receiver.blocking_recv() {
                    Some(cmd) => cmd,
                    None => break,
                },
            };
            let mut batch = Batch::default();
            let started = Instant::now();
            let result = self.write_batch(first, &mut batch, started, &runtime);
            let closing = batch.closing;
            self.finish_batch(result, batch);
            if closing {
                self.receiver.close();
                break;
            }
        }
        if let Err(err) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %err, "final WAL checkpoint failed");
        }
        tracing::info!("store writer stopped");
    }

    fn write_batch(
        &mut self,
        first: StoreCommand,
        batch: &mut Batch,
        started: Instant,
        runtime: &tokio::runtime::Runtime,
    ) -> Result<(), rusqlite::Error> {
        // IMMEDIATE: the write lock is taken at BEGIN, where SQLite waits for it (busy
        // timeout). A deferred transaction that read first would get SQLITE_BUSY at once when
        // upgrading to write while another process holds the lock, refusing commands that a
        // moment's wait would have committed.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut statements = Statements {
            step: tx.prepare_cached(INSERT_STEP)?,
            episode: tx.prepare_cached(INSERT_EPISODE)?,
            frame: tx.prepare_cached(INSERT_FRAME)?,
        };
        let mut next = Some(first);
        let mut undo = RunsUndo::default();
        loop {
            if let Some(cmd) = next.take() {
                // One savepoint per command: a command that fails is rolled back alone, with
                // the run counters it moved, and reported to its stream.
                let origin = cmd.origin();
                let rows_before = batch.rows;
                undo.capture(&self.runs, &cmd);
                tx.execute_batch("SAVEPOINT command")?;
                match apply(
                    &tx,
                    &mut statements,
                    &mut self.runs,
                    self.default_batch,
                    cmd,
                    batch,
                ) {
                    Ok(()) => tx.execute_batch("RELEASE command")?,
                    // SQLite rolled the whole transaction back itself (a full disk, an I/O
                    // error): the batch fails with that cause, not a missing savepoint.
                    Err(err) if tx.is_autocommit() => return Err(err),
                    Err(err) => {
                        tx.execute_batch("ROLLBACK TO command; RELEASE command")?;
                        undo.restore(&mut self.runs);
                        batch.rows = rows_before;
                        self.stats.failed_commands.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %err, origin, "store command refused; the rest of the batch commits");
                        if origin != NO_ORIGIN {
                            if self.failed_origins.len() >= FAILED_ORIGINS_KEPT {
                                self.failed_origins.clear();
                                self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                            }
                            self.failed_origins.entry(origin).or_insert_with(|| {
                                format!("the store refused a command of this stream: {err}")
                            });
                        }
                    }
                }
            }
            let policy = batch.policy.unwrap_or(self.default_batch);
            if batch.rows >= policy.max_rows || !batch.barriers.is_empty() || batch.closing {
                break;
            }
            let elapsed = started.elapsed();
            if elapsed >= policy.max_delay {
                break;
            }
            next = match self.receiver.try_recv() {
                Ok(cmd) => Some(cmd),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let wait = policy.max_delay - elapsed;
                    let receiver = &mut self.receiver;
                    match runtime
                        .block_on(async { tokio::time::timeout(wait, receiver.recv()).await })
                    {
                        Ok(Some(cmd)) => Some(cmd),
                        Ok(None) | Err(_) => break,
                    }
                }
            };
        }
        drop(statements);
        persist_shed(&tx, &mut self.runs, &self.shed.take())?;
        for (run_id, state) in self.runs.iter_mut().filter(|(_, s)| s.touched) {
            tx.prepare_cached("UPDATE runs SET steps = ?2, episodes = ?3, last_seen_unix_ns = ?4 WHERE run_key = ?1")?
                .execute(params![state.key, state.steps as i64, state.episodes as i64, unix_ns()])?;
            for (worker, (last, moved)) in state.seqs.iter_mut().filter(|(_, (_, m))| *m) {
                tx.prepare_cached("INSERT INTO worker_seqs (run_key, worker_id, last_seq) VALUES (?1, ?2, ?3) ON CONFLICT (run_key, worker_id) DO UPDATE SET last_seq = excluded.last_seq")?
                    .execute(params![state.key, worker, *last as i64])?;
                *moved = false;
            }
            batch.notices.push(CommitNotice {
                run_id: Arc::from(run_id.as_str()),
                steps: state.steps,
                episodes: state.episodes,
            });
        }
        let committing = Instant::now();
        let committed = tx.commit();
        self.stats
            .commit_seconds
            .observe_duration(committing.elapsed());
        committed
    }

    fn finish_batch(&mut self, result: Result<(), rusqlite::Error>, batch: Batch) {
        match result {
            Ok(()) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                // Only a batch that stored rows shows the store works again (a barrier's
                // empty batch commits even on a full disk).
                if batch.rows > 0 {
                    *self.stats.failing.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                self.stats.batch_rows.observe(batch.rows as f64);
                tracing::trace!(rows = batch.rows, "batch committed");
                self.stats
                    .rows
                    .fetch_add(batch.rows as u64, Ordering::Relaxed);
                for state in self.runs.values_mut() {
                    state.touched = false;
                }
                for notice in batch.notices {
                    let _ = self.commits.send(notice);
                }
                for (origin, n) in batch.duplicates {
                    *self.duplicates.entry(origin).or_default() += n;
                }
                let failed = self.stats.failed_batches.load(Ordering::Relaxed);
                for (reply, epoch, origin) in batch.barriers {
                    let refused = self.failed_origins.remove(&origin);
                    let duplicates = self.duplicates.remove(&origin).unwrap_or(0);
                    let _ = reply.send(match refused {
                        Some(why) if origin != NO_ORIGIN => Err(why),
                        _ if failed > epoch => Err(format!(
                            "an earlier batch holding rows of this publish failed to commit: {}",
                            self.last_batch_error
                        )),
                        _ => Ok(duplicates),
                    });
                }
                self.carry = batch.carry;
            }
            Err(err) => {
                tracing::error!(error = %err, rows = batch.rows, "store batch failed; nothing of it was acknowledged");
                self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                *self.stats.failing.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(err.to_string());
                self.last_batch_error = err.to_string();
                // Sequence counters may have advanced inside the rolled-back transaction.
                self.runs.clear();
                let message = err.to_string();
                for (reply, _, origin) in batch.barriers {
                    self.failed_origins.remove(&origin);
                    self.duplicates.remove(&origin);
                    let _ = reply.send(Err(message.clone()));
                }
                self.carry = batch.carry;
            }
        }
    }
}

/// The batch's insert statements, prepared once per transaction.
struct Statements<'tx> {
    step: rusqlite::CachedStatement<'tx>,
    episode: rusqlite::CachedStatement<'tx>,
    frame: rusqlite::CachedStatement<'tx>,
}

/// A barrier waiting for its batch's commit: (reply, failed batches at its start, origin).
type PendingBarrier = (oneshot::Sender<Result<u64, String>>, u64, Origin);

#[derive(Default)]
struct Batch {
    rows: usize,
    policy: Option<BatchPolicy>,
    barriers: Vec<PendingBarrier>,
    notices: Vec<CommitNotice>,
    closing: bool,
    /// Steps of a chunk beyond this batch's row limit, for the next batch.
    carry: Option<(Origin, Vec<StepRecord>)>,
    /// Re-sent steps recognised in this batch, per origin.
    duplicates: HashMap<Origin, u64>,
}

impl StoreCommand {
    fn origin(&self) -> Origin {
        match self {
            StoreCommand::Steps { origin, .. }
            | StoreCommand::Episode { origin, .. }
            | StoreCommand::Barrier { origin, .. } => *origin,
            _ => NO_ORIGIN,
        }
    }
}

/// Run counters as they were before a command, to put back if the command is rolled back.
#[derive(Default)]
struct RunsUndo {
    /// (run, its state before; None: the run was not loaded).
    saved: Vec<(String, Option<RunState>)>,
}

impl RunsUndo {
    fn capture(&mut self, runs: &HashMap<String, RunState>, cmd: &StoreCommand) {
        self.saved.clear();
        let mut save = |run: &str| {
            if !self.saved.iter().any(|(r, _)| r == run) {
                self.saved.push((run.to_owned(), runs.get(run).cloned()));
            }
        };
        match cmd {
            StoreCommand::Run { run_id, .. } => save(run_id),
            StoreCommand::Steps { steps, .. } => {
                for step in steps {
                    save(&step.run_id);
                }
            }
            StoreCommand::Episode { episode, .. } => save(&episode.run_id),
            StoreCommand::Frame(frame, _) => save(&frame.run_id),
            StoreCommand::Video(entry) => save(entry.run_id()),
            StoreCommand::Clip(_) | StoreCommand::Barrier { .. } | StoreCommand::Close => {}
        }
    }

    fn restore(&mut self, runs: &mut HashMap<String, RunState>) {
        for (run, before) in self.saved.drain(..) {
            match before {
                Some(state) => {
                    runs.insert(run, state);
                }
                None => {
                    runs.remove(&run);
                }
            }
        }
    }
}

/// Whether `step` is at or below its worker's highest committed worker_seq (a re-send); if
/// not, it becomes the worker's highest.
fn is_resent(
    tx: &Transaction<'_>,
    state: &mut RunState,
    step: &StepRecord,
) -> Result<bool, rusqlite::Error> {
    use rusqlite::OptionalExtension;
    let seq = step.worker_seq;
    if let Some((last, moved)) = state.seqs.get_mut(step.worker_id.as_str()) {
        if seq <= *last {
            return Ok(true);
        }
        *last = seq;
        *moved = true;
        return Ok(false);
    }
    let stored = tx
        .prepare_cached("SELECT last_seq FROM worker_seqs WHERE run_key = ?1 AND worker_id = ?2")?
        .query_row(params![state.key, step.worker_id], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0) as u64;
    let resent = seq <= stored;
    state
        .seqs
        .insert(step.worker_id.clone(), (stored.max(seq), !resent));
    Ok(resent)
}

fn run_state<'a>(
    tx: &Transaction<'_>,
    runs: &'a mut HashMap<String, RunState>,
    default_batch: BatchPolicy,
    run_id: &str,
) -> Result<&'a mut RunState, rusqlite::Error> {
    if !runs.contains_key(run_id) {
        let existing = tx
            .prepare_cached("SELECT run_key, steps, episodes FROM runs WHERE run_id = ?1")?
            .query_row([run_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            });
        let (key, steps, episodes) = match existing {
            Ok(row) => row,
            Err(rusqlite::Error::QueryReturnedNoRows) => {
                let now = unix_ns();
                tx.prepare_cached("INSERT INTO runs (run_id, profile, created_unix_ns, last_seen_unix_ns) VALUES (?1, '', ?2, ?2)")?
                    .execute(params![run_id, now])?;
                (tx.last_insert_rowid(), 0, 0)
            }
            Err(err) => return Err(err),
        };
        runs.insert(
            run_id.to_owned(),
            RunState {
                key,
                steps: steps as u64,
                episodes: episodes as u64,
                batch: default_batch,
                touched: false,
                seqs: HashMap::new(),
            },
        );
    }
    // Inserted just above when missing.
    runs.get_mut(run_id)
        .ok_or(rusqlite::Error::QueryReturnedNoRows)
}

fn apply(
    tx: &Transaction<'_>,
    statements: &mut Statements<'_>,
    runs: &mut HashMap<String, RunState>,
    default_batch: BatchPolicy,
    cmd: StoreCommand,
    batch: &mut Batch,
) -> Result<(), rusqlite::Error> {
    let now = unix_ns();
    match cmd {
        StoreCommand::Run {
            run_id,
            profile,
            batch: policy,
            worker,
        } => {
            let state = run_state(tx, runs, default_batch, &run_id)?;
            // The daemon's batching is the loosest allowed; a profile may only ask for tighter.
            state.batch = policy.tighter(default_batch);
            state.touched = true;
            let key = state.key;
            tx.prepare_cached("UPDATE runs SET profile = ?2 WHERE run_key = ?1")?
                .execute(params![key, profile])?;
            if let Some((worker_id, kind, token)) = worker {
                tx.prepare_cached("INSERT OR REPLACE INTO workers (run_key, worker_id, worker_kind, session_token, registered_unix_ns) VALUES (?1, ?2, ?3, ?4, ?5)")?
                    .execute(params![key, worker_id, kind, token, now])?;
            }
        }
        StoreCommand::Steps { origin, steps, .. } => {
            let mut steps = steps.into_iter();
            while let Some(step) = steps.next() {
                let state = run_state(tx, runs, default_batch, &step.run_id)?;
                if step.worker_seq > 0 && is_resent(tx, state, &step)? {
                    *batch.duplicates.entry(origin).or_default() += 1;
                    continue;
                }
                state.steps += 1;
                state.touched = true;
                batch.policy = Some(batch.policy.map_or(state.batch, |p| p.tighter(state.batch)));
                let (action_json, action_raw) = split_payload(&step.action);
                let (observation_json, observation_raw) = split_payload(&step.observation);
                statements.step.execute(params![
                    state.key,
                    state.steps as i64,
                    step.worker_id,
                    step.agent_id,
                    step.episode as i64,
                    step.step as i64,
                    step.reward,
                    step.terminated,
                    step.truncated,
                    step.producer_unix_ns as i64,
                    now,
                    action_json,
                    action_raw,
                    observation_json,
                    observation_raw,
                    step.extra_json,
                ])?;
                batch.rows += 1;
                let limit = batch.policy.map_or(default_batch.max_rows, |p| p.max_rows);
                if batch.rows >= limit && steps.len() > 0 {
                    batch.carry = Some((origin, steps.collect()));
                    break;
                }
            }
        }
        StoreCommand::Episode { episode, .. } => {
            let state = run_state(tx, runs, default_batch, &episode.run_id)?;
            state.episodes += 1;
            state.touched = true;
            batch.policy = Some(batch.policy.map_or(state.batch, |p| p.tighter(state.batch)));
            statements.episode.execute(params![
                state.key,
                state.episodes as i64,
                episode.worker_id,
                episode.agent_id,
                episode.episode as i64,
                episode.total_reward,
                episode.steps as i64,
                episode.terminated,
                episode.truncated,
                episode.metadata_json,
                episode.producer_unix_ns as i64,
                now,
            ])?;
            batch.rows += 1;
        }
        StoreCommand::Frame(frame, _) => {
            let state = run_state(tx, runs, default_batch, &frame.run_id)?;
            statements.frame.execute(params![
                state.key,
                frame.episode as i64,
                frame.step as i64,
                frame.agent_id,
                frame.worker_id,
                frame.kind.label(),
                frame.width,
                frame.height,
                frame.format,
                frame.location,
                frame.data,
            ])?;
            batch.rows += 1;
        }
        StoreCommand::Video(entry) => {
            write_video_index(tx, runs, default_batch, entry)?;
            batch.rows += 1;
        }
        StoreCommand::Clip(clip) => {
            let files = serde_json::to_string(&clip.files).unwrap_or_else(|_| "[]".into());
            tx.prepare_cached("INSERT OR IGNORE INTO clips (folder, clip_id, triggered_unix_ms, pre_roll_ms, post_roll_ms, codec, telemetry_items, files_json, registered_unix_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")?
                .execute(params![
                    clip.folder,
                    clip.clip_id,
                    clip.triggered_unix_ms as i64,
                    clip.pre_roll_ms as i64,
                    clip.post_roll_ms as i64,
                    clip.codec,
                    clip.telemetry_items as i64,
                    files,
                    now,
                ])?;
            batch.rows += 1;
        }
        StoreCommand::Barrier {
            reply,
            failed_at_start,
            origin,
        } => batch.barriers.push((reply, failed_at_start, origin)),
        StoreCommand::Close => batch.closing = true,
    }
    Ok(())
}

fn write_video_index(
    tx: &Transaction<'_>,
    runs: &mut HashMap<String, RunState>,
    default_batch: BatchPolicy,
    entry: VideoIndexEntry,
) -> Result<(), rusqlite::Error> {
    match entry {
        VideoIndexEntry::Opened {
            run_id,
            worker_id,
            agent_id,
            episode,
            segment,
            path,
            encoder,
            fps,
            gop,
            width,
            height,
        } => {
            let key = run_state(tx, runs, default_batch, &run_id)?.key;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO videos (run_key, agent_id, worker_id, episode, segment, path, encoder, fps, gop, width, height, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'recording')",
            )?
            .execute(params![key, agent_id, worker_id, episode as i64, segment, path, encoder, fps, gop, width, height])?;
        }
        VideoIndexEntry::Frames {
            run_id,
            worker_id,
            agent_id,
            episode,
            segment,
            frames,
        } => {
            let key = run_state(tx, runs, default_batch, &run_id)?.key;
            let video_id: i64 = tx
                .prepare_cached(
                    "SELECT video_id FROM videos WHERE run_key = ?1 AND agent_id = ?2 AND worker_id = ?3 AND episode = ?4 AND segment = ?5",
                )?
                .query_row(params![key, agent_id, worker_id, episode as i64, segment], |row| row.get(0))?;
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO video_frames (run_key, episode, step, agent_id, worker_id, video_id, frame_no) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut next = 0u64;
            for (step, frame_no) in frames {
                insert.execute(params![
                    key,
                    episode as i64,
                    step as i64,
                    agent_id,
                    worker_id,
                    video_id,
                    frame_no as i64
                ])?;
                next = next.max(frame_no + 1);
            }
            tx.prepare_cached("UPDATE videos SET frames = MAX(frames, ?2) WHERE video_id = ?1")?
                .execute(params![video_id, next as i64])?;
        }
        VideoIndexEntry::Closed {
            run_id,
            worker_id,
            agent_id,
            episode,
            segment,
            status,
            frames,
            error,
        } => {
            let key = run_state(tx, runs, default_batch, &run_id)?.key;
            tx.prepare_cached(
                "UPDATE videos SET status = ?6, frames = ?7, error = ?8 WHERE run_key = ?1 AND agent_id = ?2 AND worker_id = ?3 AND episode = ?4 AND segment = ?5",
            )?
            .execute(params![key, agent_id, worker_id, episode as i64, segment, status, frames as i64, error])?;
        }
    }
    Ok(())
}

fn persist_shed(
    tx: &Transaction<'_>,
    runs: &mut HashMap<String, RunState>,
    counts: &HashMap<(String, &'static str), u64>,
) -> Result<(), rusqlite::Error> {
    for ((run_id, kind), n) in counts {
        let key = run_state(tx, runs, BatchPolicy::default(), run_id)?.key;
        tx.prepare_cached("INSERT INTO shed (run_key, kind, count) VALUES (?1, ?2, ?3) ON CONFLICT (run_key, kind) DO UPDATE SET count = count + excluded.count")?
            .execute(params![key, kind, *n as i64])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::FrameOwner;
    use crate::store::query::{StoreReader, LISTED_OWNERS};

    fn step(run: &str, n: u64) -> StepRecord {
        StepRecord {
            run_id: run.into(),
            worker_id: "w".into(),
            step: n,
            reward: 1.0,
            ..StepRecord::default()
        }
    }

    /// A fresh scratch folder for one test and the database path in it.
    fn scratch_store(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "framelane-{tag}-{}-{}",
            std::process::id(),
            crate::fastlane::shm::monotonic_ns()
        ));
        std::fs::create_dir_all(&dir).expect("scratch");
        let path = dir.join("store.sqlite3");
        (dir, path)
    }

    #[test]
    fn a_runs_agents_are_listed_up_to_the_cap_and_each_keeps_its_own_episodes_and_steps() {
        let (dir, path) = scratch_store("agents");
        let writer =
            StoreWriter::start(&path, 64, BatchPolicy::default(), Arc::default()).expect("writer");
        let agent_step = |agent: &str, episode: u64, n: u64| StepRecord {
            agent_id: agent.into(),
            episode,
            reward: n as f64,
            ..step("m", n)
        };
        // Episode 0: agents a and b on the same steps, a's episode recorded; episode 1 (the
        // newest): b alone, and 1 005 agents of one step each in run "crowd".
        let mut steps: Vec<StepRecord> = (0..10).map(|n| agent_step("a", 0, n)).collect();
        steps.extend((0..6).map(|n| agent_step("b", 0, n)));
        steps.extend((10..13).map(|n| agent_step("b", 1, n)));
        let crowd = (0..1005u64).map(|n| StepRecord {
            agent_id: format!("agent-{n:04}"),
            ..step("crowd", 0)
        });
        steps.extend(crowd);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let sender = writer.sender();
        runtime
            .block_on(async {
                sender
                    .send(StoreCommand::Steps {
                        origin: 1,
                        steps,
                        charge: Charge::none(),
                    })
                    .await
                    .expect("queued");
                sender
                    .send(StoreCommand::Episode {
                        origin: 1,
                        episode: EpisodeRecord {
                            run_id: "m".into(),
                            worker_id: "w".into(),
                            agent_id: "a".into(),
                            episode: 0,
                            steps: 10,
                            ..EpisodeRecord::default()
                        },
                    })
                    .await
                    .expect("queued");
                barrier(&sender, 0, 1).await
            })
            .expect("committed");
        drop(sender);
        writer.shutdown();
        let reader = StoreReader::open(&path).expect("reader");
        // a from its recorded episode, b from the newest episode's steps.
        assert_eq!(
            reader.run_agents("m", Some("w")).expect("agents"),
            ["a", "b"]
        );
        assert_eq!(
            reader.run_agents("m", Some("nobody")).expect("agents"),
            Vec::<String>::new()
        );
        let crowd = reader.run_agents("crowd", None).expect("agents");
        assert_eq!(crowd.len(), LISTED_OWNERS, "the list is capped");
        assert_eq!(crowd[0], "agent-0000");
        let b = FrameOwner::new("w", "b");
        let b_episodes: Vec<(u64, u64)> = reader
            .replay_episodes("m", b)
            .expect("episodes")
            .iter()
            .map(|e| (e.episode, e.steps))
            .collect();
        // b has no recorded episode: both of its episodes come from its steps, with its counts.
        assert_eq!(b_episodes, [(0, 6), (1, 3)]);
        let a_steps = reader
            .episode_steps("m", FrameOwner::new("w", "a"), 0)
            .expect("steps");
        assert_eq!(a_steps.len(), 10, "a's own steps, not b's as well");
        assert_eq!(
            reader
                .episode_steps("m", FrameOwner::ANY, 0)
                .expect("steps")
                .len(),
            16
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_refused_command_rolls_back_alone_and_fails_only_its_stream() {
        let (dir, path) = scratch_store("savepoint");
        // Everything of a batch lands in one transaction: a whole second, 10 000 rows.
        let policy = BatchPolicy {
            max_rows: 10_000,
            max_delay: Duration::from_secs(1),
        };
        let writer = StoreWriter::start(&path, 64, policy, Arc::default()).expect("writer");
        // A fault the database itself raises for one row (as a constraint would).
        Connection::open(&path)
            .and_then(|c| {
                c.execute_batch(
                    "CREATE TRIGGER refuse_13 BEFORE INSERT ON steps WHEN NEW.step = 13 BEGIN SELECT RAISE(ABORT, 'step 13 refused'); END",
                )
            })
            .expect("trigger");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let sender = writer.sender();
        let (bad, good) = runtime.block_on(async {
            for (origin, steps) in [
                (1, vec![step("a", 12), step("a", 13), step("a", 14)]),
                (2, vec![step("b", 0), step("b", 1), step("b", 2)]),
            ] {
                sender
                    .send(StoreCommand::Steps {
                        origin,
                        steps,
                        charge: Charge::none(),
                    })
                    .await
                    .expect("queued");
            }
            tokio::join!(barrier(&sender, 0, 1), barrier(&sender, 0, 2))
        });
        let err = bad
            .expect_err("the refused stream's barrier fails")
            .to_string();
        assert!(err.contains("step 13 refused"), "{err}");
        good.expect("the other stream in the same batch commits");
        // The refused stream's run goes on with the sequence numbers it had: no gap.
        runtime
            .block_on(async {
                sender
                    .send(StoreCommand::Steps {
                        origin: 3,
                        steps: vec![step("a", 15)],
                        charge: Charge::none(),
                    })
                    .await
                    .expect("queued");
                barrier(&sender, 0, 3).await
            })
            .expect("later steps of the run commit");
        assert_eq!(writer.stats().failed_commands.load(Ordering::Relaxed), 1);
        assert_eq!(writer.stats().failed_batches.load(Ordering::Relaxed), 0);
        drop(sender);
        writer.shutdown();
        let conn = Connection::open(&path).expect("open");
        let rows: Vec<(String, i64, i64)> = conn
            .prepare("SELECT r.run_id, s.seq, s.step FROM steps s JOIN runs r USING (run_key) ORDER BY r.run_id, s.seq")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .expect("rows");
        assert_eq!(
            rows,
            vec![
                ("a".into(), 1, 15),
                ("b".into(), 1, 0),
                ("b".into(), 2, 1),
                ("b".into(), 3, 2)
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
