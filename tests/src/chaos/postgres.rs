//! A PostgreSQL server of the test's own (`initdb` into the scratch directory, trust auth, a free port), so the
//! test can crash and restart it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::process::{command_as, give_to, run};

/// The OS user PostgreSQL runs as when the test runs as root.
const PG_USER: &str = "postgres";

/// A running (or crashed) private PostgreSQL server.
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// Creates a cluster under `dir` and starts it on `port`.
    pub fn start(dir: &Path, port: u16) -> Result<Self> {
        let bin = server_bin_dir()?;
        std::fs::create_dir_all(dir)?;
        give_to(PG_USER, dir)?;
        let server =
            Self { data: dir.join("data"), socket_dir: dir.to_owned(), log: dir.join("postgres.log"), bin, port };
        run(command_as(PG_USER, &server.tool("initdb")).arg("-D").arg(&server.data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]))
        .context("initdb")?;
        server.resume()?;
        Ok(server)
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres:postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The log file of the server.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Starts the (stopped) server and returns once it accepts connections.
    pub fn resume(&self) -> Result<()> {
        // fsync off: only this process can crash, never the machine, and the test is faster for it.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.socket_dir.display()
        );
        run(command_as(PG_USER, &self.tool("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &options, "-l"])
            .arg(&self.log)
            .args(["-w", "-t", "60", "start"]))
        .context("starting PostgreSQL")?;
        Ok(())
    }

    /// Stops the server the hard way (`-m immediate`: every backend is killed, recovery runs at the next start),
    /// which is what a crash looks like to the clients.
    pub fn crash(&self) -> Result<()> {
        stop_immediately(&self.bin, &self.data)
    }

    fn tool(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.crash();
    }
}

/// Stops the server whose data directory is `data`, if it runs.
pub(super) fn stop_immediately(bin: &Path, data: &Path) -> Result<()> {
    run(command_as(PG_USER, &bin.join("pg_ctl").display().to_string()).arg("-D").arg(data).args([
        "-m",
        "immediate",
        "-w",
        "stop",
    ]))
    .context("stopping PostgreSQL")?;
    Ok(())
}

/// Where the server binaries are: `CHAOS_PG_BIN`, else the newest `/usr/lib/postgresql/<version>/bin`.
pub(super) fn server_bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("CHAOS_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("looking for PostgreSQL in /usr/lib/postgresql (set CHAOS_PG_BIN to its bin directory)")?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context("no initdb under /usr/lib/postgresql/*/bin")
}

/// Used by leftover clean-up, which only knows the data directory.
pub(super) fn stop_leftover(dir: &Path) {
    if let Ok(bin) = server_bin_dir() {
        let _ = stop_immediately(&bin, &dir.join("data"));
    }
}
