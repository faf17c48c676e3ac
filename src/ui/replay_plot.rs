//! `ReplayPlot`: the series of a recorded run for the plot items of the Replay tab. Channel 0
//! is the chosen episode's reward per step, channel 1 the whole run's overview (the maximum
//! reward of each of 2000 buckets). Each load runs on a short-lived `replay-plot` thread that
//! reads the store; a load superseded by a newer request is dropped.

#[cxx_qt::bridge]
pub mod qobject {
    unsafe extern "C++" {
        include!("cxx-qt-lib/qstring.h");
        type QString = cxx_qt_lib::QString;
        include!("framelane/plot_source.h");
        /// cpp/plot_source.h: what the plot item draws.
        type PlotSource;
    }

    extern "RustQt" {
        #[qobject]
        #[qml_element]
        #[base = PlotSource]
        /// Data directory of the store.
        #[qproperty(QString, data_dir, cxx_name = "dataDir")]
        #[qproperty(QString, run_id, cxx_name = "runId")]
        /// Channel 0 shows this worker's steps of the episode ('' is the worker that sent no
        /// id, not every worker) ...
        #[qproperty(QString, worker_id, cxx_name = "workerId")]
        /// ... and this agent's ('' is the agent that sent no id).
        #[qproperty(QString, agent_id, cxx_name = "agentId")]
        /// Episode of channel 0 (-1: none).
        #[qproperty(i64, episode)]
        /// Buckets in the overview channel.
        #[qproperty(i32, overview_points, cxx_name = "overviewPoints")]
        /// Steps in the run (the overview's last sequence number).
        #[qproperty(i64, run_steps, cxx_name = "runSteps")]
        /// Why a series could not be loaded; empty when all is well.
        #[qproperty(QString, error)]
        type ReplayPlot = super::ReplayPlotRust;

        #[cxx_override]
        #[cxx_name = "channelLength"]
        fn channel_length(self: &ReplayPlot, channel: i32) -> usize;

        #[cxx_override]
        #[cxx_name = "copyChannel"]
        fn copy_channel(self: &ReplayPlot, channel: i32, out: &mut [f64]) -> usize;

        /// Reloads both channels (a running run grows).
        #[qinvokable]
        fn refresh(self: Pin<&mut ReplayPlot>);
    }

    unsafe extern "RustQt" {
        #[inherit]
        #[qsignal]
        #[cxx_name = "pointsChanged"]
        fn points_changed(self: Pin<&mut ReplayPlot>);
    }

    impl cxx_qt::Threading for ReplayPlot {}
    impl cxx_qt::Initialize for ReplayPlot {}
}

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use cxx_qt::{CxxQtType, Threading};
use cxx_qt_lib::QString;

use super::follower::Follower;
use super::run_plot::copy_newest_points;
use framelane_core::bus::FrameOwner;
use framelane_core::store::{StoreReader, DATABASE_FILE};

/// Buckets of the whole-run plot.
const OVERVIEW_BUCKETS: u64 = 2000;

#[derive(Default)]
struct Channels {
    episode_rewards: Vec<(f64, f64)>,
    overview: Vec<(f64, f64)>,
}

/// What one load asks for.
#[derive(Clone)]
struct Load {
    database: PathBuf,
    run_id: String,
    worker_id: String,
    agent_id: String,
    episode: Option<u64>,
    overview: bool,
}

/// What a load found.
struct Loaded {
    episode_rewards: Option<Vec<(f64, f64)>>,
    overview: Option<Vec<(f64, f64)>>,
    run_steps: u64,
}

fn load(request: &Load) -> Result<Loaded, String> {
    let reader = StoreReader::open(&request.database).map_err(|e| e.to_string())?;
    let episode_rewards = match request.episode {
        Some(episode) => Some(
            reader
                .episode_steps(
                    &request.run_id,
                    FrameOwner::exact(&request.worker_id, &request.agent_id),
                    episode,
                )
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(step, reward)| (step as f64, reward))
                .collect(),
        ),
        None => None,
    };
    let (overview, run_steps) = if request.overview {
        let buckets = reader
            .reward_overview(&request.run_id, OVERVIEW_BUCKETS)
            .map_err(|e| e.to_string())?;
        let run_steps = buckets.last().map_or(0, |&(seq, _, _)| seq);
        let points = buckets
            .into_iter()
            .map(|(seq, _, max)| (seq as f64, max))
            .collect();
        (Some(points), run_steps)
    } else {
        (None, 0)
    };
    Ok(Loaded {
        episode_rewards,
        overview,
        run_steps,
    })
}

