//! What the replay and analysis views share: a worker thread fed through request slots (each
//! kind of request holds only the newest one: while scrubbing, only the last position matters),
//! and the frame slot the worker fills and the render thread copies from.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use framelane_core::fastlane::PixelFormat;
use framelane_core::media::copy_rows;
use framelane_core::replay::RgbaFrame;

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A set of request slots: `Default` is "nothing asked".
pub trait RequestSlots: Default + Send + 'static {
    fn is_empty(&self) -> bool;
}

/// The requests a view posts to its worker, and the worker's wake-up.
pub struct Requests<R> {
    slots: Mutex<(R, bool)>,
    wake: Condvar,
}

impl<R: RequestSlots> Requests<R> {
    /// Starts the worker thread `name`, which runs `body` with the requests to serve.
    pub fn spawn(
        name: &str,
        body: impl FnOnce(Arc<Requests<R>>) + Send + 'static,
    ) -> std::io::Result<Arc<Self>> {
        let requests = Arc::new(Self {
            slots: Mutex::new((R::default(), false)),
            wake: Condvar::new(),
        });
        let served = requests.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(served))?;
        Ok(requests)
    }

    /// The worker in `slot`, started (as thread `name` running `body`) on first use.
    pub fn started(
        slot: &mut Option<Arc<Self>>,
        name: &str,
        body: impl FnOnce(Arc<Requests<R>>) + Send + 'static,
    ) -> std::io::Result<Arc<Self>> {
        if let Some(worker) = slot {
            return Ok(worker.clone());
        }
        let worker = Self::spawn(name, body)?;
        *slot = Some(worker.clone());
        Ok(worker)
    }

    /// Fills slots (a newer request replaces an unanswered one) and wakes the worker.
    pub fn post(&self, fill: impl FnOnce(&mut R)) {
        fill(&mut lock(&self.slots).0);
        self.wake.notify_one();
    }

    /// Tells the worker to end.
    pub fn stop(&self) {
        lock(&self.slots).1 = true;
        self.wake.notify_all();
    }

    /// Worker side: waits at most `timeout` for requests and takes them all (nothing asked
    /// when none came); None once stopped.
    pub fn next_within(&self, timeout: std::time::Duration) -> Option<R> {
        let mut slots = lock(&self.slots);
        if slots.0.is_empty() && !slots.1 {
            slots = self
                .wake
                .wait_timeout(slots, timeout)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        if slots.1 {
            return None;
        }
        Some(std::mem::take(&mut slots.0))
    }

    /// Worker side: waits for requests and takes them all; None once stopped.
    pub fn next(&self) -> Option<R> {
        let mut slots = lock(&self.slots);
        while slots.0.is_empty() && !slots.1 {
            slots = self.wake.wait(slots).unwrap_or_else(|p| p.into_inner());
        }
        if slots.1 {
            return None;
        }
        Some(std::mem::take(&mut slots.0))
    }
}

/// Posts `fill` to a view's worker (thread `name`), starting it on first use: `serve` runs on
/// it with the requests, the view's frame slot and `deliver`, which hands an outcome back to
/// the GUI thread. Err: the thread could not start.
pub fn post_to_worker<R: RequestSlots, O: 'static>(
    worker: &mut Option<Arc<Requests<R>>>,
    name: &str,
    frames: Arc<FrameSlot>,
    deliver: impl Fn(O) + Send + 'static,
    serve: impl FnOnce(Arc<Requests<R>>, Arc<FrameSlot>, Box<dyn Fn(O) + Send>) + Send + 'static,
    fill: impl FnOnce(&mut R),
) -> std::io::Result<()> {
    let started = Requests::started(worker, name, move |requests| {
        serve(requests, frames, Box::new(deliver))
    })?;
    started.post(fill);
    Ok(())
}

/// The frame a view shows: filled by its worker, copied once by the render thread.
#[derive(Default)]
pub struct FrameSlot {
    inner: Mutex<(Option<Arc<RgbaFrame>>, bool)>,
}

impl FrameSlot {
    /// A new frame to show.
    pub fn show(&self, frame: Arc<RgbaFrame>) {
        *lock(&self.inner) = (Some(frame), true);
    }

    pub fn clear(&self) {
        *lock(&self.inner) = (None, false);
    }

    /// Render thread: the shape of the frame to expect (RGBA), zeros when none.
    pub fn shape(&self, width: &mut u32, height: &mut u32, format: &mut u32) {
        (*width, *height, *format) = match &lock(&self.inner).0 {
            Some(frame) => (frame.width, frame.height, PixelFormat::Rgba8.code()),
            None => (0, 0, 0),
        };
    }

    /// Render thread: copies a frame not copied before into `dst`; false when nothing new.
    pub fn grab(&self, dst: &mut [u8], stride: usize) -> bool {
        let frame = {
            let mut inner = lock(&self.inner);
            if !inner.1 {
                return false;
            }
            inner.1 = false;
            inner.0.clone()
        };
        let Some(frame) = frame else {
            return false;
        };
        match copy_rows(&frame.rgba, frame.width, frame.height, 4, dst, stride) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = %err, "frame not shown");
                false
            }
        }
    }
}
