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

/// mimalloc's `purge_delay` (the order of `mi_option_e` in mimalloc.h).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long memory freed by the server stays with it before it goes back
/// to the operating system, in milliseconds.
///
/// mimalloc's default is a second. A campaign frees and takes again the
/// same few hundred megabytes all the time, so with the default the kernel
/// kept zeroing pages it had just been given back: a million-recipient
/// campaign took 64,000-88,000 page faults and 4% longer. With ten seconds
/// it takes a tenth of the faults, and an idle server still returns the
/// memory. `MIMALLOC_PURGE_DELAY`, when set, is left to decide.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Sets [`PURGE_DELAY_MS`]. First thing in `main`: the option is not
/// synchronized, and no other thread exists yet.
#[allow(unsafe_code)]
fn keep_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a plain integer option; nothing else runs.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

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
    keep_freed_pages();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Slot 15 holds `purge_delay` (a second by default, in mimalloc 3), and
    /// `keep_freed_pages` sets it, unless the environment already did.
    #[test]
    #[allow(unsafe_code)]
    fn freed_pages_are_kept_ten_seconds() {
        // SAFETY: reads of a plain integer option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        let from_env = std::env::var("MIMALLOC_PURGE_DELAY").ok();
        let before = get();
        keep_freed_pages();
        match from_env.and_then(|v| v.parse::<std::ffi::c_long>().ok()) {
            None => {
                assert_eq!(before, 1_000, "slot 15 is not purge_delay");
                assert_eq!(get(), PURGE_DELAY_MS);
            }
            Some(v) => assert_eq!(get(), v, "the environment's delay is kept"),
        }
    }
}
