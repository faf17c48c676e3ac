//! One way for a QObject to follow the daemon (or anything slow) without blocking the GUI
//! thread: a named thread running one future on its own single-threaded tokio runtime, stopped
//! when the `Follower` is dropped or replaced. A failure to start reaches the owner's `report`
//! (which shows it in QML) instead of vanishing.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set when the follower's owner lets go; the followed future checks it in its callbacks.
#[derive(Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The flag itself, for loops that take an `&AtomicBool`.
    pub fn as_atomic(&self) -> &AtomicBool {
        &self.0
    }
}

/// A running follower thread; dropping it asks the thread to stop.
pub struct Follower {
    stop: StopFlag,
}

impl Follower {
    /// Starts thread `name` running the future `follow` makes. `report` gets a message worded
    /// for the user when the thread or its runtime cannot be started.
    pub fn spawn_async<Fut>(
        name: &str,
        report: impl Fn(String) + Send + Sync + 'static,
        follow: impl FnOnce(StopFlag) -> Fut + Send + 'static,
    ) -> Option<Follower>
    where
        Fut: Future<Output = ()>,
    {
        let thread_name = name.to_owned();
        Self::spawn(name, report, move |stop, report| {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(follow(stop)),
                Err(err) => {
                    tracing::error!(thread = %thread_name, error = %err, "no async runtime");
                    report(format!("could not start following ({thread_name}): {err}"));
                }
            }
        })
    }

    /// Starts thread `name` running `follow` (a blocking loop that checks the flag).
    pub fn spawn<R>(
        name: &str,
        report: R,
        follow: impl FnOnce(StopFlag, &R) + Send + 'static,
    ) -> Option<Follower>
    where
        R: Fn(String) + Send + Sync + 'static,
    {
        let stop = StopFlag::default();
        let thread_stop = stop.clone();
        let (report_here, report_there) = {
            let shared = Arc::new(report);
            (Arc::clone(&shared), shared)
        };
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || follow(thread_stop, &*report_there));
        match spawned {
            Ok(_) => Some(Follower { stop }),
            Err(err) => {
                tracing::error!(thread = %name, error = %err, "could not start a thread");
                report_here(format!("could not start a thread ({name}): {err}"));
                None
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.0.store(true, Ordering::Relaxed);
    }
}
