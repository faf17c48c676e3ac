//! Read queries on a read-only connection: run lists, steps and episodes after a sequence
//! number (subscriptions resume from there), kept frames.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::{open_for_reading, StoreError};
use crate::bus::{
    ClipEntry, EpisodeRecord, FrameIndexEntry, FrameKind, FrameOwner, Payload, StepRecord,
};

/// Workers or agents of one run listed at most (a picker, not a report: a client that invents
/// an id per step cannot make the list unbounded).
pub const LISTED_OWNERS: usize = 1000;

/// A run as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub run_id: String,
    pub profile: String,
    pub steps: u64,
    pub episodes: u64,
    pub created_unix_ns: u64,
    pub last_seen_unix_ns: u64,
    pub shed: BTreeMap<String, u64>,
}

/// A step or episode received in a time interval (a recording rig's clip slice), any run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TelemetryItem {
    /// "step" or "episode".
    pub kind: &'static str,
    pub run_id: String,
    pub worker_id: String,
    pub episode: u64,
    /// The step number (steps), or the episode's step count (episodes).
    pub step: u64,
    /// The step's reward, or the episode's total reward.
    pub reward: f64,
    pub terminated: bool,
    pub truncated: bool,
    pub producer_unix_ns: u64,
    pub received_unix_ns: u64,
}

#[derive(Clone, Copy)]
enum TelemetryKind {
    Step,
    Episode,
}

impl TelemetryKind {
    fn name(self) -> &'static str {
        match self {
            TelemetryKind::Step => "step",
            TelemetryKind::Episode => "episode",
        }
    }
}

/// A committed step with its sequence number and, if a frame was kept, how.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    pub seq: u64,
    pub record: StepRecord,
    pub frame_kind: Option<String>,
}

/// A committed episode with its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeRow {
    pub seq: u64,
    pub record: EpisodeRecord,
}

/// Where one encoded frame is.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFrameRef {
    pub path: String,
    pub fps: u32,
    pub gop: u32,
    /// The picture's own size (the file may be coded padded to even or minimum sides).
    pub width: u32,
    pub height: u32,
    pub frame_no: u64,
    pub status: String,
    pub encoder: String,
}

/// One video file of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoRow {
    /// The worker and agent whose frames the file holds ('' for none).
    pub worker_id: String,
    pub agent_id: String,
    pub episode: u64,
    pub segment: u32,
    pub path: String,
    pub encoder: String,
    pub fps: u32,
    pub gop: u32,
    pub width: u32,
    pub height: u32,
    pub status: String,
    pub frames: u64,
    pub error: Option<String>,
}

/// An episode as the replay view lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayEpisode {
    pub episode: u64,
    pub steps: u64,
    pub total_reward: f64,
    pub finished: bool,
}

/// Read access to the store.
pub struct StoreReader {
    conn: Connection,
}

fn payload(json: Option<String>, raw: Option<Vec<u8>>) -> Option<Payload> {
    match (json, raw) {
        (Some(text), _) => Some(Payload::Json(text)),
        (None, Some(bytes)) => Some(Payload::Raw(bytes)),
        (None, None) => None,
    }
}

