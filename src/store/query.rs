//! Read queries on a read-only connection: run lists, steps and episodes after a sequence
//! number (subscriptions resume from there), kept frames.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::{open_for_reading, StoreError};
use crate::bus::{EpisodeRecord, FrameIndexEntry, Payload, StepRecord};

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
                 FROM steps s LEFT JOIN frames f ON f.run_key = s.run_key AND f.episode = s.episode AND f.step = s.step \
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
                    },
                    frame_kind: r.get(14)?,
                })
            })
            .map_err(StoreError::sql("reading steps"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::sql("reading a step"))
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

    /// The kept frame of (run, episode, step), if any.
    pub fn frame(
        &self,
        run_id: &str,
        episode: u64,
        step: u64,
    ) -> Result<Option<FrameIndexEntry>, StoreError> {
        let key = self.run_key(run_id)?;
        self.conn
            .prepare_cached("SELECT kind, width, height, format, location, data FROM frames WHERE run_key = ?1 AND episode = ?2 AND step = ?3")
            .and_then(|mut s| {
                s.query_row(params![key, episode as i64, step as i64], |r| {
                    let kind: String = r.get(0)?;
                    Ok(FrameIndexEntry {
                        run_id: run_id.to_owned(),
                        episode,
                        step,
                        kind: match kind.as_str() {
                            "inline" => "inline",
                            "png" => "png",
                            "jpeg" => "jpeg",
                            "video" => "video",
                            _ => "reference",
                        },
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

    /// `PRAGMA integrity_check`: "ok" for a sound database.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(StoreError::sql("checking integrity"))
    }
}
