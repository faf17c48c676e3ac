//! The walk: one thread decodes, takes signatures, finds cuts, picks frames, converts and
//! detects the picked ones and links tracks; the export thread writes JPEGs. Manifests are
//! appended as it goes and a checkpoint is taken every couple of seconds, so an interrupted run
//! resumes where it stood. A damaged video ends the walk with an error naming the frame, after
//! everything analysed before it is written out.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::decode::{BgrImage, EpisodeDecoder, Signature, VideoInfo};
use crate::export::{copy_region, remove_partial_files, ExportJob, ExportStats, Exporter};
use crate::faces::{FaceBox, FaceDetector};
use crate::manifest::{self, AnalysedLine, Checkpoint, Counters, DetectionLine, JsonLines};
use crate::progress::{Progress, ProgressReporter, ProgressStyle};
use crate::scene::{SceneCut, SceneDetector, SceneState};
use crate::select::{FrameSelector, Reason};
use crate::track::{remap_ids, BBox, TrackMetrics, Tracker, TrackerConfig};
use crate::{AnalyzeError, AnalyzeOptions};

/// How often the walk checkpoints.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

/// Milliseconds spent per stage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageTimes {
    pub decode_ms: f64,
    pub signature_ms: f64,
    pub convert_ms: f64,
    pub detect_ms: f64,
    pub track_ms: f64,
    pub export_wait_ms: f64,
    pub checkpoint_ms: f64,
    pub total_ms: f64,
}

/// What `summary.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub ep_id: String,
    pub video: String,
    /// "complete", or "failed" with `error`.
    pub status: String,
    pub error: Option<String>,
    pub info: VideoInfo,
    pub detector: String,
    /// Frame the walk resumed at (None: started at 0).
    pub resumed_at: Option<u64>,
    pub frames_decoded: u64,
    pub frames: Counters,
    pub scene: SceneState,
    pub scene_cuts: u64,
    pub tracks_kept: u64,
    pub tracks_dropped: u64,
    pub tracker: TrackMetrics,
    pub export: ExportStats,
    pub stages: StageTimes,
    pub options: AnalyzeOptions,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Removes what an earlier run left, for a fresh start.
fn clear_outputs(dir: &Path) -> Result<(), AnalyzeError> {
    for name in [
        manifest::ANALYSED,
        manifest::DETECTIONS,
        manifest::TRACKS,
        manifest::SCENE_CUTS,
        manifest::SUMMARY,
        manifest::CHECKPOINT,
    ] {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AnalyzeError::output(dir.join(name), e)),
        }
    }
    for sub in [manifest::FRAMES_DIR, manifest::CROPS_DIR] {
        match std::fs::remove_dir_all(dir.join(sub)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AnalyzeError::output(dir.join(sub), e)),
        }
    }
    Ok(())
}

/// The state the walk carries from frame to frame (and across a resume).
struct Walk {
    scene: SceneDetector,
    selector: FrameSelector,
    tracker: Tracker,
    cuts: Vec<SceneCut>,
    counters: Counters,
    analysed: JsonLines,
    detections: JsonLines,
    exporter: Exporter,
    detector: FaceDetector,
    stages: StageTimes,
    // Buffers reused for every frame.
    signature: Signature,
    bgr: BgrImage,
    faces: Vec<FaceBox>,
    boxes: Vec<BBox>,
    ids: Vec<u64>,
}

