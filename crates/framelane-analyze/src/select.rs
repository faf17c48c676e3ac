//! Which frames are analysed, and why. The rules, in order:
//! 1. a frame where a scene cut was detected (`Cut`);
//! 2. the `warmup` frames after a cut (`Warmup`): a new scene is looked at densely;
//! 3. frames whose number is a multiple of the stride (`Stride`).
//!
//! All other frames are decoded (their signature is taken) but never converted.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    Cut,
    Warmup,
    Stride,
}

#[derive(Debug, Clone)]
pub struct FrameSelector {
    stride: u64,
    warmup: u64,
    /// Frame of the last cut, for the warm-up window.
    last_cut: Option<u64>,
}

impl FrameSelector {
    pub fn new(stride: u64, warmup: u64) -> Self {
        Self {
            stride: stride.max(1),
            warmup,
            last_cut: None,
        }
    }

    pub fn restore(&mut self, last_cut: Option<u64>) {
        self.last_cut = last_cut;
    }

    pub fn last_cut(&self) -> Option<u64> {
        self.last_cut
    }

    /// Decides for frame `frame`; `cut` is whether the scene detector found a cut at it.
    pub fn select(&mut self, frame: u64, cut: bool) -> Option<Reason> {
        if cut {
            self.last_cut = Some(frame);
            return Some(Reason::Cut);
        }
        if let Some(last) = self.last_cut {
            if frame > last && frame - last <= self.warmup {
                return Some(Reason::Warmup);
            }
        }
        (frame % self.stride == 0).then_some(Reason::Stride)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stride_cut_and_warmup_select_exactly_their_frames() {
        let mut s = FrameSelector::new(6, 2);
        let chosen: Vec<(u64, Reason)> = (0..30)
            .filter_map(|f| s.select(f, f == 10).map(|r| (f, r)))
            .collect();
        assert_eq!(
            chosen,
            vec![
                (0, Reason::Stride),
                (6, Reason::Stride),
                (10, Reason::Cut),
                (11, Reason::Warmup),
                (12, Reason::Warmup),
                (18, Reason::Stride),
                (24, Reason::Stride),
            ]
        );
    }

    #[test]
    fn stride_one_selects_every_frame() {
        let mut s = FrameSelector::new(1, 0);
        assert!((0..50).all(|f| s.select(f, false).is_some()));
    }
}
