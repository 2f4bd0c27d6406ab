//! The demo's child processes: each writes to its own log file, runs in its own process group (so
//! the terminal's Ctrl-C reaches only the demo, which stops them in order), and is killed by the
//! kernel if the demo itself dies.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

/// A running child with the name the demo reports it by.
pub struct Process {
    pub name: String,
    pub log: PathBuf,
    child: Child,
}

/// Starts `exe args...` with stdout and stderr appended to `logs/<name>.log`, without the
/// caller's `TRELLIS_*` variables (every setting is passed explicitly) plus `env`.
pub fn spawn(
    name: &str,
    exe: &Path,
    args: &[String],
    env: &[(&str, &str)],
    logs: &Path,
) -> Result<Process, String> {
    let log = logs.join(format!("{name}.log"));
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("cannot open the log file {}: {e}", log.display()))
    };
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .process_group(0)
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TRELLIS_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        command.pre_exec(|| {
            // The kernel sends SIGTERM when the demo's main thread (which forks) exits.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {name} ({}): {e}", exe.display()))?;
    Ok(Process {
        name: name.to_string(),
        log,
        child,
    })
}

impl Process {
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resolves when the process exits.
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// The exit status if it has already exited.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `n` lines of its log, for an error message.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// SIGTERM to every process, then SIGKILL to those still running after `grace`; waits for all.
/// Returns how many had to be killed.
pub async fn stop_all(processes: &mut [Process], grace: Duration) -> usize {
    for p in processes.iter_mut() {
        if p.try_exited().is_none()
            && let Some(pid) = p.id().and_then(|pid| i32::try_from(pid).ok())
        {
            // SAFETY: kill(2) on a child we started and have not reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    let mut killed = 0;
    for p in processes.iter_mut() {
        if tokio::time::timeout(grace, p.child.wait()).await.is_err() {
            killed += 1;
            let _ = p.child.kill().await;
        }
    }
    killed
}
