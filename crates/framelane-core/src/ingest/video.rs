//! Frames of runs whose profile asks for video: one encode job per (run, worker, agent,
//! episode), opened with the episode's first kept frame and finished when the worker's episode
//! ends, when the worker moves on to a later episode, or when it has had no frame for
//! [`JobLimits::idle`]. A job belongs to the worker that opened it: two workers of one run
//! that count their episodes alike write their own files, never one interleaved file. Open jobs are capped:
//! a run holds at most [`JobLimits::per_run`] (opening another finishes the run's least recently
//! fed one, so a client sending episodes in any order cannot pile up encoders), and the daemon
//! at most [`JobLimits::total`] (past it frames are refused and counted as `frame_job_cap`).
//! The encoder's frame index goes to the store writer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::budget::{Charge, MemoryBudget, WhenFull};
use crate::bus::{shed_kind, FrameImage, ShedCounters, VideoIndexEntry};
use crate::encode::{
    CodecFamily, EncoderService, EncoderSettings, IndexSink, JobSpec, Quality, SegmentInfo,
    SegmentOutcome,
};
use crate::gating::StorageProfile;
use crate::media::{decode_image, owner_suffix, run_folder_name};
use crate::store::StoreCommand;

/// Sends the encoder's frame index to the store writer (from encoder threads; waits for room).
pub struct StoreIndexSink {
    store: mpsc::Sender<StoreCommand>,
}

impl StoreIndexSink {
    pub fn new(store: mpsc::Sender<StoreCommand>) -> Arc<Self> {
        Arc::new(Self { store })
    }

    fn send(&self, entry: VideoIndexEntry) {
        if self
            .store
            .blocking_send(StoreCommand::Video(entry))
            .is_err()
        {
            tracing::warn!("the store writer has stopped; a video index entry was not recorded");
        }
    }
}

impl IndexSink for StoreIndexSink {
    fn segment_opened(&self, s: &SegmentInfo) {
        self.send(VideoIndexEntry::Opened {
            run_id: s.run_id.clone(),
            worker_id: s.worker_id.clone(),
            agent_id: s.agent_id.clone(),
            episode: s.episode,
            segment: s.segment,
            path: s.path.display().to_string(),
            encoder: s.encoder.clone(),
            fps: s.fps,
            gop: s.gop,
            width: s.width,
            height: s.height,
        });
    }

    fn frames_written(&self, s: &SegmentInfo, frames: &[(u64, u64)]) {
        self.send(VideoIndexEntry::Frames {
            run_id: s.run_id.clone(),
            worker_id: s.worker_id.clone(),
            agent_id: s.agent_id.clone(),
            episode: s.episode,
            segment: s.segment,
            frames: frames.to_vec(),
        });
    }

    fn segment_closed(&self, s: &SegmentInfo, outcome: &SegmentOutcome) {
        self.send(VideoIndexEntry::Closed {
            run_id: s.run_id.clone(),
            worker_id: s.worker_id.clone(),
            agent_id: s.agent_id.clone(),
            episode: s.episode,
            segment: s.segment,
            status: outcome.status,
            frames: outcome.frames,
            error: outcome.error.clone(),
        });
    }
}

/// The encoder settings a profile asks for.
pub fn settings_for(profile: &StorageProfile) -> EncoderSettings {
    let family = match profile.video_codec.as_str() {
        "h264" => CodecFamily::H264,
        _ => CodecFamily::Av1,
    };
    let mut settings = EncoderSettings::for_family(family);
    settings.fps = profile.video_fps;
    if let Some(crf) = profile.video_crf {
        settings.quality = Quality::Crf(crf);
    }
    settings
}

/// Caps on open encode jobs (each is an FFmpeg encoder with its own buffers and threads).
#[derive(Debug, Clone, Copy)]
pub struct JobLimits {
    /// Open jobs of the whole daemon: 32.
    pub total: usize,
    /// Open jobs of one run: 4.
    pub per_run: usize,
    /// A job with no frame for this long is finished: 60 s.
    pub idle: Duration,
}

impl Default for JobLimits {
    fn default() -> Self {
        Self {
            total: 32,
            per_run: 4,
            idle: Duration::from_secs(60),
        }
    }
}

/// Whose frames a job encodes: (run, worker, agent, episode).
type JobKey = (String, String, String, u64);

/// An open job and when it last took a frame.
struct OpenJob {
    job: u64,
    fed: Instant,
    /// The encoder's own buffers, estimated, held against the memory ceiling while it is open.
    _buffers: Charge,
}

