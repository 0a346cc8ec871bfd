//! The real binaries as children of the harness (process and netns backends): finding
//! them, starting one (optionally inside a network namespace), and the lifecycle faults
//! (crash = SIGKILL, pause = SIGSTOP, resume = SIGCONT, restart = respawn).

use crate::fault::FaultAction;
use anyhow::{Context as _, Result, anyhow, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::{Child, Command};

#[derive(Debug, Clone)]
pub struct Binaries {
    pub po_sim: PathBuf,
    pub smart_connector: PathBuf,
}

/// Finds `po-sim` and `smart-connector`: in `$HARNESS_BIN_DIR` when set, else next to the
/// running executable (also from `target/*/deps` for test binaries), built first with
/// cargo (a no-op when they are up to date) so a changed source is never run stale.
pub fn binaries() -> Result<Binaries> {
    let at = |dir: &Path| Binaries {
        po_sim: dir.join("po-sim"),
        smart_connector: dir.join("smart-connector"),
    };
    let exists = |b: &Binaries| b.po_sim.exists() && b.smart_connector.exists();
    if let Some(dir) = std::env::var_os("HARNESS_BIN_DIR") {
        let b = at(Path::new(&dir));
        if !exists(&b) {
            bail!(
                "HARNESS_BIN_DIR={}: po-sim and smart-connector are not both there",
                b.po_sim.parent().unwrap_or(Path::new("")).display()
            );
        }
        return Ok(b);
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let workspace = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if workspace.join("Cargo.toml").exists() {
        let release = dir.ends_with("release");
        let mut cmd =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "po-simulator",
            "-p",
            "smart-connector",
            "--bins",
        ])
        .current_dir(workspace);
        if release {
            cmd.arg("--release");
        }
        if let Some(target) = dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        let status = cmd
            .status()
            .context("running cargo to build po-sim and smart-connector")?;
        if !status.success() {
            bail!("cargo build of po-sim and smart-connector failed ({status})");
        }
    }
    let b = at(&dir);
    if !exists(&b) {
        bail!(
            "po-sim and smart-connector not found in {}: build them (`cargo build --release -p po-simulator -p smart-connector`) or set HARNESS_BIN_DIR",
            dir.display()
        );
    }
    Ok(b)
}

/// One component as a child process: how to start it (again), and the running child.
#[derive(Debug)]
pub struct ManagedChild {
    program: PathBuf,
    args: Vec<OsString>,
    /// The network namespace it runs in (netns backend), entered with `ip netns exec`,
    /// which execs the program: the child's pid is the component's own.
    netns: Option<String>,
    /// stdout and stderr go here (appended across restarts).
    log: PathBuf,
    /// Environment variables added to the harness's own.
    env: Vec<(OsString, OsString)>,
    child: Option<Child>,
    /// Where the log stood when the running child started: [`ManagedChild::wait_for_line`]
    /// reads only what this start wrote (the log is appended, an earlier start's line
    /// must not count).
    log_start: u64,
}

impl ManagedChild {
    pub fn new(
        program: &Path,
        args: impl IntoIterator<Item = impl Into<OsString>>,
        netns: Option<String>,
        log: PathBuf,
    ) -> ManagedChild {
        ManagedChild {
            program: program.to_path_buf(),
            args: args.into_iter().map(Into::into).collect(),
            netns,
            log,
            env: Vec::new(),
            child: None,
            log_start: 0,
        }
    }

