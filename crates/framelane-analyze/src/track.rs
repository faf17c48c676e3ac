//! Face tracks: detections of consecutive analysed frames are linked by box overlap (IoU),
//! greedily from the best overlap down, and a link is kept only when the two faces also look
//! alike (colour histograms). A box that barely moved skips the appearance work altogether.
//! Tracks end when unseen for longer than the gap (in frames or seconds) or when a scene cut
//! resets the tracker.

use serde::{Deserialize, Serialize};

use crate::decode::BgrImage;

/// A box in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl BBox {
    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    pub fn iou(&self, other: &BBox) -> f32 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.w).min(other.x + other.w);
        let y1 = (self.y + self.h).min(other.y + other.h);
        let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// Distance between the two boxes' centres.
    pub fn centre_distance(&self, other: &BBox) -> f32 {
        let dx = (self.x + self.w / 2.0) - (other.x + other.w / 2.0);
        let dy = (self.y + self.h / 2.0) - (other.y + other.h / 2.0);
        (dx * dx + dy * dy).sqrt()
    }

    /// Geometric mean of width and height.
    pub fn side(&self) -> f32 {
        self.area().sqrt()
    }

    /// The box clipped to a `width` x `height` picture, in whole pixels; None when nothing is left.
    pub fn clip(&self, width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
        if !(self.x.is_finite() && self.y.is_finite() && self.w.is_finite() && self.h.is_finite()) {
            return None;
        }
        let x0 = self.x.max(0.0).floor() as u32;
        let y0 = self.y.max(0.0).floor() as u32;
        let x1 = ((self.x + self.w).ceil().max(0.0) as u32).min(width);
        let y1 = ((self.y + self.h).ceil().max(0.0) as u32).min(height);
        (x1 > x0 && y1 > y0).then_some((x0, y0, x1 - x0, y1 - y0))
    }
}

const APPEARANCE_BINS: usize = 16;

/// Colour histograms (B, G, R; 16 bins each, normalised) of a face crop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Appearance(pub Vec<f32>);

impl Appearance {
    /// The histogram of `image` inside `bbox`; None when the box lies outside the picture.
    pub fn of(image: &BgrImage, bbox: &BBox) -> Option<Self> {
        let (x, y, w, h) = bbox.clip(image.width, image.height)?;
        let mut bins = vec![0f32; 3 * APPEARANCE_BINS];
        let stride = image.width as usize * 3;
        let step = ((w.min(h) / 32).max(1)) as usize;
        let mut count = 0f32;
        for row in (y as usize..(y + h) as usize).step_by(step) {
            let start = row * stride + x as usize * 3;
            let Some(pixels) = image.data.get(start..start + w as usize * 3) else {
                break;
            };
            for px in pixels.chunks_exact(3).step_by(step) {
                for (channel, &v) in px.iter().enumerate() {
                    bins[channel * APPEARANCE_BINS + (v as usize >> 4)] += 1.0;
                }
                count += 1.0;
            }
        }
        if count == 0.0 {
            return None;
        }
        bins.iter_mut().for_each(|b| *b /= count);
        Some(Self(bins))
    }

    /// Bhattacharyya coefficient averaged over the channels: 1 for equal histograms, 0 for
    /// disjoint ones.
    pub fn similarity(&self, other: &Appearance) -> f32 {
        if self.0.len() != other.0.len() || self.0.is_empty() {
            return 0.0;
        }
        let sum: f32 = self
            .0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a * b).sqrt())
            .sum();
        sum / 3.0
    }

    fn blend(&mut self, other: &Appearance, weight: f32) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a = *a * (1.0 - weight) + b * weight;
        }
    }
}

/// How detections are linked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrackerConfig {
    /// Least overlap for a detection to continue a track.
    pub iou_min: f32,
    /// Least appearance similarity for a link that is not a still box.
    pub appearance_min: f32,
    /// Overlap at or above which the box counts as unchanged: no appearance work.
    pub still_iou: f32,
    pub max_gap_frames: u64,
    pub max_gap_sec: Option<f64>,
}

impl TrackerConfig {
    pub fn new(max_gap_frames: u64, max_gap_sec: Option<f64>) -> Self {
        Self {
            iou_min: 0.3,
            appearance_min: 0.6,
            still_iou: 0.9,
            max_gap_frames,
            max_gap_sec,
        }
    }
}

