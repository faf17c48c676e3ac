//! Decoded frames by (run, owner asked for, episode, step), bounded in bytes; the least
//! recently used go first.

use std::collections::HashMap;
use std::sync::Arc;

use super::{FrameOrigin, RgbaFrame};
use crate::bus::FrameOwner;

/// (run, worker and agent asked for (None: the first that has a frame), episode, step).
type Key = (String, Option<String>, Option<String>, u64, u64);

fn key(run: &str, owner: FrameOwner<'_>, episode: u64, step: u64) -> Key {
    (
        run.to_owned(),
        owner.worker.map(str::to_owned),
        owner.agent.map(str::to_owned),
        episode,
        step,
    )
}

/// A byte-bounded LRU cache of decoded frames.
pub struct FrameCache {
    entries: HashMap<Key, (FrameOrigin, Arc<RgbaFrame>, u64)>,
    bytes: usize,
    limit: usize,
    tick: u64,
}

impl FrameCache {
    pub fn new(limit: usize) -> Self {
        Self {
            entries: HashMap::new(),
            bytes: 0,
            limit,
            tick: 0,
        }
    }

    pub fn get(
        &mut self,
        (run, owner): (&str, FrameOwner<'_>),
        episode: u64,
        step: u64,
    ) -> Option<(FrameOrigin, Arc<RgbaFrame>)> {
        self.tick += 1;
        let tick = self.tick;
        match self.entries.get_mut(&key(run, owner, episode, step)) {
            Some((origin, frame, used)) => {
                *used = tick;
                Some((*origin, frame.clone()))
            }
            None => None,
        }
    }

    pub fn insert(
        &mut self,
        (run, owner): (&str, FrameOwner<'_>),
        episode: u64,
        step: u64,
        origin: FrameOrigin,
        frame: Arc<RgbaFrame>,
    ) {
        let size = frame.rgba.len();
        if size > self.limit {
            return;
        }
        while self.bytes + size > self.limit {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some((_, frame, _)) = self.entries.remove(&oldest) {
                self.bytes -= frame.rgba.len();
            }
        }
        self.tick += 1;
        if let Some((_, old, _)) = self
            .entries
            .insert(key(run, owner, episode, step), (origin, frame, self.tick))
        {
            self.bytes -= old.rgba.len();
        }
        self.bytes += size;
    }

    /// Bytes of pixels held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(bytes: usize) -> Arc<RgbaFrame> {
        Arc::new(RgbaFrame {
            width: 1,
            height: 1,
            rgba: vec![0; bytes],
        })
    }

    #[test]
    fn stays_within_its_byte_limit_and_drops_the_least_recently_used() {
        let mut cache = FrameCache::new(300);
        cache.insert(("r", FrameOwner::ANY), 0, 1, FrameOrigin::Video, frame(100));
        cache.insert(("r", FrameOwner::ANY), 0, 2, FrameOrigin::Video, frame(100));
        cache.insert(("r", FrameOwner::ANY), 0, 3, FrameOrigin::Video, frame(100));
        assert!(
            cache.get(("r", FrameOwner::ANY), 0, 1).is_some(),
            "1 is now the most recent"
        );
        cache.insert(("r", FrameOwner::ANY), 0, 4, FrameOrigin::Video, frame(100));
        assert_eq!(cache.bytes(), 300);
        assert!(
            cache.get(("r", FrameOwner::ANY), 0, 2).is_none(),
            "2 was the least recently used"
        );
        assert!(cache.get(("r", FrameOwner::ANY), 0, 1).is_some());
        assert!(cache.get(("r", FrameOwner::ANY), 0, 4).is_some());
        cache.insert(
            ("r", FrameOwner::ANY),
            0,
            5,
            FrameOrigin::Video,
            frame(1000),
        );
        assert!(
            cache.get(("r", FrameOwner::ANY), 0, 5).is_none(),
            "larger than the whole cache: not kept"
        );
        assert!(cache.bytes() <= 300);
    }
}
