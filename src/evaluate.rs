//! `kairos evaluate`: leave-last-out evaluation of the activity model against
//! baselines on an event file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kairos_core::{Event, RawEvent};
use kairos_learn::eval::{evaluate, table};
use kairos_learn::fit::{ActivityHistory, FitOptions};
use kairos_server::ValidConfig;

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Event files, in any format `kairos ingest` reads.
    #[arg(long = "events", required = true, num_args = 1..)]
    events: Vec<PathBuf>,
    /// Customers need at least this many activities to be evaluated.
    #[arg(long, default_value_t = 5)]
    min_events: usize,
    /// Zone of the customers' local time (default: decide.default_timezone).
    #[arg(long)]
    timezone: Option<String>,
    /// Print the table as JSON too.
    #[arg(long)]
    json: bool,
}

/// Every valid event of the files, per customer.
pub fn events_by_customer(files: &[PathBuf]) -> anyhow::Result<BTreeMap<String, Vec<Event>>> {
    let now = chrono::Utc::now();
    let mut by_customer: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for file in files {
        for item in crate::ingest::read_items(file)? {
            let (at, value) = item?;
            let event = RawEvent::from_json(value)
                .and_then(|r| Event::from_raw(r, now))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{at}: {}",
                        e.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                })?;
            by_customer
                .entry(event.customer_id.to_string())
                .or_default()
                .push(event);
        }
    }
    Ok(by_customer)
}

/// Organic activity per customer, in local hours of `tz`.
pub fn histories_from_files(
    files: &[PathBuf],
    tz: chrono_tz::Tz,
) -> anyhow::Result<BTreeMap<String, ActivityHistory>> {
    Ok(events_by_customer(files)?
        .into_iter()
        .map(|(k, events)| (k, ActivityHistory::from_events(&events, tz)))
        .collect())
}

pub fn run(args: EvaluateArgs, config: ValidConfig) -> anyhow::Result<()> {
    let tz = match &args.timezone {
        Some(name) => kairos_core::time::parse_tz(name)?,
        None => config.decide.default_tz,
    };
    let histories: Vec<ActivityHistory> = histories_from_files(&args.events, tz)
        .context("reading events")?
        .into_values()
        .collect();
    let customers = histories
        .iter()
        .filter(|h| h.observations.len() >= args.min_events)
        .count();
    eprintln!(
        "{} customers, {} activities; evaluating {} customers with at least {} (time zone {})",
        histories.len(),
        histories
            .iter()
            .map(|h| h.observations.len())
            .sum::<usize>(),
        customers,
        args.min_events,
        tz.name()
    );
    let bar = ProgressBar::new(customers as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("training on everything but each customer's last activity");
    let (rows, params) = evaluate(
        &histories,
        args.min_events,
        &FitOptions::default(),
        |done, _| {
            bar.set_message("scoring");
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    print!("{}", table(&rows));
    println!("fitted: {}", serde_json::to_string(&params)?);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}
