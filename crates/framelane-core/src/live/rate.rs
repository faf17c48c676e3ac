//! When the window should ask a producer to slow down: the live view skipped frames in every
//! second of a sustained stretch while the producer published faster than the display showed.
//! The ask is the display's own rate, so the producer stops making frames nobody sees: its best
//! second in the streak, so one slow second (the machine busy for a moment) does not pin the
//! producer to a rate the display can beat (once asked, a slower producer leaves the display
//! nothing to skip, so a low ask is never raised by itself).

/// Seconds of skipping in a row before asking.
pub const SUSTAINED_SECONDS: u32 = 3;
/// A producer within this factor of the display rate is not "faster".
const FASTER_BY: f64 = 1.1;

/// Follows skip counts once a second; says when (and what) to ask.
#[derive(Debug, Default, Clone)]
pub struct RateAdvisor {
    last_second_ns: u64,
    skipped_at_last_second: u64,
    bad_seconds: u32,
    /// The display's best rate in the seconds of the current streak.
    best_fps: f64,
    asked_hz: Option<u32>,
}

impl RateAdvisor {
    /// Feeds the view's figures (call at any cadence; it judges once a second). Returns the
    /// rate to ask for when one should be asked now.
    pub fn update(
        &mut self,
        now_ns: u64,
        frames_skipped: u64,
        display_fps: f64,
        producer_rate: f64,
    ) -> Option<u32> {
        if self.last_second_ns == 0 {
            self.last_second_ns = now_ns;
            self.skipped_at_last_second = frames_skipped;
            return None;
        }
        if now_ns.saturating_sub(self.last_second_ns) < 1_000_000_000 {
            return None;
        }
        let skipped = frames_skipped.saturating_sub(self.skipped_at_last_second);
        self.last_second_ns = now_ns;
        self.skipped_at_last_second = frames_skipped;
        let valid = display_fps.is_finite() && display_fps >= 1.0 && producer_rate.is_finite();
        if valid && skipped > 0 && producer_rate > display_fps * FASTER_BY {
            self.bad_seconds += 1;
            self.best_fps = self.best_fps.max(display_fps);
        } else {
            self.bad_seconds = 0;
            self.best_fps = 0.0;
        }
        if self.bad_seconds < SUSTAINED_SECONDS {
            return None;
        }
        self.bad_seconds = 0;
        let hz = self.best_fps.floor().clamp(1.0, 1000.0) as u32;
        self.best_fps = 0.0;
        // The same ask again would change nothing.
        if self.asked_hz == Some(hz) {
            return None;
        }
        self.asked_hz = Some(hz);
        Some(hz)
    }

    /// Forgets the streak and the last ask (a new run, or the setting turned off).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn it_asks_for_the_display_rate_after_three_seconds_of_skipping() {
        let mut advisor = RateAdvisor::default();
        assert_eq!(advisor.update(S, 0, 30.0, 120.0), None);
        assert_eq!(advisor.update(2 * S, 90, 30.0, 120.0), None);
        assert_eq!(advisor.update(3 * S, 180, 30.0, 120.0), None);
        assert_eq!(advisor.update(4 * S, 270, 30.4, 120.0), Some(30));
        // Asking again for the same rate changes nothing.
        for t in 5..=8 {
            assert_eq!(advisor.update(t * S, 270 + 90 * t, 30.4, 120.0), None);
        }
    }

    #[test]
    fn one_slow_second_in_the_streak_does_not_set_the_ask() {
        let mut advisor = RateAdvisor::default();
        advisor.update(S, 0, 30.0, 120.0);
        assert_eq!(advisor.update(2 * S, 90, 24.0, 120.0), None);
        assert_eq!(
            advisor.update(3 * S, 180, 3.0, 120.0),
            None,
            "a busy moment"
        );
        assert_eq!(
            advisor.update(4 * S, 270, 12.0, 120.0),
            Some(24),
            "the streak's best second, not its last"
        );
        // A new streak starts from nothing: a slower display later asks for its own rate.
        advisor.update(5 * S, 270, 12.0, 120.0);
        for t in 6..=8 {
            let asked = advisor.update(t * S, 270 + 90 * t, 10.0, 120.0);
            assert_eq!(asked, (t == 8).then_some(10), "second {t}");
        }
    }

    #[test]
    fn a_second_without_skips_breaks_the_streak() {
        let mut advisor = RateAdvisor::default();
        advisor.update(S, 0, 30.0, 120.0);
        advisor.update(2 * S, 90, 30.0, 120.0);
        advisor.update(3 * S, 180, 30.0, 120.0);
        assert_eq!(advisor.update(4 * S, 180, 30.0, 120.0), None, "no skips");
        assert_eq!(advisor.update(5 * S, 270, 30.0, 120.0), None);
    }

    #[test]
    fn a_producer_no_faster_than_the_display_is_never_asked() {
        let mut advisor = RateAdvisor::default();
        for t in 1..=10 {
            assert_eq!(advisor.update(t * S, t * 2, 60.0, 62.0), None);
        }
    }

    #[test]
    fn nonsense_rates_never_produce_an_ask() {
        // Skipping every second, but the display rate is not a number (or zero), or the
        // producer's rate is infinite: no streak, no ask.
        for (display, producer) in [(f64::NAN, 120.0), (0.0, 120.0), (30.0, f64::INFINITY)] {
            let mut advisor = RateAdvisor::default();
            for t in 1..=10 {
                assert_eq!(
                    advisor.update(t * S, t * 50, display, producer),
                    None,
                    "{display} {producer}"
                );
            }
        }
    }
}
