//! `kairos train`: fit the models offline, from a data directory or event files.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use kairos_learn::train::Trainer;
use kairos_server::{AppState, ValidConfig};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Train from these event files (any format `kairos ingest` reads) instead
    /// of the data directory; the store is not touched.
    #[arg(long = "events", num_args = 1..)]
    events: Vec<PathBuf>,
    /// With --events: the customers' time zone (default: decide.default_timezone).
    #[arg(long)]
    timezone: Option<String>,
    /// Where to write the versioned artifact (default: models.dir).
    #[arg(long)]
    out: Option<PathBuf>,
    /// With --events: the artifact's version name (default: v1-<time>).
    #[arg(long)]
    version: Option<String>,
    /// With --events: what the data is, for the manifest (default: the file names).
    #[arg(long)]
    source: Option<String>,
}

pub fn run(args: TrainArgs, mut config: ValidConfig) -> anyhow::Result<()> {
    if let Some(out) = &args.out {
        config.raw.models.dir = out.clone();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.events.is_empty() {
        let summary = rt.block_on(async {
            let state = AppState::open(config).await.context(
                "opening the data directory (is a server running on it? use POST /v1/admin/train)",
            )?;
            kairos_server::retrain(&state)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))
        })?;
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    let tz = match &args.timezone {
        Some(name) => kairos_core::time::parse_tz(name)?,
        None => config.decide.default_tz,
    };
    let started = std::time::Instant::now();
    let by_customer = crate::evaluate::events_by_customer(&args.events)?;
    let opts = kairos_server::train_options(&config);
    let mut trainer = Trainer::new();
    for events in by_customer.values() {
        trainer.add(tz, events, &opts);
    }
    let now = chrono::Utc::now();
    let version = args
        .version
        .unwrap_or_else(|| format!("v1-{}", now.format("%Y%m%dT%H%M%SZ")));
    let source = args.source.clone().unwrap_or_else(|| {
        args.events
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    });
    let bundle = trainer.finish(now, version, source, &opts)?;
    let path =
        kairos_server::write_artifact(&config.raw.models.dir, &bundle).with_context(|| {
            format!(
                "writing the artifact under {}",
                config.raw.models.dir.display()
            )
        })?;
    let summary = kairos_server::summary(&bundle, Some(path), started.elapsed().as_secs_f64());
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
