//! gRPC ingest: framelane's own `framelane.v1.Telemetry` and MOSAIC's
//! `gymgui.trainer.TrainerService` on one port, both turned into the bus records at the edge,
//! gated by the run's storage profile, and handed to the store writer. A publish is
//! acknowledged only after the commit that holds its rows.

pub mod client;
mod connections;
mod framelane_api;
mod metrics;
mod mosaic_api;
mod server;
mod stream;
pub mod video;
pub mod wire;

pub use server::{serve, ServerLimits};

/// Code generated from proto/.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    pub mod framelane_v1 {
        tonic::include_proto!("framelane.v1");
    }
    pub mod gymgui {
        tonic::include_proto!("gymgui.trainer");
    }
}

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::{broadcast, mpsc, watch};
use tonic::Status;

use crate::budget::{Charge, MemoryBudget, WhenFull};
use crate::bus::{
    shed_kind, FrameImage, FrameIndexEntry, FrameKind, FrameOwner, KeptFrame, ShedCounters,
    StepRecord,
};
use crate::gating::{
    self, FrameCompression, FrameDecision, ProfileSet, StorageProfile, WhenBehind,
};
use crate::replay::{FrameResolver, ReplayError, StepFrame};
use crate::snapshot::{Offered, SnapshotWriter};
use crate::store::{BatchPolicy, CommitNotice, StoreCommand, StoreError, StoreReader, WriterStats};
use stream::PublishTally;
use wire::FrameSource;

/// Errors of ingest, converted to a gRPC status or a refusal message at the edge.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    /// A field of a received message is wrong: the item is refused, its stream goes on.
    #[error("{field} {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
    /// A frame fetched from the daemon could not be turned into pixels.
    #[error("{0}")]
    Frame(String),
    /// The client could not set up its connection to the daemon.
    #[error("{0}")]
    Connection(String),
}

impl IngestError {
    pub(crate) fn field(field: &'static str, problem: impl Into<String>) -> Self {
        IngestError::Field {
            field,
            problem: problem.into(),
        }
    }
}

/// How long a stream of a `wait` profile waits for room for a kept frame (in the encoder's
/// queue, the snapshot or store queue, under the memory ceiling) before the frame is shed.
pub const FRAME_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Decoded frames `GetFrame` keeps for viewers that scrub back and forth.
const GET_FRAME_CACHE_BYTES: usize = 64 << 20;

/// Most steps handed to the writer in one command: fewer queue operations and wake-ups than
/// one per step, small enough to keep the queue's bound meaningful.
pub const STEP_CHUNK: usize = 128;

/// A run as ingest knows it: its profile and the session tokens handed to its workers.
struct RunEntry {
    profile: Arc<StorageProfile>,
    /// The profile was chosen by a registration (or found in the store), not defaulted by a
    /// publish that came first: a later registration may not change it.
    fixed: bool,
}

/// Steps per second of a run, from commit notices.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunRate {
    pub steps_per_second: f64,
    /// Steps and episodes committed, as of the newest commit notice.
    pub steps: u64,
    pub episodes: u64,
    last_steps: u64,
    last_at: Option<Instant>,
}

/// A control event for workers; `run_id` empty means every run.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlEvent {
    GrantSteps(u32),
    Pause,
    Resume,
    MaxRateHz(u32),
}

/// Everything the gRPC handlers share.
pub struct IngestCore {
    store: mpsc::Sender<StoreCommand>,
    store_capacity: usize,
    writer_stats: Arc<WriterStats>,
    /// The next publish stream's origin tag (from 1; 0 is "no stream").
    origins: std::sync::atomic::AtomicU64,
    commits: broadcast::Sender<CommitNotice>,
    db_path: PathBuf,
    snapshots: SnapshotWriter,
    video: Option<Arc<video::VideoRecorder>>,
    /// The daemon's memory ceiling, drawn from by every queued item.
    budget: Arc<MemoryBudget>,
    profiles: Arc<RwLock<ProfileSet>>,
    runs: Mutex<HashMap<String, RunEntry>>,
    rates: Mutex<HashMap<String, RunRate>>,
    shed: Arc<ShedCounters>,
    control: broadcast::Sender<(String, ControlEvent)>,
    /// Open Control streams per run (named by their first message).
    control_listeners: ControlListeners,
    connections: Arc<connections::ConnectionStats>,
    token: Option<String>,
    started_unix_ns: u64,
    listen_address: Mutex<String>,
    shutdown: watch::Receiver<bool>,
    idle_stream_timeout: std::time::Duration,
    /// Serves `GetFrame` with the replay's resolver (one lookup order, video readers kept open
    /// and a byte-bounded cache); opened on first use.
    frames: Mutex<Option<FrameResolver>>,
}