/// Rust state of the `ReplayPlot` QObject.
pub struct ReplayPlotRust {
    data_dir: QString,
    run_id: QString,
    worker_id: QString,
    agent_id: QString,
    episode: i64,
    overview_points: i32,
    run_steps: i64,
    error: QString,
    channels: Arc<Mutex<Channels>>,
    /// Loads started; a result is taken only from the newest.
    generation: u64,
    /// The newest load includes the overview and has not answered yet.
    overview_pending: bool,
    loading: Option<Follower>,
}

impl Default for ReplayPlotRust {
    fn default() -> Self {
        Self {
            data_dir: QString::default(),
            run_id: QString::default(),
            worker_id: QString::default(),
            agent_id: QString::default(),
            episode: -1,
            overview_points: 0,
            run_steps: 0,
            error: QString::default(),
            channels: Arc::default(),
            generation: 0,
            overview_pending: false,
            loading: None,
        }
    }
}

fn lock(channels: &Mutex<Channels>) -> MutexGuard<'_, Channels> {
    channels.lock().unwrap_or_else(|p| p.into_inner())
}

impl qobject::ReplayPlot {
    fn channel_length(&self, channel: i32) -> usize {
        let channels = lock(&self.rust().channels);
        if channel == 1 {
            channels.overview.len()
        } else {
            channels.episode_rewards.len()
        }
    }

    fn copy_channel(&self, channel: i32, out: &mut [f64]) -> usize {
        let channels = lock(&self.rust().channels);
        let series = if channel == 1 {
            &channels.overview
        } else {
            &channels.episode_rewards
        };
        copy_newest_points(series.iter(), out)
    }

    fn refresh(self: Pin<&mut Self>) {
        self.reload(true);
    }

    /// Loads channel 0 (and channel 1 with `overview`, or while an overview load is still
    /// out) for the current properties.
    fn reload(mut self: Pin<&mut Self>, overview: bool) {
        let overview = overview || self.rust().overview_pending;
        let generation = self.rust().generation + 1;
        self.as_mut().rust_mut().generation = generation;
        self.as_mut().rust_mut().overview_pending = overview;
        // What is shown stays until the new series arrive (a refresh does not flicker).
        self.as_mut().set_error(QString::default());
        let (dir, run_id) = (self.data_dir().to_string(), self.run_id().to_string());
        if dir.is_empty() || run_id.is_empty() {
            self.as_mut().rust_mut().loading = None;
            *lock(&self.rust().channels) = Channels::default();
            self.as_mut().set_overview_points(0);
            self.as_mut().set_run_steps(0);
            self.as_mut().points_changed();
            return;
        }
        let request = Load {
            database: PathBuf::from(dir).join(DATABASE_FILE),
            run_id,
            worker_id: self.worker_id().to_string(),
            agent_id: self.agent_id().to_string(),
            episode: u64::try_from(self.episode).ok(),
            overview,
        };
        let qt_thread = self.qt_thread();
        let errors = qt_thread.clone();
        let report = move |message: String| {
            let _ = errors.queue(move |plot| plot.set_error(QString::from(&message)));
        };
        let loading = Follower::spawn("replay-plot", report, move |stop, _| {
            let result = load(&request);
            if stop.is_set() {
                return;
            }
            let _ = qt_thread.queue(move |plot| plot.receive(generation, result));
        });
        self.as_mut().rust_mut().loading = loading;
    }

    fn receive(mut self: Pin<&mut Self>, generation: u64, result: Result<Loaded, String>) {
        if generation != self.rust().generation {
            return;
        }
        self.as_mut().rust_mut().overview_pending = false;
        match result {
            Ok(loaded) => {
                let mut overview_points = None;
                {
                    let mut channels = lock(&self.rust().channels);
                    if let Some(rewards) = loaded.episode_rewards {
                        channels.episode_rewards = rewards;
                    }
                    if let Some(overview) = loaded.overview {
                        overview_points = Some(overview.len() as i32);
                        channels.overview = overview;
                    }
                }
                if let Some(points) = overview_points {
                    self.as_mut().set_overview_points(points);
                    self.as_mut().set_run_steps(loaded.run_steps as i64);
                }
            }
            Err(message) => self.as_mut().set_error(QString::from(&message)),
        }
        self.points_changed();
    }
}

impl cxx_qt::Initialize for qobject::ReplayPlot {
    fn initialize(mut self: Pin<&mut Self>) {
        self.as_mut()
            .on_data_dir_changed(|plot| plot.reload(true))
            .release();
        self.as_mut()
            .on_run_id_changed(|plot| plot.reload(true))
            .release();
        self.as_mut()
            .on_worker_id_changed(|plot| plot.reload(false))
            .release();
        self.as_mut()
            .on_agent_id_changed(|plot| plot.reload(false))
            .release();
        self.on_episode_changed(|plot| plot.reload(false)).release();
    }
}
