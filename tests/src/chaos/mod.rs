//! The chaos harness: the whole system as separate processes on a private PostgreSQL server and a private
//! RabbitMQ node, so a test can SIGKILL any service, crash the broker or the database and start them again
//! without disturbing the shared servers other tests use.
//!
//! Everything started here lives in one scratch directory (`$TMPDIR/chaos-<pid>`) and is stopped when the
//! [`Cluster`] is dropped, also when the test panics; the directory (with every log) is kept after a failure and
//! the tails of the logs are printed (`CHAOS_KEEP=1` keeps it after a passing run too). A run killed from outside
//! (nextest's timeout) cannot clean up, so [`Cluster::start`] first stops whatever an earlier, dead run left
//! behind.

mod cluster;
/// Shared with [`crate::ha`], which runs the services on a private server too.
pub(crate) mod postgres;
/// Shared with [`crate::tls`], whose private servers are started the same way.
pub(crate) mod process;
mod rabbitmq;

pub(crate) use cluster::{binaries_dir, stop_leftovers_of_dead_runs, Scratch, ServiceProcess, PIDS_FILE, TAIL_LINES};
pub use cluster::{Cluster, ClusterSettings, Service};
pub(crate) use postgres::PrivatePostgres;
use rabbitmq::PrivateRabbit;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
