//! Private TLS servers for the TLS tests: a throwaway CA with a server certificate for 127.0.0.1 and localhost
//! ([`Pki`]), a PostgreSQL server that accepts TLS connections only ([`TlsPostgres`]) and a RabbitMQ node with a
//! TLS listener only ([`TlsRabbit`]). They mirror the chaos harness's private servers, which are private to it.
//!
//! Everything lives in one scratch directory ([`Scratch`]), removed when the test passes and kept (with the
//! servers' logs) when it fails. A run killed from outside cannot stop its servers, so a new [`Scratch`] first
//! stops whatever a dead run left in its directories.

mod certs;
mod postgres;
mod rabbitmq;

use std::path::{Path, PathBuf};

pub use certs::Pki;
pub use postgres::TlsPostgres;
pub use rabbitmq::TlsRabbit;

/// The scratch directories of TLS test runs start with this.
const SCRATCH_PREFIX: &str = "tls-";

/// A scratch directory of the test's own, `$TMPDIR/tls-<purpose>-<pid>`.
pub struct Scratch(PathBuf);

impl Scratch {
    /// Creates the directory afresh, after stopping the servers of dead runs.
    pub fn new(purpose: &str) -> anyhow::Result<Self> {
        remove_leftovers(purpose);
        let dir = std::env::temp_dir().join(format!("{SCRATCH_PREFIX}{purpose}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {} for its logs", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Stops the servers in, and removes, the scratch directories for `purpose` of runs whose process is gone.
fn remove_leftovers(purpose: &str) {
    let prefix = format!("{SCRATCH_PREFIX}{purpose}-");
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.strip_prefix(&prefix)?.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        postgres::stop_leftover(&dir.join("pg"));
        rabbitmq::stop_leftover(&dir.join("rabbit"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
