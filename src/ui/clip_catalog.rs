//! `ClipCatalog`: the recording rigs' clips the store lists (newest first), for the Replay
//! tab. A clip is read from the store only on `refresh` (the tab's timer), on the GUI thread:
//! one indexed query of at most `LISTED` rows on a read-only connection, which a writer never
//! blocks (WAL).

#[cxx_qt::bridge]
pub mod qobject {
    unsafe extern "C++" {
        include!("cxx-qt-lib/qstring.h");
        type QString = cxx_qt_lib::QString;
    }

    extern "RustQt" {
        #[qobject]
        #[qml_element]
        /// Data directory of the store (empty: no clips).
        #[qproperty(QString, data_dir, cxx_name = "dataDir")]
        #[qproperty(i32, count)]
        /// Why the list is empty or stale (no store yet, a read error); empty otherwise.
        #[qproperty(QString, note)]
        type ClipCatalog = super::ClipCatalogRust;

        /// Reads the list again.
        #[qinvokable]
        fn refresh(self: Pin<&mut ClipCatalog>);

        /// Clip `index`: its id, cameras, frames and when it was triggered.
        #[qinvokable]
        #[cxx_name = "clipLine"]
        fn clip_line(self: &ClipCatalog, index: i32) -> QString;

        #[qinvokable]
        #[cxx_name = "cameraCount"]
        fn camera_count(self: &ClipCatalog, index: i32) -> i32;

        #[qinvokable]
        #[cxx_name = "cameraName"]
        fn camera_name(self: &ClipCatalog, index: i32, camera: i32) -> QString;

        /// Row of the clip `clip_id` (-1: not listed).
        #[qinvokable]
        #[cxx_name = "indexOf"]
        fn index_of(self: &ClipCatalog, clip_id: &QString) -> i32;

        /// Path of camera `camera`'s MP4 of clip `index` (empty when out of range).
        #[qinvokable]
        #[cxx_name = "cameraFile"]
        fn camera_file(self: &ClipCatalog, index: i32, camera: i32) -> QString;
    }

    impl cxx_qt::Initialize for ClipCatalog {}
}

use std::path::PathBuf;
use std::pin::Pin;

use cxx_qt::CxxQtType;
use cxx_qt_lib::QString;

use framelane_core::bus::{ClipEntry, ClipFileEntry};
use framelane_core::store::{StoreReader, DATABASE_FILE};

/// Clips listed at most.
const LISTED: usize = 200;

#[derive(Default)]
pub struct ClipCatalogRust {
    data_dir: QString,
    count: i32,
    note: QString,
    clips: Vec<ClipEntry>,
}

impl qobject::ClipCatalog {
    fn refresh(mut self: Pin<&mut Self>) {
        let dir = self.data_dir.to_string();
        if dir.is_empty() {
            self.as_mut().rust_mut().clips.clear();
            self.as_mut().set_count(0);
            return;
        }
        let database = PathBuf::from(dir).join(DATABASE_FILE);
        let listed = StoreReader::open(&database).and_then(|r| r.clips(LISTED));
        match listed {
            Ok(clips) => {
                let count = clips.len() as i32;
                self.as_mut().rust_mut().clips = clips;
                self.as_mut().set_note(QString::default());
                self.as_mut().set_count(count);
            }
            Err(err) => self
                .as_mut()
                .set_note(QString::from(&format!("clips: {err}"))),
        }
    }

    fn clip(&self, index: i32) -> Option<&ClipEntry> {
        usize::try_from(index).ok().and_then(|i| self.clips.get(i))
    }

    fn file(&self, index: i32, camera: i32) -> Option<&ClipFileEntry> {
        let camera = usize::try_from(camera).ok()?;
        self.clip(index)?.files.get(camera)
    }

    fn clip_line(&self, index: i32) -> QString {
        let Some(clip) = self.clip(index) else {
            return QString::default();
        };
        let frames: u64 = clip.files.iter().map(|f| f.frames).sum();
        let seconds = clip.triggered_unix_ms / 1000;
        let time = format!(
            "{:02}:{:02}:{:02} UTC",
            seconds / 3600 % 24,
            seconds / 60 % 60,
            seconds % 60
        );
        QString::from(&format!(
            "{} · {} · {} camera(s), {frames} frames",
            clip.clip_id,
            time,
            clip.files.len()
        ))
    }

    fn index_of(&self, clip_id: &QString) -> i32 {
        let wanted = clip_id.to_string();
        self.clips
            .iter()
            .position(|c| c.clip_id == wanted)
            .map_or(-1, |i| i as i32)
    }

    fn camera_count(&self, index: i32) -> i32 {
        self.clip(index).map_or(0, |c| c.files.len() as i32)
    }

    fn camera_name(&self, index: i32, camera: i32) -> QString {
        QString::from(self.file(index, camera).map_or("", |f| f.camera.as_str()))
    }

    fn camera_file(&self, index: i32, camera: i32) -> QString {
        QString::from(self.file(index, camera).map_or("", |f| f.path.as_str()))
    }
}

impl cxx_qt::Initialize for qobject::ClipCatalog {
    fn initialize(self: Pin<&mut Self>) {
        self.on_data_dir_changed(|catalog| catalog.refresh())
            .release();
    }
}
