//! The daemon's Prometheus endpoint, scraped by a real Prometheus server (Debian's `prometheus`
//! package) on loopback: the values read back from its query API are the ones the daemon
//! committed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    output_within, runtime, step, telemetry_client, wait_until, ScratchDir, ServeProcess,
};

/// A plain HTTP/1.0 GET; returns (status, headers, body).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, head.to_owned(), body.to_owned()))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server scraping `target` every second; killed when dropped.
struct Prometheus {
    child: Child,
    web: SocketAddr,
}

impl Prometheus {
    fn start(dir: &ScratchDir, target: SocketAddr) -> Self {
        let web = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            probe.local_addr().expect("addr")
        };
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: framelane\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write the Prometheus config");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (installed by scripts/setup-debian.sh)");
        Self { child, web }
    }

    /// The value of an instant query that returns one sample, if it does yet.
    fn query(&self, expr: &str) -> Option<f64> {
        let (status, _, body) = http_get(
            self.web,
            &format!("/api/v1/query?query={}", percent_encode(expr)),
        )
        .ok()?;
        if status != 200 {
            return None;
        }
        let reply: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = reply["data"]["result"].as_array()?;
        let [sample] = result.as_slice() else {
            return None;
        };
        sample["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `expr` reads `wanted` (Prometheus scrapes every second; the deadline is long).
    fn wait_for(&self, expr: &str, wanted: impl Fn(f64) -> bool) -> Option<f64> {
        let mut last = None;
        let found = wait_until(|| {
            last = self.query(expr);
            last.filter(|v| wanted(*v))
        });
        if found.is_none() {
            eprintln!("{expr}: last read {last:?}");
        }
        found
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_daemon_and_reads_back_what_it_committed() {
    const STEPS: u64 = 2500;
    let dir = ScratchDir::new("metrics-scrape");
    let serve = ServeProcess::start(&dir.path().join("data"), &["--metrics", "127.0.0.1:0"]);
    let metrics = serve
        .metrics
        .expect("the listening line names the metrics address");
    let rt = runtime();
    rt.block_on(async {
        let mut client = telemetry_client(serve.addr).await;
        let steps = tokio_stream::iter((0..STEPS).map(|i| step("scraped-run", i)));
        let reply = client
            .publish_steps(steps)
            .await
            .expect("publish")
            .into_inner();
        assert_eq!((reply.accepted, reply.dropped), (STEPS, 0), "{reply:?}");
    });

    // The endpoint itself: OpenMetrics text for Prometheus, a 404 that names the right path.
    let (status, head, body) = http_get(metrics, "/metrics").expect("scrape");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("application/openmetrics-text"),
        "{head}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    assert!(
        body.contains("# TYPE framelane_store_commit_seconds histogram"),
        "{body}"
    );
    let (status, _, body) = http_get(metrics, "/other").expect("get");
    assert_eq!(status, 404);
    assert!(body.contains("/metrics"), "{body}");

    let prometheus_dir = ScratchDir::new("metrics-prometheus");
    let prometheus = Prometheus::start(&prometheus_dir, metrics);
    let up = prometheus.wait_for("up{job=\"framelane\"}", |v| v == 1.0);
    assert_eq!(
        up,
        Some(1.0),
        "Prometheus never scraped the daemon successfully"
    );
    let steps = prometheus.wait_for("framelane_run_steps_total{run=\"scraped-run\"}", |v| {
        v == STEPS as f64
    });
    assert_eq!(steps, Some(STEPS as f64));
    let rows = prometheus.wait_for("framelane_store_rows_total", |v| v >= STEPS as f64);
    assert!(rows.is_some_and(|r| r >= STEPS as f64), "{rows:?}");
    let commits = prometheus.wait_for("framelane_store_commit_seconds_count", |v| v >= 1.0);
    assert!(commits.is_some(), "no commit durations in the histogram");
    let memory = prometheus.wait_for("framelane_process_resident_memory_bytes", |v| v > 1e6);
    assert!(memory.is_some(), "no resident memory figure");
    // A histogram quantile as a dashboard would ask for it.
    let p99 = prometheus.wait_for(
        "histogram_quantile(0.99, framelane_store_commit_seconds_bucket)",
        |v| v.is_finite() && v > 0.0,
    );
    assert!(p99.is_some(), "no commit-time quantile");
    drop(prometheus);
    serve.terminate();
}

#[test]
fn the_health_reply_carries_the_same_figures_as_the_endpoint() {
    let dir = ScratchDir::new("metrics-health");
    let serve = ServeProcess::start(&dir.path().join("data"), &["--metrics", "127.0.0.1:0"]);
    let metrics = serve.metrics.expect("metrics address");
    let rt = runtime();
    let health = rt.block_on(async {
        let mut client = telemetry_client(serve.addr).await;
        let steps = tokio_stream::iter((0..300).map(|i| step("health-run", i)));
        client.publish_steps(steps).await.expect("publish");
        client
            .health(framelane_core::ingest::proto::framelane_v1::HealthRequest {})
            .await
            .expect("health")
            .into_inner()
    });
    assert_eq!(
        health
            .metrics
            .get("framelane_run_steps_total{run=\"health-run\"}"),
        Some(&300.0),
        "{:?}",
        health.metrics
    );
    let (_, _, body) = http_get(metrics, "/metrics").expect("scrape");
    assert!(
        body.contains("framelane_run_steps_total{run=\"health-run\"} 300.0"),
        "{body}"
    );
    serve.terminate();
}

#[test]
fn a_metrics_address_already_taken_is_refused_with_the_flag_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("addr").to_string();
    let dir = ScratchDir::new("metrics-taken");
    let output = output_within(
        Command::new(env!("CARGO_BIN_EXE_framelane"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics",
                &address,
                "--data-dir",
            ])
            .arg(dir.path()),
        30,
    )
    .expect("serve refuses at once");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot serve metrics on {address} (--metrics)")),
        "{stderr}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_the_event_fields() {
    let dir = ScratchDir::new("metrics-json-log");
    let (serve, log) = ServeProcess::start_logged(dir.path(), &["--log-format", "json"]);
    let line = log
        .wait_for(&["daemon serving"])
        .expect("the daemon logs that it serves");
    let event: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
    assert_eq!(event["level"], "INFO", "{line}");
    assert_eq!(event["fields"]["message"], "daemon serving", "{line}");
    assert_eq!(
        event["fields"]["address"],
        serve.addr.to_string(),
        "the fields are structured: {line}"
    );
    serve.terminate();
}