/// Analyses `options.video` into `options.out`. `style` picks how progress is shown.
pub fn analyze(options: &AnalyzeOptions, style: ProgressStyle) -> Result<Summary, AnalyzeError> {
    options.validate()?;
    let started = Instant::now();
    let out = options.out.as_path();
    std::fs::create_dir_all(out).map_err(|e| AnalyzeError::output(out, e))?;
    let mut decoder = EpisodeDecoder::open(&options.video)?;
    let detector = FaceDetector::new(
        options.cascade.as_deref(),
        options.face_model.as_deref(),
        options.device,
        options.detect_width,
    )?;
    let video_bytes = std::fs::metadata(&options.video)
        .map(|m| m.len())
        .unwrap_or(0);

    // Resume when a checkpoint of the same video and settings is there.
    let checkpoint = if options.restart {
        None
    } else {
        Checkpoint::load(out)?
    };
    let checkpoint = match checkpoint {
        Some(c) => {
            let reason = if c.ep_id != options.ep_id {
                Some(format!("it is of episode {:?}", c.ep_id))
            } else if c.video_bytes != video_bytes || c.video != options.video {
                Some(format!(
                    "it is of {} ({} bytes)",
                    c.video.display(),
                    c.video_bytes
                ))
            } else if c.fingerprint != options.fingerprint() {
                Some(format!(
                    "it was made with other settings ({})",
                    c.fingerprint
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(AnalyzeError::Resume {
                    path: out.join(manifest::CHECKPOINT),
                    reason: format!("{reason}; --restart starts over"),
                });
            }
            Some(c)
        }
        None => {
            clear_outputs(out)?;
            None
        }
    };
    for (wanted, sub) in [
        (options.save_frames, manifest::FRAMES_DIR),
        (options.save_crops, manifest::CROPS_DIR),
    ] {
        if wanted {
            let dir = out.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| AnalyzeError::output(&dir, e))?;
            remove_partial_files(&dir);
        }
    }

    let mut walk = Walk {
        scene: SceneDetector::new(
            options.scene_threshold,
            options.min_scene_len,
            options.scene_cut_cooldown,
        ),
        selector: FrameSelector::new(options.stride, options.scene_warmup),
        tracker: Tracker::new(TrackerConfig::new(options.max_gap, options.max_gap_sec)),
        cuts: Vec::new(),
        counters: Counters::default(),
        analysed: JsonLines::open(
            out.join(manifest::ANALYSED),
            checkpoint.as_ref().map_or(0, |c| c.analysed_bytes),
        )?,
        detections: JsonLines::open(
            out.join(manifest::DETECTIONS),
            checkpoint.as_ref().map_or(0, |c| c.detections_bytes),
        )?,
        exporter: Exporter::start(options.jpeg_quality)?,
        detector,
        stages: StageTimes::default(),
        signature: Signature::default(),
        bgr: BgrImage::default(),
        faces: Vec::new(),
        boxes: Vec::new(),
        ids: Vec::new(),
    };
    let mut resume_at = 0;
    if let Some(c) = &checkpoint {
        walk.scene.restore(c.scene.clone(), c.signature());
        walk.selector.restore(c.last_cut);
        walk.tracker = c.tracker.clone();
        walk.cuts = c.cuts.clone();
        walk.counters = c.counters.clone();
        resume_at = c.next_frame;
        tracing::info!(frame = resume_at, "resuming from the checkpoint");
    }

    let info = decoder.info().clone();
    let total = if info.declared_frames > 0 {
        info.declared_frames
    } else {
        (info.duration_s * info.fps).round() as u64
    };
    let mut progress = ProgressReporter::new(style, resume_at);
    let mut last_checkpoint = Instant::now();
    let mut next_frame = resume_at;
    let outcome = loop {
        let t = Instant::now();
        let stamp = match decoder.next_frame() {
            Ok(Some(stamp)) => stamp,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        walk.stages.decode_ms += ms(t);
        if stamp.number < resume_at {
            continue;
        }
        if let Err(e) = walk.frame(&mut decoder, options, stamp.number, stamp.time) {
            break Err(e);
        }
        next_frame = stamp.number + 1;
        if progress.due() {
            let p = walk.progress(&progress, next_frame, total);
            progress.report(&p, false);
        }
        if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            let t = Instant::now();
            if let Err(e) = walk.checkpoint(options, video_bytes, next_frame) {
                break Err(e);
            }
            walk.stages.checkpoint_ms += ms(t);
            last_checkpoint = Instant::now();
        }
    };
    let p = walk.progress(&progress, next_frame, total);
    progress.report(&p, true);

    // Whatever happened, what was analysed is written out.
    let error = outcome.as_ref().err().map(ToString::to_string);
    let finished = walk.finish(
        options,
        &decoder,
        info,
        started,
        checkpoint.map(|_| resume_at),
        error,
    );
    match (outcome, finished) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(summary)) => Ok(summary),
    }
}

impl Walk {
    fn progress(&self, reporter: &ProgressReporter, frame: u64, total: u64) -> Progress {
        reporter.make(
            frame,
            total,
            self.counters.analysed,
            self.counters.detections,
            self.cuts.len() as u64,
        )
    }

