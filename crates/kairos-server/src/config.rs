//! Configuration: compiled-in defaults, then a file, then the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kairos_decide::{DecideParams, ValidDecideParams};
use kairos_learn::{LearnParams, ValidLearnParams};
use serde::{Deserialize, Serialize};

/// `config/default.toml`, compiled in.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/default.toml");
/// Prefix of environment overrides: `KAIROS__SECTION__KEY`.
pub const ENV_PREFIX: &str = "KAIROS__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration in {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid configuration key {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Decide,
    Read,
    Admin,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The key itself (at least 16 characters) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// ... or its SHA-256 as 64 hex digits, so the configuration need not hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_sha256: Option<String>,
    pub scopes: Vec<Scope>,
    /// Requests per second this key may make (token bucket); default server.rate_limit_per_second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<f64>,
}

/// A configured key as the server compares it: by the SHA-256 of what is presented.
#[derive(Debug, Clone)]
pub struct ValidKey {
    pub sha256: [u8; 32],
    pub scopes: Vec<Scope>,
    /// Requests per second (0: unlimited), and the bucket's size.
    pub rate: f64,
    pub burst: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub bind: String,
    pub max_body_bytes: usize,
    pub max_events_per_request: usize,
    pub workers: usize,
    /// Requests per second per API key (per client address without keys); 0: unlimited.
    pub rate_limit_per_second: f64,
    /// Requests a client may make at once before the rate applies (0: one second's worth).
    pub rate_limit_burst: u32,
    /// Longest time to answer a request (training excepted), and to receive its head.
    pub request_timeout_secs: u64,
    /// Deepest JSON nesting accepted in a request body.
    pub max_json_depth: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Embedded,
    Redis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub backend: Backend,
    pub path: PathBuf,
    /// Customers whose records and derived activity are kept in memory.
    pub cache_customers: usize,
    /// The embedded store's page cache, in MiB.
    pub page_cache_mib: usize,
    /// One Redis server (`backend = "redis"`), e.g. `redis://127.0.0.1:6379/0`.
    pub redis_url: String,
    /// Comma-separated URLs of Redis Cluster nodes (`backend = "redis"`).
    pub redis_cluster_nodes: String,
}

impl StoreConfig {
    /// Where the Redis backend connects: a cluster when nodes are named.
    pub fn redis_target(&self) -> Option<kairos_store::RedisTarget> {
        let nodes: Vec<String> = self
            .redis_cluster_nodes
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        match (self.backend.clone(), nodes.is_empty()) {
            (Backend::Embedded, _) => None,
            (Backend::Redis, false) => Some(kairos_store::RedisTarget::Cluster(nodes)),
            (Backend::Redis, true) => Some(kairos_store::RedisTarget::Single(
                self.redis_url.trim().to_owned(),
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub keys: Vec<ApiKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentsConfig {
    /// Experiment definitions loaded at start: one `<key>.toml` per experiment.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutsConfig {
    /// Page definitions: one `<page>.toml` per page.
    pub dir: PathBuf,
    /// Origins allowed to fetch layouts from a browser ("*": any).
    pub cors_origins: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    pub dir: PathBuf,
    pub builtin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// The configuration as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub learn: LearnParams,
    pub models: ModelsConfig,
    pub decide: DecideParams,
    pub experiments: ExperimentsConfig,
    pub layouts: LayoutsConfig,
    pub log: LogConfig,
}

/// The configuration after every check: what the server runs on.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub raw: Config,
    pub bind: SocketAddr,
    pub learn: ValidLearnParams,
    pub decide: ValidDecideParams,
    pub keys: Vec<ValidKey>,
}

impl ValidConfig {
    pub fn server(&self) -> &ServerConfig {
        &self.raw.server
    }
}

impl Config {
    /// Defaults, then `file` (if any), then `env` pairs with the `KAIROS__` prefix.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ValidConfig, ConfigError> {
        let mut table = parse_table(DEFAULT_CONFIG, "the compiled-in defaults")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            merge(&mut table, parse_table(&text, &path.display().to_string())?);
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(String::is_empty) {
                return Err(invalid(&name, "empty section or key in the variable name"));
            }
            set_path(&mut table, &path, parse_env_value(&value))
                .map_err(|m| invalid(&path.join("."), m))?;
        }
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                invalid(
                    if key == "." { "(top level)" } else { &key },
                    e.inner().to_string(),
                )
            })?;
        config.check()
    }

    /// The defaults alone.
    pub fn defaults() -> Result<ValidConfig, ConfigError> {
        Self::load(None, std::iter::empty())
    }

