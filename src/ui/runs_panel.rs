//! `RunsPanel`: the daemon's recorded runs (status, steps/s, episodes, shed counts, profile) as a
//! list model for the runs panel, followed over gRPC by a `runs-watch` follower.

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
        #[qproperty(QString, address)]
        #[qproperty(i32, count)]
        #[qproperty(QString, error)]
        type RunsPanel = super::RunsPanelRust;
    }

    unsafe extern "RustQt" {
        #[cxx_override]
        fn data(self: &RunsPanel, index: &QModelIndex, role: i32) -> QVariant;

        #[cxx_override]
        #[cxx_name = "rowCount"]
        fn row_count(self: &RunsPanel, parent: &QModelIndex) -> i32;

        #[cxx_override]
        #[cxx_name = "roleNames"]
        fn role_names(self: &RunsPanel) -> QHash_i32_QByteArray;

        #[inherit]
        #[cxx_name = "beginResetModel"]
        fn begin_reset_model(self: Pin<&mut RunsPanel>);

        #[inherit]
        #[cxx_name = "endResetModel"]
        fn end_reset_model(self: Pin<&mut RunsPanel>);

        #[inherit]
        fn index(self: &RunsPanel, row: i32, column: i32, parent: &QModelIndex) -> QModelIndex;

        #[inherit]
        #[qsignal]
        #[cxx_name = "dataChanged"]
        fn data_changed(
            self: Pin<&mut RunsPanel>,
            top_left: &QModelIndex,
            bottom_right: &QModelIndex,
            roles: &QVector_i32,
        );
    }

    impl cxx_qt::Threading for RunsPanel {}
    impl cxx_qt::Initialize for RunsPanel {}
}

use std::pin::Pin;

use cxx_qt::{CxxQtType, Threading};
use cxx_qt_lib::QString;

use super::follower::Follower;
use super::list_rows::{replace_rows, rows_list_model, Cell, ListRows};
use framelane_core::bus::describe_shed;
use framelane_core::ingest::client::watch_runs;
use framelane_core::ingest::proto::framelane_v1::RunSummary;

/// The roles a runs panel delegate reads, in row order.
const ROLES: &[&str] = &[
    "runId",
    "profile",
    "steps",
    "episodes",
    "stepsPerSecond",
    "status",
    "shedTotal",
    "shedText",
];

/// Rust state of the `RunsPanel` QObject.
pub struct RunsPanelRust {
    address: QString,
    count: i32,
    error: QString,
    rows: ListRows,
    follower: Option<Follower>,
}

impl Default for RunsPanelRust {
    fn default() -> Self {
        Self {
            address: QString::default(),
            count: 0,
            error: QString::default(),
            rows: ListRows::new(ROLES),
            follower: None,
        }
    }
}

/// One recorded run as a row of [`ROLES`]; shed counts worded for the user, largest first.
fn row_of(run: &RunSummary) -> Vec<Cell> {
    let mut shed: Vec<(&String, &u64)> = run.shed.iter().filter(|(_, n)| **n > 0).collect();
    shed.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let shed_text = shed
        .iter()
        .map(|(kind, n)| describe_shed(kind, **n))
        .collect::<Vec<_>>()
        .join(" · ");
    let count = |n: u64| Cell::Int(i64::try_from(n).unwrap_or(i64::MAX));
    vec![
        Cell::Text(run.run_id.clone()),
        Cell::Text(run.profile.clone()),
        count(run.steps),
        count(run.episodes),
        Cell::Float(run.steps_per_second),
        Cell::Text(run.status.clone()),
        count(run.shed.values().sum()),
        Cell::Text(shed_text),
    ]
}

impl cxx_qt::Initialize for qobject::RunsPanel {
    fn initialize(self: Pin<&mut Self>) {
        self.on_address_changed(|panel| panel.follow()).release();
    }
}

impl qobject::RunsPanel {
    /// Follows the daemon's run list at the current address.
    fn follow(mut self: Pin<&mut Self>) {
        self.as_mut().rust_mut().follower = None;
        let address = self.address().to_string();
        let Ok(address) = address.parse::<std::net::SocketAddr>() else {
            self.set_error(QString::from(&format!("not a daemon address: {address:?}")));
            return;
        };
        let qt_thread = self.qt_thread();
        let errors = qt_thread.clone();
        let report = move |message: String| {
            let _ = errors.queue(move |panel| panel.set_error(QString::from(&message)));
        };
        let follower = Follower::spawn_async("runs-watch", report.clone(), move |stop| {
            watch_runs(
                address,
                move |runs| {
                    if stop.is_set() {
                        return false;
                    }
                    let Some(runs) = runs else { return true };
                    let rows: Vec<Vec<Cell>> = runs.iter().map(row_of).collect();
                    qt_thread
                        .queue(move |mut panel| {
                            let count = rows.len() as i32;
                            replace_rows(panel.as_mut(), rows);
                            panel.as_mut().set_count(count);
                            panel.as_mut().set_error(QString::default());
                        })
                        .is_ok()
                },
                report,
            )
        });
        self.as_mut().rust_mut().follower = follower;
    }
}

rows_list_model!(qobject::RunsPanel);
