//! The daemon's settings that `framelane serve` and the window's embedded daemon share: the
//! same flags, the same defaults, the same user profile file.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use framelane_core::daemon::{self, DaemonConfig};

#[derive(Args, Debug, Clone, Default)]
pub struct DaemonTuning {
    /// Storage profile file overriding the built-ins (default: ~/.config/framelane/profiles.yaml if present).
    #[arg(long, value_name = "FILE")]
    profiles: Option<PathBuf>,
    /// Commit after this many rows [default: 1000] ...
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch_rows: Option<u32>,
    /// ... or after this many milliseconds, whichever comes first [default: 50].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(0..=60_000))]
    flush_ms: Option<u32>,
    /// Most steps waiting for the store writer; publishers wait beyond it [default: 16384].
    #[arg(long, value_name = "STEPS", value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    queue: Option<u32>,
    /// The daemon's memory ceiling: queued steps and frames and open video encoders draw from
    /// it; past it frames are shed or their workers wait, by profile (e.g. 512MiB, 2GiB; at
    /// least 16MiB) [default: 1GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_limit)]
    memory_limit: Option<u64>,
    /// Seconds one frame (or a file's finish) may keep a video encoder worker busy before the
    /// worker counts as stalled: producers stop waiting for it, its runs move to other workers
    /// and Health lists it. Raise it for very large frames on slow machines [default: 10].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..=86_400))]
    encoder_stall_limit: Option<u32>,
}

impl DaemonTuning {
    /// Sets what was given on `config` (the rest keeps the daemon's defaults); the profile
    /// file falls back to the user's.
    pub fn apply(&self, config: &mut DaemonConfig) {
        config.profiles_file = self.profiles.clone().or_else(daemon::default_profiles_file);
        if let Some(rows) = self.batch_rows {
            config.batch.max_rows = rows as usize;
        }
        if let Some(ms) = self.flush_ms {
            config.batch.max_delay = Duration::from_millis(u64::from(ms));
        }
        if let Some(queue) = self.queue {
            config.store_queue = queue as usize;
        }
        if let Some(limit) = self.memory_limit {
            config.memory_limit = limit;
        }
        if let Some(seconds) = self.encoder_stall_limit {
            config.encode.stall_limit = Duration::from_secs(u64::from(seconds));
        }
    }

    /// The first of these flags given, for a command that starts no daemon to refuse.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            (self.profiles.is_some(), "--profiles"),
            (self.batch_rows.is_some(), "--batch-rows"),
            (self.flush_ms.is_some(), "--flush-ms"),
            (self.queue.is_some(), "--queue"),
            (self.memory_limit.is_some(), "--memory-limit"),
            (self.encoder_stall_limit.is_some(), "--encoder-stall-limit"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

/// `--memory-limit`: a size with a binary unit, at least the budget's minimum.
fn parse_memory_limit(text: &str) -> Result<u64, String> {
    let bytes = framelane_core::budget::parse_size(text)?;
    let min = framelane_core::budget::MIN_LIMIT;
    if bytes < min {
        return Err(format!(
            "{text:?} is below the smallest ceiling, {} MiB",
            min >> 20
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        tuning: DaemonTuning,
    }

    fn config(flags: &[&str]) -> Result<DaemonConfig, String> {
        let parsed =
            Command::try_parse_from(std::iter::once("framelane").chain(flags.iter().copied()))
                .map_err(|e| e.to_string())?;
        let mut config = DaemonConfig::new(PathBuf::from("/nonexistent"));
        parsed.tuning.apply(&mut config);
        Ok(config)
    }

    #[test]
    fn no_flag_keeps_the_daemons_defaults() {
        let given = config(&[]).expect("defaults");
        let defaults = DaemonConfig::new(PathBuf::from("/nonexistent"));
        assert_eq!(given.batch.max_rows, defaults.batch.max_rows);
        assert_eq!(given.batch.max_delay, defaults.batch.max_delay);
        assert_eq!(given.store_queue, defaults.store_queue);
        assert_eq!(given.memory_limit, defaults.memory_limit);
        assert_eq!(
            given.encode.stall_limit,
            framelane_core::encode::DEFAULT_STALL_LIMIT
        );
    }

    #[test]
    fn every_flag_reaches_the_daemon() {
        let given = config(&[
            "--profiles",
            "/etc/p.yaml",
            "--batch-rows",
            "250",
            "--flush-ms",
            "5",
            "--queue",
            "99",
            "--memory-limit",
            "64MiB",
            "--encoder-stall-limit",
            "45",
        ])
        .expect("flags");
        assert_eq!(given.profiles_file, Some(PathBuf::from("/etc/p.yaml")));
        assert_eq!(given.batch.max_rows, 250);
        assert_eq!(given.batch.max_delay, Duration::from_millis(5));
        assert_eq!(given.store_queue, 99);
        assert_eq!(given.memory_limit, 64 << 20);
        assert_eq!(given.encode.stall_limit, Duration::from_secs(45));
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        for (flag, bad) in [
            ("--encoder-stall-limit", "0"),
            ("--encoder-stall-limit", "-3"),
            ("--encoder-stall-limit", "86401"),
            ("--memory-limit", "1MiB"),
            ("--memory-limit", "lots"),
            ("--batch-rows", "0"),
            ("--queue", "ten"),
        ] {
            let given = format!("{flag}={bad}");
            let err = config(&[given.as_str()]).expect_err(&given);
            assert!(err.contains(flag), "{given}: {err}");
        }
    }
}
