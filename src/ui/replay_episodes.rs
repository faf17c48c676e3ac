//! `ReplayEpisodes`: the episodes of a recorded run as a list model for the Replay tab
//! (episode, steps, total reward, finished), loaded from the store on a short-lived
//! `replay-episodes` thread; a load superseded by a newer one is dropped.

#[cxx_qt::bridge]
pub mod qobject {
    unsafe extern "C++" {
        include!("cxx-qt-lib/qstring.h");
        type QString = cxx_qt_lib::QString;
        include!("cxx-qt-lib/qvariant.h");
        type QVariant = cxx_qt_lib::QVariant;
        include!("cxx-qt-lib/qmodelindex.h");
        type QModelIndex = cxx_qt_lib::QModelIndex;
        include!("cxx-qt-lib/qhash.h");
        type QHash_i32_QByteArray = cxx_qt_lib::QHash<cxx_qt_lib::QHashPair_i32_QByteArray>;
        include!("cxx-qt-lib/qvector.h");
        type QVector_i32 = cxx_qt_lib::QVector<i32>;
        include!(<QtCore/QAbstractListModel>);
        type QAbstractListModel;
    }

    extern "RustQt" {
        #[qobject]
        #[qml_element]
        #[base = QAbstractListModel]
        /// Data directory of the store.
        #[qproperty(QString, data_dir, cxx_name = "dataDir")]
        #[qproperty(QString, run_id, cxx_name = "runId")]
        /// Only this worker's episodes ('' is the worker that sent no id, not every worker).
        #[qproperty(QString, worker_id, cxx_name = "workerId")]
        /// Only this agent's episodes ('' is the agent that sent no id).
        #[qproperty(QString, agent_id, cxx_name = "agentId")]
        #[qproperty(i32, count)]
        #[qproperty(bool, loading)]
        #[qproperty(QString, error)]
        type ReplayEpisodes = super::ReplayEpisodesRust;

        /// Reloads the list (a running run grows).
        #[qinvokable]
        fn refresh(self: Pin<&mut ReplayEpisodes>);

        /// The row of `episode`, or -1.
        #[qinvokable]
        #[cxx_name = "rowOf"]
        fn row_of(self: &ReplayEpisodes, episode: i64) -> i32;
    }

    unsafe extern "RustQt" {
        #[cxx_override]
        fn data(self: &ReplayEpisodes, index: &QModelIndex, role: i32) -> QVariant;

        #[cxx_override]
        #[cxx_name = "rowCount"]
        fn row_count(self: &ReplayEpisodes, parent: &QModelIndex) -> i32;

        #[cxx_override]
        #[cxx_name = "roleNames"]
        fn role_names(self: &ReplayEpisodes) -> QHash_i32_QByteArray;

        #[inherit]
        #[cxx_name = "beginResetModel"]
        fn begin_reset_model(self: Pin<&mut ReplayEpisodes>);

        #[inherit]
        #[cxx_name = "endResetModel"]
        fn end_reset_model(self: Pin<&mut ReplayEpisodes>);

        #[inherit]
        fn index(self: &ReplayEpisodes, row: i32, column: i32, parent: &QModelIndex)
            -> QModelIndex;

        #[inherit]
        #[qsignal]
        #[cxx_name = "dataChanged"]
        fn data_changed(
            self: Pin<&mut ReplayEpisodes>,
            top_left: &QModelIndex,
            bottom_right: &QModelIndex,
            roles: &QVector_i32,
        );
    }

    impl cxx_qt::Threading for ReplayEpisodes {}
    impl cxx_qt::Initialize for ReplayEpisodes {}
}

use std::path::PathBuf;
use std::pin::Pin;

use cxx_qt::{CxxQtType, Threading};
use cxx_qt_lib::QString;

use super::follower::Follower;
use super::list_rows::{replace_rows, rows_list_model, Cell, ListRows};
use framelane_core::bus::FrameOwner;
use framelane_core::store::{StoreReader, DATABASE_FILE};

/// The roles an episode delegate reads, in row order.
const ROLES: &[&str] = &["episode", "steps", "totalReward", "finished"];

