//! The real binary on a real socket: what was acknowledged survives
//! `kill -9` in the middle of continuous ingest; SIGTERM drains in-flight
//! requests and closes the store; a full disk makes ingest answer 503.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Server {
    fn start(data: &Path) -> Self {
        Self::start_with(data, Command::new(env!("CARGO_BIN_EXE_kairos")))
    }

    /// With its log (at info) in `log`.
    fn start_logging(data: &Path, log: &Path) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kairos"));
        let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("{e}"));
        cmd.env("RUST_LOG", "info").stderr(file);
        Self::start_with(data, cmd)
    }

    pub(crate) fn start_with(data: &Path, mut cmd: Command) -> Self {
        let port = free_port();
        if cmd.get_envs().all(|(k, _)| k != "RUST_LOG") {
            cmd.env("RUST_LOG", "warn");
        }
        let child = cmd
            .arg("serve")
            .env("KAIROS__STORE__PATH", data)
            .env("KAIROS__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("KAIROS__SERVER__WORKERS", "2")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start kairos: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{base}/readyz")).call().is_err() {
            assert!(Instant::now() < deadline, "kairos did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, base }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn kill9(mut self) {
        // Child::kill sends SIGKILL on Unix: no shutdown code runs.
        self.child.kill().unwrap_or_else(|e| panic!("{e}"));
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_acknowledged_batch_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path());
    let now = chrono::Utc::now();
    let events: Vec<Value> = (0..500)
        .map(|i| {
            json!({
                "event_id": format!("k9-{i}"),
                "customer_id": format!("k9-customer-{}", i % 50),
                "type": "app_open",
                "timestamp": (now - chrono::Duration::minutes(i)).to_rfc3339(),
            })
        })
        .collect();
    let mut resp = ureq::post(&format!("{}/v1/events", server.base))
        .send_json(json!({"events": events}))
        .unwrap_or_else(|e| panic!("{e}"));
    let body: Value = resp
        .body_mut()
        .read_json()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body, json!({"accepted": 500, "duplicates": 0}));
    server.kill9();

    let server = Server::start(dir.path());
    let mut total = 0;
    for c in 0..50 {
        let mut r = ureq::get(&format!(
            "{}/v1/customers/k9-customer-{c}/export",
            server.base
        ))
        .call()
        .unwrap_or_else(|e| panic!("customer {c} lost: {e}"));
        let x: Value = r.body_mut().read_json().unwrap_or_else(|e| panic!("{e}"));
        total += x["events"].as_array().map(Vec::len).unwrap_or(0);
    }
    assert_eq!(
        total, 500,
        "every acknowledged event is there after kill -9"
    );
    // And they are still deduplicated.
    let mut again = ureq::post(&format!("{}/v1/events", server.base))
        .send_json(json!({"events": events}))
        .unwrap_or_else(|e| panic!("{e}"));
    let body: Value = again
        .body_mut()
        .read_json()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body, json!({"accepted": 0, "duplicates": 500}));
}

/// `batch` events for customers "cont-0".."cont-29", ids unique per (thread, batch).
fn batch_of(thread: usize, n: usize, size: usize) -> Vec<Value> {
    let now = chrono::Utc::now();
    (0..size)
        .map(|i| {
            json!({
                "event_id": format!("t{thread}-b{n}-{i}"),
                "customer_id": format!("cont-{}", (thread * 7 + n + i) % 30),
                "type": "app_open",
                "timestamp": (now - chrono::Duration::minutes((n * size + i) as i64)).to_rfc3339(),
            })
        })
        .collect()
}

