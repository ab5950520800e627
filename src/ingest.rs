//! `kairos ingest`: events from files into a server or a data directory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kairos_core::{Event, RawEvent};
use kairos_server::{AppState, ValidConfig};
use serde_json::{Map, Value};

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// NDJSON (.ndjson, .jsonl) or CSV (.csv, header row of event field names) files; .gz is read compressed.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Base URL of a running server.
    #[arg(long, default_value = "http://127.0.0.1:8080", conflicts_with = "data")]
    server: String,
    /// Write straight into this data directory instead (no server may be running on it).
    #[arg(long)]
    data: Option<PathBuf>,
    /// API key with the ingest scope (also KAIROS_API_KEY).
    #[arg(long, env = "KAIROS_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Events per request or transaction.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    batch: u64,
}

enum Format {
    Ndjson,
    Csv,
    /// Foursquare trails (`trail_id;user_id;venue_id;timestamp;...`): one
    /// `session_start` per trail, at its first check-in.
    Trails,
}

const TRAILS_HEADER: &str = "trail_id;user_id;venue_id;timestamp";

fn format_of(path: &Path) -> anyhow::Result<Format> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".ndjson") || name.ends_with(".jsonl") || name.ends_with(".json") {
        Ok(Format::Ndjson)
    } else if name.ends_with(".csv") {
        let mut first = String::new();
        BufReader::new(open(path)?).read_line(&mut first)?;
        if first.starts_with(TRAILS_HEADER) {
            Ok(Format::Trails)
        } else {
            Ok(Format::Csv)
        }
    } else {
        bail!(
            "{}: unknown format; name the file .ndjson, .jsonl or .csv (optionally .gz)",
            path.display()
        )
    }
}

fn open(path: &Path) -> anyhow::Result<Box<dyn Read>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Ok(Box::new(file))
    }
}

/// One event as JSON, with where it came from.
pub type Item = (String, Value);

pub fn read_items(path: &Path) -> anyhow::Result<Box<dyn Iterator<Item = anyhow::Result<Item>>>> {
    let shown = path.display().to_string();
    match format_of(path)? {
        Format::Ndjson => {
            let lines = BufReader::new(open(path)?).lines().enumerate();
            Ok(Box::new(lines.filter_map(move |(i, line)| {
                let at = format!("{shown}:{}", i + 1);
                match line {
                    Err(e) => Some(Err(anyhow::anyhow!("{at}: {e}"))),
                    Ok(l) if l.trim().is_empty() => None,
                    Ok(l) => Some(
                        serde_json::from_str(&l)
                            .map(|v| (at.clone(), v))
                            .map_err(|e| anyhow::anyhow!("{at}: not valid JSON: {e}")),
                    ),
                }
            })))
        }
        Format::Trails => {
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(b';')
                .from_reader(open(path)?);
            // trail -> (user, earliest check-in as written, its instant)
            let mut first: std::collections::BTreeMap<
                String,
                (String, String, chrono::DateTime<chrono::Utc>),
            > = std::collections::BTreeMap::new();
            for (i, rec) in reader.records().enumerate() {
                let rec = rec.with_context(|| format!("{shown}:{}", i + 2))?;
                let (trail, user, ts) = (&rec[0], &rec[1], &rec[3]);
                let at = chrono::DateTime::parse_from_rfc3339(ts)
                    .with_context(|| format!("{shown}:{}: timestamp {ts:?}", i + 2))?
                    .to_utc();
                let entry = first
                    .entry(trail.to_string())
                    .or_insert_with(|| (user.to_string(), ts.to_string(), at));
                if at < entry.2 {
                    *entry = (user.to_string(), ts.to_string(), at);
                }
            }
            Ok(Box::new(first.into_iter().map(
                move |(trail, (user, ts, _))| {
                    Ok((
                        format!("{shown}: trail {trail}"),
                        serde_json::json!({
                            "event_id": format!("trail-{trail}"),
                            "customer_id": user,
                            "type": "session_start",
                            "timestamp": ts,
                        }),
                    ))
                },
            )))
        }
        Format::Csv => {
            let mut reader = csv::Reader::from_reader(open(path)?);
            let headers = reader
                .headers()
                .with_context(|| format!("{shown}: no header row"))?
                .clone();
            Ok(Box::new(reader.into_records().enumerate().map(
                move |(i, rec)| {
                    let at = format!("{shown}:{}", i + 2);
                    let rec = rec.map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
                    let mut map = Map::new();
                    for (h, v) in headers.iter().zip(rec.iter()) {
                        if v.is_empty() {
                            continue;
                        }
                        let value = match h {
                            "automated" => Value::Bool(matches!(v, "true" | "1" | "yes")),
                            "properties" => serde_json::from_str(v).map_err(|e| {
                                anyhow::anyhow!("{at}: properties is not JSON: {e}")
                            })?,
                            _ => Value::String(v.to_string()),
                        };
                        map.insert(h.to_string(), value);
                    }
                    Ok((at, Value::Object(map)))
                },
            )))
        }
    }
}