    pub fn check(self) -> Result<ValidConfig, ConfigError> {
        let bind: SocketAddr = self.server.bind.parse().map_err(|_| {
            invalid(
                "server.bind",
                format!(
                    "{:?} is not an address and port such as 127.0.0.1:8080",
                    self.server.bind
                ),
            )
        })?;
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        if self.server.max_events_per_request == 0 {
            return Err(invalid(
                "server.max_events_per_request",
                "must be at least 1",
            ));
        }
        if !(1..=1 << 20).contains(&self.store.page_cache_mib) {
            return Err(invalid(
                "store.page_cache_mib",
                "must be between 1 and 1048576 (MiB)",
            ));
        }
        if self.store.path.as_os_str().is_empty() {
            return Err(invalid("store.path", "must not be empty"));
        }
        if self.store.backend == Backend::Redis {
            let url = self.store.redis_url.trim();
            let nodes = self.store.redis_cluster_nodes.trim();
            match (url.is_empty(), nodes.is_empty()) {
                (true, true) => {
                    return Err(invalid(
                        "store.redis_url",
                        "backend \"redis\" needs store.redis_url (one server) or \
                         store.redis_cluster_nodes (a cluster)",
                    ))
                }
                (false, false) => {
                    return Err(invalid(
                        "store.redis_cluster_nodes",
                        "set either store.redis_url or store.redis_cluster_nodes, not both",
                    ))
                }
                _ => {}
            }
            for (key, u) in std::iter::once(("store.redis_url", url))
                .chain(
                    nodes
                        .split(',')
                        .map(|n| ("store.redis_cluster_nodes", n.trim())),
                )
                .filter(|(_, u)| !u.is_empty())
            {
                if !(u.starts_with("redis://")
                    || u.starts_with("rediss://")
                    || u.starts_with("unix://"))
                {
                    return Err(invalid(
                        key,
                        format!("{u:?} is not a redis:// (or rediss://, unix://) URL"),
                    ));
                }
            }
        }
        let server = &self.server;
        if !(server.rate_limit_per_second.is_finite() && server.rate_limit_per_second >= 0.0) {
            return Err(invalid(
                "server.rate_limit_per_second",
                "must be a number of requests per second, 0 for no limit",
            ));
        }
        if server.request_timeout_secs == 0 {
            return Err(invalid("server.request_timeout_secs", "must be at least 1"));
        }
        if server.max_json_depth < 4 {
            return Err(invalid("server.max_json_depth", "must be at least 4"));
        }
        let mut keys = Vec::with_capacity(self.auth.keys.len());
        for (i, k) in self.auth.keys.iter().enumerate() {
            use sha2::Digest;
            let sha256: [u8; 32] = match (&k.key, &k.key_sha256) {
                (Some(key), None) => {
                    if key.len() < 16 {
                        return Err(invalid(
                            &format!("auth.keys[{i}].key"),
                            "must be at least 16 characters",
                        ));
                    }
                    sha2::Sha256::digest(key.as_bytes()).into()
                }
                (None, Some(hex)) => parse_sha256(hex).ok_or_else(|| {
                    invalid(
                        &format!("auth.keys[{i}].key_sha256"),
                        "must be 64 hex digits (e.g. from `printf %s \"$KEY\" | sha256sum`)",
                    )
                })?,
                _ => {
                    return Err(invalid(
                        &format!("auth.keys[{i}].key"),
                        "give exactly one of key or key_sha256",
                    ))
                }
            };
            if k.scopes.is_empty() {
                return Err(invalid(
                    &format!("auth.keys[{i}].scopes"),
                    "must name at least one scope",
                ));
            }
            let rate = k
                .rate_limit_per_second
                .unwrap_or(server.rate_limit_per_second);
            if !(rate.is_finite() && rate >= 0.0) {
                return Err(invalid(
                    &format!("auth.keys[{i}].rate_limit_per_second"),
                    "must be a number of requests per second, 0 for no limit",
                ));
            }
            keys.push(ValidKey {
                sha256,
                scopes: k.scopes.clone(),
                rate,
                burst: burst(rate, server.rate_limit_burst),
            });
        }
        if self.auth.keys.is_empty() && !bind.ip().is_loopback() {
            return Err(invalid(
                "server.bind",
                format!(
                    "{bind} is not a loopback address and no auth.keys are configured: \
                     configure keys before serving other machines"
                ),
            ));
        }
        let learn = self.learn.clone().check().map_err(|e| match e {
            kairos_learn::LearnError::InvalidParam { name, reason } => {
                invalid(&format!("learn.{name}"), reason)
            }
            other => invalid("learn", other.to_string()),
        })?;
        let decide = self.decide.clone().check().map_err(|e| match e {
            kairos_decide::DecideError::InvalidParam { name, reason } => {
                invalid(&format!("decide.{name}"), reason)
            }
            other => invalid("decide", other.to_string()),
        })?;
        Ok(ValidConfig {
            raw: self,
            bind,
            learn,
            decide,
            keys,
        })
    }
}

/// The `.toml` files of `dir` in name order, as (file stem, path, text); none
/// when the directory does not exist. Errors name the file.
pub fn toml_files(dir: &Path) -> Result<Vec<(String, PathBuf, String)>, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((stem, path, text))
        })
        .collect()
}