    /// Everything done for one decoded frame.
    fn frame(
        &mut self,
        decoder: &mut EpisodeDecoder,
        options: &AnalyzeOptions,
        number: u64,
        time: f64,
    ) -> Result<(), AnalyzeError> {
        let t = Instant::now();
        decoder.signature(&mut self.signature)?;
        let cut = self.scene.observe(number, time, &self.signature);
        self.stages.signature_ms += ms(t);
        if let Some(cut) = &cut {
            if cut.tracker_reset {
                self.tracker.reset();
            }
            self.cuts.push(cut.clone());
        }
        let Some(reason) = self.selector.select(number, cut.is_some()) else {
            return Ok(());
        };
        let t = Instant::now();
        decoder.convert_bgr(&mut self.bgr)?;
        self.stages.convert_ms += ms(t);
        let t = Instant::now();
        self.detector.detect(&self.bgr, &mut self.faces)?;
        self.stages.detect_ms += ms(t);

        let t = Instant::now();
        self.boxes.clear();
        self.boxes.extend(self.faces.iter().map(|f| f.bbox));
        self.tracker
            .update(number, time, &self.boxes, &self.bgr, &mut self.ids);
        let wait_before = self.exporter.wait_ms();
        for (face, &raw_id) in self.faces.iter().zip(&self.ids) {
            let mut crop = None;
            if options.save_crops {
                if let Some(region) = face.bbox.clip(self.bgr.width, self.bgr.height) {
                    let name = self
                        .tracker
                        .add_crop(raw_id, options.track_sample_limit, || {
                            format!("{}/t{raw_id:05}_f{number:08}.jpg", manifest::CROPS_DIR)
                        });
                    if let Some(name) = name {
                        let mut pixels = self
                            .exporter
                            .buffer(region.2 as usize * region.3 as usize * 3);
                        copy_region(&self.bgr.data, self.bgr.width, region, &mut pixels);
                        self.exporter.submit(ExportJob {
                            path: options.out.join(&name),
                            width: region.2,
                            height: region.3,
                            bgr: pixels,
                        })?;
                        self.counters.crops_saved += 1;
                        crop = Some(name);
                    }
                }
            }
            self.detections.push(&DetectionLine::new(
                number, time, &face.bbox, face.score, raw_id, crop,
            ))?;
            self.counters.detections += 1;
        }
        let mut file = None;
        if options.save_frames {
            let name = format!("{}/f{number:08}.jpg", manifest::FRAMES_DIR);
            let mut pixels = self.exporter.buffer(self.bgr.data.len());
            pixels.copy_from_slice(&self.bgr.data);
            self.exporter.submit(ExportJob {
                path: options.out.join(&name),
                width: self.bgr.width,
                height: self.bgr.height,
                bgr: pixels,
            })?;
            self.counters.frames_saved += 1;
            file = Some(name);
        }
        self.analysed.push(&AnalysedLine {
            frame: number,
            time,
            reason,
            faces: self.faces.len() as u32,
            file,
        })?;
        self.counters.analysed += 1;
        match reason {
            Reason::Cut => self.counters.by_cut += 1,
            Reason::Warmup => self.counters.by_warmup += 1,
            Reason::Stride => self.counters.by_stride += 1,
        }
        self.stages.export_wait_ms += self.exporter.wait_ms() - wait_before;
        self.stages.track_ms += ms(t);
        Ok(())
    }

    /// Makes the files agree with the state, then writes the checkpoint that points at them.
    fn checkpoint(
        &mut self,
        options: &AnalyzeOptions,
        video_bytes: u64,
        next_frame: u64,
    ) -> Result<(), AnalyzeError> {
        self.exporter.flush()?;
        let checkpoint = Checkpoint {
            version: Checkpoint::version(),
            ep_id: options.ep_id.clone(),
            video: options.video.clone(),
            video_bytes,
            fingerprint: options.fingerprint(),
            next_frame,
            analysed_bytes: self.analysed.flush()?,
            detections_bytes: self.detections.flush()?,
            scene: self.scene.state().clone(),
            previous_signature: Checkpoint::pack_signature(self.scene.previous()),
            last_cut: self.selector.last_cut(),
            cuts: self.cuts.clone(),
            tracker: self.tracker.clone(),
            counters: self.counters.clone(),
        };
        manifest::write_json_atomic(&options.out.join(manifest::SCENE_CUTS), &self.cuts)?;
        manifest::write_json_atomic(&options.out.join(manifest::CHECKPOINT), &checkpoint)
    }

    /// Drains the export, writes tracks, cuts and the summary. On a failed walk the checkpoint
    /// stays (the frames before the damage need not be analysed again); on success it goes.
    fn finish(
        mut self,
        options: &AnalyzeOptions,
        decoder: &EpisodeDecoder,
        info: VideoInfo,
        started: Instant,
        resumed_at: Option<u64>,
        error: Option<String>,
    ) -> Result<Summary, AnalyzeError> {
        let out = options.out.as_path();
        self.analysed.flush()?;
        self.detections.flush()?;
        let export = self.exporter.close()?;
        let tracks = self.tracker.finish();
        let map = remap_ids(&tracks, options.min_track_length);
        manifest::stamp_track_ids(out, &map)?;
        let (kept, dropped) = manifest::write_tracks(out, &tracks, &map)?;
        manifest::write_json_atomic(&out.join(manifest::SCENE_CUTS), &self.cuts)?;
        self.stages.total_ms = ms(started);
        let summary = Summary {
            ep_id: options.ep_id.clone(),
            video: options.video.display().to_string(),
            status: if error.is_some() {
                "failed"
            } else {
                "complete"
            }
            .into(),
            error,
            info,
            detector: self.detector.description().to_owned(),
            resumed_at,
            frames_decoded: decoder.frames_decoded(),
            frames: self.counters,
            scene: self.scene.state().clone(),
            scene_cuts: self.cuts.len() as u64,
            tracks_kept: kept,
            tracks_dropped: dropped,
            tracker: self.tracker.metrics.clone(),
            export,
            stages: self.stages,
            options: options.clone(),
        };
        manifest::write_json_atomic(&out.join(manifest::SUMMARY), &summary)?;
        if summary.error.is_none() {
            let _ = std::fs::remove_file(out.join(manifest::CHECKPOINT));
        }
        Ok(summary)
    }
}
