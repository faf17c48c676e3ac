//! Frames of runs whose profile asks for video: one encode job per (run, episode), opened with
//! the episode's first kept frame and finished when the episode ends (or the run moves on to a
//! later episode). The encoder's frame index goes to the store writer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::bus::{shed_kind, FrameImage, ShedCounters, VideoIndexEntry};
use crate::encode::{
    CodecFamily, EncoderService, EncoderSettings, IndexSink, JobSpec, Quality, SegmentInfo,
    SegmentOutcome,
};
use crate::gating::StorageProfile;
use crate::media::{decode_image, run_folder_name};
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
            episode: s.episode,
            segment: s.segment,
            frames: frames.to_vec(),
        });
    }

    fn segment_closed(&self, s: &SegmentInfo, outcome: &SegmentOutcome) {
        self.send(VideoIndexEntry::Closed {
            run_id: s.run_id.clone(),
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

/// Open encode jobs of the daemon's runs.
pub struct VideoRecorder {
    service: Arc<EncoderService>,
    dir: PathBuf,
    /// (run, episode) to job.
    jobs: Mutex<HashMap<(String, u64), u64>>,
    shed: Arc<ShedCounters>,
}

impl VideoRecorder {
    pub fn new(service: Arc<EncoderService>, dir: PathBuf, shed: Arc<ShedCounters>) -> Self {
        Self {
            service,
            dir,
            jobs: Mutex::new(HashMap::new()),
            shed,
        }
    }

    /// Queues a kept frame for the episode's file; false when it was refused (and counted).
    /// Waits at most the encoder queue's `max_wait`.
    pub fn offer(
        &self,
        run_id: &str,
        episode: u64,
        step: u64,
        image: FrameImage,
        profile: &StorageProfile,
    ) -> bool {
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
                    return false;
                }
            },
            FrameImage::Reference(_) => {
                self.shed.add(run_id, shed_kind::FRAME_INVALID, 1);
                return false;
            }
        };
        let job = match self.job_for(run_id, episode, profile) {
            Ok(job) => job,
            Err(err) => {
                tracing::error!(run = %run_id, error = %err, "cannot open an encode job");
                self.shed.add(run_id, shed_kind::FRAME_NO_ENCODER, 1);
                return false;
            }
        };
        match self
            .service
            .submit(job, step, width, height, format, pixels)
        {
            Ok(outcome) => {
                if let Some(victim) = outcome.shed_job {
                    let run = self.run_of(victim).unwrap_or_else(|| run_id.to_owned());
                    self.shed.add(&run, shed_kind::FRAME_ENCODER_BEHIND, 1);
                }
                true
            }
            Err(err) => {
                tracing::warn!(run = %run_id, step, error = %err, "frame for video refused");
                self.shed.add(run_id, shed_kind::FRAME_INVALID, 1);
                false
            }
        }
    }

    fn run_of(&self, job: u64) -> Option<String> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(_, j)| **j == job)
            .map(|((run, _), _)| run.clone())
    }

    /// The job of (run, episode), opening it if new; earlier episodes of the run still open
    /// are finished (their episode record may never come).
    fn job_for(
        &self,
        run_id: &str,
        episode: u64,
        profile: &StorageProfile,
    ) -> Result<u64, crate::encode::EncodeError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(job) = jobs.get(&(run_id.to_owned(), episode)) {
            return Ok(*job);
        }
        let stale: Vec<(String, u64)> = jobs
            .keys()
            .filter(|(run, ep)| run == run_id && *ep < episode)
            .cloned()
            .collect();
        for key in stale {
            if let Some(job) = jobs.remove(&key) {
                let _ = self.service.finish_job(job);
            }
        }
        let settings = settings_for(profile);
        let path = self.dir.join(run_folder_name(run_id)).join(format!(
            "episode-{episode:06}.{}",
            settings.container.extension()
        ));
        let job = self.service.open_job(JobSpec {
            run_id: run_id.to_owned(),
            episode,
            path,
            settings,
        })?;
        jobs.insert((run_id.to_owned(), episode), job);
        Ok(job)
    }

    /// The episode ended: its file is finished in the background.
    pub fn episode_ended(&self, run_id: &str, episode: u64) {
        let job = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(run_id.to_owned(), episode));
        if let Some(job) = job {
            let _ = self.service.finish_job(job);
        }
    }

    pub fn service(&self) -> &Arc<EncoderService> {
        &self.service
    }
}