/// One track while it lives and after it ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Track {
    pub raw_id: u64,
    pub first_frame: u64,
    pub first_time: f64,
    pub last_frame: u64,
    pub last_time: f64,
    pub last_box: BBox,
    pub detections: u32,
    /// Crop files saved for this track (relative to the output folder).
    pub crops: Vec<String>,
    /// How the track ended: "gap", "reset" or "end".
    pub ended: Option<String>,
    appearance: Appearance,
    /// Pixels per frame the box moved between its last two detections.
    #[serde(default)]
    velocity: (f32, f32),
}

impl Track {
    /// Where the box should be at `frame`, moving on at its last velocity (sampled frames are
    /// several frames apart; a face crossing the picture would otherwise overlap too little).
    fn predicted(&self, frame: u64) -> BBox {
        let dt = frame.saturating_sub(self.last_frame) as f32;
        BBox {
            x: self.last_box.x + self.velocity.0 * dt,
            y: self.last_box.y + self.velocity.1 * dt,
            ..self.last_box
        }
    }
}

/// What the tracker did, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackMetrics {
    pub born: u64,
    /// Ended because unseen for longer than the gap.
    pub lost: u64,
    /// Overlapping links refused because the faces did not look alike: the detection started
    /// a new identity where overlap alone would have continued the old one.
    pub id_switches: u64,
    /// Tracks cut by a tracker reset at a scene cut.
    pub forced_splits: u64,
    /// Links of boxes that barely moved: no appearance computed.
    pub updates_skipped: u64,
    /// Links that computed and compared an appearance.
    pub updates_full: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tracker {
    config: Option<TrackerConfig>,
    active: Vec<Track>,
    finished: Vec<Track>,
    next_id: u64,
    pub metrics: TrackMetrics,
    /// Candidate links, kept to avoid an allocation per frame.
    #[serde(skip)]
    pairs: Vec<(f32, usize, usize)>,
    #[serde(skip)]
    taken_tracks: Vec<bool>,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config: Some(config),
            next_id: 1,
            ..Self::default()
        }
    }

    fn config(&self) -> TrackerConfig {
        self.config
            .clone()
            .unwrap_or_else(|| TrackerConfig::new(30, None))
    }

    pub fn active(&self) -> &[Track] {
        &self.active
    }

    /// Ends every track (a scene cut's reset).
    pub fn reset(&mut self) {
        self.metrics.forced_splits += self.active.len() as u64;
        for mut track in self.active.drain(..) {
            track.ended = Some("reset".into());
            self.finished.push(track);
        }
    }

    /// Ends the tracks unseen for longer than the gap at (`frame`, `time`).
    fn expire(&mut self, frame: u64, time: f64) {
        let config = self.config();
        let mut i = 0;
        while i < self.active.len() {
            let t = &self.active[i];
            let gone = match config.max_gap_sec {
                Some(sec) => time - t.last_time > sec,
                None => frame.saturating_sub(t.last_frame) > config.max_gap_frames,
            };
            if gone {
                let mut track = self.active.swap_remove(i);
                track.ended = Some("gap".into());
                self.metrics.lost += 1;
                self.finished.push(track);
            } else {
                i += 1;
            }
        }
    }

    /// Links the detections of one analysed frame; writes each detection's raw track id into
    /// `ids` (same order as `boxes`).
    pub fn update(
        &mut self,
        frame: u64,
        time: f64,
        boxes: &[BBox],
        image: &BgrImage,
        ids: &mut Vec<u64>,
    ) {
        self.expire(frame, time);
        let config = self.config();
        ids.clear();
        ids.resize(boxes.len(), 0);
        self.pairs.clear();
        for (ti, track) in self.active.iter().enumerate() {
            let predicted = track.predicted(frame);
            for (di, b) in boxes.iter().enumerate() {
                let iou = predicted.iou(b);
                // A track seen once has no velocity yet: a sampled face that moved further
                // than the overlap allows is still linked when its centre is within most of a
                // box side (the appearance check below decides).
                let near = track.detections == 1
                    && predicted.centre_distance(b) <= 0.75 * predicted.side();
                if iou >= config.iou_min || near {
                    self.pairs.push((iou, ti, di));
                }
            }
        }
        self.pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        self.taken_tracks.clear();
        self.taken_tracks.resize(self.active.len(), false);
        for &(_, ti, di) in &self.pairs {
            if self.taken_tracks[ti] || ids[di] != 0 {
                continue;
            }
            let track = &mut self.active[ti];
            // Unchanged means unmoved since the last detection, whatever the prediction said.
            if track.last_box.iou(&boxes[di]) >= config.still_iou {
                self.metrics.updates_skipped += 1;
            } else {
                let Some(look) = Appearance::of(image, &boxes[di]) else {
                    continue;
                };
                if look.similarity(&track.appearance) < config.appearance_min {
                    self.metrics.id_switches += 1;
                    continue;
                }
                track.appearance.blend(&look, 0.3);
                self.metrics.updates_full += 1;
            }
            let dt = frame.saturating_sub(track.last_frame).max(1) as f32;
            track.velocity = (
                (boxes[di].x - track.last_box.x) / dt,
                (boxes[di].y - track.last_box.y) / dt,
            );
            track.last_box = boxes[di];
            track.last_frame = frame;
            track.last_time = time;
            track.detections += 1;
            self.taken_tracks[ti] = true;
            ids[di] = track.raw_id;
        }
        for (di, b) in boxes.iter().enumerate() {
            if ids[di] != 0 {
                continue;
            }
            let Some(appearance) = Appearance::of(image, b) else {
                continue;
            };
            let raw_id = self.next_id;
            self.next_id += 1;
            self.metrics.born += 1;
            self.active.push(Track {
                raw_id,
                first_frame: frame,
                first_time: time,
                last_frame: frame,
                last_time: time,
                last_box: *b,
                detections: 1,
                crops: Vec::new(),
                ended: None,
                appearance,
                velocity: (0.0, 0.0),
            });
            ids[di] = raw_id;
        }
    }

    /// Records a saved crop for a live track; false when the track has its sample limit.
    pub fn add_crop(
        &mut self,
        raw_id: u64,
        limit: u32,
        file: impl FnOnce() -> String,
    ) -> Option<String> {
        let track = self.active.iter_mut().find(|t| t.raw_id == raw_id)?;
        if track.crops.len() >= limit as usize {
            return None;
        }
        let name = file();
        track.crops.push(name.clone());
        Some(name)
    }

    /// Ends every track and returns all of them, oldest first.
    pub fn finish(&mut self) -> Vec<Track> {
        for mut track in self.active.drain(..) {
            track.ended = Some("end".into());
            self.finished.push(track);
        }
        let mut all = std::mem::take(&mut self.finished);
        all.sort_by_key(|t| (t.first_frame, t.raw_id));
        all
    }
}