impl StoreReader {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: open_for_reading(path)?,
        })
    }

    /// The run's key, or an UnknownRun error.
    fn run_key(&self, run_id: &str) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached("SELECT run_key FROM runs WHERE run_id = ?1")
            .and_then(|mut s| s.query_row([run_id], |r| r.get(0)).optional())
            .map_err(StoreError::sql("looking up a run"))?
            .ok_or_else(|| StoreError::UnknownRun(run_id.to_owned()))
    }

    pub fn run_exists(&self, run_id: &str) -> Result<bool, StoreError> {
        match self.run_key(run_id) {
            Ok(_) => Ok(true),
            Err(StoreError::UnknownRun(_)) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Every run, most recently active first.
    pub fn list_runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let mut shed: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT run_key, kind, count FROM shed")
            .map_err(StoreError::sql("listing shed counters"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(StoreError::sql("listing shed counters"))?;
        for row in rows {
            let (key, kind, count) = row.map_err(StoreError::sql("reading a shed counter"))?;
            shed.entry(key).or_default().insert(kind, count as u64);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT run_key, run_id, profile, steps, episodes, created_unix_ns, last_seen_unix_ns FROM runs ORDER BY last_seen_unix_ns DESC")
            .map_err(StoreError::sql("listing runs"))?;
        let rows = stmt
            .query_map([], |r| {
                let key: i64 = r.get(0)?;
                Ok((
                    key,
                    RunRow {
                        run_id: r.get(1)?,
                        profile: r.get(2)?,
                        steps: r.get::<_, i64>(3)? as u64,
                        episodes: r.get::<_, i64>(4)? as u64,
                        created_unix_ns: r.get::<_, i64>(5)? as u64,
                        last_seen_unix_ns: r.get::<_, i64>(6)? as u64,
                        shed: BTreeMap::new(),
                    },
                ))
            })
            .map_err(StoreError::sql("listing runs"))?;
        let mut out = Vec::new();
        for row in rows {
            let (key, mut run) = row.map_err(StoreError::sql("reading a run"))?;
            run.shed = shed.remove(&key).unwrap_or_default();
            out.push(run);
        }
        Ok(out)
    }

    /// Up to `limit` committed steps of a run with `seq >= since_seq`, in order.
    pub fn steps_since(
        &self,
        run_id: &str,
        since_seq: u64,
        limit: usize,
    ) -> Result<Vec<StepRow>, StoreError> {
        let key = self.run_key(run_id)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT s.seq, s.worker_id, s.agent_id, s.episode, s.step, s.reward, s.terminated, s.truncated, \
                 s.producer_unix_ns, s.action_json, s.action_raw, s.observation_json, s.observation_raw, s.extra_json, f.kind \
                 FROM steps s LEFT JOIN frames f ON f.run_key = s.run_key AND f.episode = s.episode AND f.step = s.step AND f.agent_id IN (s.agent_id, '') AND f.worker_id IN (s.worker_id, '') \
                 WHERE s.run_key = ?1 AND s.seq >= ?2 ORDER BY s.seq LIMIT ?3",
            )
            .map_err(StoreError::sql("reading steps"))?;
        let rows = stmt
            .query_map(params![key, since_seq as i64, limit as i64], |r| {
                Ok(StepRow {
                    seq: r.get::<_, i64>(0)? as u64,
                    record: StepRecord {
                        run_id: run_id.to_owned(),
                        worker_id: r.get(1)?,
                        agent_id: r.get(2)?,
                        episode: r.get::<_, i64>(3)? as u64,
                        step: r.get::<_, i64>(4)? as u64,
                        reward: r.get(5)?,
                        terminated: r.get(6)?,
                        truncated: r.get(7)?,
                        producer_unix_ns: r.get::<_, i64>(8)? as u64,
                        action: payload(r.get(9)?, r.get(10)?),
                        observation: payload(r.get(11)?, r.get(12)?),
                        extra_json: r.get(13)?,
                        // Used to recognise re-sends, not kept per row.
                        worker_seq: 0,
                    },
                    frame_kind: r.get(14)?,
                })
            })
            .map_err(StoreError::sql("reading steps"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::sql("reading a step"))
    }

    /// Steps and episodes of every run received by the daemon in [`from_unix_ns`,
    /// `to_unix_ns`], in arrival order, at most `limit` of each. Scans the tables (there is no
    /// index by arrival time): meant for the seconds around a trigger, off any hot path.
    pub fn telemetry_between(
        &self,
        from_unix_ns: u64,
        to_unix_ns: u64,
        limit: usize,
    ) -> Result<Vec<TelemetryItem>, StoreError> {
        let mut out = Vec::new();
        for kind in [TelemetryKind::Step, TelemetryKind::Episode] {
            self.received_between(kind, from_unix_ns, to_unix_ns, limit, &mut out)?;
        }
        out.sort_by_key(|item| item.received_unix_ns);
        Ok(out)
    }

    /// Episodes alone of [`Self::telemetry_between`]: for a poll that only watches episode
    /// ends, without reading (and scanning) the far larger steps table.
    pub fn episodes_received_between(
        &self,
        from_unix_ns: u64,
        to_unix_ns: u64,
        limit: usize,
    ) -> Result<Vec<TelemetryItem>, StoreError> {
        let mut out = Vec::new();
        self.received_between(
            TelemetryKind::Episode,
            from_unix_ns,
            to_unix_ns,
            limit,
            &mut out,
        )?;
        Ok(out)
    }

    fn received_between(
        &self,
        kind: TelemetryKind,
        from_unix_ns: u64,
        to_unix_ns: u64,
        limit: usize,
        out: &mut Vec<TelemetryItem>,
    ) -> Result<(), StoreError> {
        let sql = match kind {
            TelemetryKind::Step => {
                "SELECT r.run_id, s.worker_id, s.episode, s.step, s.reward, s.terminated, s.truncated, s.producer_unix_ns, s.received_unix_ns \
                 FROM steps s JOIN runs r ON r.run_key = s.run_key \
                 WHERE s.received_unix_ns BETWEEN ?1 AND ?2 ORDER BY s.received_unix_ns LIMIT ?3"
            }
            TelemetryKind::Episode => {
                "SELECT r.run_id, e.worker_id, e.episode, e.steps, e.total_reward, e.terminated, e.truncated, e.producer_unix_ns, e.received_unix_ns \
                 FROM episodes e JOIN runs r ON r.run_key = e.run_key \
                 WHERE e.received_unix_ns BETWEEN ?1 AND ?2 ORDER BY e.received_unix_ns LIMIT ?3"
            }
        };
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(StoreError::sql("reading telemetry by time"))?;
        let from = i64::try_from(from_unix_ns).unwrap_or(i64::MAX);
        let to = i64::try_from(to_unix_ns).unwrap_or(i64::MAX);
        let kind = kind.name();
        let rows = stmt
            .query_map(params![from, to, limit as i64], |r| {
                Ok(TelemetryItem {
                    kind,
                    run_id: r.get(0)?,
                    worker_id: r.get(1)?,
                    episode: r.get::<_, i64>(2)? as u64,
                    step: r.get::<_, i64>(3)? as u64,
                    reward: r.get(4)?,
                    terminated: r.get(5)?,
                    truncated: r.get(6)?,
                    producer_unix_ns: r.get::<_, i64>(7)? as u64,
                    received_unix_ns: r.get::<_, i64>(8)? as u64,
                })
            })
            .map_err(StoreError::sql("reading telemetry by time"))?;
        for row in rows {
            out.push(row.map_err(StoreError::sql("reading a telemetry row"))?);
        }
        Ok(())
    }

    /// Up to `limit` committed episodes of a run with `seq >= since_seq`, in order.
    pub fn episodes_since(
        &self,
        run_id: &str,
        since_seq: u64,
        limit: usize,
    ) -> Result<Vec<EpisodeRow>, StoreError> {
        let key = self.run_key(run_id)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, worker_id, agent_id, episode, total_reward, steps, terminated, truncated, metadata_json, producer_unix_ns \
                 FROM episodes WHERE run_key = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(StoreError::sql("reading episodes"))?;
        let rows = stmt
            .query_map(params![key, since_seq as i64, limit as i64], |r| {
                Ok(EpisodeRow {
                    seq: r.get::<_, i64>(0)? as u64,
                    record: EpisodeRecord {
                        run_id: run_id.to_owned(),
                        worker_id: r.get(1)?,
                        agent_id: r.get(2)?,
                        episode: r.get::<_, i64>(3)? as u64,
                        total_reward: r.get(4)?,
                        steps: r.get::<_, i64>(5)? as u64,
                        terminated: r.get(6)?,
                        truncated: r.get(7)?,
                        metadata_json: r.get(8)?,
                        producer_unix_ns: r.get::<_, i64>(9)? as u64,
                    },
                })
            })
            .map_err(StoreError::sql("reading episodes"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::sql("reading an episode"))
    }

    /// Rewards of a run's steps with `seq >= since_seq` as (seq, reward) pairs, for plots.
    pub fn rewards_since(
        &self,
        run_id: &str,
        since_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, f64)>, StoreError> {
        let key = self.run_key(run_id)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, reward FROM steps WHERE run_key = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3")
            .map_err(StoreError::sql("reading rewards"))?;
        let rows = stmt
            .query_map(params![key, since_seq as i64, limit as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
            })
            .map_err(StoreError::sql("reading rewards"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::sql("reading a reward"))
    }

    /// The kept frame of (run, episode, step), if any (of the first worker and agent that has
    /// one).
    pub fn frame(
        &self,
        run_id: &str,
        episode: u64,
        step: u64,
    ) -> Result<Option<FrameIndexEntry>, StoreError> {
        self.owner_frame(run_id, FrameOwner::ANY, episode, step)
    }

    /// The kept frame of (run, episode, step) of `owner` (a field that is None: of the first
    /// worker or agent that has one; frames stored before frames were keyed by agent or worker
    /// count for every one).
    pub fn owner_frame(
        &self,
        run_id: &str,
        owner: FrameOwner<'_>,
        episode: u64,
        step: u64,
    ) -> Result<Option<FrameIndexEntry>, StoreError> {
        let key = self.run_key(run_id)?;
        self.conn
            .prepare_cached(
                "SELECT kind, width, height, format, location, data, agent_id, worker_id FROM frames \
                 WHERE run_key = ?1 AND episode = ?2 AND step = ?3 \
                 AND (?4 IS NULL OR agent_id = ?4 OR agent_id = '') AND (?5 IS NULL OR worker_id = ?5 OR worker_id = '') \
                 ORDER BY agent_id = ?4 DESC, worker_id = ?5 DESC, agent_id, worker_id LIMIT 1",
            )
            .and_then(|mut s| {
                let at = params![key, episode as i64, step as i64, owner.agent, owner.worker];
                s.query_row(at, |r| {
                    let kind: String = r.get(0)?;
                    Ok(FrameIndexEntry {
                        run_id: run_id.to_owned(),
                        worker_id: r.get(7)?,
                        agent_id: r.get(6)?,
                        episode,
                        step,
                        kind: FrameKind::from_label(&kind),
                        width: r.get(1)?,
                        height: r.get(2)?,
                        format: r.get(3)?,
                        location: r.get(4)?,
                        data: r.get(5)?,
                    })
                })
                .optional()
            })
            .map_err(StoreError::sql("reading a frame"))
    }

    /// Where the encoded frame of (run, episode, step) is, if the encoder indexed one.
    pub fn video_frame(
        &self,
        run_id: &str,
        episode: u64,
        step: u64,
    ) -> Result<Option<VideoFrameRef>, StoreError> {
        self.owner_video_frame(run_id, FrameOwner::ANY, episode, step)
    }

    /// Where the encoded frame of (run, episode, step) of `owner` is (a field that is None: of
    /// the first worker or agent that has one).
    pub fn owner_video_frame(
        &self,
        run_id: &str,
        owner: FrameOwner<'_>,
        episode: u64,
        step: u64,
    ) -> Result<Option<VideoFrameRef>, StoreError> {
        let key = self.run_key(run_id)?;
        self.conn
            .prepare_cached(
                "SELECT v.path, v.fps, v.gop, f.frame_no, v.status, v.encoder, v.width, v.height \
                 FROM video_frames f JOIN videos v ON v.video_id = f.video_id \
                 WHERE f.run_key = ?1 AND f.episode = ?2 AND f.step = ?3 \
                 AND (?4 IS NULL OR f.agent_id = ?4 OR f.agent_id = '') AND (?5 IS NULL OR f.worker_id = ?5 OR f.worker_id = '') \
                 ORDER BY f.agent_id = ?4 DESC, f.worker_id = ?5 DESC, f.agent_id, f.worker_id LIMIT 1",
            )
            .and_then(|mut s| {
                let at = params![key, episode as i64, step as i64, owner.agent, owner.worker];
                s.query_row(at, |r| {
                    Ok(VideoFrameRef {
                        path: r.get(0)?,
                        fps: r.get(1)?,
                        gop: r.get(2)?,
                        frame_no: r.get::<_, i64>(3)? as u64,
                        status: r.get(4)?,
                        encoder: r.get(5)?,
                        width: r.get(6)?,
                        height: r.get(7)?,
                    })
                })
                .optional()
            })
            .map_err(StoreError::sql("reading the video index"))
    }

    /// The video files of a run, by episode, worker, agent and segment.
    pub fn videos(&self, run_id: &str) -> Result<Vec<VideoRow>, StoreError> {
        let key = self.run_key(run_id)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT episode, segment, path, encoder, fps, gop, width, height, status, frames, error, worker_id, agent_id \
                 FROM videos WHERE run_key = ?1 ORDER BY episode, worker_id, agent_id, segment",
            )
            .map_err(StoreError::sql("reading videos"))?;
        let rows = stmt
            .query_map(params![key], |r| {
                Ok(VideoRow {
                    worker_id: r.get(11)?,
                    agent_id: r.get(12)?,
                    episode: r.get::<_, i64>(0)? as u64,
                    segment: r.get(1)?,
                    path: r.get(2)?,
                    encoder: r.get(3)?,
                    fps: r.get(4)?,
                    gop: r.get(5)?,
                    width: r.get(6)?,
                    height: r.get(7)?,
                    status: r.get(8)?,
                    frames: r.get::<_, i64>(9)? as u64,
                    error: r.get(10)?,
                })
            })
            .map_err(StoreError::sql("reading videos"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::sql("reading a video"))
    }

    /// The workers of a run, sorted (the first [`LISTED_OWNERS`]): those registered, those that number their steps, those
    /// with a recorded episode, and the one that sent the run's newest step (a worker that
    /// did none of these is found once it does; the steps table is not scanned).
    pub fn run_workers(&self, run_id: &str) -> Result<Vec<String>, StoreError> {
        let key = self.run_key(run_id)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT worker_id FROM workers WHERE run_key = ?1 \
                 UNION SELECT worker_id FROM worker_seqs WHERE run_key = ?1 \
                 UNION SELECT worker_id FROM episodes WHERE run_key = ?1 \
                 UNION SELECT * FROM (SELECT worker_id FROM steps WHERE run_key = ?1 ORDER BY seq DESC LIMIT 1) \
                 ORDER BY 1 LIMIT ?2",
            )
            .map_err(StoreError::sql("reading the run's workers"))?;
        let rows = stmt
            .query_map(params![key, LISTED_OWNERS as i64], |r| r.get(0))
            .map_err(StoreError::sql("reading the run's workers"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::sql("reading a worker"))
    }

    /// The agents of a run's worker (of every worker when None), sorted (the first
    /// [`LISTED_OWNERS`]): those with a
    /// recorded episode and those with a step in the worker's newest episode (one episode's
    /// range of the step index is read, not the whole run's steps).
    pub fn run_agents(
        &self,
        run_id: &str,
        worker: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let key = self.run_key(run_id)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT agent_id FROM episodes WHERE run_key = ?1 AND (?2 IS NULL OR worker_id = ?2) \
                 UNION SELECT agent_id FROM steps WHERE run_key = ?1 AND (?2 IS NULL OR worker_id = ?2) \
                 AND episode = (SELECT episode FROM steps WHERE run_key = ?1 AND (?2 IS NULL OR worker_id = ?2) ORDER BY seq DESC LIMIT 1) \
                 ORDER BY 1 LIMIT ?3",
            )
            .map_err(StoreError::sql("reading the run's agents"))?;
        let rows = stmt
            .query_map(params![key, worker, LISTED_OWNERS as i64], |r| r.get(0))
            .map_err(StoreError::sql("reading the run's agents"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::sql("reading an agent"))
    }

    /// Episodes of a run for replay (of one worker and agent; a field that is None: of every
    /// one): finished ones from the episode table, plus the episode still running (from its
    /// steps).
    pub fn replay_episodes(
        &self,
        run_id: &str,
        owner: FrameOwner<'_>,
    ) -> Result<Vec<ReplayEpisode>, StoreError> {
        let key = self.run_key(run_id)?;
        let mut out: Vec<ReplayEpisode> = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT episode, steps, total_reward FROM episodes WHERE run_key = ?1 AND (?2 IS NULL OR worker_id = ?2) AND (?3 IS NULL OR agent_id = ?3) ORDER BY episode",
                )
                .map_err(StoreError::sql("reading episodes"))?;
            let rows = stmt
                .query_map(params![key, owner.worker, owner.agent], |r| {
                    Ok(ReplayEpisode {
                        episode: r.get::<_, i64>(0)? as u64,
                        steps: r.get::<_, i64>(1)? as u64,
                        total_reward: r.get(2)?,
                        finished: true,
                    })
                })
                .map_err(StoreError::sql("reading episodes"))?;
            for row in rows {
                out.push(row.map_err(StoreError::sql("reading an episode"))?);
            }
        }
        let last_finished = out.iter().map(|e| e.episode as i64).max().unwrap_or(-1);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT episode, COUNT(*), TOTAL(reward) FROM steps WHERE run_key = ?1 AND episode > ?2 AND (?3 IS NULL OR worker_id = ?3) AND (?4 IS NULL OR agent_id = ?4) GROUP BY episode ORDER BY episode",
            )
            .map_err(StoreError::sql("reading running episodes"))?;
        let rows = stmt
            .query_map(
                params![key, last_finished, owner.worker, owner.agent],
                |r| {
                    Ok(ReplayEpisode {
                        episode: r.get::<_, i64>(0)? as u64,
                        steps: r.get::<_, i64>(1)? as u64,
                        total_reward: r.get(2)?,
                        finished: false,
                    })
                },
            )
            .map_err(StoreError::sql("reading running episodes"))?;
        for row in rows {
            out.push(row.map_err(StoreError::sql("reading a running episode"))?);
        }
        Ok(out)
    }

    /// The steps of one episode in order (of one worker and agent; a field that is None: of
    /// every one): (step, reward).
    pub fn episode_steps(
        &self,
        run_id: &str,
        owner: FrameOwner<'_>,
        episode: u64,
    ) -> Result<Vec<(u64, f64)>, StoreError> {
        let key = self.run_key(run_id)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT step, reward FROM steps WHERE run_key = ?1 AND episode = ?2 AND (?3 IS NULL OR worker_id = ?3) AND (?4 IS NULL OR agent_id = ?4) ORDER BY step",
            )
            .map_err(StoreError::sql("reading an episode's steps"))?;
        let rows = stmt
            .query_map(
                params![key, episode as i64, owner.worker, owner.agent],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .map_err(StoreError::sql("reading an episode's steps"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::sql("reading a step"))
    }

    /// A whole run's step rewards reduced to at most `buckets` (first seq, min, max) triples by
    /// sequence number, for drawing a long run at once.
    pub fn reward_overview(
        &self,
        run_id: &str,
        buckets: u64,
    ) -> Result<Vec<(u64, f64, f64)>, StoreError> {
        let key = self.run_key(run_id)?;
        let steps: i64 = self
            .conn
            .prepare_cached("SELECT steps FROM runs WHERE run_key = ?1")
            .and_then(|mut s| s.query_row(params![key], |r| r.get(0)))
            .map_err(StoreError::sql("reading the run's size"))?;
        let width = ((steps.max(1) as u64).div_ceil(buckets.max(1))).max(1) as i64;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT MIN(seq), MIN(reward), MAX(reward) FROM steps WHERE run_key = ?1 GROUP BY (seq - 1) / ?2 ORDER BY 1",
            )
            .map_err(StoreError::sql("reading the reward overview"))?;
        let rows = stmt
            .query_map(params![key, width], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
            })
            .map_err(StoreError::sql("reading the reward overview"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::sql("reading a reward bucket"))
    }

    /// `PRAGMA integrity_check`: "ok" for a sound database.
    /// Clips of recording rigs, newest first, at most `limit`.
    pub fn clips(&self, limit: usize) -> Result<Vec<ClipEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT folder, clip_id, triggered_unix_ms, pre_roll_ms, post_roll_ms, codec, telemetry_items, files_json FROM clips ORDER BY triggered_unix_ms DESC, folder DESC LIMIT ?1",
            )
            .map_err(StoreError::sql("reading clips"))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                let files: String = r.get(7)?;
                Ok(ClipEntry {
                    folder: r.get(0)?,
                    clip_id: r.get(1)?,
                    triggered_unix_ms: r.get::<_, i64>(2)? as u64,
                    pre_roll_ms: r.get::<_, i64>(3)? as u64,
                    post_roll_ms: r.get::<_, i64>(4)? as u64,
                    codec: r.get(5)?,
                    telemetry_items: r.get::<_, i64>(6)? as u64,
                    files: serde_json::from_str(&files).unwrap_or_default(),
                })
            })
            .map_err(StoreError::sql("reading clips"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::sql("reading a clip"))
    }

    /// Whether the clip in `folder` is listed.
    pub fn clip_listed(&self, folder: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT 1 FROM clips WHERE folder = ?1",
                params![folder],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(StoreError::sql("looking up a clip"))
    }

    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(StoreError::sql("checking integrity"))
    }
}
