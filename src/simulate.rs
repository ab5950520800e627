//! `kairos simulate`: a population with hidden weekly habits, its history as
//! events, and (against a running server) decisions scored against the truth.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::Utc;
use clap::Args;
use kairos_core::{Channel, CustomerPatch};
use kairos_decide::sim::{baselines, generate, informed_ceiling, score_policies, SimConfig};
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// How many customers.
    #[arg(long, default_value_t = 300)]
    customers: usize,
    /// Weeks of history, ending now.
    #[arg(long, default_value_t = 8)]
    weeks: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Company sends per reachable channel per week in the history.
    #[arg(long, default_value_t = 2.0)]
    sends_per_week: f64,
    /// Write customers.ndjson, events.ndjson and truth.json here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Load the customers' attributes and histories straight into this data
    /// directory (no server may be running on it), generated in parts of
    /// 20,000 customers.
    #[arg(long, conflicts_with_all = ["server", "out"])]
    data: Option<PathBuf>,
    /// Load the customers and their history into this running server.
    #[arg(long)]
    server: Option<String>,
    /// API key (ingest, and decide/admin for --train and --score; also KAIROS_API_KEY).
    #[arg(long, env = "KAIROS_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// After loading, train the server's models (POST /v1/admin/train).
    #[arg(long, requires = "server")]
    train: bool,
    /// Ask the server for a decision per customer over the next 7 days and score
    /// them against the hidden truth, the oracle and baselines.
    #[arg(long, requires = "server")]
    score: bool,
}

struct Client {
    agent: ureq::Agent,
    base: String,
    key: Option<String>,
}

impl Client {
    fn send(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "PUT" => self.agent.put(&url),
            _ => self.agent.post(&url),
        };
        if let Some(k) = &self.key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        let mut resp = req
            .send_json(body)
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if status != 200 {
            bail!("{method} {path} answered {status}: {text}");
        }
        Ok(text)
    }
}

/// Writes a large population (attributes, then events) straight into a data
/// directory, part by part.
fn load_into_data_dir(
    args: &SimulateArgs,
    dir: &std::path::Path,
    mut config: kairos_server::ValidConfig,
) -> anyhow::Result<()> {
    config.raw.store.path = dir.to_path_buf();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let state = rt
        .block_on(kairos_server::AppState::open(config))
        .with_context(|| format!("opening {} (is a server running on it?)", dir.display()))?;
    let bar = indicatif::ProgressBar::new(args.customers as u64);
    const PART: usize = 20_000;
    let mut events = 0usize;
    let end = Utc::now();
    for (n, first) in (0..args.customers).step_by(PART).enumerate() {
        let pop = generate(&SimConfig {
            customers: PART.min(args.customers - first),
            weeks: args.weeks,
            seed: args.seed.wrapping_add(n as u64),
            end,
            sends_per_week: args.sends_per_week,
            id_offset: first,
        });
        // Attributes first: the events are then counted in each customer's
        // own zone, with no profile to recompute.
        let patches = pop
            .customers
            .iter()
            .map(|c| {
                let id = kairos_core::CustomerId::parse(c.id.clone())?;
                Ok((id, serde_json::from_value::<CustomerPatch>(c.attributes())?))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        rt.block_on(state.store.put_customers(patches, end))?;
        for chunk in pop.events.chunks(20_000) {
            rt.block_on(state.store.ingest(chunk.to_vec()))?;
        }
        events += pop.events.len();
        bar.inc(pop.customers.len() as u64);
    }
    bar.finish_and_clear();
    eprintln!(
        "{} customers (attributes and {events} events) written to {}",
        args.customers,
        dir.display()
    );
    Ok(())
}

pub fn run(args: SimulateArgs, config: kairos_server::ValidConfig) -> anyhow::Result<()> {
    if let Some(dir) = args.data.clone() {
        return load_into_data_dir(&args, &dir, config);
    }
    let now = Utc::now();
    let cfg = SimConfig {
        customers: args.customers,
        weeks: args.weeks,
        seed: args.seed,
        end: now,
        sends_per_week: args.sends_per_week,
        id_offset: 0,
    };
    let pop = generate(&cfg);
    eprintln!(
        "{} customers, {} events",
        pop.customers.len(),
        pop.events.len()
    );
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)?;
        let mut customers =
            std::io::BufWriter::new(std::fs::File::create(dir.join("customers.ndjson"))?);
        for c in &pop.customers {
            let mut line = c.attributes();
            line["customer_id"] = json!(c.id);
            writeln!(customers, "{line}")?;
        }
        let mut events = std::io::BufWriter::new(std::fs::File::create(dir.join("events.ndjson"))?);
        for e in &pop.events {
            writeln!(events, "{}", serde_json::to_string(e)?)?;
        }
        std::fs::write(
            dir.join("truth.json"),
            serde_json::to_vec_pretty(&pop.customers)?,
        )?;
        eprintln!("wrote {}", dir.display());
    }
    let Some(server) = &args.server else {
        return Ok(());
    };
    let client = Client {
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into(),
        base: server.trim_end_matches('/').to_string(),
        key: args.key.clone(),
    };
    for part in pop
        .customers
        .chunks(kairos_server::MAX_CUSTOMERS_PER_REQUEST)
    {
        let customers: Vec<Value> = part
            .iter()
            .map(|c| {
                let mut item = c.attributes();
                item["customer_id"] = json!(c.id);
                item
            })
            .collect();
        client.send("POST", "/v1/customers", &json!({ "customers": customers }))?;
    }
    for chunk in pop.events.chunks(5000) {
        client.send("POST", "/v1/events", &json!({ "events": chunk }))?;
    }
    eprintln!("loaded into {server}");
    if args.train {
        let summary: Value =
            serde_json::from_str(&client.send("POST", "/v1/admin/train", &json!({}))?)?;
        eprintln!(
            "trained {}: validation NLL {}, response model {}",
            summary["version"],
            summary["activity"]["validation_nll"],
            if summary["response"].is_object() {
                "fitted"
            } else {
                "not enough sends"
            }
        );
    }
    if args.score {
        let (from, to) = (now, now + chrono::Duration::days(7));
        let ids: Vec<&str> = pop.customers.iter().map(|c| c.id.as_str()).collect();
        let text = client.send(
            "POST",
            "/v1/decisions/batch",
            &json!({"customers": ids, "quiet_hours": null, "not_before": from.to_rfc3339(), "deadline": to.to_rfc3339()}),
        )?;
        let mut chosen: HashMap<usize, (Channel, chrono::DateTime<Utc>)> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let d: Value = serde_json::from_str(line)?;
            if d["action"] == "send" {
                let ch: Channel = serde_json::from_value(d["channel"].clone())?;
                let at = chrono::DateTime::parse_from_rfc3339(
                    d["send_at"].as_str().unwrap_or_default(),
                )?
                .to_utc();
                chosen.insert(i, (ch, at));
            }
        }
        let mut policies = baselines(&pop, from, to, args.seed);
        policies.insert(0, informed_ceiling(&pop, from, to));
        policies.insert(
            0,
            (
                "kairos".to_string(),
                Box::new(move |i, _| chosen.get(&i).copied()),
            ),
        );
        println!("{}", kairos_decide::sim::PolicyScore::header());
        let scores = score_policies(&pop, from, to, policies);
        for s in &scores {
            println!("{}", s.line(scores[0].expected_engagements));
        }
    }
    Ok(())
}
