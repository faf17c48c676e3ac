//! An analysis opened for review (the Replay tab): its video, analysed frames, detections with
//! their exported track ids and scene cuts, read back from the output folder, with the
//! navigation the window offers (next cut, next appearance of a track) and the overlay drawn
//! over a frame (boxes in a colour per track, the id beside each).

use std::path::{Path, PathBuf};

use crate::manifest::{self, AnalysedLine, DetectionLine};
use crate::scene::SceneCut;
use crate::track::BBox;
use crate::AnalyzeError;

/// One face of a reviewed frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReviewBox {
    pub bbox: BBox,
    /// Exported track id; None for a face of a dropped track.
    pub track: Option<u64>,
}

/// What the window reviews.
#[derive(Debug, Clone)]
pub struct Review {
    pub video: PathBuf,
    pub ep_id: String,
    pub fps: f64,
    /// Analysed frames, in order.
    pub frames: Vec<AnalysedLine>,
    /// Detections sorted by frame.
    pub boxes: Vec<(u64, ReviewBox)>,
    pub cuts: Vec<SceneCut>,
    pub tracks: u64,
}

fn read_text(path: &Path) -> Result<String, AnalyzeError> {
    std::fs::read_to_string(path).map_err(|e| AnalyzeError::Open {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, AnalyzeError> {
    read_text(path)?
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| AnalyzeError::Open {
                path: path.to_owned(),
                reason: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

impl Review {
    /// Reads the output folder of a finished (or failed) analysis.
    pub fn open(dir: &Path) -> Result<Self, AnalyzeError> {
        let summary_path = dir.join(manifest::SUMMARY);
        let summary: serde_json::Value =
            serde_json::from_str(&read_text(&summary_path)?).map_err(|e| AnalyzeError::Open {
                path: summary_path.clone(),
                reason: format!("not an analysis summary: {e}"),
            })?;
        let video = summary["video"]
            .as_str()
            .map(PathBuf::from)
            .ok_or_else(|| AnalyzeError::Open {
                path: summary_path.clone(),
                reason: "names no video".into(),
            })?;
        let fps = summary["info"]["fps"].as_f64().unwrap_or(0.0);
        let ep_id = summary["ep_id"].as_str().unwrap_or_default().to_owned();
        let frames: Vec<AnalysedLine> = lines(&dir.join(manifest::ANALYSED))?;
        let detections: Vec<DetectionLine> = lines(&dir.join(manifest::DETECTIONS))?;
        let mut boxes: Vec<(u64, ReviewBox)> = detections
            .iter()
            .map(|d| {
                (
                    d.frame,
                    ReviewBox {
                        bbox: BBox {
                            x: d.bbox[0],
                            y: d.bbox[1],
                            w: d.bbox[2],
                            h: d.bbox[3],
                        },
                        track: d.track.flatten(),
                    },
                )
            })
            .collect();
        boxes.sort_by_key(|b| b.0);
        let cuts_path = dir.join(manifest::SCENE_CUTS);
        let cuts: Vec<SceneCut> =
            serde_json::from_str(&read_text(&cuts_path)?).map_err(|e| AnalyzeError::Open {
                path: cuts_path,
                reason: e.to_string(),
            })?;
        let tracks = boxes.iter().filter_map(|b| b.1.track).max().unwrap_or(0);
        Ok(Self {
            video,
            ep_id,
            fps,
            frames,
            boxes,
            cuts,
            tracks,
        })
    }

    /// The faces of frame `frame`.
    pub fn boxes_of(&self, frame: u64) -> &[(u64, ReviewBox)] {
        let start = self.boxes.partition_point(|b| b.0 < frame);
        let end = self.boxes.partition_point(|b| b.0 <= frame);
        &self.boxes[start..end]
    }

    /// Position (index into `frames`) of the first analysed frame at or after `frame`.
    fn position_at_or_after(&self, frame: u64) -> Option<usize> {
        let at = self.frames.partition_point(|f| f.frame < frame);
        (at < self.frames.len()).then_some(at)
    }

    /// Position of the first analysed frame of the next cut after the one at `position`.
    pub fn next_cut(&self, position: usize) -> Option<usize> {
        let current = self.frames.get(position)?.frame;
        let cut = self.cuts.iter().find(|c| c.frame > current)?;
        self.position_at_or_after(cut.frame)
    }

    /// Position of the next analysed frame after `position` where `track` appears.
    pub fn next_appearance(&self, position: usize, track: u64) -> Option<usize> {
        let current = self.frames.get(position)?.frame;
        let next = self
            .boxes
            .iter()
            .find(|b| b.0 > current && b.1.track == Some(track))?
            .0;
        self.position_at_or_after(next)
    }

    /// Where each cut lies along the analysed frames, 0..1 (for timeline marks).
    pub fn cut_fraction(&self, index: usize) -> Option<f64> {
        let cut = self.cuts.get(index)?;
        let last = self.frames.last()?.frame.max(1);
        Some((cut.frame as f64 / last as f64).min(1.0))
    }
}

/// A colour per track (none: grey).
pub fn track_colour(track: Option<u64>) -> [u8; 3] {
    const COLOURS: [[u8; 3]; 6] = [
        [255, 80, 80],
        [80, 220, 80],
        [80, 160, 255],
        [255, 210, 40],
        [230, 90, 230],
        [60, 230, 230],
    ];
    match track {
        Some(id) => COLOURS[(id as usize).wrapping_sub(1) % COLOURS.len()],
        None => [160, 160, 160],
    }
}

/// Digits 0-9 in a 3x5 pixel font, one row per byte (bit 2 = left column).
const DIGITS: [[u8; 5]; 10] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
];

/// Scale of the digit font in pixels per font pixel.
pub const DIGIT_SCALE: u32 = 3;

fn put(rgba: &mut [u8], width: u32, height: u32, x: i64, y: i64, colour: [u8; 3]) {
    if x < 0 || y < 0 || x >= i64::from(width) || y >= i64::from(height) {
        return;
    }
    let i = (y as usize * width as usize + x as usize) * 4;
    if let Some(px) = rgba.get_mut(i..i + 4) {
        px[..3].copy_from_slice(&colour);
        px[3] = 255;
    }
}

/// Draws each box (a 2-pixel outline in its track's colour) and its track id above its top-left
/// corner into an RGBA picture. Boxes partly outside are clipped; nothing panics.
pub fn draw_overlay(rgba: &mut [u8], width: u32, height: u32, boxes: &[(u64, ReviewBox)]) {
    for (_, b) in boxes {
        let colour = track_colour(b.track);
        let Some((x, y, w, h)) = b.bbox.clip(width, height) else {
            continue;
        };
        let (x0, y0, x1, y1) = (
            i64::from(x),
            i64::from(y),
            i64::from(x + w) - 1,
            i64::from(y + h) - 1,
        );
        for t in 0..2 {
            for px in x0..=x1 {
                put(rgba, width, height, px, y0 + t, colour);
                put(rgba, width, height, px, y1 - t, colour);
            }
            for py in y0..=y1 {
                put(rgba, width, height, x0 + t, py, colour);
                put(rgba, width, height, x1 - t, py, colour);
            }
        }
        let Some(id) = b.track else {
            continue;
        };
        let text = id.to_string();
        let scale = i64::from(DIGIT_SCALE);
        let top = (y0 - 6 * scale).max(0);
        for (k, ch) in text.bytes().enumerate() {
            let glyph = DIGITS[(ch - b'0') as usize];
            let left = x0 + k as i64 * 4 * scale;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..3 {
                    if bits & (4 >> col) == 0 {
                        continue;
                    }
                    for dy in 0..scale {
                        for dx in 0..scale {
                            put(
                                rgba,
                                width,
                                height,
                                left + col * scale + dx,
                                top + row as i64 * scale + dy,
                                colour,
                            );
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review() -> Review {
        let line = |frame| AnalysedLine {
            frame,
            time: frame as f64 / 30.0,
            reason: crate::select::Reason::Stride,
            faces: 0,
            file: None,
        };
        let face = |frame, track| {
            (
                frame,
                ReviewBox {
                    bbox: BBox {
                        x: 10.0,
                        y: 10.0,
                        w: 20.0,
                        h: 20.0,
                    },
                    track,
                },
            )
        };
        Review {
            video: PathBuf::from("v.mp4"),
            ep_id: "e".into(),
            fps: 30.0,
            frames: (0..10).map(|i| line(i * 6)).collect(),
            boxes: vec![
                face(6, Some(1)),
                face(12, Some(1)),
                face(30, Some(2)),
                face(48, Some(1)),
            ],
            cuts: vec![SceneCut {
                frame: 25,
                time: 0.8,
                score: 0.9,
                tracker_reset: true,
            }],
            tracks: 2,
        }
    }

    #[test]
    fn next_cut_and_next_appearance_land_on_analysed_frames() {
        let r = review();
        // From frame 0 the next cut (25) is first analysed at 30 (position 5).
        assert_eq!(r.next_cut(0), Some(5));
        assert_eq!(r.next_cut(5), None);
        // Track 1 after frame 12 (position 2) next appears at 48 (position 8).
        assert_eq!(r.next_appearance(2, 1), Some(8));
        assert_eq!(r.next_appearance(0, 2), Some(5));
        assert_eq!(r.next_appearance(8, 1), None);
        assert_eq!(r.boxes_of(12).len(), 1);
        assert!(r.boxes_of(13).is_empty());
    }

    #[test]
    fn the_overlay_outlines_the_box_in_its_track_colour_and_writes_the_id() {
        let (w, h) = (64u32, 64u32);
        let mut rgba = vec![0u8; (w * h * 4) as usize];
        let b = ReviewBox {
            bbox: BBox {
                x: 10.0,
                y: 30.0,
                w: 20.0,
                h: 20.0,
            },
            track: Some(1),
        };
        draw_overlay(&mut rgba, w, h, &[(0, b)]);
        let at = |x: u32, y: u32| {
            let i = ((y * w + x) * 4) as usize;
            [rgba[i], rgba[i + 1], rgba[i + 2]]
        };
        assert_eq!(at(10, 40), track_colour(Some(1)), "left edge");
        assert_eq!(at(20, 30), track_colour(Some(1)), "top edge");
        assert_eq!(at(20, 40), [0, 0, 0], "inside stays untouched");
        // The "1" glyph's middle column sits above the box.
        assert_eq!(at(10 + 4, 30 - 18 + 1), track_colour(Some(1)));
        // A box far outside the picture is ignored, not a panic.
        draw_overlay(
            &mut rgba,
            w,
            h,
            &[(
                0,
                ReviewBox {
                    bbox: BBox {
                        x: 1e9,
                        y: -1e9,
                        w: 5.0,
                        h: f32::NAN,
                    },
                    track: Some(3),
                },
            )],
        );
    }
}
