//! Developer tasks for oauth-refresh.
//!
//! - `cargo xtask test`: format check, clippy with `-D warnings`, rustdoc
//!   with `-D warnings`, and the whole test suite including the tests that
//!   need services (`--include-ignored`), with Redis and PostgreSQL provided.
//! - `cargo xtask ci`: what `.ci/run` calls (same as `test`).
//! - `cargo xtask services`: start throwaway Redis and PostgreSQL and print
//!   their URLs until interrupted, for running single tests by hand.
//! - `cargo xtask bench [--quick] [--only LIST]`: the benchmarks beside the Go algorithm,
//!   written to `BENCHMARKS.md` (see `bench.rs`).

mod bench;
mod services;

use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <test|ci|services|bench [--quick] [--only LIST]>

  test      fmt check, clippy -D warnings, rustdoc -D warnings, all tests (services started as needed)
  ci        what .ci/run calls (same as test)
  services  start throwaway Redis and PostgreSQL, print their URLs, wait for Ctrl-C
  bench     criterion micro-benchmarks and the refresh-bench harness beside the Go algorithm,
            written to BENCHMARKS.md (--quick: smaller sizes, under 3 minutes once built;
            --only sweep-cycle,...: only those harness scenarios, no criterion, into
            <target>/bench-only.md)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test" | "ci") => test(&args[1..]),
        Some("services") => services::hold(),
        Some("bench") => bench::bench(&args[1..]),
        Some("-h" | "--help") | None => {
            say(USAGE);
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            say(&format!("unknown task {other:?}\n\n{USAGE}"));
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say(&format!("xtask failed: {error:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Progress output goes to stderr so test output stays parseable.
pub(crate) fn say(line: &str) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{line}");
    }
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

pub(crate) fn run(step: &str, mut cmd: Command) -> Result<()> {
    say(&format!("==> {step}"));
    let started = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("could not start {step}"))?;
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    say(&format!(
        "    {step} ok in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run("cargo fmt --check", fmt)?;

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]);
    run("cargo clippy -D warnings", clippy)?;

    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps", "--all-features"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    run("cargo doc -D warnings", doc)?;

    let services = services::Services::start()?;
    let mut tests = cargo();
    tests.args(["test", "--workspace", "--all-features"]);
    tests.args(["--", "--include-ignored"]);
    tests.args(extra);
    services.export(&mut tests);
    let totals = run_tests(tests)?;
    drop(services);
    if totals.failed > 0 || totals.passed == 0 {
        bail!("{} tests failed, {} passed", totals.failed, totals.passed);
    }
    Ok(())
}

#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// Runs `cargo test`, echoing its output and summing its `test result:`
/// lines.
fn run_tests(mut cmd: Command) -> Result<Totals> {
    use std::io::{BufRead, BufReader, Write};

    say("==> cargo test --include-ignored");
    let started = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("could not start cargo test")?;
    let mut totals = Totals::default();
    let stdout = child.stdout.take().context("no stdout")?;
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("read cargo test output")?;
        writeln!(out, "{line}")?;
        if let Some(result) = line.strip_prefix("test result: ") {
            for part in result.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(label), Some(count)) = (words.next(), words.next()) else {
                    continue;
                };
                let count: u64 = count.parse().unwrap_or(0);
                match label {
                    "passed" => totals.passed += count,
                    "failed" => totals.failed += count,
                    "ignored" => totals.ignored += count,
                    _ => {}
                }
            }
        }
    }
    drop(out);
    let status = child.wait().context("wait for cargo test")?;
    // One plain closing line summing every test binary, so the run's outcome
    // is not judged by whichever binary happened to print last.
    writeln!(
        std::io::stdout(),
        "tests: {} passed, {} failed, {} skipped",
        totals.passed,
        totals.failed,
        totals.ignored
    )?;
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    say(&format!(
        "    cargo test ok in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(totals)
}
