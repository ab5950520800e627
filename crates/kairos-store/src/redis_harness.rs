//! Throwaway Redis servers for tests: a `redis-server` (or a 3-node Redis
//! Cluster) of the test's own on free loopback ports, in a temporary
//! directory, stopped when dropped. Tests never use a Redis that happens to
//! be running already.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const INSTALL: &str = "redis-server was not found on PATH. The Redis tests start their own \
     server: install it with `sudo apt-get install redis-server` (Debian/Ubuntu) and run the \
     tests again";

/// Panics with how to install Redis when `redis-server` is missing.
pub fn require_redis() {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "{INSTALL}");
}

/// A port nothing listens on now (and, with `bus`, port + 10000 too).
fn free_port(bus: bool) -> u16 {
    for _ in 0..200 {
        let Ok(l) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = l.local_addr() else { continue };
        let port = addr.port();
        if !bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

fn ping(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "ping"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
}

fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// One `redis-server` process.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// Starts a server on a free port with append-only persistence.
    pub fn start() -> Self {
        require_redis();
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
        let dir = tmp.path().to_path_buf();
        let mut s = Self {
            port: free_port(false),
            child: None,
            dir,
            extra: Vec::new(),
            _tmp: Some(tmp),
        };
        s.restart();
        s
    }

    fn start_in(dir: &Path, port: u16, extra: Vec<String>) -> Self {
        let mut s = Self {
            port,
            child: None,
            dir: dir.to_path_buf(),
            extra,
            _tmp: None,
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server as a crash would (SIGKILL); its data stays on disk.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--dir", &self.dir.display().to_string()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{INSTALL} ({e})"));
        self.child = Some(child);
        // Up to 10 s.
        for attempt in 0.. {
            if ping(self.port) {
                break;
            }
            assert!(
                attempt < 500,
                "redis-server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Bytes Redis uses for `key` (`MEMORY USAGE`, all samples).
    pub fn memory_usage(&self, key: &str) -> u64 {
        cli(self.port, &["MEMORY", "USAGE", key, "SAMPLES", "0"])
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Every key stored, by `redis-cli --scan`.
    pub fn keys(&self) -> Vec<String> {
        cli(self.port, &["--scan"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Keys whose name or content (strings, hash fields and values, set
    /// members) contains `needle`: an erasure audit of the whole server.
    pub fn mentions(&self, needle: &str) -> Vec<String> {
        self.keys()
            .into_iter()
            .filter(|key| {
                let content = match cli(self.port, &["TYPE", key]).trim() {
                    "string" => cli(self.port, &["GET", key]),
                    "hash" => cli(self.port, &["HGETALL", key]),
                    "set" => cli(self.port, &["SMEMBERS", key]),
                    "list" => cli(self.port, &["LRANGE", key, "0", "-1"]),
                    "zset" => cli(self.port, &["ZRANGE", key, "0", "-1"]),
                    other => format!("(unread type {other})"),
                };
                key.contains(needle) || content.contains(needle)
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of three masters, made with `redis-cli --cluster create`.
#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _tmp: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> Self {
        require_redis();
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
        let mut nodes = Vec::new();
        for i in 0..3 {
            let dir = tmp.path().join(format!("node{i}"));
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
            let extra = vec![
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                "nodes.conf".into(),
                "--cluster-node-timeout".into(),
                "2000".into(),
            ];
            nodes.push(RedisServer::start_in(&dir, free_port(true), extra));
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("redis-cli --cluster create: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Up to 20 s.
        for attempt in 0.. {
            if nodes
                .iter()
                .all(|n| cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            {
                break;
            }
            assert!(attempt < 400, "the cluster did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { nodes, _tmp: tmp }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}
