//! `ReplayView`: a recorded run in the window. A `replay` thread owns the store reader and the
//! frame resolver (video, then snapshots, then inline frames, with a byte-bounded cache); the
//! GUI thread only posts requests (newest wins) and receives results. Frames reach the screen
//! through the same `FrameItem` as the live view; `ReplayPlot` serves the plots beside it.

#[cxx_qt::bridge]
pub mod qobject {
    unsafe extern "C++" {
        include!("cxx-qt-lib/qstring.h");
        type QString = cxx_qt_lib::QString;
        include!("cxx-qt-lib/qstringlist.h");
        type QStringList = cxx_qt_lib::QStringList;
        include!("framelane/frame_source.h");
        /// cpp/frame_source.h: what the frame item paints.
        type FrameSource;
    }

    extern "RustQt" {
        #[qobject]
        #[qml_element]
        #[base = FrameSource]
        #[qproperty(QString, run_id, cxx_name = "runId")]
        /// Data directory of the store (the embedded daemon's, or --data-dir).
        #[qproperty(QString, data_dir, cxx_name = "dataDir")]
        /// The worker whose episodes are shown (several workers of one run may number their
        /// episodes alike); set to the first of `workers` when the run opens without one of
        /// them.
        #[qproperty(QString, worker_id, cxx_name = "workerId")]
        /// The run's workers, sorted.
        #[qproperty(QStringList, workers)]
        /// The agent whose episodes, steps and frames are shown (the agents of a multi-agent
        /// run keep their own); set to the first of `agents` when the run opens without one of
        /// them.
        #[qproperty(QString, agent_id, cxx_name = "agentId")]
        /// The shown worker's agents, sorted.
        #[qproperty(QStringList, agents)]
        #[qproperty(i64, episode)]
        /// Index of the shown step within the episode.
        #[qproperty(i32, position)]
        #[qproperty(i32, step_count, cxx_name = "stepCount")]
        #[qproperty(i64, step)]
        #[qproperty(f64, reward)]
        /// Where the shown frame came from: video, snapshot, inline; empty when none.
        #[qproperty(QString, frame_origin, cxx_name = "frameOrigin")]
        /// Why there is no frame, or an error.
        #[qproperty(QString, note)]
        #[qproperty(bool, loading)]
        /// Milliseconds from choosing the run to its episode list.
        #[qproperty(f64, open_ms, cxx_name = "openMs")]
        type ReplayView = super::ReplayViewRust;

        /// Render thread, GUI thread blocked: shape of the frame to expect (RGBA, format 2).
        #[cxx_override]
        #[cxx_name = "frameShape"]
        fn frame_shape(self: &ReplayView, width: &mut u32, height: &mut u32, format: &mut u32);

        /// Render thread: copies the newest resolved frame into `dst`; false when nothing new.
        #[cxx_override]
        #[cxx_name = "grabFrame"]
        fn grab_frame(self: &ReplayView, dst: &mut [u8], stride: usize) -> bool;

        /// Shows episode `episode` from its first step.
        #[qinvokable]
        #[cxx_name = "chooseEpisode"]
        fn choose_episode(self: Pin<&mut ReplayView>, episode: i64);

        /// Shows the step at `position` of the episode (clamped).
        #[qinvokable]
        fn seek(self: Pin<&mut ReplayView>, position: i32);

        /// Moves by `delta` steps; returns false at either end.
        #[qinvokable]
        #[cxx_name = "stepBy"]
        fn step_by(self: Pin<&mut ReplayView>, delta: i32) -> bool;

        /// Reloads the episode list (a running run grows).
        #[qinvokable]
        fn refresh(self: Pin<&mut ReplayView>);
    }

    unsafe extern "RustQt" {
        /// A new frame was resolved: render.
        #[inherit]
        #[qsignal]
        #[cxx_name = "frameAvailable"]
        fn frame_available(self: Pin<&mut ReplayView>);
    }

    impl cxx_qt::Threading for ReplayView {}
    impl cxx_qt::Initialize for ReplayView {}
}

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use cxx_qt::{CxxQtType, Threading};
use cxx_qt_lib::{QString, QStringList};

use framelane_core::bus::FrameOwner;
use framelane_core::replay::{FrameResolver, StepFrame};
use framelane_core::store::{ReplayEpisode, StoreReader, DATABASE_FILE};

use super::view_worker::{post_to_worker, FrameSlot, RequestSlots, Requests};

/// Decoded frames kept for smooth scrubbing.
const CACHE_BYTES: usize = 256 << 20;

/// A run's steps as shown: of one worker and agent ('' or None: of every one, as when the run
/// has none listed).
#[derive(Clone, Default, PartialEq)]
struct Shown {
    run: String,
    owner: Owner,
}