/// Open Control streams per run, and the rate cap asked for each run (sent to a worker that
/// starts listening later, so a restarted worker keeps to it).
#[derive(Clone, Default)]
pub(crate) struct ControlListeners(Arc<Mutex<ControlState>>);

#[derive(Default)]
struct ControlState {
    listeners: HashMap<String, usize>,
    rate_caps: HashMap<String, u32>,
}

impl ControlListeners {
    fn state(&self) -> std::sync::MutexGuard<'_, ControlState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, run_id: &str) -> usize {
        self.state().listeners.get(run_id).copied().unwrap_or(0)
    }

    /// Remembers the cap asked for `run_id` (0 lifts it).
    fn record_rate_cap(&self, run_id: &str, hz: u32) {
        let mut state = self.state();
        if hz == 0 {
            state.rate_caps.remove(run_id);
        } else {
            state.rate_caps.insert(run_id.to_owned(), hz);
        }
    }

    /// Counts a stream as listening for `run_id` until the returned guard drops; also returns
    /// the rate cap in force for the run.
    pub(crate) fn listen(&self, run_id: &str) -> (ControlListener, Option<u32>) {
        let mut state = self.state();
        *state.listeners.entry(run_id.to_owned()).or_insert(0) += 1;
        let cap = state.rate_caps.get(run_id).copied();
        (
            ControlListener {
                state: Arc::clone(&self.0),
                run_id: run_id.to_owned(),
            },
            cap,
        )
    }
}

/// One Control stream counted as listening for a run; uncounted on drop.
pub(crate) struct ControlListener {
    state: Arc<Mutex<ControlState>>,
    run_id: String,
}

impl Drop for ControlListener {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = state.listeners.get_mut(&self.run_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.listeners.remove(&self.run_id);
            }
        }
    }
}

/// Parts the daemon wires into the core.
pub struct IngestParts {
    pub store: mpsc::Sender<StoreCommand>,
    pub store_capacity: usize,
    pub writer_stats: Arc<WriterStats>,
    pub commits: broadcast::Sender<CommitNotice>,
    pub db_path: PathBuf,
    pub snapshots: SnapshotWriter,
    /// Encodes the frames of profiles that ask for video (None: such frames are shed).
    pub video: Option<video::VideoRecorder>,
    /// The memory ceiling (`--memory-limit`); the video recorder should draw from it too.
    pub budget: Arc<MemoryBudget>,
    pub profiles: Arc<RwLock<ProfileSet>>,
    pub shed: Arc<ShedCounters>,
    pub token: Option<String>,
    pub shutdown: watch::Receiver<bool>,
    /// A publish stream that delivers no message for this long is ended.
    pub idle_stream_timeout: std::time::Duration,
}

