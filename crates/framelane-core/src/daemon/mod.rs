//! The daemon: wires the store writer, the snapshot writer, storage profiles and the gRPC
//! ingest together and runs them until asked to stop. `framelane serve` runs it headless; the
//! GUI embeds one unless told to connect to a running daemon.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

mod lock;
pub use lock::{read_holder, DataDirLock, LockError, LockHolder, LOCK_FILE};

use crate::budget::MemoryBudget;
use crate::bus::ShedCounters;
use crate::gating::{GatingError, ProfileSet};
use crate::ingest::{IngestCore, IngestParts, ServerLimits};
use crate::metrics::{MetricSource, MetricsServer, Sources};
use crate::snapshot::SnapshotWriter;
use crate::store::{self, BatchPolicy, StoreError, StoreWriter};

/// Default port of the daemon (loopback).
pub const DEFAULT_PORT: u16 = 50551;

/// Errors starting or running the daemon, worded for the command line.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Profiles(#[from] GatingError),
    #[error(transparent)]
    DataDir(#[from] LockError),
    #[error("listening on {address} needs a token (--token or FRAMELANE_TOKEN): only loopback addresses may be used without one")]
    TokenRequired { address: SocketAddr },
    #[error("listening on {address} needs TLS (--tls-cert and --tls-key), so the token does not travel in clear text; --allow-plaintext if the network is trusted")]
    TlsRequired { address: SocketAddr },
    #[error("TLS: {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serve metrics on {address} (--metrics): {source}")]
    Metrics {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start the video encoders: {0}")]
    Encoder(crate::encode::EncodeError),
    #[error("could not start {what}: {source}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// How the daemon is set up.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Bearer token clients must send; required for a non-loopback `listen`.
    pub token: Option<String>,
    /// Certificate chain and private key (PEM) to serve TLS with; required for a non-loopback
    /// `listen` unless `allow_plaintext`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Serve a non-loopback `listen` without TLS (a trusted network).
    pub allow_plaintext: bool,
    /// User profile file overriding the built-ins; watched for changes.
    pub profiles_file: Option<PathBuf>,
    /// Steps waiting for the store writer, at most (in chunks of up to 128; senders wait
    /// beyond it).
    pub store_queue: usize,
    /// Frames waiting for the snapshot writer, at most (beyond it frames are shed).
    pub snapshot_queue: usize,
    /// Batching when a run's profile does not ask for tighter.
    pub batch: BatchPolicy,
    pub limits: ServerLimits,
    /// Video encoders for profiles that ask for video (workers, queue, wait before shedding).
    pub encode: crate::encode::ServiceConfig,
    /// The memory ceiling every queue and encode job draws from, in bytes
    /// ([`crate::budget::DEFAULT_LIMIT`] unless `--memory-limit`).
    pub memory_limit: u64,
    /// Where to serve the figures for Prometheus (`GET /metrics`); none: not served.
    pub metrics: Option<SocketAddr>,
    /// Faults injected for tests of a failing daemon (none by default; not reachable from the
    /// command line).
    pub faults: Faults,
    /// Figures of other parts of the process (the window's) served beside the daemon's.
    pub metric_sources: Sources,
}

impl DaemonConfig {
    /// Loopback on the default port, data in the platform's data directory.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            token: None,
            tls: None,
            allow_plaintext: false,
            profiles_file: None,
            store_queue: 16_384,
            snapshot_queue: 256,
            batch: BatchPolicy::default(),
            limits: ServerLimits::default(),
            encode: crate::encode::ServiceConfig::default(),
            memory_limit: crate::budget::DEFAULT_LIMIT,
            metrics: None,
            faults: Faults::default(),
            metric_sources: Sources::new(),
        }
    }
}

/// Faults a test may inject into a daemon to see how it reports and refuses work it can no
/// longer do.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The snapshot writer thread panics when it takes frame n+1.
    pub snapshot_writer_panics_after: Option<u64>,
}

/// The platform's data directory for framelane (e.g. ~/.local/share/framelane).
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("framelane")
}

/// The user profile file, if present (~/.config/framelane/profiles.yaml).
pub fn default_profiles_file() -> Option<PathBuf> {
    dirs::config_dir()
        .map(|d| d.join("framelane").join("profiles.yaml"))
        .filter(|p| p.exists())
}