/// A worker and an agent of a run, as listed (None: the run lists none).
#[derive(Clone, Default, PartialEq)]
struct Owner {
    worker: Option<String>,
    agent: Option<String>,
}

impl Owner {
    /// The steps and frames it selects: exactly the worker's and agent's own, '' included (a
    /// worker or agent that sent no id is one of its own, so a run mixing it with named ones
    /// is not shown mixed), as in the episode list and the plots. A run that lists none has
    /// no step to select either.
    fn filter(&self) -> FrameOwner<'_> {
        FrameOwner::exact(
            self.worker.as_deref().unwrap_or(""),
            self.agent.as_deref().unwrap_or(""),
        )
    }
}

/// What the GUI asked for; each slot holds only the newest request.
#[derive(Default)]
struct Asked {
    /// (database, run, the worker and agent wanted).
    open: Option<(PathBuf, String, (String, String))>,
    episode: Option<(Shown, u64)>,
    frame: Option<(Shown, u64, u64)>,
}

impl RequestSlots for Asked {
    fn is_empty(&self) -> bool {
        self.open.is_none() && self.episode.is_none() && self.frame.is_none()
    }
}

pub struct ReplayViewRust {
    run_id: QString,
    data_dir: QString,
    worker_id: QString,
    workers: QStringList,
    agent_id: QString,
    agents: QStringList,
    /// The worker and agent the loaded episodes belong to.
    shown_owner: Owner,
    episode: i64,
    position: i32,
    step_count: i32,
    step: i64,
    reward: f64,
    frame_origin: QString,
    note: QString,
    loading: bool,
    open_ms: f64,
    /// Steps of the shown episode: (step, reward).
    steps: Vec<(u64, f64)>,
    shown: Arc<FrameSlot>,
    worker: Option<Arc<Requests<Asked>>>,
    opened_at: Option<Instant>,
}

impl Default for ReplayViewRust {
    fn default() -> Self {
        Self {
            run_id: QString::default(),
            data_dir: QString::default(),
            worker_id: QString::default(),
            workers: QStringList::default(),
            agent_id: QString::default(),
            agents: QStringList::default(),
            shown_owner: Owner::default(),
            episode: -1,
            position: 0,
            step_count: 0,
            step: -1,
            reward: 0.0,
            frame_origin: QString::default(),
            note: QString::default(),
            loading: false,
            open_ms: 0.0,
            steps: Vec::new(),
            shown: Arc::new(FrameSlot::default()),
            worker: None,
            opened_at: None,
        }
    }
}

impl Drop for ReplayViewRust {
    fn drop(&mut self) {
        if let Some(worker) = &self.worker {
            worker.stop();
        }
    }
}

/// What the replay thread hands back to the GUI thread.
enum Outcome {
    Opened {
        workers: Vec<String>,
        agents: Vec<String>,
        owner: Owner,
        episodes: Vec<ReplayEpisode>,
    },
    Episode {
        episode: u64,
        steps: Vec<(u64, f64)>,
    },
    Frame {
        step: u64,
        origin: &'static str,
        note: String,
    },
    Failed(String),
}

fn replay_loop(requests: Arc<Requests<Asked>>, shown: Arc<FrameSlot>, post: impl Fn(Outcome)) {
    let mut resolver: Option<FrameResolver> = None;
    let mut reader: Option<StoreReader> = None;
    // The (database, run) the reader and resolver belong to.
    let mut opened: Option<(PathBuf, String)> = None;
    while let Some(Asked {
        open,
        episode,
        frame,
    }) = requests.next()
    {
        if let Some((database, run, wanted)) = open {
            // A refresh of the run already open (or another worker of it) keeps its reader,
            // resolver and frame cache and reloads only the episode list; another run (or
            // store) opens afresh.
            let key = (database, run);
            let ready = if opened.as_ref() != Some(&key) || reader.is_none() {
                open_run(&key.0).map(|(r, res)| {
                    reader = Some(r);
                    resolver = Some(res);
                })
            } else {
                Ok(())
            };
            let loaded = ready.and_then(|()| match reader.as_ref() {
                Some(r) => load_run(r, &key.1, &wanted),
                None => Err(format!("cannot open {}", key.0.display())),
            });
            match loaded {
                Ok(outcome) => {
                    opened = Some(key);
                    post(outcome);
                }
                Err(err) => {
                    reader = None;
                    resolver = None;
                    opened = None;
                    post(Outcome::Failed(err));
                }
            }
        }
        if let (Some((of, ep)), Some(reader)) = (episode, reader.as_ref()) {
            match reader.episode_steps(&of.run, of.owner.filter(), ep) {
                Ok(steps) => post(Outcome::Episode { episode: ep, steps }),
                Err(err) => post(Outcome::Failed(err.to_string())),
            }
        }
        if let (Some((of, ep, step)), Some(resolver)) = (frame, resolver.as_mut()) {
            match resolver.owner_frame(&of.run, of.owner.filter(), ep, step) {
                Ok(StepFrame::Found { origin, frame }) => {
                    shown.show(frame);
                    post(Outcome::Frame {
                        step,
                        origin: origin.label(),
                        note: String::new(),
                    });
                }
                Ok(StepFrame::Missing(why)) => post(Outcome::Frame {
                    step,
                    origin: "",
                    note: why,
                }),
                Err(err) => post(Outcome::Frame {
                    step,
                    origin: "",
                    note: err.to_string(),
                }),
            }
        }
    }
}