#[test]
fn acknowledged_events_survive_kill_9_during_continuous_ingest() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Vec<Value>>>> = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let (stop, acked, base) = (Arc::clone(&stop), Arc::clone(&acked), server.base.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let batch = batch_of(t, n, 25);
                    n += 1;
                    match ureq::post(&format!("{base}/v1/events"))
                        .send_json(json!({"events": batch}))
                    {
                        Ok(mut r) => {
                            let body: Value = r.body_mut().read_json().unwrap_or_default();
                            assert_eq!(body["accepted"], 25, "{body}");
                            if let Ok(mut a) = acked.lock() {
                                a.push(batch);
                            }
                        }
                        // The server is gone: whatever was in flight was not acknowledged.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap_or_else(|_| panic!("a writer panicked"));
    }
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    assert!(
        acked.len() >= 3,
        "too little was acknowledged to test: {}",
        acked.len()
    );

    let server = Server::start(dir.path());
    let mut stored = Vec::new();
    for c in 0..30 {
        let Ok(mut r) = ureq::get(&format!("{}/v1/customers/cont-{c}/export", server.base)).call()
        else {
            continue;
        };
        let x: Value = r.body_mut().read_json().unwrap_or_default();
        for e in x["events"].as_array().cloned().unwrap_or_default() {
            stored.push(e["event_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    let unique: std::collections::HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "no event is stored twice");
    let missing: Vec<String> = acked
        .iter()
        .flatten()
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .filter(|id| !unique.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Sending every acknowledged batch again changes nothing.
    for batch in acked.iter().take(20) {
        let mut r = ureq::post(&format!("{}/v1/events", server.base))
            .send_json(json!({"events": batch}))
            .unwrap_or_else(|e| panic!("{e}"));
        let body: Value = r.body_mut().read_json().unwrap_or_default();
        assert_eq!(body, json!({"accepted": 0, "duplicates": 25}));
    }
}

#[test]
fn sigterm_drains_in_flight_requests_and_closes_the_store() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("server.log");
    let server = Server::start_logging(&dir.path().join("data"), &log);
    let mut r = ureq::post(&format!("{}/v1/events", server.base))
        .send_json(json!({"events": batch_of(0, 0, 25)}))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        r.body_mut().read_json::<Value>().unwrap_or_default()["accepted"],
        25
    );
    // A campaign of 20,000 customers in flight when SIGTERM arrives.
    let customers: Vec<String> = (0..20_000).map(|i| format!("term-{i}")).collect();
    let base = server.base.clone();
    let campaign = std::thread::spawn(move || {
        let mut r = ureq::post(&format!("{base}/v1/decisions/batch"))
            .send_json(json!({"customers": customers, "channels": ["email"]}))
            .unwrap_or_else(|e| panic!("{e}"));
        let body = r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .unwrap_or_else(|e| panic!("the campaign was cut off: {e}"));
        body.lines()
            .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["action"] == "send"))
            .count()
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &server.pid()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(term.success());
    let sent = campaign
        .join()
        .unwrap_or_else(|_| panic!("campaign thread"));
    assert_eq!(
        sent, 20_000,
        "every decision of the in-flight campaign was answered"
    );
    let mut server = server;
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(
        ureq::get(&format!("{}/healthz", server.base))
            .call()
            .is_err(),
        "no longer listening"
    );
    drop(server);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("store closed"), "{logged}");
    // The store opens again with everything in it.
    let server = Server::start(&dir.path().join("data"));
    let total: usize = (0..30)
        .filter_map(|c| {
            ureq::get(&format!("{}/v1/customers/cont-{c}/export", server.base))
                .call()
                .ok()
        })
        .map(|mut r| {
            r.body_mut().read_json::<Value>().unwrap_or_default()["events"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum();
    assert_eq!(total, 25);
}

#[test]
fn a_full_disk_makes_ingest_answer_503_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The server may write files of at most 4 MiB: beyond that the kernel
    // answers EFBIG, as a full disk answers ENOSPC (SIGXFSZ ignored).
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -S -f 8192; exec \"{}\" \"$@\"",
            env!("CARGO_BIN_EXE_kairos")
        ))
        .arg("kairos");
    let server = Server::start_with(dir.path(), cmd);
    let mut statuses = std::collections::BTreeMap::new();
    let mut acked = 0usize;
    for n in 0..400 {
        let batch = batch_of(1, n, 200);
        match ureq::post(&format!("{}/v1/events", server.base))
            .config()
            .http_status_as_error(false)
            .build()
            .send_json(json!({"events": batch}))
        {
            Ok(mut r) => {
                let status = r.status().as_u16();
                *statuses.entry(status).or_insert(0) += 1;
                if status == 200 {
                    acked += 1;
                } else {
                    assert_eq!(status, 503, "{:?}", r.body_mut().read_to_string());
                    assert!(r.headers().contains_key("retry-after"));
                    if statuses.get(&503).copied().unwrap_or(0) >= 5 {
                        break;
                    }
                }
            }
            Err(e) => panic!("the server went away: {e}"),
        }
    }
    assert!(acked > 0 && statuses.contains_key(&503), "{statuses:?}");
    // Still up, still reading.
    let health = ureq::get(&format!("{}/healthz", server.base)).call();
    assert!(health.is_ok());
    let read = ureq::get(&format!("{}/v1/customers/cont-7/export", server.base)).call();
    assert!(read.is_ok(), "{read:?}");
    // Room again (the limit lifted on the running process): ingest recovers
    // without a restart, and nothing acknowledged was lost.
    let lifted = Command::new("prlimit")
        .args(["--pid", &server.pid(), "--fsize=unlimited:unlimited"])
        .status()
        .unwrap_or_else(|e| panic!("prlimit (util-linux): {e}"));
    assert!(lifted.success());
    let mut recovered = false;
    for attempt in 0..50 {
        let batch = batch_of(3, attempt, 10);
        let status = ureq::post(&format!("{}/v1/events", server.base))
            .config()
            .http_status_as_error(false)
            .build()
            .send_json(json!({"events": batch}))
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status == 200 {
            recovered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(recovered, "ingest did not recover once there was room");
    let mut stored = 0;
    for c in 0..30 {
        if let Ok(mut r) =
            ureq::get(&format!("{}/v1/customers/cont-{c}/export", server.base)).call()
        {
            let x: Value = r.body_mut().read_json().unwrap_or_default();
            stored += x["events"].as_array().map_or(0, |e| {
                e.iter()
                    .filter(|e| {
                        e["event_id"]
                            .as_str()
                            .is_some_and(|id| id.starts_with("t1-"))
                    })
                    .count()
            });
        }
    }
    assert!(
        stored >= acked * 200,
        "{stored} stored, {acked} batches of 200 acknowledged"
    );
}

#[test]
fn json_logs_carry_request_ids_and_never_keys() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("server.log");
    let key = "log-secret-key-0123456789";
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kairos"));
    cmd.env("RUST_LOG", "info")
        .env("KAIROS__LOG__FORMAT", "json")
        .env(
            "KAIROS__AUTH__KEYS",
            format!(r#"[{{ key = "{key}", scopes = ["admin"] }}]"#),
        )
        .stderr(std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}")));
    let server = Server::start_with(&dir.path().join("data"), cmd);
    let resp = ureq::post(&format!("{}/v1/events", server.base))
        .header("authorization", &format!("Bearer {key}"))
        .header("x-request-id", "trace-abc-123")
        .send_json(json!({"events": batch_of(2, 0, 3)}))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        resp.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("trace-abc-123")
    );
    // A wrong key is refused, and is not logged either.
    let refused = ureq::get(&format!("{}/v1/customers/x", server.base))
        .header("authorization", "Bearer wrong-secret-0123456789")
        .call();
    assert!(refused.is_err());
    let generated = ureq::get(&format!("{}/readyz", server.base))
        .call()
        .unwrap_or_else(|e| panic!("{e}"));
    let own_id = generated
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(!own_id.is_empty(), "every answer carries a request id");
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    assert!(
        lines.iter().any(
            |l| l.to_string().contains("trace-abc-123") && l.to_string().contains("/v1/events")
        ),
        "the request's log line names its id and route:\n{text}"
    );
    assert!(text.contains(&own_id), "generated ids are logged too");
    assert!(
        !text.contains(key) && !text.contains("wrong-secret"),
        "keys are never logged:\n{text}"
    );
}
