//! Small helpers around child processes: running a tool to completion, running it as another user, killing by
//! PID, and reading the end of a log file.

use std::{
    fs::File,
    os::unix::fs::MetadataExt,
    path::Path,
    process::{Child, Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// Whether this process runs as root (and so must drop to the servers' own users to start them).
pub fn is_root() -> bool {
    // The owner of /proc/self is the process's effective user.
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// `program` run as `user` when we are root (initdb and RabbitMQ refuse to run as root), else as ourselves.
pub fn command_as(user: &str, program: &str) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", user, "--", program]);
        command
    } else {
        Command::new(program)
    }
}

/// Runs `command` to completion and returns its stdout; fails with its stderr when it exits non-zero.
pub fn run(command: &mut Command) -> Result<String> {
    let output = command.stdin(Stdio::null()).output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} exited with {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Hands `path` (recursively) to `user`, so a server running as that user can write there.
pub fn give_to(user: &str, path: &Path) -> Result<()> {
    if is_root() {
        run(Command::new("chown").arg("-R").arg(format!("{user}:{user}")).arg(path))?;
    }
    Ok(())
}

/// Sends SIGKILL to `pid`. A process that is already gone is not an error.
pub fn kill_pid(pid: u32) {
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
}

/// Sends SIGTERM to `pid`. A process that is already gone is not an error.
pub fn terminate_pid(pid: u32) {
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).stderr(Stdio::null()).status();
}

/// Whether a process with this PID exists.
pub fn is_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether a process with this PID exists and its command line or environment mentions `needle` (so a PID
/// recorded by an earlier run and since reused by an unrelated process is left alone).
pub fn runs_with(pid: u32, needle: &str) -> bool {
    ["cmdline", "environ"].iter().any(|file| {
        std::fs::read(format!("/proc/{pid}/{file}"))
            .map(|text| String::from_utf8_lossy(&text).contains(needle))
            .unwrap_or(false)
    })
}

/// Starts `command` in the background with stdout and stderr appended to `log`.
pub fn spawn_logged(command: &mut Command, log: &Path) -> Result<Child> {
    let file = File::options().create(true).append(true).open(log).with_context(|| format!("opening {log:?}"))?;
    let stderr = file.try_clone()?;
    command.stdin(Stdio::null()).stdout(file).stderr(stderr).spawn().with_context(|| format!("starting {command:?}"))
}

/// The last `lines` lines of the file at `path` (or a note that it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