/// Rust state of the `ReplayEpisodes` QObject.
pub struct ReplayEpisodesRust {
    data_dir: QString,
    run_id: QString,
    worker_id: QString,
    agent_id: QString,
    count: i32,
    loading: bool,
    error: QString,
    rows: ListRows,
    /// Episode number of each row, for `rowOf`.
    episodes: Vec<u64>,
    generation: u64,
    load: Option<Follower>,
}

impl Default for ReplayEpisodesRust {
    fn default() -> Self {
        Self {
            data_dir: QString::default(),
            run_id: QString::default(),
            worker_id: QString::default(),
            agent_id: QString::default(),
            count: 0,
            loading: false,
            error: QString::default(),
            rows: ListRows::new(ROLES),
            episodes: Vec::new(),
            generation: 0,
            load: None,
        }
    }
}

type Loaded = Result<(Vec<u64>, Vec<Vec<Cell>>), String>;

fn load(database: &std::path::Path, run_id: &str, (worker, agent): (&str, &str)) -> Loaded {
    let reader = StoreReader::open(database).map_err(|e| e.to_string())?;
    let episodes = reader
        .replay_episodes(run_id, FrameOwner::exact(worker, agent))
        .map_err(|e| e.to_string())?;
    let numbers = episodes.iter().map(|e| e.episode).collect();
    let count = |n: u64| Cell::Float(n as f64);
    let rows = episodes
        .iter()
        .map(|e| {
            vec![
                count(e.episode),
                count(e.steps),
                Cell::Float(e.total_reward),
                Cell::Bool(e.finished),
            ]
        })
        .collect();
    Ok((numbers, rows))
}

impl qobject::ReplayEpisodes {
    fn refresh(mut self: Pin<&mut Self>) {
        let generation = self.rust().generation + 1;
        self.as_mut().rust_mut().generation = generation;
        self.as_mut().set_error(QString::default());
        let (dir, run_id) = (self.data_dir().to_string(), self.run_id().to_string());
        let worker_id = self.worker_id().to_string();
        let agent_id = self.agent_id().to_string();
        if dir.is_empty() || run_id.is_empty() {
            self.as_mut().rust_mut().load = None;
            self.as_mut()
                .receive(generation, Ok((Vec::new(), Vec::new())));
            return;
        }
        self.as_mut().set_loading(true);
        let database = PathBuf::from(dir).join(DATABASE_FILE);
        let qt_thread = self.qt_thread();
        let errors = qt_thread.clone();
        let report = move |message: String| {
            let _ = errors.queue(move |episodes| episodes.set_error(QString::from(&message)));
        };
        let load = Follower::spawn("replay-episodes", report, move |stop, _| {
            let loaded = load(&database, &run_id, (&worker_id, &agent_id));
            if !stop.is_set() {
                let _ = qt_thread.queue(move |episodes| episodes.receive(generation, loaded));
            }
        });
        self.as_mut().rust_mut().load = load;
    }

    fn receive(mut self: Pin<&mut Self>, generation: u64, loaded: Loaded) {
        if generation != self.rust().generation {
            return;
        }
        self.as_mut().set_loading(false);
        match loaded {
            Ok((numbers, rows)) => {
                let count = rows.len() as i32;
                self.as_mut().rust_mut().episodes = numbers;
                replace_rows(self.as_mut(), rows);
                self.as_mut().set_count(count);
            }
            Err(message) => self.as_mut().set_error(QString::from(&message)),
        }
    }

    fn row_of(&self, episode: i64) -> i32 {
        u64::try_from(episode)
            .ok()
            .and_then(|e| self.rust().episodes.iter().position(|&n| n == e))
            .map_or(-1, |row| row as i32)
    }
}

impl cxx_qt::Initialize for qobject::ReplayEpisodes {
    fn initialize(mut self: Pin<&mut Self>) {
        self.as_mut()
            .on_data_dir_changed(|episodes| episodes.refresh())
            .release();
        self.as_mut()
            .on_run_id_changed(|episodes| episodes.refresh())
            .release();
        self.as_mut()
            .on_worker_id_changed(|episodes| episodes.refresh())
            .release();
        self.on_agent_id_changed(|episodes| episodes.refresh())
            .release();
    }
}

rows_list_model!(qobject::ReplayEpisodes);
