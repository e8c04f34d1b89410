//! `oauth-emulator`: the OAuth emulator of refresh-providers as its own
//! process. Prints its base URL on stdout, then serves until interrupted.
//!
//! ```text
//! cargo run -p refresh-providers --features emulator --bin oauth-emulator -- --port 8080
//! ```
//!
//! Seed grants, read counters and inject faults over the admin API
//! (`/admin/...`, see the crate README).

use clap::Parser;
use refresh_providers::emulator::{Emulator, EmulatorConfig, Latency};

/// The OAuth emulator of Claude, OpenAI, Gemini and Antigravity.
#[derive(Parser)]
#[command(name = "oauth-emulator", version)]
struct Args {
    /// Port on 127.0.0.1 (0: a free one; the URL printed says which).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Fixed latency of every answer, milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Random extra latency of every answer, up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config = EmulatorConfig {
        port: args.port,
        latency: Latency {
            fixed_ms: args.latency_ms,
            jitter_ms: args.jitter_ms,
        },
        ..EmulatorConfig::default()
    };
    let emulator = match Emulator::start_with(config).await {
        Ok(emulator) => emulator,
        Err(error) => {
            #[allow(clippy::print_stderr)] // a binary reporting why it cannot start
            {
                eprintln!(
                    "oauth-emulator: cannot listen on 127.0.0.1:{}: {error}",
                    args.port
                );
            }
            return std::process::ExitCode::FAILURE;
        }
    };
    #[allow(clippy::print_stdout)] // the URL is this binary's output
    {
        println!("{}", emulator.url());
    }
    let _ = tokio::signal::ctrl_c().await;
    std::process::ExitCode::SUCCESS
}