/// A running daemon.
pub struct Daemon {
    runtime: Option<tokio::runtime::Runtime>,
    core: Option<Arc<IngestCore>>,
    profile_watcher: Option<std::thread::JoinHandle<()>>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
    store: Option<StoreWriter>,
    db_path: PathBuf,
    metrics: Option<MetricsServer>,
    /// Held until every thread above has stopped (fields drop after `Drop::drop`).
    _dir_lock: DataDirLock,
}

impl Daemon {
    /// Opens the store, loads profiles, binds the listener and starts serving.
    pub fn start(config: DaemonConfig) -> Result<Self, DaemonError> {
        if config.token.is_none() && !config.listen.ip().is_loopback() {
            return Err(DaemonError::TokenRequired {
                address: config.listen,
            });
        }
        if config.tls.is_none() && !config.allow_plaintext && !config.listen.ip().is_loopback() {
            return Err(DaemonError::TlsRequired {
                address: config.listen,
            });
        }
        let tls = match &config.tls {
            Some((cert, key)) => {
                let read = |path: &PathBuf, what: &str| {
                    std::fs::read(path).map_err(|e| DaemonError::Tls {
                        path: path.clone(),
                        reason: format!("reading the {what}: {e}"),
                    })
                };
                let (cert_pem, key_pem) = (read(cert, "certificate")?, read(key, "private key")?);
                for (path, pem, marker) in [
                    (cert, &cert_pem, "CERTIFICATE"),
                    (key, &key_pem, "PRIVATE KEY"),
                ] {
                    if !String::from_utf8_lossy(pem).contains(marker) {
                        return Err(DaemonError::Tls {
                            path: path.clone(),
                            reason: format!("no PEM {marker} block in it"),
                        });
                    }
                }
                Some(tonic::transport::Identity::from_pem(cert_pem, key_pem))
            }
            None => None,
        };
        let profile_set = match &config.profiles_file {
            Some(path) => ProfileSet::load(path)?,
            None => ProfileSet::builtin()?,
        };
        let profiles = Arc::new(RwLock::new(profile_set));
        // Nothing in the data directory is touched before it is ours and the address is bound:
        // a second daemon fails here without marking the first one's recordings interrupted.
        let mut dir_lock = DataDirLock::acquire(&config.data_dir)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ingest-rt")
            .enable_all()
            .build()
            .map_err(|source| DaemonError::Start {
                what: "the ingest runtime",
                source,
            })?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(config.listen))
            .map_err(|source| DaemonError::Listen {
                address: config.listen,
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| DaemonError::Listen {
                address: config.listen,
                source,
            })?;
        dir_lock.publish(local_addr)?;
        let db_path = store::database_path(&config.data_dir)?;
        for recordings in ["frames", "videos"] {
            private_dir(&config.data_dir.join(recordings))?;
        }
        let shed = ShedCounters::new();
        // The queue holds commands and a step chunk is one command, so the bound in steps is
        // the command count times the chunk size.
        let store_commands = (config.store_queue / crate::ingest::STEP_CHUNK).max(16);
        let store = StoreWriter::start(&db_path, store_commands, config.batch, Arc::clone(&shed))?;
        let snapshots = SnapshotWriter::start(
            &config.data_dir.join("frames"),
            config.snapshot_queue,
            store.sender(),
            Arc::clone(&shed),
            config.faults.snapshot_writer_panics_after,
        )
        .map_err(|source| DaemonError::Start {
            what: "the snapshot writer",
            source,
        })?;
        store::mark_interrupted_videos(&db_path)?;
        let encoder = crate::encode::EncoderService::start(
            config.encode.clone(),
            Some(crate::ingest::video::StoreIndexSink::new(store.sender())),
        )
        .map_err(DaemonError::Encoder)?;
        let budget = MemoryBudget::new(config.memory_limit);
        let video = crate::ingest::video::VideoRecorder::new(
            Arc::new(encoder),
            config.data_dir.join("videos"),
            Arc::clone(&shed),
        )
        .with_budget(Arc::clone(&budget));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let core = IngestCore::new(IngestParts {
            store: store.sender(),
            store_capacity: store_commands,
            writer_stats: store.stats(),
            commits: store.commit_sender(),
            db_path: db_path.clone(),
            snapshots,
            video: Some(video),
            budget,
            profiles: Arc::clone(&profiles),
            shed,
            token: config.token.clone(),
            shutdown: shutdown_rx.clone(),
            idle_stream_timeout: config.limits.idle_stream_timeout,
        })?;
        let mut stop = shutdown_rx.clone();
        let server = runtime.spawn(crate::ingest::serve(
            Arc::clone(&core),
            listener,
            config.limits,
            tls,
            async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            },
        ));
        runtime.spawn(Arc::clone(&core).track_rates());
        runtime.spawn(Arc::clone(&core).finish_idle_video_jobs());
        runtime.spawn(Arc::clone(&core).regulate_flow());
        let profile_watcher = match config.profiles_file.clone() {
            Some(path) => Some(spawn_profile_watcher(
                path,
                profiles,
                Arc::clone(&core),
                shutdown_rx,
            )?),
            None => None,
        };
        let metrics = match config.metrics {
            Some(address) => {
                let mut sources = config.metric_sources.clone();
                sources.add(Arc::clone(&core) as Arc<dyn MetricSource>);
                let served = crate::metrics::serve(runtime.handle(), address, Arc::new(sources))
                    .map_err(|source| DaemonError::Metrics { address, source })?;
                Some(served)
            }
            None => None,
        };
        tracing::info!(address = %local_addr, database = %db_path.display(), "daemon serving");
        Ok(Self {
            metrics,
            runtime: Some(runtime),
            core: Some(core),
            profile_watcher,
            local_addr,
            shutdown,
            server: Some(server),
            store: Some(store),
            db_path,
            _dir_lock: dir_lock,
        })
    }

    /// The address the daemon listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn database_path(&self) -> &Path {
        &self.db_path
    }

    /// Where the metrics endpoint listens, when it was asked for.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
    }

    pub fn core(&self) -> Option<&Arc<IngestCore>> {
        self.core.as_ref()
    }

    /// The daemon's runtime, for tasks that talk to it in-process.
    pub fn runtime(&self) -> Option<&tokio::runtime::Runtime> {
        self.runtime.as_ref()
    }

    /// Stops accepting work, lets in-flight publishes commit and reply, flushes the store and
    /// joins every thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        drop(self.metrics.take());
        if let (Some(runtime), Some(server)) = (self.runtime.as_ref(), self.server.take()) {
            match runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(15), server).await })
            {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(err))) => tracing::warn!(error = %err, "gRPC server ended with an error"),
                Ok(Err(err)) => tracing::warn!(error = %err, "gRPC server task failed"),
                Err(_) => tracing::warn!("in-flight requests did not finish within 15 s"),
            }
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
        if let Some(watcher) = self.profile_watcher.take() {
            let _ = watcher.join();
        }
        // The core holds the snapshot writer and the video encoders, which finish their
        // queues (and open episode files) into the store.
        drop(self.core.take());
        if let Some(store) = self.store.take() {
            store.shutdown();
        }
        tracing::info!("daemon stopped");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.runtime.is_some() {
            self.stop();
        }
    }
}

/// Creates a folder readable by its owner only (an existing one is left as it is).
fn private_dir(path: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| DaemonError::Start {
            what: "the recordings folder",
            source,
        })
}

/// Reloads the user profile file when it changes; a bad file is reported and the last good
/// profiles stay in force.
fn spawn_profile_watcher(
    path: PathBuf,
    profiles: Arc<RwLock<ProfileSet>>,
    core: Arc<IngestCore>,
    shutdown: watch::Receiver<bool>,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last: Option<SystemTime> = modified(&path);
    std::thread::Builder::new()
        .name("profile-watch".into())
        .spawn(move || {
            while !*shutdown.borrow() {
                std::thread::sleep(Duration::from_millis(500));
                let now = modified(&path);
                if now == last {
                    continue;
                }
                last = now;
                match ProfileSet::load(&path) {
                    Ok(set) => {
                        *profiles.write().unwrap_or_else(|p| p.into_inner()) = set;
                        core.profiles_reloaded();
                        tracing::info!(file = %path.display(), "storage profiles reloaded");
                    }
                    Err(err) => tracing::error!(error = %err, "storage profiles not reloaded; keeping the last good ones"),
                }
            }
        })
        .map_err(|source| DaemonError::Start { what: "the profile watcher", source })
}