impl IngestCore {
    /// Builds the core; runs already in the store get back the profile they were given.
    pub fn new(parts: IngestParts) -> Result<Arc<Self>, StoreError> {
        let (control, _) = broadcast::channel(256);
        let core = Arc::new(Self {
            store: parts.store,
            store_capacity: parts.store_capacity,
            writer_stats: parts.writer_stats,
            origins: std::sync::atomic::AtomicU64::new(1),
            commits: parts.commits,
            db_path: parts.db_path,
            snapshots: parts.snapshots,
            video: parts.video.map(Arc::new),
            budget: parts.budget,
            profiles: parts.profiles,
            runs: Mutex::new(HashMap::new()),
            rates: Mutex::new(HashMap::new()),
            shed: parts.shed,
            control,
            control_listeners: ControlListeners::default(),
            connections: Arc::default(),
            token: parts.token,
            started_unix_ns: crate::fastlane::shm::unix_ns(),
            listen_address: Mutex::new(String::new()),
            shutdown: parts.shutdown,
            frames: Mutex::new(None),
            idle_stream_timeout: parts.idle_stream_timeout,
        });
        let known = StoreReader::open(&core.db_path)?.list_runs()?;
        {
            let profiles = core.profiles.read().unwrap_or_else(|p| p.into_inner());
            let mut runs = core.runs.lock().unwrap_or_else(|p| p.into_inner());
            for run in known {
                let profile = profiles
                    .resolve(&run.profile)
                    .unwrap_or_else(|_| profiles.default_profile())
                    .clone();
                runs.insert(
                    run.run_id,
                    RunEntry {
                        profile: Arc::new(profile),
                        fixed: true,
                    },
                );
            }
        }
        Ok(core)
    }

    pub(crate) fn set_listen_address(&self, address: String) {
        *self
            .listen_address
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = address;
    }

