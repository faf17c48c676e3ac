//! Scene cuts from per-frame signatures: a frame whose signature differs from the previous
//! frame's by at least the threshold starts a new scene, unless the current scene is shorter
//! than the minimum scene length. Every cut is reported; the tracker is reset on a cut only when
//! its last reset is at least the cooldown ago, so a burst of cuts a few frames apart (a flash,
//! a quick montage) costs one reset, not several.

use serde::{Deserialize, Serialize};

use crate::decode::Signature;

/// One detected cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneCut {
    /// First frame of the new scene.
    pub frame: u64,
    pub time: f64,
    /// Signature distance to the previous frame.
    pub score: f64,
    /// Whether this cut reset the tracker (false: within the cooldown of the last reset).
    pub tracker_reset: bool,
}

/// The detector's state, small enough to checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SceneState {
    /// First frame of the current scene.
    pub scene_start: u64,
    pub last_reset: Option<u64>,
    pub cuts: u64,
    pub resets: u64,
    pub resets_skipped: u64,
}

pub struct SceneDetector {
    threshold: f64,
    min_scene_len: u64,
    cooldown: u64,
    previous: Option<Signature>,
    state: SceneState,
}

impl SceneDetector {
    pub fn new(threshold: f64, min_scene_len: u64, cooldown: u64) -> Self {
        Self {
            threshold,
            min_scene_len,
            cooldown,
            previous: None,
            state: SceneState::default(),
        }
    }

    /// Continues from a checkpoint; the next frame's signature is compared with `previous`.
    pub fn restore(&mut self, state: SceneState, previous: Option<Signature>) {
        self.state = state;
        self.previous = previous;
    }

    pub fn state(&self) -> &SceneState {
        &self.state
    }

    pub fn previous(&self) -> Option<&Signature> {
        self.previous.as_ref()
    }

    /// Looks at frame `frame` (signatures come in frame order); a cut when it starts a scene.
    pub fn observe(&mut self, frame: u64, time: f64, signature: &Signature) -> Option<SceneCut> {
        let score = match &mut self.previous {
            Some(previous) => {
                let score = previous.distance(signature);
                previous.clone_from(signature);
                score
            }
            None => {
                self.previous = Some(signature.clone());
                return None;
            }
        };
        if score < self.threshold
            || frame.saturating_sub(self.state.scene_start) < self.min_scene_len
        {
            return None;
        }
        self.state.scene_start = frame;
        self.state.cuts += 1;
        let tracker_reset = self
            .state
            .last_reset
            .is_none_or(|last| frame.saturating_sub(last) >= self.cooldown);
        if tracker_reset {
            self.state.last_reset = Some(frame);
            self.state.resets += 1;
        } else {
            self.state.resets_skipped += 1;
        }
        Some(SceneCut {
            frame,
            time,
            score,
            tracker_reset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(bin: usize) -> Signature {
        let mut s = Signature::default();
        s.luma[bin] = 100;
        s.cb[bin % 16] = 100;
        s.cr[bin % 16] = 100;
        s
    }

    /// Frames `0..n` whose look changes at each frame in `changes`.
    fn walk(detector: &mut SceneDetector, n: u64, changes: &[u64]) -> Vec<SceneCut> {
        let mut look = 0;
        let mut cuts = Vec::new();
        for frame in 0..n {
            if changes.contains(&frame) {
                look = (look + 5) % 32;
            }
            if let Some(cut) = detector.observe(frame, frame as f64 / 30.0, &flat(look)) {
                cuts.push(cut);
            }
        }
        cuts
    }

    #[test]
    fn cuts_inside_the_cooldown_are_reported_but_do_not_reset() {
        let mut d = SceneDetector::new(0.3, 2, 24);
        let cuts = walk(&mut d, 200, &[50, 60, 70, 120]);
        let frames: Vec<u64> = cuts.iter().map(|c| c.frame).collect();
        assert_eq!(frames, vec![50, 60, 70, 120]);
        let resets: Vec<bool> = cuts.iter().map(|c| c.tracker_reset).collect();
        // 60 and 70 are within 24 frames of the reset at 50; 120 is not.
        assert_eq!(resets, vec![true, false, false, true]);
        assert_eq!(d.state().resets, 2);
        assert_eq!(d.state().resets_skipped, 2);
    }

    #[test]
    fn a_scene_shorter_than_the_minimum_is_not_a_cut() {
        let mut d = SceneDetector::new(0.3, 8, 0);
        // A flash: 40 changes the look, 43 changes it again (3 frames later).
        let cuts = walk(&mut d, 100, &[40, 43]);
        let frames: Vec<u64> = cuts.iter().map(|c| c.frame).collect();
        assert_eq!(frames, vec![40]);
    }

    #[test]
    fn the_first_frame_is_never_a_cut_and_a_restore_continues_the_comparison() {
        let mut d = SceneDetector::new(0.3, 0, 0);
        assert!(d.observe(0, 0.0, &flat(3)).is_none());
        let state = d.state().clone();
        let previous = d.previous().cloned();
        let mut resumed = SceneDetector::new(0.3, 0, 0);
        resumed.restore(state, previous);
        assert!(
            resumed.observe(1, 0.03, &flat(3)).is_none(),
            "same look is no cut"
        );
        assert!(
            resumed.observe(2, 0.06, &flat(20)).is_some(),
            "new look after a restore is a cut"
        );
    }
}
