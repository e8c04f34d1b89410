//! `oauth-refresh`: the operator's binary. See `oauth-refresh --help` and
//! the workspace README's operator section.

mod accounts;
mod cli;
mod config;
mod demo;
mod error;
mod import_cli;
mod keys;
mod logging;
mod login;
mod output;
mod serve;
mod shutdown;
mod sqlite_file;
mod stack;
mod token;
mod view;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.global.verbose;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return CliError::with("cannot start the async runtime", error).report(verbose);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => error.report(verbose),
    }
}

/// The default log level of `token`, `refresh` and `accounts`: their
/// outcome is one line on stdout or one error line on stderr, so the
/// flow's warnings (which that error line repeats) stay out unless
/// `--log-level` asks for them.
const ONE_SHOT_LOG_LEVEL: &str = "error";

async fn run(cli: Cli) -> Result<(), CliError> {
    let global = &cli.global;
    match cli.command {
        Command::Demo(args) => {
            let loaded = config::load(global, &[])?;
            logging::init(&loaded.config.log, "error")?;
            demo::run(&args).await
        }
        Command::Config => {
            let loaded = config::load(global, &[])?;
            let resolved = keys::resolve(&loaded, keys::Missing::Describe)?;
            output::print_line(&config::render(&loaded, &resolved.source));
            Ok(())
        }
        Command::Migrate => {
            let loaded = config::load(global, &[])?;
            logging::init(&loaded.config.log, "warn")?;
            stack::migrate(&loaded).await
        }
        Command::Accounts(command) => {
            let loaded = config::load(global, &[])?;
            logging::init(&loaded.config.log, ONE_SHOT_LOG_LEVEL)?;
            accounts::run(&loaded, command).await
        }
        Command::Token { id } => {
            let loaded = config::load(global, &[])?;
            logging::init(&loaded.config.log, ONE_SHOT_LOG_LEVEL)?;
            token::token(&loaded, id).await
        }
        Command::Refresh { id, force } => {
            let loaded = config::load(global, &[])?;
            logging::init(&loaded.config.log, ONE_SHOT_LOG_LEVEL)?;
            token::refresh(&loaded, id, force).await
        }
        Command::Run { once } => {
            let loaded = config::load(global, &[])?;
            logging::init(&loaded.config.log, "info")?;
            worker::run(&loaded, once).await
        }
        Command::Serve {
            listen,
            no_worker,
            insecure_loopback,
        } => {
            let overrides: Vec<(&str, String)> =
                listen.into_iter().map(|l| ("serve.listen", l)).collect();
            let loaded = config::load(global, &overrides)?;
            logging::init(&loaded.config.log, "info")?;
            serve::run(&loaded, !no_worker, insecure_loopback).await
        }
    }
}
