//! A private PostgreSQL server that speaks TLS with a given certificate and lets clients in only over TLS
//! (`hostssl` lines alone in `pg_hba.conf`), listening on 127.0.0.1 and 127.0.0.2 (an address its certificate
//! does not name); or, given no certificate, one that speaks plain TCP only.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::Pki;
use crate::chaos::process::{command_as, give_to, run};

/// The OS user PostgreSQL runs as when the test runs as root.
const PG_USER: &str = "postgres";

/// A running private PostgreSQL server; stopped when dropped.
pub struct TlsPostgres {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
}

impl TlsPostgres {
    /// Creates a cluster under `dir` whose certificate and key come from `pki` (no TLS at all without one), and
    /// starts it on `port`.
    pub fn start(dir: &Path, port: u16, pki: Option<&Pki>) -> Result<Self> {
        let bin = server_bin_dir()?;
        std::fs::create_dir_all(dir)?;
        give_to(PG_USER, dir)?;
        let server = Self { data: dir.join("data"), log: dir.join("postgres.log"), bin, port };
        run(command_as(PG_USER, &server.tool("initdb")).arg("-D").arg(&server.data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]))
        .context("initdb")?;
        let mut options =
            format!("-p {port} -k {} -c listen_addresses=127.0.0.1,127.0.0.2 -c fsync=off", dir.display());
        let hba = match pki {
            Some(pki) => {
                std::fs::copy(&pki.cert, server.data.join("server.crt"))?;
                std::fs::copy(&pki.key, server.data.join("server.key"))?;
                options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
                "hostssl"
            }
            None => {
                options.push_str(" -c ssl=off");
                "host"
            }
        };
        std::fs::write(
            server.data.join("pg_hba.conf"),
            format!("local all all trust\n{hba} all all 127.0.0.0/8 trust\n"),
        )?;
        give_to(PG_USER, &server.data)?;
        if pki.is_some() {
            // PostgreSQL refuses a key file that others may read.
            run(command_as(PG_USER, "chmod").arg("600").arg(server.data.join("server.key")))?;
        }
        run(command_as(PG_USER, &server.tool("pg_ctl"))
            .arg("-D")
            .arg(&server.data)
            .args(["-o", &options, "-l"])
            .arg(&server.log)
            .args(["-w", "-t", "60", "start"]))
        .with_context(|| format!("starting PostgreSQL (log: {})", server.log.display()))?;
        Ok(server)
    }

    /// The URL of database `name` on this server at `host`, with the query `options` (`sslmode=...`).
    pub fn url(&self, host: &str, name: &str, options: &str) -> String {
        format!("postgres://postgres@{host}:{}/{name}?{options}", self.port)
    }

    fn tool(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = stop(&self.bin, &self.data);
    }
}

/// Stops the server whose data directory is `data`, if it runs.
fn stop(bin: &Path, data: &Path) -> Result<String> {
    let pg_ctl = bin.join("pg_ctl").display().to_string();
    run(command_as(PG_USER, &pg_ctl).arg("-D").arg(data).args(["-m", "immediate", "-w", "stop"]))
}

/// Stops the server a dead run left under `dir`, if it still runs.
pub(super) fn stop_leftover(dir: &Path) {
    if let (Ok(bin), true) = (server_bin_dir(), dir.join("data").join("postmaster.pid").exists()) {
        let _ = stop(&bin, &dir.join("data"));
    }
}

/// Where the server binaries are: `CHAOS_PG_BIN`, else the newest `/usr/lib/postgresql/<version>/bin`.
fn server_bin_dir() -> Result<PathBuf> {
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