fn open_run(database: &std::path::Path) -> Result<(StoreReader, FrameResolver), String> {
    let reader = StoreReader::open(database).map_err(|e| e.to_string())?;
    let resolver = FrameResolver::open(database, CACHE_BYTES).map_err(|e| e.to_string())?;
    Ok((reader, resolver))
}

/// The listed entry that is `wanted`, or the first when it is not listed.
fn pick(listed: &[String], wanted: &str) -> Option<String> {
    listed
        .iter()
        .find(|w| *w == wanted)
        .or_else(|| listed.first())
        .cloned()
}

/// The run's workers, the chosen worker's agents, and the episodes of the worker and agent
/// wanted (or of the first, when one is not listed).
fn load_run(
    reader: &StoreReader,
    run: &str,
    (wanted_worker, wanted_agent): &(String, String),
) -> Result<Outcome, String> {
    let workers = reader.run_workers(run).map_err(|e| e.to_string())?;
    let worker = pick(&workers, wanted_worker);
    let agents = reader
        .run_agents(run, worker.as_deref())
        .map_err(|e| e.to_string())?;
    let owner = Owner {
        worker,
        agent: pick(&agents, wanted_agent),
    };
    let episodes = reader
        .replay_episodes(run, owner.filter())
        .map_err(|e| e.to_string())?;
    Ok(Outcome::Opened {
        workers,
        agents,
        owner,
        episodes,
    })
}

impl qobject::ReplayView {
    fn request(mut self: Pin<&mut Self>, fill: impl FnOnce(&mut Asked)) {
        let qt = self.qt_thread();
        let frames = self.shown.clone();
        let posted = post_to_worker(
            &mut self.as_mut().rust_mut().worker,
            "replay",
            frames,
            move |outcome| {
                let _ = qt.queue(move |view| view.receive(outcome));
            },
            replay_loop,
            fill,
        );
        if let Err(err) = posted {
            tracing::error!(error = %err, "could not start the replay thread");
            self.as_mut().set_loading(false);
            self.as_mut().set_note(QString::from(&format!(
                "replay cannot start its thread: {err}"
            )));
        }
    }

    fn open(mut self: Pin<&mut Self>) {
        let run = self.run_id.to_string();
        let dir = self.data_dir.to_string();
        {
            let mut rust = self.as_mut().rust_mut();
            rust.steps.clear();
            rust.opened_at = Some(Instant::now());
        }
        self.shown.clear();
        self.as_mut().set_episode(-1);
        self.as_mut().set_step(-1);
        self.as_mut().set_step_count(0);
        self.as_mut().set_frame_origin(QString::default());
        if run.is_empty() || dir.is_empty() {
            self.as_mut().set_note(QString::from(if dir.is_empty() {
                "replay needs the store's data directory"
            } else {
                ""
            }));
            return;
        }
        self.as_mut().set_note(QString::default());
        self.as_mut().set_loading(true);
        let database = PathBuf::from(dir).join(DATABASE_FILE);
        let wanted = self.wanted();
        self.request(|r| r.open = Some((database, run, wanted)));
    }

    /// The worker and agent picked (the properties), for an open or a refresh.
    fn wanted(&self) -> (String, String) {
        (self.worker_id.to_string(), self.agent_id.to_string())
    }

    /// The run, worker and agent the loaded episodes belong to.
    fn shown(&self) -> Shown {
        Shown {
            run: self.run_id.to_string(),
            owner: self.shown_owner.clone(),
        }
    }

    /// Another worker or agent was picked: its episodes replace the list (the first shown).
    fn owner_changed(self: Pin<&mut Self>) {
        let (worker, agent) = self.wanted();
        let shown = &self.shown_owner;
        if shown.worker.as_deref().unwrap_or("") == worker
            && shown.agent.as_deref().unwrap_or("") == agent
        {
            return;
        }
        self.open();
    }

