//! `RunCatalog`: the live fast-lane runs the run picker lists, as a list model, refreshed by a
//! `fastlane-discovery` thread so that listing /dev/shm never runs on the GUI thread.

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
        #[qproperty(i32, count)]
        #[qproperty(QString, error)]
        type RunCatalog = super::RunCatalogRust;

        /// Removes segments whose writer is gone; returns how many were removed.
        #[qinvokable]
        #[cxx_name = "cleanStale"]
        fn clean_stale(self: Pin<&mut RunCatalog>) -> i32;
    }

    unsafe extern "RustQt" {
        #[cxx_override]
        fn data(self: &RunCatalog, index: &QModelIndex, role: i32) -> QVariant;

        #[cxx_override]
        #[cxx_name = "rowCount"]
        fn row_count(self: &RunCatalog, parent: &QModelIndex) -> i32;

        #[cxx_override]
        #[cxx_name = "roleNames"]
        fn role_names(self: &RunCatalog) -> QHash_i32_QByteArray;

        #[inherit]
        #[cxx_name = "beginResetModel"]
        fn begin_reset_model(self: Pin<&mut RunCatalog>);

        #[inherit]
        #[cxx_name = "endResetModel"]
        fn end_reset_model(self: Pin<&mut RunCatalog>);

        #[inherit]
        fn index(self: &RunCatalog, row: i32, column: i32, parent: &QModelIndex) -> QModelIndex;

        #[inherit]
        #[qsignal]
        #[cxx_name = "dataChanged"]
        fn data_changed(
            self: Pin<&mut RunCatalog>,
            top_left: &QModelIndex,
            bottom_right: &QModelIndex,
            roles: &QVector_i32,
        );
    }

    impl cxx_qt::Threading for RunCatalog {}
    impl cxx_qt::Initialize for RunCatalog {}
}

use std::pin::Pin;
use std::time::Duration;

use cxx_qt::{CxxQtType, Threading};
use cxx_qt_lib::QString;

use super::follower::Follower;
use super::list_rows::{replace_rows, rows_list_model, Cell, ListRows};
use framelane_core::fastlane::{clean_stale_segments, list_segments, SegmentInfo};

/// How often the discovery thread lists segments.
const REFRESH_INTERVAL: Duration = Duration::from_millis(1000);

/// The roles a run picker delegate reads, in row order.
const ROLES: &[&str] = &[
    "runId",
    "kind",
    "path",
    "bytes",
    "ageSeconds",
    "frameWidth",
    "frameHeight",
    "format",
    "frames",
    "writerState",
    "stale",
];

/// Rust state of the `RunCatalog` QObject.
pub struct RunCatalogRust {
    count: i32,
    error: QString,
    rows: ListRows,
    discovery: Option<Follower>,
}

impl Default for RunCatalogRust {
    fn default() -> Self {
        Self {
            count: 0,
            error: QString::default(),
            rows: ListRows::new(ROLES),
            discovery: None,
        }
    }
}

/// One segment as a row of [`ROLES`].
fn row_of(run: &SegmentInfo) -> Vec<Cell> {
    let geometry = run.geometry;
    vec![
        Cell::Text(run.run_id.clone()),
        Cell::Text(run.kind.label().into()),
        Cell::Text(run.path.display().to_string()),
        Cell::Int(i64::try_from(run.bytes).unwrap_or(i64::MAX)),
        Cell::Float(run.age.as_secs_f64()),
        Cell::Int(geometry.map_or(0, |g| i64::from(g.width))),
        Cell::Int(geometry.map_or(0, |g| i64::from(g.height))),
        Cell::Text(geometry.map_or("", |g| g.format.name()).into()),
        Cell::Int(i64::try_from(run.frames_published).unwrap_or(i64::MAX)),
        Cell::Text(run.state_label()),
        Cell::Bool(run.is_stale()),
    ]
}

impl cxx_qt::Initialize for qobject::RunCatalog {
    fn initialize(mut self: Pin<&mut Self>) {
        let qt_thread = self.qt_thread();
        let errors = qt_thread.clone();
        let report = move |message: String| {
            let _ = errors.queue(move |catalog| catalog.set_error(QString::from(&message)));
        };
        let discovery = Follower::spawn("fastlane-discovery", report, move |stop, _| {
            while !stop.is_set() {
                let listed = list_segments()
                    .map(|runs| runs.iter().map(row_of).collect::<Vec<_>>())
                    .map_err(|err| err.to_string());
                // The catalog was destroyed: stop listing.
                if qt_thread
                    .queue(move |catalog| catalog.receive(listed))
                    .is_err()
                {
                    break;
                }
                std::thread::sleep(REFRESH_INTERVAL);
            }
        });
        self.as_mut().rust_mut().discovery = discovery;
    }
}

impl qobject::RunCatalog {
    fn receive(mut self: Pin<&mut Self>, listed: Result<Vec<Vec<Cell>>, String>) {
        let (rows, error) = match listed {
            Ok(rows) => (rows, String::new()),
            Err(error) => (Vec::new(), error),
        };
        let count = rows.len() as i32;
        replace_rows(self.as_mut(), rows);
        self.as_mut().set_count(count);
        self.set_error(QString::from(&error));
    }

    fn clean_stale(self: Pin<&mut Self>) -> i32 {
        match clean_stale_segments() {
            Ok(removed) => removed.len() as i32,
            Err(err) => {
                self.set_error(QString::from(&err.to_string()));
                -1
            }
        }
    }
}

rows_list_model!(qobject::RunCatalog);
