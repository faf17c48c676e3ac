//! The store: one SQLite database (WAL) per data directory, written by one writer thread that
//! batches rows into transactions, and read by queries on their own connections.

mod query;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use query::{
    EpisodeRow, ReplayEpisode, RunRow, StepRow, StoreReader, TelemetryItem, VideoFrameRef, VideoRow,
};
pub use schema::SCHEMA_VERSION;
/// The statement the store writer inserts one step with (benchmarks measure a raw loop of it).
pub use writer::INSERT_STEP;
pub use writer::{
    barrier as writer_barrier, BatchPolicy, CommitNotice, Origin, StoreCommand, StoreWriter,
    WriterStats, NO_ORIGIN,
};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "framelane.sqlite3";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what}: {source}")]
    Sql {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: cannot create the data directory: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the database was written by a newer framelane (schema {found}, this build knows {supported})")]
    NewerSchema { found: usize, supported: usize },
    #[error("unknown run {0:?}")]
    UnknownRun(String),
    #[error("the batch holding these rows could not be committed: {0}")]
    CommitFailed(String),
    #[error("the store writer has stopped")]
    WriterStopped,
    #[error("could not start the store writer thread: {0}")]
    Thread(std::io::Error),
}

impl StoreError {
    pub(crate) fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| StoreError::Sql { what, source }
    }
}

/// The database path for a data directory (created if missing).
pub fn database_path(data_dir: &Path) -> Result<PathBuf, StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    Ok(data_dir.join(DATABASE_FILE))
}

/// Opens the database for writing: WAL, synchronous=NORMAL (a process crash loses nothing
/// committed), checkpoints left to the background checkpointer, schema migrated.
pub fn open_for_writing(path: &Path) -> Result<Connection, StoreError> {
    create_private(path)?;
    let mut conn = Connection::open(path).map_err(StoreError::sql("opening the database"))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(StoreError::sql("setting the busy timeout"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(StoreError::sql("enabling WAL"))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(StoreError::sql("setting synchronous"))?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(StoreError::sql("disabling inline checkpoints"))?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// Creates an empty database file readable by its owner only, unless one exists: SQLite then
/// gives its WAL and shared-memory files the same permissions.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::DataDir {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Opens the database read-only (subscriptions, run lists, the GUI).
pub fn open_for_reading(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(StoreError::sql("opening the database for reading"))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(StoreError::sql("setting the busy timeout"))?;
    Ok(conn)
}

/// Marks video files left `recording` by a daemon that stopped without finishing them as
/// `interrupted`: they play up to their last complete fragment.
pub fn mark_interrupted_videos(database: &Path) -> Result<usize, StoreError> {
    let conn = open_for_writing(database)?;
    let n = conn
        .execute(
            "UPDATE videos SET status = 'interrupted' WHERE status = 'recording'",
            [],
        )
        .map_err(StoreError::sql("marking interrupted videos"))?;
    if n > 0 {
        tracing::warn!(
            files = n,
            "video files left unfinished by an earlier stop are marked interrupted"
        );
    }
    Ok(n)
}
