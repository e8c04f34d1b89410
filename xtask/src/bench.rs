//! `cargo xtask bench [--quick]`: the benchmarks, side by side with the Go
//! algorithm, into `BENCHMARKS.md`.
//!
//! 1. Throwaway Redis and PostgreSQL, as `cargo xtask test` starts them
//!    (`REFRESH_TEST_*` win when set).
//! 2. The release builds: `oauth-refresh` and the `refresh-bench` harness.
//! 3. The criterion micro-benchmarks (warm read, Redis ops, database lease)
//!    into a fresh criterion directory.
//! 4. Instructions per warm read under callgrind, when `valgrind` is on
//!    PATH (`apt-get install -y valgrind`).
//! 5. `refresh-bench all`: stampede, sweep, HTTP sidecar, memory, warm
//!    read and lease against the baseline, then the report, which includes
//!    the criterion and callgrind numbers of steps 3-4.
//!
//! `--only a,b` (refresh-bench's scenario names: warm, lease, stampede,
//! sweep, sweep-cycle, serve) runs only those harness scenarios, skips
//! steps 3-4 and writes `<target>/bench-only.md` instead of
//! `BENCHMARKS.md`: for iterating on one scenario, e.g.
//! `cargo xtask bench --quick --only sweep-cycle`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::services::Services;
use crate::{cargo, run, say};

/// Warm reads per callgrind run (the second run does twice as many).
const CALLGRIND_READS: u64 = 200_000;

pub(crate) fn bench(args: &[String]) -> Result<()> {
    let mut quick = false;
    let mut only: Option<String> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => only = Some(args.next().context("--only needs a list")?.clone()),
            other => bail!("unknown bench option {other:?} (--quick, --only LIST)"),
        }
    }
    let root = std::env::current_dir().context("working directory")?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let out = match only {
        Some(_) => target.join("bench-only.md"),
        None => root.join("BENCHMARKS.md"),
    };

    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "refresh-bench",
        "-p",
        "refresh-facade",
    ]);
    build.args(["--bin", "refresh-bench", "--bin", "oauth-refresh"]);
    run(
        "cargo build --release (oauth-refresh, refresh-bench)",
        build,
    )?;

    let services = Services::start_without_cluster()?;
    let mut harness = Command::new(target.join("release").join("refresh-bench"));
    harness.arg("all").arg("--out").arg(&out);
    harness
        .arg("--oauth-refresh")
        .arg(target.join("release").join("oauth-refresh"));
    if quick {
        harness.arg("--quick");
    }
    if let Some(only) = only {
        harness.args(["--only", &only]);
        harness.args(["--command", "cargo xtask bench --only"]);
        services.export(&mut harness);
        return run("refresh-bench all --only", harness);
    }
    let criterion_home = target.join("bench-criterion");
    let _ = std::fs::remove_dir_all(&criterion_home);
    let timing: &[&str] = if quick {
        &["--warm-up-time", "0.5", "--measurement-time", "1"]
    } else {
        &["--warm-up-time", "2", "--measurement-time", "5"]
    };
    for (package, features, bench) in [
        ("refresh-core", Some("testing"), "warm_read"),
        ("refresh-redis", None, "redis_ops"),
        ("refresh-seaorm", None, "db_lease"),
    ] {
        let mut cmd = cargo();
        cmd.args(["bench", "-p", package, "--bench", bench]);
        if let Some(features) = features {
            cmd.args(["--features", features]);
        }
        cmd.args(["--", "--noplot"]).args(timing);
        cmd.env("CRITERION_HOME", &criterion_home);
        services.export(&mut cmd);
        run(&format!("criterion {package}/{bench}"), cmd)?;
    }

    let instructions = match which("valgrind") {
        Some(valgrind) => Some(instructions_per_read(&valgrind, &target)?),
        None => {
            say(
                "    valgrind not found: instructions per read not measured (apt-get install -y valgrind)",
            );
            None
        }
    };

    harness.arg("--criterion").arg(&criterion_home);
    harness.args(["--command", "cargo xtask bench"]);
    if let Some(instructions) = instructions {
        harness.args(["--instructions-per-read", &format!("{instructions:.1}")]);
    }
    services.export(&mut harness);
    run("refresh-bench all", harness)?;
    drop(services);
    Ok(())
}

/// `(I(2N) - I(N)) / N` of the `warm_read` bench binary under callgrind.
fn instructions_per_read(valgrind: &Path, target: &Path) -> Result<f64> {
    let mut list = cargo();
    list.args([
        "bench",
        "-p",
        "refresh-core",
        "--features",
        "testing",
        "--bench",
        "warm_read",
    ]);
    list.args(["--no-run", "--message-format=json"]);
    let out = list.output().context("cargo bench --no-run")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let exe = text
        .lines()
        .filter(|l| l.contains("\"warm_read\""))
        .find_map(|l| {
            let start = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            let end = start + l[start..].find('"')?;
            Some(PathBuf::from(&l[start..end]))
        })
        .context("no warm_read bench executable in cargo's output")?;
    let mut totals = Vec::new();
    for reads in [CALLGRIND_READS, 2 * CALLGRIND_READS] {
        let file = target.join(format!("callgrind-warm-read-{reads}.out"));
        say(&format!("==> callgrind: {reads} warm reads"));
        let status = Command::new(valgrind)
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", file.display()))
            .arg(&exe)
            .arg("--bench")
            .env("WARM_READ_COUNT", reads.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("run valgrind")?;
        if !status.success() {
            bail!("valgrind failed ({status})");
        }
        let out = std::fs::read_to_string(&file).context("read the callgrind output")?;
        let total: u64 = out
            .lines()
            .find_map(|l| {
                l.strip_prefix("summary:")
                    .or_else(|| l.strip_prefix("totals:"))
            })
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("no summary line in the callgrind output")?;
        let _ = std::fs::remove_file(&file);
        totals.push(total);
    }
    let per_read = (totals[1] as f64 - totals[0] as f64) / CALLGRIND_READS as f64;
    say(&format!("    {per_read:.0} instructions per warm read"));
    Ok(per_read)
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