/// Final ids: tracks with at least `min_length` detections, numbered 1.. by first appearance.
/// Returns (raw id, final id) pairs, sorted by raw id.
pub fn remap_ids(tracks: &[Track], min_length: u32) -> Vec<(u64, u64)> {
    let mut kept: Vec<&Track> = tracks
        .iter()
        .filter(|t| t.detections >= min_length)
        .collect();
    kept.sort_by_key(|t| (t.first_frame, t.raw_id));
    let mut map: Vec<(u64, u64)> = kept
        .iter()
        .enumerate()
        .map(|(i, t)| (t.raw_id, i as u64 + 1))
        .collect();
    map.sort_unstable();
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(color: [u8; 3]) -> BgrImage {
        let (width, height) = (256, 64);
        BgrImage {
            width,
            height,
            data: color.repeat((width * height) as usize),
        }
    }

    fn b(x: f32) -> BBox {
        BBox {
            x,
            y: 10.0,
            w: 20.0,
            h: 20.0,
        }
    }

    #[test]
    fn iou_of_equal_disjoint_and_half_overlapping_boxes() {
        assert_eq!(b(0.0).iou(&b(0.0)), 1.0);
        assert_eq!(b(0.0).iou(&b(40.0)), 0.0);
        let half = b(0.0).iou(&b(10.0));
        assert!((half - 1.0 / 3.0).abs() < 1e-6, "{half}");
    }

    #[test]
    fn a_moving_face_keeps_its_id_and_a_still_one_skips_appearance() {
        let mut t = Tracker::new(TrackerConfig::new(30, None));
        let img = image([40, 120, 200]);
        let mut ids = Vec::new();
        t.update(0, 0.0, &[b(0.0)], &img, &mut ids);
        let first = ids[0];
        t.update(6, 0.2, &[b(4.0)], &img, &mut ids);
        assert_eq!(ids[0], first);
        t.update(12, 0.4, &[b(4.5)], &img, &mut ids);
        assert_eq!(ids[0], first);
        assert_eq!(t.metrics.updates_full, 1);
        assert_eq!(t.metrics.updates_skipped, 1);
        assert_eq!(t.metrics.born, 1);
    }

    #[test]
    fn an_overlapping_face_that_looks_different_gets_a_new_id() {
        let mut t = Tracker::new(TrackerConfig::new(30, None));
        let mut ids = Vec::new();
        t.update(0, 0.0, &[b(0.0)], &image([0, 0, 255]), &mut ids);
        let first = ids[0];
        t.update(6, 0.2, &[b(5.0)], &image([255, 0, 0]), &mut ids);
        assert_ne!(ids[0], first);
        assert_eq!(t.metrics.id_switches, 1);
    }

    #[test]
    fn gaps_end_tracks_in_frames_or_seconds_and_resets_split_them() {
        let img = image([10, 10, 10]);
        let mut ids = Vec::new();
        let mut t = Tracker::new(TrackerConfig::new(10, None));
        t.update(0, 0.0, &[b(0.0)], &img, &mut ids);
        t.update(11, 0.4, &[b(0.0)], &img, &mut ids);
        assert_eq!(t.metrics.lost, 1, "11 frames > max gap 10");
        let mut s = Tracker::new(TrackerConfig::new(1, Some(1.0)));
        s.update(0, 0.0, &[b(0.0)], &img, &mut ids);
        s.update(20, 0.9, &[b(0.0)], &img, &mut ids);
        assert_eq!(
            s.metrics.lost, 0,
            "0.9 s is within a 1 s gap, whatever the frame count"
        );
        s.reset();
        assert_eq!(s.metrics.forced_splits, 1);
        let tracks = s.finish();
        assert_eq!(tracks.len(), 1);
        assert_eq!(tracks[0].ended.as_deref(), Some("reset"));
    }

    #[test]
    fn remap_drops_short_tracks_and_numbers_by_first_appearance() {
        let img = image([10, 10, 10]);
        let mut ids = Vec::new();
        let mut t = Tracker::new(TrackerConfig::new(100, None));
        t.update(0, 0.0, &[b(40.0)], &img, &mut ids); // raw 1, seen once
        t.update(1, 0.0, &[b(0.0)], &img, &mut ids); // raw 2 (raw 1 unmatched, stays)
        t.update(2, 0.0, &[b(0.0), b(40.0)], &img, &mut ids);
        t.update(3, 0.0, &[b(0.0)], &img, &mut ids);
        let tracks = t.finish();
        // raw 1: 2 detections, raw 2: 3 detections; min length 3 keeps only raw 2, as id 1.
        assert_eq!(remap_ids(&tracks, 3), vec![(2, 1)]);
        assert_eq!(remap_ids(&tracks, 1), vec![(1, 1), (2, 2)]);
    }

    #[test]
    fn a_fast_face_sampled_sparsely_keeps_its_id_by_its_velocity() {
        let img = image([90, 60, 30]);
        let mut ids = Vec::new();
        let mut t = Tracker::new(TrackerConfig::new(30, None));
        // 7 pixels per frame. Seen 2 frames apart (a warm-up), then every 6 frames: 42 pixels
        // apart on 60-pixel boxes, an overlap of 0.18 without a prediction.
        let wide = |x: f32| BBox {
            x,
            y: 0.0,
            w: 60.0,
            h: 60.0,
        };
        let mut first = None;
        for frame in [0u64, 2, 8, 14, 20] {
            t.update(frame, 0.0, &[wide(frame as f32 * 7.0)], &img, &mut ids);
            first.get_or_insert(ids[0]);
            assert_eq!(Some(ids[0]), first, "frame {frame}");
        }
        assert!(wide(14.0).iou(&wide(56.0)) < 0.3);
        assert_eq!(t.metrics.born, 1);
    }
}
