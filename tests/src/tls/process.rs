//! Running the servers' tools, as their own users when the test runs as root (as the chaos harness does).

use std::{
    fs::File,
    os::unix::fs::MetadataExt,
    path::Path,
    process::{Child, Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// Whether this process runs as root (and so must drop to the servers' own users to start them).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// `program` run as `user` when we are root, else as ourselves.
pub fn command_as(user: &str, program: &str) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", user, "--", program]);
        command
    } else {
        Command::new(program)
    }
}

/// Runs `command` to completion and returns its stdout; fails with its output when it exits non-zero.
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

/// Hands `path` (recursively) to `user`, so a server running as that user can read and write there.
pub fn give_to(user: &str, path: &Path) -> Result<()> {
    if is_root() {
        run(Command::new("chown").arg("-R").arg(format!("{user}:{user}")).arg(path))?;
    }
    Ok(())
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