/// A bucket's size: as configured, and at least one second's worth (and 1).
pub fn burst(rate: f64, configured: u32) -> f64 {
    f64::from(configured).max(rate.ceil()).max(1.0)
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

/// Reads an environment value as a TOML value when it is one, else as a string.
fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [key] => {
            table.insert(key.clone(), value);
            Ok(())
        }
        [section, rest @ ..] => match table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => set_path(t, rest, value),
            _ => Err(format!("{section} is not a section")),
        },
    }
}

/// Deep-merges `over` into `base`: tables merge, everything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_documented() {
        let c = Config::defaults().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.raw.store.backend, Backend::Embedded);
        assert_eq!(c.raw.store.path, PathBuf::from("./data"));
        assert!(c.raw.auth.keys.is_empty());
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("k.toml");
        std::fs::write(
            &file,
            "[store]\npath = \"/from/file\"\n[learn]\nhalf_life_days = 30.0\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let c = Config::load(
            Some(&file),
            env(&[
                ("KAIROS__STORE__PATH", "/from/env"),
                ("KAIROS__SERVER__BIND", "127.0.0.1:9999"),
                (
                    "KAIROS__DECIDE__QUIET_HOURS",
                    "{ start = \"22:00\", end = \"07:00\" }",
                ),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.raw.store.path, PathBuf::from("/from/env"));
        assert_eq!(c.bind.to_string(), "127.0.0.1:9999");
        assert_eq!(c.learn.half_life_days, 30.0);
        assert_eq!(
            c.decide.quiet_hours.map(|q| q.start.to_string()).as_deref(),
            Some("22:00")
        );
    }

    #[test]
    fn invalid_configuration_names_the_key() {
        let cases = [
            (vec![("KAIROS__SERVER__BIND", "nowhere")], "server.bind"),
            (
                vec![("KAIROS__SERVER__BIND", "0.0.0.0:8080")],
                "server.bind",
            ),
            (
                vec![("KAIROS__LEARN__HALF_LIFE_DAYS", "-3")],
                "learn.half_life_days",
            ),
            (
                vec![("KAIROS__DECIDE__DEFAULT_TIMEZONE", "Mars/Base")],
                "decide.default_timezone",
            ),
            (vec![("KAIROS__STORE__BACKEND", "floppy")], "backend"),
            (
                vec![("KAIROS__STORE__PAGE_CACHE_MIB", "0")],
                "store.page_cache_mib",
            ),
            (vec![("KAIROS__STORE__NOPE", "1")], "nope"),
            (vec![("KAIROS__STORE__BACKEND", "redis")], "store.redis_url"),
            (
                vec![
                    ("KAIROS__STORE__BACKEND", "redis"),
                    ("KAIROS__STORE__REDIS_URL", "127.0.0.1:6379"),
                ],
                "store.redis_url",
            ),
            (
                vec![
                    ("KAIROS__STORE__BACKEND", "redis"),
                    ("KAIROS__STORE__REDIS_URL", "redis://a"),
                    ("KAIROS__STORE__REDIS_CLUSTER_NODES", "redis://b"),
                ],
                "store.redis_cluster_nodes",
            ),
            (
                vec![(
                    "KAIROS__AUTH__KEYS",
                    "[{ key = \"short\", scopes = [\"read\"] }]",
                )],
                "auth.keys[0].key",
            ),
        ];
        for (vars, key) in cases {
            let err = Config::load(None, env(&vars))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(key), "{vars:?}: {err:?} should name {key}");
        }
    }

    #[test]
    fn keys_allow_a_public_bind() {
        let c = Config::load(
            None,
            env(&[
                ("KAIROS__SERVER__BIND", "0.0.0.0:8080"),
                (
                    "KAIROS__AUTH__KEYS",
                    "[{ key = \"0123456789abcdef\", scopes = [\"admin\"] }]",
                ),
            ]),
        );
        assert!(c.is_ok(), "{:?}", c.err());
    }

    #[test]
    fn redis_backend_by_url_or_cluster_nodes() {
        let single = Config::load(
            None,
            env(&[
                ("KAIROS__STORE__BACKEND", "redis"),
                ("KAIROS__STORE__REDIS_URL", "redis://127.0.0.1:6379/0"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            single.raw.store.redis_target(),
            Some(kairos_store::RedisTarget::Single(
                "redis://127.0.0.1:6379/0".into()
            ))
        );
        let cluster = Config::load(
            None,
            env(&[
                ("KAIROS__STORE__BACKEND", "redis"),
                (
                    "KAIROS__STORE__REDIS_CLUSTER_NODES",
                    "redis://127.0.0.1:7000, redis://127.0.0.1:7001",
                ),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cluster.raw.store.redis_target(),
            Some(kairos_store::RedisTarget::Cluster(vec![
                "redis://127.0.0.1:7000".into(),
                "redis://127.0.0.1:7001".into()
            ]))
        );
    }

    /// Every file under config/ parses into a valid configuration.
    #[test]
    fn every_config_file_is_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{e}")) {
            let path = entry.map(|e| e.path()).unwrap_or_default();
            if path.extension().is_some_and(|x| x == "toml") {
                Config::load(Some(&path), std::iter::empty())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 1);
    }
}
