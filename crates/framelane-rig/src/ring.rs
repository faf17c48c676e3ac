//! A camera's pre-roll: encoded packets, newest at the back, bounded by a time span and by
//! bytes. Trimming drops a whole GOP at a time from the front, so the ring always starts on a
//! keyframe and any interval inside it can be written out by packet copy. Memory is bitrate
//! times seconds, not raw frames.

use std::collections::VecDeque;

use framelane_core::encode::packets::EncodedPacket;

/// A packet with the capture time of its frame.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedPacket {
    /// Monotonic nanoseconds when the frame was captured.
    pub captured_ns: u64,
    pub packet: EncodedPacket,
}

#[derive(Debug)]
pub struct PacketRing {
    packets: VecDeque<TimedPacket>,
    bytes: usize,
    max_bytes: usize,
    max_span_ns: u64,
    /// Whole GOPs trimmed (by time or bytes).
    pub trimmed_gops: u64,
    /// Packets refused because no keyframe started the ring yet.
    pub skipped_before_keyframe: u64,
}

impl PacketRing {
    pub fn new(max_span_ns: u64, max_bytes: usize) -> Self {
        Self {
            packets: VecDeque::new(),
            bytes: 0,
            max_bytes,
            max_span_ns,
            trimmed_gops: 0,
            skipped_before_keyframe: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Capture time of the newest packet.
    pub fn newest_ns(&self) -> Option<u64> {
        self.packets.back().map(|p| p.captured_ns)
    }

    pub fn oldest_ns(&self) -> Option<u64> {
        self.packets.front().map(|p| p.captured_ns)
    }

    /// Appends a packet (in decode order) and trims to the bounds.
    pub fn push(&mut self, packet: TimedPacket) {
        if self.packets.is_empty() && !packet.packet.key {
            self.skipped_before_keyframe += 1;
            return;
        }
        self.bytes += packet.packet.data.len();
        self.packets.push_back(packet);
        self.trim();
    }

    /// Where the second GOP starts, if there is one.
    fn second_keyframe(&self) -> Option<usize> {
        self.packets
            .iter()
            .skip(1)
            .position(|p| p.packet.key)
            .map(|i| i + 1)
    }

    fn trim(&mut self) {
        loop {
            let (Some(oldest), Some(newest)) = (self.oldest_ns(), self.newest_ns()) else {
                return;
            };
            let over =
                newest.saturating_sub(oldest) > self.max_span_ns || self.bytes > self.max_bytes;
            if !over {
                return;
            }
            // Never the last GOP: the ring keeps at least one whole GOP to start from.
            let Some(next) = self.second_keyframe() else {
                return;
            };
            // Dropping the first GOP must not leave less than the span wanted.
            let after = self.packets[next].captured_ns;
            if self.bytes <= self.max_bytes && newest.saturating_sub(after) < self.max_span_ns {
                return;
            }
            for p in self.packets.drain(..next) {
                self.bytes -= p.packet.data.len();
            }
            self.trimmed_gops += 1;
        }
    }

    /// The packets for [`from_ns`, `to_ns`]: from the last keyframe captured at or before
    /// `from_ns` (the ring's first when none is that old) to the first packet captured at or
    /// after `to_ns` (or the newest), in decode order.
    pub fn interval(&self, from_ns: u64, to_ns: u64) -> Vec<TimedPacket> {
        let start = self
            .packets
            .iter()
            .enumerate()
            .filter(|(_, p)| p.packet.key && p.captured_ns <= from_ns)
            .map(|(i, _)| i)
            .next_back()
            .unwrap_or(0);
        // Up to and including the first packet captured at or after `to_ns`.
        let mut out = Vec::new();
        for p in self.packets.iter().skip(start) {
            out.push(p.clone());
            if p.captured_ns >= to_ns {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 frames a second (100 ms apart), a keyframe every 5, 1000 bytes each.
    fn packet(i: u64) -> TimedPacket {
        TimedPacket {
            captured_ns: i * 100_000_000,
            packet: EncodedPacket {
                pts: i as i64,
                dts: i as i64,
                key: i % 5 == 0,
                data: vec![0; 1000],
            },
        }
    }

    #[test]
    fn trimming_drops_whole_gops_and_keeps_the_span() {
        let mut ring = PacketRing::new(1_000_000_000, usize::MAX);
        for i in 0..40 {
            ring.push(packet(i));
            let first = ring.packets.front().expect("not empty");
            assert!(
                first.packet.key,
                "the ring starts on a keyframe after packet {i}"
            );
            if i >= 15 {
                let span = ring.newest_ns().unwrap() - ring.oldest_ns().unwrap();
                assert!(
                    span >= 1_000_000_000,
                    "at least the span is kept ({span} after {i})"
                );
                assert!(
                    span < 1_500_000_000,
                    "at most one GOP more than the span ({span})"
                );
            }
        }
        assert!(ring.trimmed_gops > 0);
    }

    #[test]
    fn a_byte_bound_holds_but_one_gop_always_stays() {
        let mut ring = PacketRing::new(u64::MAX, 7_000);
        for i in 0..30 {
            ring.push(packet(i));
        }
        assert!(
            ring.bytes() <= 7_000 || ring.len() <= 5,
            "{} bytes in {} packets",
            ring.bytes(),
            ring.len()
        );
        assert!(ring.packets.front().expect("kept").packet.key);
    }

    #[test]
    fn an_interval_starts_at_the_keyframe_before_it_and_ends_inside_it() {
        let mut ring = PacketRing::new(u64::MAX, usize::MAX);
        for i in 0..30 {
            ring.push(packet(i));
        }
        let clip = ring.interval(1_230_000_000, 1_950_000_000);
        assert_eq!(
            clip.first().map(|p| p.packet.pts),
            Some(10),
            "keyframe at or before 1.23 s"
        );
        assert_eq!(
            clip.last().map(|p| p.packet.pts),
            Some(20),
            "first frame at or after 1.95 s"
        );
        let pts: Vec<i64> = clip.iter().map(|p| p.packet.pts).collect();
        assert_eq!(pts, (10..=20).collect::<Vec<i64>>(), "no gap, no duplicate");
    }

    #[test]
    fn packets_before_the_first_keyframe_are_counted_not_kept() {
        let mut ring = PacketRing::new(u64::MAX, usize::MAX);
        for i in 1..5 {
            ring.push(packet(i));
        }
        assert!(ring.is_empty());
        assert_eq!(ring.skipped_before_keyframe, 4);
    }
}