/// Frames an open encoder is reckoned to hold (its lookahead and reference frames, in 4:2:0),
/// for the memory ceiling: an estimate, not a measurement of FFmpeg's allocations.
const ENCODER_FRAMES_HELD: u64 = 32;

/// Bytes an open job of `width` x `height` is reckoned to hold.
fn job_bytes(width: u32, height: u32) -> u64 {
    let frame = u64::from(width) * u64::from(height) * 3 / 2;
    ENCODER_FRAMES_HELD * frame + (4 << 20)
}

/// Why a frame found no job.
#[derive(Debug)]
enum NoJob {
    /// The daemon's cap on open jobs is reached.
    Cap,
    /// The memory ceiling has no room for another encoder.
    Memory,
    Encode(crate::encode::EncodeError),
}

/// What offering a frame for video cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoOffer {
    /// Frames of the offering run shed or refused (the frame itself, or an older one).
    pub shed: u64,
    /// Why the frame was refused, for the publisher, when an encoder worker that stopped or
    /// is stuck refused it ("encoder worker encode-0 has stopped").
    pub refusal: Option<String>,
}

impl VideoOffer {
    fn shed(shed: u64) -> Self {
        Self {
            shed,
            refusal: None,
        }
    }

    fn refused(why: String) -> Self {
        Self {
            shed: 1,
            refusal: Some(why),
        }
    }
}

/// Open encode jobs of the daemon's runs.
pub struct VideoRecorder {
    service: Arc<EncoderService>,
    dir: PathBuf,
    /// (run, worker, agent, episode) to job.
    jobs: Mutex<HashMap<JobKey, OpenJob>>,
    shed: Arc<ShedCounters>,
    limits: JobLimits,
    /// When the cap was last logged (at most every 10 s, not once per refused frame).
    cap_logged: Mutex<Option<Instant>>,
    /// The daemon's memory ceiling: queued frames and open encoders draw from it.
    budget: Arc<MemoryBudget>,
}

impl VideoRecorder {
    pub fn new(service: Arc<EncoderService>, dir: PathBuf, shed: Arc<ShedCounters>) -> Self {
        Self::with_limits(service, dir, shed, JobLimits::default())
    }

    pub fn with_limits(
        service: Arc<EncoderService>,
        dir: PathBuf,
        shed: Arc<ShedCounters>,
        limits: JobLimits,
    ) -> Self {
        Self {
            service,
            dir,
            jobs: Mutex::new(HashMap::new()),
            shed,
            limits,
            cap_logged: Mutex::new(None),
            budget: MemoryBudget::new(u64::MAX),
        }
    }

