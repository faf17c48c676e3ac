//! The daemon's figures: store batches and commits, WAL checkpoints, queues, shed items,
//! encoders and per-run step rates, read from the counters each part keeps.

use std::sync::atomic::Ordering;

use super::IngestCore;
use crate::metrics::{resident_bytes, Family, Kind, MetricSource};

impl MetricSource for IngestCore {
    fn collect(&self, out: &mut Vec<Family>) {
        let stats = &self.writer_stats;
        let count = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed) as f64;
        let counters = [
            ("store_rows", "Rows committed to SQLite.", &stats.rows),
            (
                "store_commits",
                "Batches committed to SQLite.",
                &stats.commits,
            ),
            (
                "store_failed_batches",
                "Batches rolled back (nothing of them acknowledged).",
                &stats.failed_batches,
            ),
            (
                "store_failed_commands",
                "Commands rolled back alone (their stream was told; the rest of the batch committed).",
                &stats.failed_commands,
            ),
            (
                "store_wal_checkpoints",
                "Background WAL checkpoints.",
                &stats.checkpoints,
            ),
        ];
        for (name, help, n) in counters {
            out.push(Family::single(name, help, Kind::Counter, count(n)));
        }
        let histograms = [
            (
                "store_commit_seconds",
                "Time in COMMIT per batch (WAL append and fsync).",
                &stats.commit_seconds,
            ),
            (
                "store_batch_rows",
                "Rows per committed batch.",
                &stats.batch_rows,
            ),
            (
                "store_wal_checkpoint_seconds",
                "Time of each background WAL checkpoint.",
                &stats.checkpoint_seconds,
            ),
        ];
        for (name, help, h) in histograms {
            out.push(Family::histogram(name, help, h.snapshot()));
        }
        let gauges = [
            (
                "store_queue_depth",
                "Commands waiting for the store writer.",
                self.queue_depth(),
            ),
            (
                "store_queue_capacity",
                "Commands the store queue holds before senders wait.",
                self.queue_capacity(),
            ),
        ];
        for (name, help, n) in gauges {
            out.push(Family::single(name, help, Kind::Gauge, n as f64));
        }
        let memory = self.budget.figures();
        for (name, help, kind, n) in [
            (
                "memory_limit_bytes",
                "The daemon's memory ceiling (--memory-limit).",
                Kind::Gauge,
                memory.limit,
            ),
            (
                "memory_used_bytes",
                "Bytes held under the ceiling now: queued steps and frames, open encoders (estimated).",
                Kind::Gauge,
                memory.used,
            ),
            (
                "memory_peak_bytes",
                "The most bytes held under the ceiling since start.",
                Kind::Gauge,
                memory.peak,
            ),
            (
                "memory_waits",
                "Items that waited for room under the ceiling (their stream was slowed).",
                Kind::Counter,
                memory.waits,
            ),
            (
                "memory_refused",
                "Items refused for want of room under the ceiling (shed as frame_memory_limit).",
                Kind::Counter,
                memory.refused,
            ),
        ] {
            out.push(Family::single(name, help, kind, n as f64));
        }
        let connections = self.connection_stats();
        out.push(Family::single(
            "ingest_connections_open",
            "gRPC connections held now.",
            Kind::Gauge,
            count(&connections.open),
        ));
        out.push(Family::single(
            "ingest_connections_refused",
            "Connections closed at once because the daemon held its most (ServerLimits::max_connections).",
            Kind::Counter,
            count(&connections.refused),
        ));
        let mut shed = Family::new(
            "shed",
            "Items shed or refused, by kind (each kind states its reason in docs/metrics.md).",
            Kind::Counter,
        );
        for (kind, n) in self.shed.totals() {
            shed.push(vec![("kind", kind.to_owned())], n as f64);
        }
        out.push(shed);
        let rates = self.run_rates();
        let mut steps = Family::new("run_steps", "Steps committed, per run.", Kind::Counter);
        let mut episodes = Family::new(
            "run_episodes",
            "Episodes committed, per run.",
            Kind::Counter,
        );
        let mut per_second = Family::new(
            "run_steps_per_second",
            "Steps per second committed, per run (smoothed over commits).",
            Kind::Gauge,
        );
        for (run, rate) in rates {
            steps.push(vec![("run", run.clone())], rate.steps as f64);
            episodes.push(vec![("run", run.clone())], rate.episodes as f64);
            per_second.push(vec![("run", run)], rate.steps_per_second);
        }
        out.extend([steps, episodes, per_second]);
        if let Some(video) = &self.video {
            let service = video.service();
            let totals = service.totals();
            let submitted = count(&totals.submitted);
            let encoded = count(&totals.encoded);
            let shed = count(&totals.shed);
            let spooled = count(&totals.spooled);
            let figures = [
                (
                    "encoder_frames_encoded",
                    "Frames encoded into video.",
                    Kind::Counter,
                    encoded,
                ),
                (
                    "encoder_frames_shed",
                    "Frames the encoders dropped because they were behind.",
                    Kind::Counter,
                    shed,
                ),
                (
                    "encoder_frames_behind",
                    "Frames handed to the encoders and not yet encoded, shed or kept raw.",
                    Kind::Gauge,
                    (submitted - encoded - shed - spooled).max(0.0),
                ),
                (
                    "encoder_queue_frames",
                    "Frames waiting in the encoder queues.",
                    Kind::Gauge,
                    service.queued_frames() as f64,
                ),
                (
                    "encoder_jobs_open",
                    "Encode jobs open (one per run and episode being recorded).",
                    Kind::Gauge,
                    service.open_jobs() as f64,
                ),
            ];
            for (name, help, kind, value) in figures {
                out.push(Family::single(name, help, kind, value));
            }
            out.push(Family::histogram(
                "encoder_frame_seconds",
                "Time to convert and encode one frame.",
                totals.frame_seconds.snapshot(),
            ));
        }
        out.push(Family::single(
            "process_resident_memory_bytes",
            "Resident memory of the daemon's process.",
            Kind::Gauge,
            resident_bytes() as f64,
        ));
    }
}