    fn receive(mut self: Pin<&mut Self>, outcome: Outcome) {
        match outcome {
            Outcome::Opened {
                workers,
                agents,
                owner,
                episodes,
            } => {
                if owner != self.shown_owner {
                    // Episodes of another worker or agent: nothing of the shown one stays.
                    self.as_mut().rust_mut().steps.clear();
                    self.as_mut().set_episode(-1);
                }
                self.as_mut().rust_mut().shown_owner = owner.clone();
                let listed: Vec<QString> = workers.iter().map(QString::from).collect();
                self.as_mut().set_workers(listed.iter().collect());
                let listed: Vec<QString> = agents.iter().map(QString::from).collect();
                self.as_mut().set_agents(listed.iter().collect());
                // Set after `shown_owner`, so the change handlers see nothing to reload.
                self.as_mut()
                    .set_worker_id(QString::from(owner.worker.as_deref().unwrap_or("")));
                self.as_mut()
                    .set_agent_id(QString::from(owner.agent.as_deref().unwrap_or("")));
                if let Some(at) = self.as_mut().rust_mut().opened_at.take() {
                    self.as_mut()
                        .set_open_ms(at.elapsed().as_secs_f64() * 1000.0);
                }
                self.as_mut().set_loading(false);
                if self.episode < 0 {
                    if let Some(first) = episodes.first() {
                        self.choose_episode(first.episode as i64);
                    }
                } else {
                    // A refresh: the shown episode may have grown; reload it and its frame.
                    let (shown, episode) = (self.shown(), self.episode as u64);
                    self.request(|r| r.episode = Some((shown, episode)));
                }
            }
            Outcome::Episode { episode, steps } => {
                if episode as i64 != self.episode {
                    return;
                }
                let count = steps.len() as i32;
                self.as_mut().rust_mut().steps = steps;
                self.as_mut().set_step_count(count);
                let position = self.position;
                self.seek(position);
            }
            Outcome::Frame { step, origin, note } => {
                if step as i64 != self.step {
                    return;
                }
                self.as_mut().set_frame_origin(QString::from(origin));
                self.as_mut().set_note(QString::from(&note));
                if !origin.is_empty() {
                    self.frame_available();
                }
            }
            Outcome::Failed(error) => {
                self.as_mut().set_loading(false);
                self.as_mut().set_note(QString::from(&error));
            }
        }
    }

    fn choose_episode(mut self: Pin<&mut Self>, episode: i64) {
        if episode < 0 {
            return;
        }
        self.as_mut().set_episode(episode);
        self.as_mut().set_position(0);
        self.as_mut().set_step_count(0);
        self.as_mut().rust_mut().steps.clear();
        let shown = self.shown();
        self.request(|r| r.episode = Some((shown, episode as u64)));
    }

    fn seek(mut self: Pin<&mut Self>, position: i32) {
        let count = self.steps.len() as i32;
        if count == 0 {
            return;
        }
        let position = position.clamp(0, count - 1);
        let (step, reward) = self.steps[position as usize];
        self.as_mut().set_position(position);
        self.as_mut().set_step(step as i64);
        self.as_mut().set_reward(reward);
        let (shown, episode) = (self.shown(), self.episode as u64);
        // While scrubbing, only the newest step matters: an older unanswered request is replaced.
        self.request(|r| r.frame = Some((shown, episode, step)));
    }

    fn step_by(self: Pin<&mut Self>, delta: i32) -> bool {
        let target = self.position.saturating_add(delta);
        if target < 0 || target >= self.steps.len() as i32 {
            return false;
        }
        self.seek(target);
        true
    }

    fn refresh(self: Pin<&mut Self>) {
        let run = self.run_id.to_string();
        let dir = self.data_dir.to_string();
        if run.is_empty() || dir.is_empty() {
            return;
        }
        let database = PathBuf::from(dir).join(DATABASE_FILE);
        let wanted = self.wanted();
        self.request(|r| r.open = Some((database, run, wanted)));
    }

    fn frame_shape(&self, width: &mut u32, height: &mut u32, format: &mut u32) {
        self.shown.shape(width, height, format);
    }

    fn grab_frame(&self, dst: &mut [u8], stride: usize) -> bool {
        self.shown.grab(dst, stride)
    }
}

impl cxx_qt::Initialize for qobject::ReplayView {
    fn initialize(mut self: Pin<&mut Self>) {
        self.as_mut()
            .on_run_id_changed(|view| view.open())
            .release();
        self.as_mut()
            .on_data_dir_changed(|view| view.open())
            .release();
        self.as_mut()
            .on_worker_id_changed(|view| view.owner_changed())
            .release();
        self.on_agent_id_changed(|view| view.owner_changed())
            .release();
    }
}
