//! `RunPlot`: a run's live series (episode returns, step rewards) for the plot item. A
//! background thread follows the run over gRPC into a bounded rolling window; the plot item
//! (cpp/plot_item) copies the window on the render thread.

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
        #[qproperty(QString, address)]
        #[qproperty(QString, run_id, cxx_name = "runId")]
        /// "returns" (episodic return over episodes) or "rewards" (reward over steps).
        #[qproperty(QString, series)]
        #[qproperty(i32, point_count, cxx_name = "pointCount")]
        #[qproperty(f64, last_value, cxx_name = "lastValue")]
        #[qproperty(QString, error)]
        type RunPlot = super::RunPlotRust;

        /// Render thread: copies the chosen series as x, y pairs into `out` (at most
        /// `out.len() / 2` points, the newest); returns the number of points copied. The plot
        /// has one channel: the series its `series` property names.
        #[cxx_override]
        #[cxx_name = "copyChannel"]
        fn copy_channel(self: &RunPlot, channel: i32, out: &mut [f64]) -> usize;

        /// Render thread: points in the chosen series.
        #[cxx_override]
        #[cxx_name = "channelLength"]
        fn channel_length(self: &RunPlot, channel: i32) -> usize;
    }

    unsafe extern "RustQt" {
        /// New points arrived (or the series was cleared).
        #[inherit]
        #[qsignal]
        #[cxx_name = "pointsChanged"]
        fn points_changed(self: Pin<&mut RunPlot>);
    }

    impl cxx_qt::Threading for RunPlot {}
    impl cxx_qt::Initialize for RunPlot {}
}

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cxx_qt::{CxxQtType, Threading};
use cxx_qt_lib::QString;

use super::follower::Follower;
use framelane_core::ingest::client::follow_series;

/// Points kept per series: the rolling window of the plot.
const WINDOW: usize = 50_000;
/// How often new points are handed to the plot.
const PUSH_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Series {
    rewards: VecDeque<(f64, f64)>,
    returns: VecDeque<(f64, f64)>,
}

/// Copies the newest points of `series` as x, y pairs into `out` (as many as fit, in order);
/// returns how many. What every plot source hands the plot item.
pub(super) fn copy_newest_points<'a>(
    series: impl ExactSizeIterator<Item = &'a (f64, f64)>,
    out: &mut [f64],
) -> usize {
    let n = series.len().min(out.len() / 2);
    let older = series.len() - n;
    for (pair, &(x, y)) in out.chunks_exact_mut(2).zip(series.skip(older)) {
        pair[0] = x;
        pair[1] = y;
    }
    n
}

fn push_bounded(window: &mut VecDeque<(f64, f64)>, points: impl IntoIterator<Item = (u64, f64)>) {
    for (x, y) in points {
        if window.len() == WINDOW {
            window.pop_front();
        }
        window.push_back((x as f64, y));
    }
}

/// Rust state of the `RunPlot` QObject.
#[derive(Default)]
pub struct RunPlotRust {
    address: QString,
    run_id: QString,
    series: QString,
    point_count: i32,
    last_value: f64,
    error: QString,
    data: Arc<Mutex<Series>>,
    follower: Option<Follower>,
}

impl RunPlotRust {
    fn chosen<'a>(&self, series: &'a Series) -> &'a VecDeque<(f64, f64)> {
        if self.series.to_string() == "rewards" {
            &series.rewards
        } else {
            &series.returns
        }
    }
}

impl qobject::RunPlot {
    fn copy_channel(&self, _channel: i32, out: &mut [f64]) -> usize {
        let rust = self.rust();
        let data = rust.data.lock().unwrap_or_else(|p| p.into_inner());
        copy_newest_points(rust.chosen(&data).iter(), out)
    }

    fn channel_length(&self, _channel: i32) -> usize {
        let rust = self.rust();
        let data = rust.data.lock().unwrap_or_else(|p| p.into_inner());
        rust.chosen(&data).len()
    }

    fn restart(mut self: Pin<&mut Self>) {
        self.as_mut().rust_mut().follower = None;
        *self.rust().data.lock().unwrap_or_else(|p| p.into_inner()) = Series::default();
        self.as_mut().set_point_count(0);
        self.as_mut().set_error(QString::default());
        self.as_mut().points_changed();
        let run_id = self.run_id().to_string();
        let address = self.address().to_string();
        if run_id.is_empty() || address.is_empty() {
            return;
        }
        let Ok(address) = address.parse::<std::net::SocketAddr>() else {
            self.set_error(QString::from(&format!("not a daemon address: {address:?}")));
            return;
        };
        let data = Arc::clone(&self.rust().data);
        let qt_thread = self.qt_thread();
        let errors = qt_thread.clone();
        let report = move |message: String| {
            let _ = errors.queue(move |plot| plot.set_error(QString::from(&message)));
        };
        let follower = Follower::spawn_async("plot-feed", report.clone(), move |stop| {
            follow_series(
                address,
                run_id,
                0,
                PUSH_INTERVAL,
                move |update| {
                    if stop.is_set() {
                        return false;
                    }
                    if update.rewards.is_empty() && update.returns.is_empty() {
                        return true;
                    }
                    {
                        let mut series = data.lock().unwrap_or_else(|p| p.into_inner());
                        push_bounded(&mut series.rewards, update.rewards);
                        push_bounded(&mut series.returns, update.returns);
                    }
                    qt_thread
                        .queue(|mut plot| {
                            let (count, last) = {
                                let rust = plot.rust();
                                let series = rust.data.lock().unwrap_or_else(|p| p.into_inner());
                                let window = rust.chosen(&series);
                                (window.len() as i32, window.back().map_or(0.0, |p| p.1))
                            };
                            plot.as_mut().set_point_count(count);
                            plot.as_mut().set_last_value(last);
                            plot.as_mut().set_error(QString::default());
                            plot.points_changed();
                        })
                        .is_ok()
                },
                report,
            )
        });
        self.as_mut().rust_mut().follower = follower;
    }
}

impl cxx_qt::Initialize for qobject::RunPlot {
    fn initialize(mut self: Pin<&mut Self>) {
        self.as_mut().set_series(QString::from("returns"));
        self.as_mut()
            .on_run_id_changed(|plot| plot.restart())
            .release();
        self.as_mut()
            .on_address_changed(|plot| plot.restart())
            .release();
        self.on_series_changed(|mut plot| {
            let count = plot.channel_length(0) as i32;
            plot.as_mut().set_point_count(count);
            plot.points_changed();
        })
        .release();
    }
}
