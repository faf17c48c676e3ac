//! Clips listed in the telemetry daemon's store, so the Replay tab (and `ListClips`) finds
//! them. With `telemetry_data_dir` set, the `rig-register` thread finds the daemon through
//! that directory's lock file (its pid and address) and sends every finished clip of the
//! output folder that it has not listed yet (`RegisterClip`). Listing is idempotent by clip
//! folder, so after a restart of either side every clip is listed exactly once. A daemon that
//! is not running, or refuses, is tried again every 2 s; the rig's status says why clips are
//! not listed (`register_note`).

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use framelane_core::daemon::{read_holder, LOCK_FILE};
use framelane_core::ingest::client;
use framelane_core::ingest::proto::framelane_v1 as v1;

use crate::camera::lock;
use crate::clip::{self, ClipDescription};
use crate::control::State;

/// How often clips not listed yet are tried again.
const RETRY: Duration = Duration::from_secs(2);

/// The record the daemon lists for a clip in `folder` (an absolute path).
pub fn clip_record(folder: &Path, description: &ClipDescription) -> v1::ClipRecord {
    v1::ClipRecord {
        clip_id: description.id.clone(),
        folder: folder.display().to_string(),
        triggered_unix_ms: description.triggered_unix_ms,
        pre_roll_ms: description.pre_roll_ms,
        post_roll_ms: description.post_roll_ms,
        files: description
            .cameras
            .iter()
            .map(|c| v1::ClipFile {
                camera: c.name.clone(),
                path: folder.join(&c.file).display().to_string(),
                frames: c.frames,
                encoder: c.encoder.clone(),
                start_offset_ms: c.start_offset_ms,
                end_offset_ms: c.end_offset_ms,
            })
            .collect(),
        telemetry_items: description.telemetry_items,
        codec: description.codec.clone(),
    }
}

pub(crate) fn register_loop(data_dir: &Path, out: &Path, state: &Mutex<State>, stop: &AtomicBool) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            lock(state).register_note = format!("clips are not listed in the store: {err}");
            return;
        }
    };
    // Folder names of the clips listed so far: only other folders' descriptions are read.
    let mut listed: HashSet<String> = HashSet::new();
    // Clips written when the folder was last read, and whether every clip then was listed.
    let mut seen_written = u64::MAX;
    let mut all_listed = false;
    let mut last_try: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let written = lock(state).written;
        let due = last_try.is_none_or(|t| t.elapsed() >= RETRY);
        if (written == seen_written && all_listed) || !due {
            continue;
        }
        seen_written = written;
        last_try = Some(Instant::now());
        let address = read_holder(&data_dir.join(LOCK_FILE)).address;
        let note = match address {
            None => Some(format!(
                "clips are not listed in the store yet: no daemon runs on {}",
                data_dir.display()
            )),
            Some(address) => {
                let mut failure = None;
                for (folder, description) in clip::list_where(out, |name| !listed.contains(name)) {
                    let folder = std::fs::canonicalize(&folder).unwrap_or(folder);
                    let record = clip_record(&folder, &description);
                    match runtime.block_on(client::register_clip(address, record)) {
                        Ok(_) => {
                            listed.insert(description.id.clone());
                            lock(state).registered += 1;
                        }
                        Err(err) => {
                            failure = Some(format!(
                                "clip {} is not listed in the store of the daemon at {address}: {err}",
                                description.id
                            ));
                            break;
                        }
                    }
                }
                failure
            }
        };
        all_listed = note.is_none();
        lock(state).register_note = note.unwrap_or_default();
    }
}