trait Sink {
    /// Stores a batch; returns (accepted, duplicates).
    fn send(&mut self, batch: Vec<Item>) -> anyhow::Result<(u64, u64)>;
}

struct HttpSink {
    agent: ureq::Agent,
    url: String,
    key: Option<String>,
}

impl Sink for HttpSink {
    fn send(&mut self, batch: Vec<Item>) -> anyhow::Result<(u64, u64)> {
        let (places, events): (Vec<String>, Vec<Value>) = batch.into_iter().unzip();
        let body = serde_json::json!({ "events": events });
        for attempt in 0..8u32 {
            let mut req = self.agent.post(&self.url);
            if let Some(k) = &self.key {
                req = req.header("Authorization", &format!("Bearer {k}"));
            }
            let mut resp = match req.send_json(&body) {
                Ok(r) => r,
                Err(e) => bail!("cannot reach {}: {e}", self.url),
            };
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            match status {
                200 => {
                    let v: Value = serde_json::from_str(&text)?;
                    return Ok((
                        v["accepted"].as_u64().unwrap_or(0),
                        v["duplicates"].as_u64().unwrap_or(0),
                    ));
                }
                503 | 429 => std::thread::sleep(Duration::from_millis(250 << attempt.min(5))),
                400 => {
                    let v: Value = serde_json::from_str(&text).unwrap_or_default();
                    let details: Vec<String> = v["error"]["details"]
                        .as_array()
                        .map(|d| {
                            d.iter()
                                .take(20)
                                .map(|x| {
                                    let i = x["index"].as_u64().unwrap_or(0) as usize;
                                    format!(
                                        "{}: {}: {}",
                                        places.get(i).map_or("?", String::as_str),
                                        x["field"].as_str().unwrap_or("event"),
                                        x["message"].as_str().unwrap_or("")
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    bail!(
                        "the server refused a batch: {}\n{}",
                        v["error"]["message"].as_str().unwrap_or(&text),
                        details.join("\n")
                    );
                }
                _ => bail!("the server answered {status}: {text}"),
            }
        }
        bail!("the server stayed unavailable; stopped (batches sent so far are stored)")
    }
}

struct DirSink {
    rt: tokio::runtime::Runtime,
    state: AppState,
}

impl Sink for DirSink {
    fn send(&mut self, batch: Vec<Item>) -> anyhow::Result<(u64, u64)> {
        let now = self.state.now();
        let mut events = Vec::with_capacity(batch.len());
        let mut errors = Vec::new();
        for (at, v) in batch {
            match RawEvent::from_json(v).and_then(|r| Event::from_raw(r, now)) {
                Ok(e) => events.push(e),
                Err(errs) => errors.extend(errs.into_iter().map(|e| format!("{at}: {e}"))),
            }
        }
        if !errors.is_empty() {
            errors.truncate(20);
            bail!(
                "invalid events; nothing of this batch was stored:\n{}",
                errors.join("\n")
            );
        }
        let outcome = self.rt.block_on(self.state.store.ingest(events))?;
        Ok((outcome.accepted, outcome.duplicates))
    }
}

pub fn run(args: IngestArgs, mut config: ValidConfig) -> anyhow::Result<()> {
    let mut sink: Box<dyn Sink> = match &args.data {
        Some(dir) => {
            config.raw.store.path = dir.clone();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let state = rt.block_on(AppState::open(config)).with_context(|| {
                format!("opening {} (is a server running on it?)", dir.display())
            })?;
            Box::new(DirSink { rt, state })
        }
        None => Box::new(HttpSink {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(120)))
                .build()
                .into(),
            url: format!("{}/v1/events", args.server.trim_end_matches('/')),
            key: args.key.clone(),
        }),
    };
    let total_bytes: u64 = args
        .files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .map(|m| m.len())
                .with_context(|| format!("cannot read {}", f.display()))
        })
        .sum::<anyhow::Result<u64>>()?;
    let bar = ProgressBar::new(total_bytes.max(1));
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    for file in &args.files {
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        let mut batch = Vec::with_capacity(args.batch as usize);
        for item in read_items(file)? {
            batch.push(item?);
            if batch.len() as u64 >= args.batch {
                let (a, d) = sink.send(std::mem::take(&mut batch))?;
                accepted += a;
                duplicates += d;
                bar.set_message(format!("{accepted} accepted, {duplicates} duplicates"));
            }
        }
        if !batch.is_empty() {
            let (a, d) = sink.send(batch)?;
            accepted += a;
            duplicates += d;
        }
        bar.inc(size);
        bar.set_message(format!("{accepted} accepted, {duplicates} duplicates"));
    }
    bar.finish();
    println!("{accepted} accepted, {duplicates} duplicates");
    Ok(())
}