    /// Draws queued frames and open encoders from `budget` (the daemon's memory ceiling).
    pub fn with_budget(mut self, budget: Arc<MemoryBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// Encode jobs open now.
    pub fn open_jobs(&self) -> usize {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Queues a kept frame for the episode's file; returns how many frames of `run_id` this
    /// cost (the frame itself when refused, an older queued frame of the run shed to make
    /// room; each counted by its cause) and, when an encoder worker that stopped or is stuck
    /// refused the frame, why.
    /// `wait_until`: the profile waits when behind (for room under the memory ceiling and in
    /// the encoder's queue) until then; None: it sheds after the queue's own short wait.
    /// Blocking (decodes, may wait): call it on a blocking thread.
    pub fn offer_explained(
        &self,
        (run_id, worker_id, agent_id): (&str, &str, &str),
        (episode, step): (u64, u64),
        image: FrameImage,
        profile: &StorageProfile,
        wait_until: Option<Instant>,
    ) -> VideoOffer {
        let (width, height, format, pixels) = match image {
            FrameImage::Raw {
                width,
                height,
                format,
                pixels,
            } => (width, height, format, pixels),
            FrameImage::Encoded { codec, data } => match decode_image(codec, &data) {
                Ok(image) => (image.width, image.height, image.format, image.pixels),
                Err(reason) => {
                    tracing::warn!(run = %run_id, step, %reason, "frame for video refused");
                    self.shed.add(run_id, shed_kind::FRAME_INVALID, 1);
                    return VideoOffer::shed(1);
                }
            },
            FrameImage::Reference(_) => {
                self.shed.add(run_id, shed_kind::FRAME_INVALID, 1);
                return VideoOffer::shed(1);
            }
        };
        let when_full = wait_until.map_or(WhenFull::Shed, WhenFull::Wait);
        let key = (
            run_id.to_owned(),
            worker_id.to_owned(),
            agent_id.to_owned(),
            episode,
        );
        // A job on a stalled worker is let go (finished, so its file closes whenever the
        // worker moves again) and the frame goes to a new job (a new segment) on a worker that
        // is not stalled, if there is one.
        let mut moved = false;
        let job = loop {
            let job = match self.job_for(&key, profile, (width, height), when_full) {
                Ok(job) => job,
                Err(NoJob::Cap) => {
                    self.shed.add(run_id, shed_kind::FRAME_JOB_CAP, 1);
                    return VideoOffer::shed(1);
                }
                Err(NoJob::Memory) => {
                    self.shed.add(run_id, shed_kind::FRAME_MEMORY_LIMIT, 1);
                    return VideoOffer::shed(1);
                }
                Err(NoJob::Encode(crate::encode::EncodeError::Stopped)) => {
                    tracing::warn!(run = %run_id, step, "frame for video refused: no encoder worker is running");
                    self.shed.add(run_id, shed_kind::FRAME_WRITER_STOPPED, 1);
                    let stopped = self.service.stopped_workers();
                    let worker = stopped.first().copied().unwrap_or(0);
                    return VideoOffer::refused(format!(
                        "encoder worker encode-{worker} has stopped and no other is running"
                    ));
                }
                Err(NoJob::Encode(crate::encode::EncodeError::Stalled { worker, seconds })) => {
                    tracing::warn!(run = %run_id, step, worker, seconds, "frame for video refused: every encoder worker is stalled");
                    self.shed.add(run_id, shed_kind::FRAME_ENCODER_STALLED, 1);
                    return VideoOffer::refused(format!(
                        "encoder worker encode-{worker} has been stuck for {seconds} s and no other is free"
                    ));
                }
                Err(NoJob::Encode(err)) => {
                    tracing::error!(run = %run_id, error = %err, "cannot open an encode job");
                    self.shed.add(run_id, shed_kind::FRAME_NO_ENCODER, 1);
                    return VideoOffer::shed(1);
                }
            };
            match self.service.job_stalled(job) {
                Some((worker, busy)) if !moved => {
                    tracing::warn!(run = %run_id, step, worker, stuck_s = busy.as_secs(), "encoder worker stalled: its job moves to another worker");
                    self.let_go(job);
                    let _ = self.service.finish_job(job);
                    moved = true;
                }
                _ => break job,
            }
        };
        let Some(charge) = self.budget.charge_blocking(pixels.len() as u64, when_full) else {
            self.shed.add(run_id, shed_kind::FRAME_MEMORY_LIMIT, 1);
            return VideoOffer::shed(1);
        };
        let max_wait =
            wait_until.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        match self.service.submit_charged(
            job,
            step,
            (width, height, format),
            pixels,
            charge,
            max_wait,
        ) {
            Ok(outcome) => {
                let Some(victim) = outcome.shed_job else {
                    return VideoOffer::shed(0);
                };
                let run = self.run_of(victim).unwrap_or_else(|| run_id.to_owned());
                self.shed.add(&run, shed_kind::FRAME_ENCODER_BEHIND, 1);
                VideoOffer::shed(u64::from(run == run_id))
            }
            Err(crate::encode::EncodeError::Stopped) => {
                // The job's worker has stopped: the job is let go, so the next frame opens a
                // new one (a new segment) on a worker still running, if any.
                tracing::warn!(run = %run_id, step, "frame for video refused: its encoder worker has stopped");
                self.let_go(job);
                self.shed.add(run_id, shed_kind::FRAME_WRITER_STOPPED, 1);
                let worker = self.service.job_worker(job).unwrap_or(0);
                VideoOffer::refused(format!("encoder worker encode-{worker} has stopped"))
            }
            Err(crate::encode::EncodeError::Stalled { worker, seconds }) => {
                // Stalled between the look above and the hand-off.
                tracing::warn!(run = %run_id, step, worker, seconds, "frame for video refused: its encoder worker is stalled");
                self.shed.add(run_id, shed_kind::FRAME_ENCODER_STALLED, 1);
                VideoOffer::refused(format!(
                    "encoder worker encode-{worker} has been stuck for {seconds} s"
                ))
            }
            Err(err) => {
                tracing::warn!(run = %run_id, step, error = %err, "frame for video refused");
                self.shed.add(run_id, shed_kind::FRAME_INVALID, 1);
                VideoOffer::shed(1)
            }
        }
    }

    /// [`Self::offer_explained`] without the reason: how many frames of `run_id` it cost.
    #[cfg(test)]
    fn offer(
        &self,
        owner: (&str, &str, &str),
        at: (u64, u64),
        image: FrameImage,
        profile: &StorageProfile,
        wait_until: Option<Instant>,
    ) -> u64 {
        self.offer_explained(owner, at, image, profile, wait_until)
            .shed
    }

    /// Forgets `job`: the next frame of its (run, worker, agent, episode) opens a new one.
    fn let_go(&self, job: u64) {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, open| open.job != job);
    }

    fn run_of(&self, job: u64) -> Option<String> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(_, j)| j.job == job)
            .map(|((run, _, _, _), _)| run.clone())
    }

    /// The job of (run, worker, agent, episode), opening it if new. Earlier episodes of the
    /// worker's agent still open are finished (their episode record may never come), so are
    /// jobs idle past the limit; a run
    /// at its cap gives up its least recently fed job; past the daemon's cap: refused.
    /// A new job first takes its encoder's estimated buffers from the memory ceiling (outside
    /// the lock, as it may wait).
    fn job_for(
        &self,
        key: &JobKey,
        profile: &StorageProfile,
        (width, height): (u32, u32),
        when_full: WhenFull,
    ) -> Result<u64, NoJob> {
        let (run_id, worker_id, agent_id, episode) =
            (key.0.as_str(), key.1.as_str(), key.2.as_str(), key.3);
        if let Some(open) = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(key)
        {
            open.fed = Instant::now();
            return Ok(open.job);
        }
        let buffers = self
            .budget
            .charge_blocking(job_bytes(width, height), when_full)
            .ok_or(NoJob::Memory)?;
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(open) = jobs.get_mut(key) {
            // Opened by another stream meanwhile: the charge taken above goes back.
            open.fed = now;
            return Ok(open.job);
        }
        let finished: Vec<JobKey> = jobs
            .keys()
            .filter(|(run, worker, agent, ep)| {
                run == run_id && worker == worker_id && agent == agent_id && *ep < episode
            })
            .cloned()
            .collect();
        for key in finished {
            if let Some(open) = jobs.remove(&key) {
                let _ = self.service.finish_job(open.job);
            }
        }
        self.finish_idle_locked(&mut jobs, now);
        let of_run = jobs.keys().filter(|(run, _, _, _)| run == run_id).count();
        if of_run >= self.limits.per_run {
            let oldest = jobs
                .iter()
                .filter(|((run, _, _, _), _)| run == run_id)
                .min_by_key(|(_, open)| open.fed)
                .map(|(key, _)| key.clone());
            if let Some(open) = oldest.and_then(|key| jobs.remove(&key)) {
                let _ = self.service.finish_job(open.job);
            }
        }
        if jobs.len() >= self.limits.total {
            let mut logged = self.cap_logged.lock().unwrap_or_else(|p| p.into_inner());
            if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                *logged = Some(now);
                tracing::warn!(
                    run = %run_id,
                    cap = self.limits.total,
                    "video jobs at their cap: frames of new episodes are refused until one ends or idles"
                );
            }
            return Err(NoJob::Cap);
        }
        let settings = settings_for(profile);
        let path = self.dir.join(run_folder_name(run_id)).join(format!(
            "episode-{episode:06}{}.{}",
            owner_suffix(worker_id, agent_id),
            settings.container.extension()
        ));
        let job = self
            .service
            .open_job(JobSpec {
                run_id: run_id.to_owned(),
                worker_id: worker_id.to_owned(),
                agent_id: agent_id.to_owned(),
                episode,
                path,
                settings,
            })
            .map_err(NoJob::Encode)?;
        jobs.insert(
            key.clone(),
            OpenJob {
                job,
                fed: now,
                _buffers: buffers,
            },
        );
        Ok(job)
    }

    /// Finishes the jobs that had no frame for the idle limit (the daemon calls it once a
    /// second; opening a job does it too).
    pub fn finish_idle(&self) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        self.finish_idle_locked(&mut jobs, Instant::now());
    }

    fn finish_idle_locked(&self, jobs: &mut HashMap<JobKey, OpenJob>, now: Instant) {
        let idle = self.limits.idle;
        jobs.retain(|_, open| {
            let keep = now.duration_since(open.fed) < idle;
            if !keep {
                let _ = self.service.finish_job(open.job);
            }
            keep
        });
    }

    /// A worker's episode ended: its files (one per agent) are finished in the background.
    /// Other workers' jobs of the same episode number go on; a worker without an id ('')
    /// ends the episode of every worker.
    pub fn episode_ended(&self, run_id: &str, worker_id: &str, episode: u64) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.retain(|(run, worker, _, ep), open| {
            let ended =
                run == run_id && *ep == episode && (worker_id.is_empty() || worker == worker_id);
            if ended {
                let _ = self.service.finish_job(open.job);
            }
            !ended
        });
    }

    pub fn service(&self) -> &Arc<EncoderService> {
        &self.service
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::RawPixelFormat;
    use crate::encode::ServiceConfig;
    use crate::gating::ProfileSet;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "framelane-video-{tag}-{}-{}",
            std::process::id(),
            crate::fastlane::shm::monotonic_ns()
        ));
        std::fs::create_dir_all(&dir).expect("scratch");
        dir
    }

    fn frame() -> FrameImage {
        FrameImage::Raw {
            width: 64,
            height: 48,
            format: RawPixelFormat::Rgb8,
            pixels: vec![90; 64 * 48 * 3],
        }
    }

    fn recorder(dir: &std::path::Path, limits: JobLimits) -> (VideoRecorder, Arc<ShedCounters>) {
        let service =
            Arc::new(EncoderService::start(ServiceConfig::never_shed(1), None).expect("service"));
        let shed = Arc::new(ShedCounters::default());
        (
            VideoRecorder::with_limits(service, dir.to_owned(), shed.clone(), limits),
            shed,
        )
    }

    /// Polls `done` until it holds; fails naming `what` after 30 s.
    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn demo_profile() -> StorageProfile {
        ProfileSet::builtin()
            .expect("profiles")
            .get("demo")
            .expect("demo")
            .clone()
    }

    #[test]
    fn episodes_in_any_order_never_hold_more_jobs_than_the_run_cap() {
        let dir = scratch("order");
        let limits = JobLimits {
            total: 32,
            per_run: 3,
            idle: Duration::from_secs(600),
        };
        let (recorder, shed) = recorder(&dir, limits);
        let profile = demo_profile();
        // Descending episodes used to open an encoder each and never finish one.
        for episode in (0..12u64).rev() {
            assert_eq!(
                recorder.offer(("r", "", ""), (episode, episode), frame(), &profile, None),
                0
            );
            assert!(recorder.open_jobs() <= 3, "{} open", recorder.open_jobs());
        }
        assert!(
            shed.totals().is_empty(),
            "nothing refused: {:?}",
            shed.totals()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn past_the_daemon_cap_frames_are_refused_and_counted_and_idle_jobs_make_room() {
        let dir = scratch("cap");
        let limits = JobLimits {
            total: 4,
            per_run: 4,
            idle: Duration::from_millis(300),
        };
        let (recorder, shed) = recorder(&dir, limits);
        let profile = demo_profile();
        for run in 0..4 {
            assert_eq!(
                recorder.offer(
                    (&format!("run{run}"), "", ""),
                    (0, 0),
                    frame(),
                    &profile,
                    None
                ),
                0
            );
        }
        assert!(
            recorder.offer(("late", "", ""), (0, 0), frame(), &profile, None) == 1,
            "a fifth job is refused"
        );
        // With no frame at all the periodic sweep releases them.
        let deadline = Instant::now() + Duration::from_secs(10);
        while recorder.open_jobs() > 0 {
            assert!(Instant::now() < deadline, "idle jobs were never finished");
            std::thread::sleep(Duration::from_millis(50));
            recorder.finish_idle();
        }
        for run in 0..4 {
            assert_eq!(
                recorder.offer(
                    (&format!("run{run}"), "", ""),
                    (1, 0),
                    frame(),
                    &profile,
                    None
                ),
                0
            );
        }
        assert_eq!(
            shed.totals(),
            vec![(shed_kind::FRAME_JOB_CAP, 1)],
            "and counted"
        );
        // The four go idle; the next frame finishes them and opens its own job.
        let deadline = Instant::now() + Duration::from_secs(10);
        while recorder.offer(("late", "", ""), (0, 1), frame(), &profile, None) != 0 {
            assert!(Instant::now() < deadline, "idle jobs never made room");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(recorder.open_jobs(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_episode_opened_again_starts_a_new_segment_and_keeps_the_first_file() {
        let dir = scratch("reopen");
        let (recorder, _) = recorder(&dir, JobLimits::default());
        let profile = demo_profile();
        for step in 0..10 {
            assert_eq!(
                recorder.offer(("r", "", ""), (0, step), frame(), &profile, None),
                0
            );
        }
        recorder.episode_ended("r", "", 0);
        let first = dir.join(run_folder_name("r")).join("episode-000000.mp4");
        let deadline = Instant::now() + Duration::from_secs(30);
        let size_of = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        // Finished when the fast-start rewrite has put the index in front (size settles).
        let mut size = 0;
        while Instant::now() < deadline {
            let now = size_of(&first);
            if now > 0 && now == size && recorder.service().open_jobs() == 0 {
                break;
            }
            size = now;
            std::thread::sleep(Duration::from_millis(100));
        }
        let before = std::fs::read(&first).expect("first file");
        // A frame after the episode's end (the other stream) opens the episode again.
        for step in 10..15 {
            assert_eq!(
                recorder.offer(("r", "", ""), (0, step), frame(), &profile, None),
                0
            );
        }
        recorder.episode_ended("r", "", 0);
        let second = dir
            .join(run_folder_name("r"))
            .join("episode-000000-part1.mp4");
        while Instant::now() < deadline && size_of(&second) == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            size_of(&second) > 0,
            "the reopened episode went to a new segment"
        );
        assert_eq!(
            std::fs::read(&first).expect("first file"),
            before,
            "the first recording is untouched"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn two_workers_with_the_same_episode_numbers_keep_their_own_jobs_and_files() {
        let dir = scratch("workers");
        let (recorder, shed) = recorder(&dir, JobLimits::default());
        let profile = demo_profile();
        for step in 0..6 {
            for worker in ["w1", "w2"] {
                assert_eq!(
                    recorder.offer(("r", worker, ""), (0, step), frame(), &profile, None),
                    0
                );
            }
        }
        assert_eq!(recorder.open_jobs(), 2, "one job per worker");
        // w1's episode 0 ends; w2 is still in its own episode 0.
        recorder.episode_ended("r", "w1", 0);
        assert_eq!(recorder.open_jobs(), 1, "w2's job goes on");
        for step in 6..9 {
            assert_eq!(
                recorder.offer(("r", "w2", ""), (0, step), frame(), &profile, None),
                0
            );
        }
        assert_eq!(
            recorder.open_jobs(),
            1,
            "w2 fed its open job, not a new one"
        );
        recorder.episode_ended("r", "w2", 0);
        let folder = dir.join(run_folder_name("r"));
        wait_for("the jobs to finish", || recorder.service().open_jobs() == 0);
        let mut files: Vec<String> = std::fs::read_dir(&folder)
            .expect("run folder")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let expected: Vec<String> = ["w1", "w2"]
            .iter()
            .map(|w| format!("episode-000000{}.mp4", owner_suffix(w, "")))
            .collect();
        assert_eq!(files, expected, "one file per worker, no second segment");
        assert!(shed.totals().is_empty(), "{:?}", shed.totals());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_job_whose_worker_died_is_let_go_and_the_next_frame_opens_one_on_a_live_worker() {
        let dir = scratch("dead-worker");
        let config = ServiceConfig {
            workers: 2,
            fault_panic_after_frames: Some(3),
            ..ServiceConfig::never_shed(2)
        };
        let service = Arc::new(EncoderService::start(config, None).expect("service"));
        let shed = Arc::new(ShedCounters::default());
        let recorder =
            VideoRecorder::with_limits(service, dir.clone(), shed.clone(), JobLimits::default());
        let profile = demo_profile();
        for step in 0..4 {
            assert_eq!(
                recorder.offer(("r", "", ""), (0, step), frame(), &profile, None),
                0
            );
        }
        wait_for("the injected fault", || {
            !recorder.service().stopped_workers().is_empty()
        });
        assert_eq!(
            recorder.offer(("r", "", ""), (0, 4), frame(), &profile, None),
            1,
            "refused: its worker has stopped"
        );
        assert_eq!(
            shed.totals(),
            vec![(shed_kind::FRAME_WRITER_STOPPED, 1)],
            "counted by its cause"
        );
        for step in 5..7 {
            assert_eq!(
                recorder.offer(("r", "", ""), (0, step), frame(), &profile, None),
                0,
                "a new job on the worker still running"
            );
        }
        recorder.episode_ended("r", "", 0);
        let second = dir
            .join(run_folder_name("r"))
            .join("episode-000000-part1.mp4");
        wait_for("the new job's file", || {
            std::fs::metadata(&second).is_ok_and(|m| m.len() > 0)
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
