//! The `kairos` command: argument parsing and wiring only.

mod evaluate;
mod ingest;
mod simulate;
mod train;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kairos_server::config::LogFormat;
use kairos_server::{Config, ValidConfig};

/// mimalloc instead of the system allocator: a decision allocates many
/// short-lived buffers on one thread and frees them on another, where
/// glibc's arenas spend a quarter of a campaign's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "kairos",
    version,
    about = "Personalization and contact-timing engine"
)]
struct Cli {
    /// Configuration file, applied over the compiled-in defaults (also KAIROS_CONFIG).
    #[arg(long, global = true, env = "KAIROS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve,
    /// Load events from NDJSON or CSV files (optionally .gz) into a running
    /// server, or straight into a data directory.
    Ingest(ingest::IngestArgs),
    /// Generate a population with hidden weekly habits and its history; load it
    /// into a server, train, and score the server's decisions against the truth.
    Simulate(simulate::SimulateArgs),
    /// Leave-last-out evaluation of the activity model against baselines.
    Evaluate(evaluate::EvaluateArgs),
    /// Fit the models to the history in the data directory (while no server
    /// is using it; a running server trains with POST /v1/admin/train), or to
    /// event files, and write a versioned artifact.
    Train(train::TrainArgs),
}

fn load_config(file: Option<&std::path::Path>) -> anyhow::Result<ValidConfig> {
    Ok(Config::load(file, std::env::vars())?)
}

fn init_tracing(format: &LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = load_config(cli.config.as_deref())?;
    init_tracing(&config.raw.log.format);
    match cli.command {
        Command::Serve => actix_web::rt::System::new()
            .block_on(kairos_server::serve(config))
            .context("kairos serve"),
        Command::Ingest(args) => ingest::run(args, config),
        Command::Evaluate(args) => evaluate::run(args, config),
        Command::Simulate(args) => simulate::run(args, config),
        Command::Train(args) => train::run(args, config),
    }
}
