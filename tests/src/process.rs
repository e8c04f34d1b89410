//! [`Proc`]: a child process whose stdout and stderr go to one log file
//! the scenario reads (and scans for secrets).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

/// A running child process with its output captured in a file.
pub struct Proc {
    /// What the scenario calls it (in messages).
    pub name: String,
    child: Child,
    log: PathBuf,
    pid: u32,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr appended to `dir/<name>.log`,
    /// stdin closed, killed when dropped.
    pub fn spawn(name: &str, dir: &Path, mut cmd: Command) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let err = file.try_clone().expect("log file");
        cmd.stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let pid = child.id().expect("a fresh child has a pid");
        Self {
            name: name.to_owned(),
            child,
            log,
            pid,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything it printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`-TERM`, `-KILL`, `-STOP`, `-CONT`).
    pub fn signal(&self, signal: &str) {
        send_signal(self.pid, signal);
    }

    /// Waits (60 s at most) for it to exit.
    pub async fn wait(&mut self) -> ExitStatus {
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!(
                "{} did not exit within 60 s; its log:\n{}",
                self.name,
                self.logs()
            ),
        }
    }

    /// SIGTERM, then waits for a successful exit.
    pub async fn stop(&mut self) {
        self.signal("-TERM");
        let status = self.wait().await;
        assert!(
            status.success(),
            "{} exited with {status:?}; its log:\n{}",
            self.name,
            self.logs()
        );
    }

    /// SIGKILL, then waits until it is gone.
    pub async fn kill(&mut self) {
        self.signal("-KILL");
        let _ = self.wait().await;
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// `kill <signal> <pid>`.
pub fn send_signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(sent, "kill {signal} {pid}");
}