    /// Checks the bearer token when the daemon requires one.
    pub(crate) fn authorize<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        check_bearer(request, self.token.as_deref())
    }

    /// Re-resolves every run's profile after the profile file changed.
    pub fn profiles_reloaded(&self) {
        let profiles = self.profiles.read().unwrap_or_else(|p| p.into_inner());
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        for entry in runs.values_mut() {
            if let Ok(profile) = profiles.get(&entry.profile.name) {
                entry.profile = Arc::new(profile.clone());
            }
        }
    }

    fn batch_policy(profile: &StorageProfile) -> BatchPolicy {
        BatchPolicy {
            max_rows: profile.batch_rows.get() as usize,
            max_delay: std::time::Duration::from_millis(u64::from(profile.flush_interval_ms)),
        }
    }

    /// Registers a worker: the run gets `profile_name` (or keeps its profile), the worker a token.
    pub(crate) async fn register_worker(
        &self,
        run_id: &str,
        worker_id: &str,
        worker_kind: &str,
        profile_name: &str,
    ) -> Result<(String, String), Status> {
        // The same checks as every step's run id: a huge or hostile id would otherwise become a
        // permanent run (and a row in every run list).
        wire::check_run_id(run_id)
            .and_then(|()| wire::check_label("worker_id", worker_id))
            .and_then(|()| wire::check_label("worker_kind", worker_kind))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let profile = {
            let profiles = self.profiles.read().unwrap_or_else(|p| p.into_inner());
            let existing = self
                .runs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(run_id)
                .map(|e| (e.profile.name.clone(), e.fixed));
            if let Some((fixed, true)) = &existing {
                if !profile_name.is_empty() && profile_name != fixed {
                    return Err(Status::failed_precondition(format!(
                        "run {run_id:?} records with profile {fixed:?}, set when it was first registered; it cannot change to {profile_name:?} (use a new run id)"
                    )));
                }
            }
            let name = if profile_name.is_empty() {
                existing.map(|(name, _)| name).unwrap_or_default()
            } else {
                profile_name.to_owned()
            };
            Arc::new(
                profiles
                    .resolve(&name)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?
                    .clone(),
            )
        };
        let token = new_token();
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).insert(
            run_id.to_owned(),
            RunEntry {
                profile: Arc::clone(&profile),
                fixed: true,
            },
        );
        self.store
            .send(StoreCommand::Run {
                run_id: run_id.to_owned(),
                profile: profile.name.clone(),
                batch: Self::batch_policy(&profile),
                worker: Some((worker_id.to_owned(), worker_kind.to_owned(), token.clone())),
            })
            .await
            .map_err(|_| Status::unavailable("the store writer has stopped"))?;
        Ok((token, profile.name.clone()))
    }

    /// The profile a step of `run_id` will be gated with, without registering the run.
    pub(crate) fn profile_hint(&self, run_id: &str) -> Arc<StorageProfile> {
        if let Some(entry) = self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(run_id)
        {
            return Arc::clone(&entry.profile);
        }
        Arc::new(
            self.profiles
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .default_profile()
                .clone(),
        )
    }

    /// The run's profile; a run seen for the first time gets the default profile.
    async fn ensure_run(&self, run_id: &str) -> Result<Arc<StorageProfile>, Status> {
        if let Some(entry) = self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(run_id)
        {
            return Ok(Arc::clone(&entry.profile));
        }
        let profile = Arc::new(
            self.profiles
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .default_profile()
                .clone(),
        );
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).insert(
            run_id.to_owned(),
            RunEntry {
                profile: Arc::clone(&profile),
                fixed: false,
            },
        );
        self.store
            .send(StoreCommand::Run {
                run_id: run_id.to_owned(),
                profile: profile.name.clone(),
                batch: Self::batch_policy(&profile),
                worker: None,
            })
            .await
            .map_err(|_| Status::unavailable("the store writer has stopped"))?;
        Ok(profile)
    }

    /// The per-step frame decision and where a kept frame goes. Under a `shed` profile a
    /// frame that cannot be queued at once is shed and counted; under a `wait` profile the
    /// stream waits for room (up to [`FRAME_WAIT_LIMIT`]). Parsing a render payload and
    /// handing a frame to a video encoder (which may decode and wait) run on a blocking
    /// thread, never on the runtime.
    async fn gate_frame(
        &self,
        step: &StepRecord,
        frame: FrameSource,
        profile: &Arc<StorageProfile>,
        tally: &mut PublishTally,
    ) {
        let decision = gating::decide(profile, step.step, frame.is_some());
        let compression = match decision {
            FrameDecision::NoFrame => return,
            FrameDecision::Thin => {
                self.shed.add(&step.run_id, shed_kind::FRAME_THINNED, 1);
                tally.frames_shed += 1;
                return;
            }
            FrameDecision::Keep(compression) => compression,
        };
        let image = match frame {
            FrameSource::None => return,
            FrameSource::Image(image) => image,
            FrameSource::MosaicRenderPayload(json) => {
                let parsed =
                    tokio::task::spawn_blocking(move || wire::frame_from_render_payload(&json))
                        .await
                        .unwrap_or_else(|_| {
                            Err(IngestError::Frame("the payload parser panicked".into()))
                        });
                match parsed {
                    Ok(image) => image,
                    Err(reason) => {
                        tracing::warn!(run = %step.run_id, step = step.step, %reason, "render payload frame refused");
                        self.shed.add(&step.run_id, shed_kind::FRAME_INVALID, 1);
                        tally.frames_shed += 1;
                        return;
                    }
                }
            }
        };
        let wait_until = match profile.behind_policy() {
            WhenBehind::Wait => {
                if !self.budget.has_room(image.byte_len() as u64) {
                    // Waiting while this stream holds its gathered steps could wait for
                    // ever if every stream did the same: they go to the writer first.
                    if self.hand_over_steps(tally).await.is_err() {
                        return;
                    }
                }
                Some(Instant::now() + FRAME_WAIT_LIMIT)
            }
            WhenBehind::Shed => None,
        };
        let when_full = wait_until.map_or(WhenFull::Shed, WhenFull::Wait);
        let kept = match (compression, image) {
            (FrameCompression::Video, image) => match &self.video {
                Some(video) => {
                    let recorder = Arc::clone(video);
                    let profile = Arc::clone(profile);
                    let (run_id, worker_id, agent_id) = (
                        step.run_id.clone(),
                        step.worker_id.clone(),
                        step.agent_id.clone(),
                    );
                    let at = (step.episode, step.step);
                    let offered = tokio::task::spawn_blocking(move || {
                        let owner = (run_id.as_str(), worker_id.as_str(), agent_id.as_str());
                        recorder.offer_explained(owner, at, image, &profile, wait_until)
                    })
                    .await
                    .unwrap_or_else(|_| video::VideoOffer {
                        shed: 1,
                        refusal: Some("the video hand-off panicked".into()),
                    });
                    tally.frames_shed += offered.shed;
                    if let Some(why) = offered.refusal {
                        tally.note(format!(
                            "the frame of step {} was refused for video: {why} (see Health)",
                            step.step
                        ));
                    }
                    return;
                }
                None => {
                    self.shed.add(&step.run_id, shed_kind::FRAME_NO_ENCODER, 1);
                    false
                }
            },
            (compression, image) => {
                let Some(charge) = self.budget.charge(image.byte_len() as u64, when_full).await
                else {
                    self.shed
                        .add(&step.run_id, shed_kind::FRAME_MEMORY_LIMIT, 1);
                    tally.frames_shed += 1;
                    return;
                };
                // What the store keeps itself: (kind, width, height, format, location, data).
                let in_store = match (compression, image) {
                    (_, FrameImage::Reference(reference)) => {
                        Ok((FrameKind::Reference, (0, 0), String::new(), reference, None))
                    }
                    (
                        FrameCompression::None,
                        FrameImage::Raw {
                            width,
                            height,
                            format,
                            pixels,
                        },
                    ) => Ok((
                        FrameKind::Inline,
                        (width, height),
                        format.label().to_owned(),
                        String::new(),
                        Some(pixels),
                    )),
                    (FrameCompression::None, FrameImage::Encoded { codec, data }) => Ok((
                        FrameKind::Inline,
                        (0, 0),
                        codec.name().to_owned(),
                        String::new(),
                        Some(data),
                    )),
                    (compression, image) => Err((compression, image)),
                };
                match in_store {
                    Ok((kind, (width, height), format, location, data)) => {
                        let entry = FrameIndexEntry {
                            run_id: step.run_id.clone(),
                            worker_id: step.worker_id.clone(),
                            agent_id: step.agent_id.clone(),
                            episode: step.episode,
                            step: step.step,
                            kind,
                            width,
                            height,
                            format,
                            location,
                            data,
                        };
                        self.offer_to_store(entry, charge, wait_until).await
                    }
                    Err((compression, image)) => {
                        let offered = self
                            .snapshots
                            .offer(
                                KeptFrame {
                                    run_id: step.run_id.clone(),
                                    worker_id: step.worker_id.clone(),
                                    agent_id: step.agent_id.clone(),
                                    episode: step.episode,
                                    step: step.step,
                                    compression,
                                    image,
                                },
                                profile.jpeg_quality,
                                charge,
                                wait_until,
                            )
                            .await;
                        if offered == Offered::Stopped {
                            tally.note(format!(
                                "the frame of step {} was refused: the snapshot writer has stopped (see Health)",
                                step.step
                            ));
                        }
                        offered == Offered::Queued
                    }
                }
            }
        };
        if !kept {
            tally.frames_shed += 1;
        }
    }

    /// Queues a frame's index entry for the writer: at once or shed, or waiting until
    /// `wait_until`.
    async fn offer_to_store(
        &self,
        entry: FrameIndexEntry,
        charge: Charge,
        wait_until: Option<Instant>,
    ) -> bool {
        let permit = match wait_until {
            None => self.store.try_reserve().ok(),
            Some(deadline) => tokio::time::timeout_at(deadline.into(), self.store.reserve())
                .await
                .ok()
                .and_then(Result::ok),
        };
        match permit {
            Some(permit) => {
                permit.send(StoreCommand::Frame(entry, charge));
                true
            }
            None => {
                self.shed.add(&entry.run_id, shed_kind::FRAME_QUEUE_FULL, 1);
                false
            }
        }
    }

    /// The frame of (run, episode, step) of `owner` through the replay's resolver: video first,
    /// then a snapshot file, then inline pixels. Blocking (decodes): call it on a blocking
    /// thread.
    pub(crate) fn resolve_frame(
        &self,
        run_id: &str,
        owner: FrameOwner<'_>,
        episode: u64,
        step: u64,
    ) -> Result<StepFrame, Status> {
        let mut frames = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        if frames.is_none() {
            let resolver = FrameResolver::open(&self.db_path, GET_FRAME_CACHE_BYTES)
                .map_err(|e| Status::internal(e.to_string()))?;
            *frames = Some(resolver);
        }
        let Some(resolver) = frames.as_mut() else {
            return Err(Status::internal("frame resolver unavailable"));
        };
        resolver
            .owner_frame(run_id, owner, episode, step)
            .map_err(|err| match err {
                ReplayError::Store(StoreError::UnknownRun(run)) => {
                    Status::not_found(format!("unknown run {run:?}"))
                }
                ReplayError::Store(other) => Status::internal(other.to_string()),
                other => Status::data_loss(other.to_string()),
            })
    }

    /// Lists a rig's clip in the store and waits for its commit; false when it was listed
    /// already (a re-send).
    pub(crate) async fn register_clip(&self, clip: crate::bus::ClipEntry) -> Result<bool, Status> {
        let reader = self.reader().await?;
        let folder = clip.folder.clone();
        let listed = tokio::task::spawn_blocking(move || reader.clip_listed(&folder))
            .await
            .map_err(|_| Status::internal("clip lookup failed"))?
            .map_err(|e| Status::internal(e.to_string()))?;
        if listed {
            return Ok(false);
        }
        let failed_at_start = self
            .writer_stats
            .failed_batches
            .load(std::sync::atomic::Ordering::Relaxed);
        self.store
            .send(StoreCommand::Clip(clip))
            .await
            .map_err(|_| Status::unavailable("the store writer has stopped"))?;
        crate::store::writer_barrier(&self.store, failed_at_start, crate::store::NO_ORIGIN)
            .await
            .map_err(|err| Status::internal(format!("the store could not commit: {err}")))?;
        Ok(true)
    }

    /// The store writer's counters.
    pub fn writer_stats(&self) -> &WriterStats {
        &self.writer_stats
    }

    /// A new tag for one publish stream's store commands.
    pub(crate) fn next_origin(&self) -> crate::store::Origin {
        self.origins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// A reader of the store for queries and subscriptions.
    /// A reader of the store, opened on a blocking thread (opening SQLite reads the file).
    pub(crate) async fn reader(&self) -> Result<StoreReader, Status> {
        let path = self.db_path.clone();
        tokio::task::spawn_blocking(move || StoreReader::open(&path))
            .await
            .map_err(|_| Status::internal("opening the store failed"))?
            .map_err(|e| Status::internal(e.to_string()))
    }

    pub(crate) fn commits(&self) -> broadcast::Receiver<CommitNotice> {
        self.commits.subscribe()
    }

    pub(crate) fn control_events(&self) -> broadcast::Receiver<(String, ControlEvent)> {
        self.control.subscribe()
    }

    /// Connections open now and refused so far.
    pub(crate) fn connection_stats(&self) -> Arc<connections::ConnectionStats> {
        Arc::clone(&self.connections)
    }

    /// Control streams open for `run_id`.
    pub fn control_listeners(&self, run_id: &str) -> usize {
        self.control_listeners.count(run_id)
    }

    pub(crate) fn control_listener_counts(&self) -> ControlListeners {
        self.control_listeners.clone()
    }

    /// Sends a control event to the workers of `run_id` (empty: all runs).
    pub fn send_control(&self, run_id: &str, event: ControlEvent) {
        if let (false, ControlEvent::MaxRateHz(hz)) = (run_id.is_empty(), &event) {
            self.control_listeners.record_rate_cap(run_id, *hz);
        }
        let _ = self.control.send((run_id.to_owned(), event));
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Commands waiting for the store writer.
    pub fn queue_depth(&self) -> usize {
        self.store_capacity - self.store.capacity()
    }

    pub fn queue_capacity(&self) -> usize {
        self.store_capacity
    }

    pub(crate) fn started_unix_ns(&self) -> u64 {
        self.started_unix_ns
    }

    pub(crate) fn listen_address(&self) -> String {
        self.listen_address
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What keeps the daemon from doing its work, worded for an operator (empty: healthy).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.store.is_closed() {
            problems.push("store: the writer has stopped; nothing can be recorded".into());
        }
        if let Some(error) = self
            .writer_stats
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            problems.push(format!(
                "store: the last batch failed and none has committed since ({} failed so far): {error}",
                self.writer_stats
                    .failed_batches
                    .load(std::sync::atomic::Ordering::Relaxed)
            ));
        }
        if !self.snapshots.is_running() {
            problems.push(
                "snapshots: the writer thread has stopped; kept PNG/JPEG frames are refused".into(),
            );
        }
        if let Some(video) = &self.video {
            for worker in video.service().stopped_workers() {
                problems.push(format!(
                    "video: encoder worker encode-{worker} has stopped; its jobs are not encoded"
                ));
            }
            for (worker, busy) in video.service().stalled_workers() {
                problems.push(format!(
                    "video: encoder worker encode-{worker} has been stuck on one item for {} s; its jobs move to other workers",
                    busy.as_secs()
                ));
            }
        }
        problems
    }

    pub(crate) fn healthy(&self) -> bool {
        self.problems().is_empty()
    }

    /// Rates and committed counts of the runs seen since start, sorted by run id.
    pub fn run_rates(&self) -> Vec<(String, RunRate)> {
        let mut rates: Vec<_> = self
            .rates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(run, rate)| (run.clone(), *rate))
            .collect();
        rates.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        rates
    }

    pub(crate) fn rate_of(&self, run_id: &str) -> f64 {
        self.rates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(run_id)
            .map_or(0.0, |r| r.steps_per_second)
    }

    /// Keeps per-run step rates from commit notices; runs until the commit channel closes.
    /// Finishes video jobs that had no frame for their idle limit, once a second, until the
    /// daemon stops (so an encoder is released even when no other frame arrives).
    pub async fn finish_idle_video_jobs(self: Arc<Self>) {
        let Some(video) = &self.video else {
            return;
        };
        let mut stop = self.shutdown_signal();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => video.finish_idle(),
                _ = stop.changed() => return,
            }
        }
    }

    pub async fn track_rates(self: Arc<Self>) {
        let mut commits = self.commits();
        loop {
            match commits.recv().await {
                Ok(notice) => {
                    let now = Instant::now();
                    let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
                    let rate = rates.entry(notice.run_id.to_string()).or_default();
                    rate.steps = notice.steps;
                    rate.episodes = notice.episodes;
                    if let Some(at) = rate.last_at {
                        let dt = now.duration_since(at).as_secs_f64();
                        if dt >= 0.25 {
                            let instant = notice.steps.saturating_sub(rate.last_steps) as f64 / dt;
                            rate.steps_per_second = 0.5 * rate.steps_per_second + 0.5 * instant;
                            rate.last_steps = notice.steps;
                            rate.last_at = Some(now);
                        }
                    } else {
                        rate.last_steps = notice.steps;
                        rate.last_at = Some(now);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }

    /// Flow control: pauses every worker while the store queue is over 80 % full, resumes
    /// under 30 %, and grants credits for the free room every 100 ms.
    pub async fn regulate_flow(self: Arc<Self>) {
        let mut paused = false;
        let mut shutdown = self.shutdown_signal();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                _ = shutdown.changed() => break,
            }
            let fill = self.queue_depth() as f64 / self.store_capacity.max(1) as f64;
            if !paused && fill > 0.8 {
                paused = true;
                self.send_control("", ControlEvent::Pause);
            } else if paused && fill < 0.3 {
                paused = false;
                self.send_control("", ControlEvent::Resume);
            }
            if !paused {
                self.send_control(
                    "",
                    ControlEvent::GrantSteps(self.store.capacity().min(u32::MAX as usize) as u32),
                );
            }
        }
    }
}

fn new_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: fall back to time and pid, still unique per registration.
        let seed = crate::fastlane::shm::unix_ns() ^ u64::from(std::process::id()) << 32;
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a request's `authorization: Bearer <token>` against `token` (None: anyone may call),
/// in constant time. The daemon and the recording rig's API both use it.
pub fn check_bearer<T>(request: &tonic::Request<T>, token: Option<&str>) -> Result<(), Status> {
    let Some(token) = token else {
        return Ok(());
    };
    let given = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    match given.and_then(|v| v.strip_prefix("Bearer ")) {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(Status::unauthenticated("wrong token")),
        None => Err(Status::unauthenticated(
            "this service listens beyond loopback and needs a token: send 'authorization: Bearer <token>' metadata",
        )),
    }
}

/// Compares a presented token with ours in time that depends only on the lengths, so timing
/// tells an attacker nothing about how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3cres"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
