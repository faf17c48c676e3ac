//! Versioned schema migrations, applied in order inside one transaction each. The database's
//! `user_version` is the number of migrations applied.

use rusqlite::Connection;

use super::StoreError;

/// Migration n (1-based) brings the schema from version n-1 to n. Never edit a released one:
/// add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: runs, workers, steps, episodes, frames index, shed counters.
    r#"
    CREATE TABLE runs (
        run_key INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        profile TEXT NOT NULL,
        created_unix_ns INTEGER NOT NULL,
        last_seen_unix_ns INTEGER NOT NULL,
        steps INTEGER NOT NULL DEFAULT 0,
        episodes INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE workers (
        run_key INTEGER NOT NULL REFERENCES runs(run_key),
        worker_id TEXT NOT NULL,
        worker_kind TEXT NOT NULL,
        session_token TEXT NOT NULL,
        registered_unix_ns INTEGER NOT NULL,
        PRIMARY KEY (run_key, worker_id)
    );
    -- Scalars only: image bytes never go in this table.
    CREATE TABLE steps (
        run_key INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        worker_id TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        episode INTEGER NOT NULL,
        step INTEGER NOT NULL,
        reward REAL NOT NULL,
        terminated INTEGER NOT NULL,
        truncated INTEGER NOT NULL,
        producer_unix_ns INTEGER NOT NULL,
        received_unix_ns INTEGER NOT NULL,
        action_json TEXT,
        action_raw BLOB,
        observation_json TEXT,
        observation_raw BLOB,
        -- API-specific fields without a column of their own (MOSAIC's policy_label, backend,
        -- render hints, seeds, and its render payload when the profile keeps it), as JSON.
        extra_json TEXT,
        PRIMARY KEY (run_key, seq)
    ) WITHOUT ROWID;
    CREATE TABLE episodes (
        run_key INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        worker_id TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        episode INTEGER NOT NULL,
        total_reward REAL NOT NULL,
        steps INTEGER NOT NULL,
        terminated INTEGER NOT NULL,
        truncated INTEGER NOT NULL,
        metadata_json TEXT NOT NULL,
        producer_unix_ns INTEGER NOT NULL,
        received_unix_ns INTEGER NOT NULL,
        PRIMARY KEY (run_key, seq)
    ) WITHOUT ROWID;
    -- Kept frames by (run, episode, step): inline pixels, snapshot files, references.
    CREATE TABLE frames (
        run_key INTEGER NOT NULL,
        episode INTEGER NOT NULL,
        step INTEGER NOT NULL,
        kind TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        format TEXT NOT NULL,
        location TEXT NOT NULL,
        data BLOB,
        PRIMARY KEY (run_key, episode, step)
    );
    CREATE TABLE shed (
        run_key INTEGER NOT NULL,
        kind TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (run_key, kind)
    );
    "#,
    // 2: encoded video files and the frame index (which step is which frame of which file).
    r#"
    CREATE TABLE videos (
        video_id INTEGER PRIMARY KEY,
        run_key INTEGER NOT NULL,
        episode INTEGER NOT NULL,
        segment INTEGER NOT NULL,
        path TEXT NOT NULL,
        encoder TEXT NOT NULL,
        fps INTEGER NOT NULL,
        gop INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        -- recording | finished | failed | interrupted (the daemon stopped while writing)
        status TEXT NOT NULL,
        frames INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        UNIQUE (run_key, episode, segment)
    );
    CREATE TABLE video_frames (
        run_key INTEGER NOT NULL,
        episode INTEGER NOT NULL,
        step INTEGER NOT NULL,
        video_id INTEGER NOT NULL,
        frame_no INTEGER NOT NULL,
        PRIMARY KEY (run_key, episode, step)
    ) WITHOUT ROWID;
    -- Step lookups for replay: the steps of an episode in order.
    CREATE INDEX steps_by_episode ON steps (run_key, episode, step);
    "#,
    // 3: clips of recording rigs (framelane rig), listed for the Replay tab. A clip is its
    // folder; its camera files are a JSON array (they are only ever read together).
    r#"
    CREATE TABLE clips (
        folder TEXT PRIMARY KEY,
        clip_id TEXT NOT NULL,
        triggered_unix_ms INTEGER NOT NULL,
        pre_roll_ms INTEGER NOT NULL,
        post_roll_ms INTEGER NOT NULL,
        codec TEXT NOT NULL,
        telemetry_items INTEGER NOT NULL,
        files_json TEXT NOT NULL,
        registered_unix_ns INTEGER NOT NULL
    );
    CREATE INDEX clips_by_time ON clips (triggered_unix_ms);
    "#,
    // 4: the highest committed worker_seq per (run, worker): re-sent steps are recognised
    // after a restart too (exactly once for workers that number their steps).
    r#"
    CREATE TABLE worker_seqs (
        run_key INTEGER NOT NULL,
        worker_id TEXT NOT NULL,
        last_seq INTEGER NOT NULL,
        PRIMARY KEY (run_key, worker_id)
    ) WITHOUT ROWID;
    "#,
    // 5: kept frames and video files keyed by agent as well, so the agents of a multi-agent
    // run do not overwrite each other's frames. Rows from before have agent '' (any agent).
    r#"
    ALTER TABLE frames RENAME TO frames_v4;
    CREATE TABLE frames (
        run_key INTEGER NOT NULL,
        episode INTEGER NOT NULL,
        step INTEGER NOT NULL,
        agent_id TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        format TEXT NOT NULL,
        location TEXT NOT NULL,
        data BLOB,
        PRIMARY KEY (run_key, episode, step, agent_id)
    );
    INSERT INTO frames (run_key, episode, step, agent_id, kind, width, height, format, location, data)
        SELECT run_key, episode, step, '', kind, width, height, format, location, data FROM frames_v4;
    DROP TABLE frames_v4;
    ALTER TABLE videos RENAME TO videos_v4;
    CREATE TABLE videos (
        video_id INTEGER PRIMARY KEY,
        run_key INTEGER NOT NULL,
        agent_id TEXT NOT NULL DEFAULT '',
        episode INTEGER NOT NULL,
        segment INTEGER NOT NULL,
        path TEXT NOT NULL,
        encoder TEXT NOT NULL,
        fps INTEGER NOT NULL,
        gop INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        status TEXT NOT NULL,
        frames INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        UNIQUE (run_key, agent_id, episode, segment)
    );
    INSERT INTO videos (video_id, run_key, agent_id, episode, segment, path, encoder, fps, gop, width, height, status, frames, error)
        SELECT video_id, run_key, '', episode, segment, path, encoder, fps, gop, width, height, status, frames, error FROM videos_v4;
    DROP TABLE videos_v4;
    ALTER TABLE video_frames RENAME TO video_frames_v4;
    CREATE TABLE video_frames (
        run_key INTEGER NOT NULL,
        episode INTEGER NOT NULL,
        step INTEGER NOT NULL,
        agent_id TEXT NOT NULL DEFAULT '',
        video_id INTEGER NOT NULL,
        frame_no INTEGER NOT NULL,
        PRIMARY KEY (run_key, episode, step, agent_id)
    ) WITHOUT ROWID;
    INSERT INTO video_frames (run_key, episode, step, agent_id, video_id, frame_no)
        SELECT run_key, episode, step, '', video_id, frame_no FROM video_frames_v4;
    DROP TABLE video_frames_v4;
    "#,
    // 6: kept frames and video files keyed by worker as well: the workers of one run that
    // count their episodes and steps alike keep their own frames and files. Rows from before
    // have worker '' (any worker).
    r#"
    ALTER TABLE frames RENAME TO frames_v5;
    CREATE TABLE frames (
        run_key INTEGER NOT NULL,
        episode INTEGER NOT NULL,
        step INTEGER NOT NULL,
        agent_id TEXT NOT NULL DEFAULT '',
        worker_id TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        format TEXT NOT NULL,
        location TEXT NOT NULL,
        data BLOB,
        PRIMARY KEY (run_key, episode, step, agent_id, worker_id)
    );
    INSERT INTO frames (run_key, episode, step, agent_id, worker_id, kind, width, height, format, location, data)
        SELECT run_key, episode, step, agent_id, '', kind, width, height, format, location, data FROM frames_v5;
    DROP TABLE frames_v5;
    ALTER TABLE videos RENAME TO videos_v5;
    CREATE TABLE videos (
        video_id INTEGER PRIMARY KEY,
        run_key INTEGER NOT NULL,
        agent_id TEXT NOT NULL DEFAULT '',
        worker_id TEXT NOT NULL DEFAULT '',
        episode INTEGER NOT NULL,
        segment INTEGER NOT NULL,
        path TEXT NOT NULL,
        encoder TEXT NOT NULL,
        fps INTEGER NOT NULL,
        gop INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        status TEXT NOT NULL,
        frames INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        UNIQUE (run_key, agent_id, worker_id, episode, segment)
    );
    INSERT INTO videos (video_id, run_key, agent_id, worker_id, episode, segment, path, encoder, fps, gop, width, height, status, frames, error)
        SELECT video_id, run_key, agent_id, '', episode, segment, path, encoder, fps, gop, width, height, status, frames, error FROM videos_v5;
    DROP TABLE videos_v5;
    ALTER TABLE video_frames RENAME TO video_frames_v5;
    CREATE TABLE video_frames (
        run_key INTEGER NOT NULL,
        episode INTEGER NOT NULL,
        step INTEGER NOT NULL,
        agent_id TEXT NOT NULL DEFAULT '',
        worker_id TEXT NOT NULL DEFAULT '',
        video_id INTEGER NOT NULL,
        frame_no INTEGER NOT NULL,
        PRIMARY KEY (run_key, episode, step, agent_id, worker_id)
    ) WITHOUT ROWID;
    INSERT INTO video_frames (run_key, episode, step, agent_id, worker_id, video_id, frame_no)
        SELECT run_key, episode, step, agent_id, '', video_id, frame_no FROM video_frames_v5;
    DROP TABLE video_frames_v5;
    "#,
];

/// Schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Brings the database to [`SCHEMA_VERSION`]; refuses a database from a newer build.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: usize = conn
        .query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
        .map_err(StoreError::sql("reading the schema version"))? as usize;
    if current > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = index + 1;
        let tx = conn
            .transaction()
            .map_err(StoreError::sql("starting a migration"))?;
        tx.execute_batch(sql)
            .map_err(StoreError::sql("applying a migration"))?;
        tx.pragma_update(None, "user_version", version as i64)
            .map_err(StoreError::sql("recording the schema version"))?;
        tx.commit()
            .map_err(StoreError::sql("committing a migration"))?;
        tracing::info!(version, "store schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_videos_of_a_version_4_store_survive_keying_by_agent() {
        let mut conn = Connection::open_in_memory().expect("db");
        for sql in &MIGRATIONS[..4] {
            conn.execute_batch(sql).expect("old schema");
        }
        conn.execute_batch(
            "PRAGMA user_version = 4;
             INSERT INTO runs (run_key, run_id, profile, created_unix_ns, last_seen_unix_ns, steps, episodes) VALUES (1, 'r', 'video', 0, 0, 2, 0);
             INSERT INTO frames VALUES (1, 0, 5, 'inline', 2, 1, 'rgb8', '', x'010203040506');
             INSERT INTO videos (video_id, run_key, episode, segment, path, encoder, fps, gop, width, height, status, frames) VALUES (7, 1, 0, 0, '/v.mp4', 'libx264', 30, 30, 2, 2, 'finished', 1);
             INSERT INTO video_frames VALUES (1, 0, 6, 7, 0);",
        )
        .expect("old rows");
        migrate(&mut conn).expect("migrate");
        let frame: (String, Vec<u8>) = conn
            .query_row(
                "SELECT agent_id, data FROM frames WHERE run_key = 1 AND step = 5",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("frame kept");
        assert_eq!(frame, (String::new(), vec![1, 2, 3, 4, 5, 6]));
        let video: (i64, String, i64) = conn
            .query_row(
                "SELECT v.video_id, v.agent_id, f.frame_no FROM video_frames f JOIN videos v USING (video_id) WHERE f.step = 6",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("video index kept");
        assert_eq!(video, (7, String::new(), 0));
        // Two agents may now hold a frame of the same step.
        conn.execute_batch(
            "INSERT INTO frames VALUES (1, 0, 5, 'left', '', 'inline', 2, 1, 'rgb8', '', NULL);
             INSERT INTO frames VALUES (1, 0, 5, 'right', '', 'inline', 2, 1, 'rgb8', '', NULL);",
        )
        .expect("one frame per agent");
    }

    #[test]
    fn frames_and_videos_of_a_version_5_store_survive_keying_by_worker() {
        let mut conn = Connection::open_in_memory().expect("db");
        for sql in &MIGRATIONS[..5] {
            conn.execute_batch(sql).expect("old schema");
        }
        conn.execute_batch(
            "PRAGMA user_version = 5;
             INSERT INTO runs (run_key, run_id, profile, created_unix_ns, last_seen_unix_ns, steps, episodes) VALUES (1, 'r', 'video', 0, 0, 2, 0);
             INSERT INTO frames VALUES (1, 0, 5, 'left', 'inline', 2, 1, 'rgb8', '', x'010203040506');
             INSERT INTO videos (video_id, run_key, agent_id, episode, segment, path, encoder, fps, gop, width, height, status, frames) VALUES (7, 1, 'left', 0, 0, '/v.mp4', 'libx264', 30, 30, 2, 2, 'finished', 1);
             INSERT INTO video_frames VALUES (1, 0, 6, 'left', 7, 0);",
        )
        .expect("old rows");
        migrate(&mut conn).expect("migrate");
        let frame: (String, String, Vec<u8>) = conn
            .query_row(
                "SELECT agent_id, worker_id, data FROM frames WHERE run_key = 1 AND step = 5",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("frame kept");
        assert_eq!(
            frame,
            ("left".into(), String::new(), vec![1, 2, 3, 4, 5, 6])
        );
        let video: (i64, String, String, i64) = conn
            .query_row(
                "SELECT v.video_id, v.agent_id, v.worker_id, f.frame_no FROM video_frames f JOIN videos v USING (video_id) WHERE f.step = 6",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .expect("video index kept");
        assert_eq!(video, (7, "left".into(), String::new(), 0));
        // Two workers may now hold a frame of the same agent and step, and a segment each.
        conn.execute_batch(
            "INSERT INTO frames VALUES (1, 0, 5, 'left', 'w1', 'inline', 2, 1, 'rgb8', '', NULL);
             INSERT INTO frames VALUES (1, 0, 5, 'left', 'w2', 'inline', 2, 1, 'rgb8', '', NULL);
             INSERT INTO videos (run_key, agent_id, worker_id, episode, segment, path, encoder, fps, gop, width, height, status) VALUES (1, 'left', 'w1', 0, 0, '/w1.mp4', 'libx264', 30, 30, 2, 2, 'recording');
             INSERT INTO videos (run_key, agent_id, worker_id, episode, segment, path, encoder, fps, gop, width, height, status) VALUES (1, 'left', 'w2', 0, 0, '/w2.mp4', 'libx264', 30, 30, 2, 2, 'recording');",
        )
        .expect("one frame and one segment per worker");
    }
}
