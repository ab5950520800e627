//! A batch answered 200 survives `kill -9`: the real binary, a real socket.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data: &Path) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_kairos"))
            .arg("serve")
            .env("KAIROS__STORE__PATH", data)
            .env("KAIROS__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("KAIROS__SERVER__WORKERS", "2")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
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