    /// With environment variable `key` set to `value` (on every start).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> ManagedChild {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Until the child has written a line starting with `prefix` to its log (a server
    /// announcing that it serves); fails when it exits first or after `timeout`.
    pub async fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let text = std::fs::read(&self.log).unwrap_or_default();
            let since_start = text.get(self.log_start as usize..).unwrap_or_default();
            if String::from_utf8_lossy(since_start)
                .lines()
                .any(|l| l.starts_with(prefix))
            {
                return Ok(());
            }
            let exited = match self.child.as_mut() {
                Some(c) => c.try_wait()?.is_some(),
                None => true,
            };
            if exited {
                bail!(
                    "exited before it printed `{prefix}` (log: {})",
                    self.log.display()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "no `{prefix}` after {timeout:?} (log: {})",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts the child (a running one is killed first).
    pub async fn spawn(&mut self) -> Result<()> {
        self.kill().await;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        self.log_start = log.metadata().map_or(0, |m| m.len());
        // The chain execs all the way (setpriv, ip netns exec, the program), so the
        // child's pid is the component's own. setpriv's parent-death signal makes the
        // child die with the harness even when the harness is SIGKILLed: a killed run
        // leaves no component behind (its namespaces are removed by the next run).
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(setpriv) = which("setpriv") {
            argv.extend([setpriv.into(), "--pdeathsig".into(), "KILL".into()]);
        }
        if let Some(ns) = &self.netns {
            argv.extend(["ip".into(), "netns".into(), "exec".into(), ns.into()]);
        }
        argv.push(self.program.clone().into());
        argv.extend(self.args.iter().cloned());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills and reaps the child, if any.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A stopped process must be continued to die of SIGKILL promptly on some kernels.
            let _ = signal(&c, nix::sys::signal::Signal::SIGCONT);
            let _ = c.kill().await;
        }
    }

    /// Applies a lifecycle fault; returns how it was applied (for the report).
    pub async fn apply(&mut self, name: &str, action: FaultAction) -> Result<&'static str> {
        use nix::sys::signal::Signal::{SIGCONT, SIGSTOP};
        match (action, &self.child) {
            (FaultAction::Crash, _) => {
                self.kill().await;
                Ok("SIGKILL")
            }
            (FaultAction::Restart, _) => {
                self.spawn().await?;
                Ok("respawn")
            }
            (FaultAction::Pause, Some(c)) => signal(c, SIGSTOP).map(|()| "SIGSTOP"),
            (FaultAction::Resume, Some(c)) => signal(c, SIGCONT).map(|()| "SIGCONT"),
            (a, _) => bail!("{} cannot be applied to {name} now", a.as_str()),
        }
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) -> Result<()> {
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("process already exited"))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)?;
    Ok(())
}

/// CPU time (seconds) and resident memory (KiB) of a process, from /proc.
pub fn process_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(((utime + stime) / 100.0, rss))
}

/// `po-sim serve --config CONFIG`, logging to `RUN_DIR/NAME.log`.
pub fn server_child(
    b: &Binaries,
    config: &Path,
    run_dir: &Path,
    name: &str,
    netns: Option<String>,
) -> ManagedChild {
    ManagedChild::new(
        &b.po_sim,
        [OsString::from("serve"), "--config".into(), config.into()],
        netns,
        run_dir.join(format!("{name}.log")),
    )
}

/// `smart-connector run --config CONFIG [--threads N]` (the scenario's `threads`, also on
/// restart; without it the connector chooses), logging to `RUN_DIR/NAME.log`.
pub fn connector_child(
    b: &Binaries,
    config: &Path,
    run_dir: &Path,
    name: &str,
    threads: Option<usize>,
    netns: Option<String>,
) -> ManagedChild {
    let mut args = vec![OsString::from("run"), "--config".into(), config.into()];
    if let Some(n) = threads {
        args.extend(["--threads".into(), n.max(1).to_string().into()]);
    }
    ManagedChild::new(
        &b.smart_connector,
        args,
        netns,
        run_dir.join(format!("{name}.log")),
    )
}

/// The path of a program on `PATH`, if there is one.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_line_waited_for_is_one_this_start_printed_not_an_earlier_ones() {
        let dir = std::env::temp_dir().join(format!("harness-child-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("peer.log");
        let _ = std::fs::remove_file(&log);
        let mut first =
            ManagedChild::new(Path::new("sh"), ["-c", "echo listening"], None, log.clone());
        first.spawn().await.unwrap();
        first
            .wait_for_line("listening", Duration::from_secs(30))
            .await
            .unwrap();
        first.kill().await;
        // A second peer on the same (appended) log that ends without saying it listens:
        // the first one's line must not make it look ready.
        let mut second =
            ManagedChild::new(Path::new("sh"), ["-c", "echo starting"], None, log.clone());
        second.spawn().await.unwrap();
        let why = second
            .wait_for_line("listening", Duration::from_secs(30))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            why.contains("exited before it printed `listening`"),
            "{why}"
        );
        second.kill().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
