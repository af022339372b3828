//! A private RabbitMQ node (its own node name, ports and mnesia directory) with one listener, TLS, on
//! 127.0.0.1, serving a given certificate.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use super::Pki;
use crate::chaos::process::{give_to, run, spawn_logged, tail};

/// The OS user the broker runs as when the test runs as root (`rabbitmq-server` switches to it by itself).
const RABBIT_USER: &str = "rabbitmq";
/// How long a start may take: a node boots in about 4 s on an idle machine, much slower on a busy one.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running private RabbitMQ node; killed when dropped.
pub struct TlsRabbit {
    node: String,
    dir: PathBuf,
    port: u16,
    server: Option<Child>,
}

impl TlsRabbit {
    /// Starts a node named `name@localhost` under `dir`, with a TLS listener on `port` serving `pki`'s
    /// certificate, its Erlang distribution on `dist_port`.
    pub fn start(dir: &Path, name: &str, port: u16, dist_port: u16, pki: &Pki) -> Result<Self> {
        std::fs::create_dir_all(dir.join("mnesia"))?;
        std::fs::create_dir_all(dir.join("log"))?;
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls)?;
        for (from, to) in [(&pki.ca, "ca.crt"), (&pki.cert, "server.crt"), (&pki.key, "server.key")] {
            std::fs::copy(from, tls.join(to))?;
        }
        // Our own configuration: the system one would make the node listen on the shared broker's port.
        let config = format!(
            "listeners.tcp = none\n\
             listeners.ssl.default = 127.0.0.1:{port}\n\
             ssl_options.cacertfile = {ca}\n\
             ssl_options.certfile = {cert}\n\
             ssl_options.keyfile = {key}\n\
             ssl_options.verify = verify_none\n\
             ssl_options.fail_if_no_peer_cert = false\n",
            ca = tls.join("ca.crt").display(),
            cert = tls.join("server.crt").display(),
            key = tls.join("server.key").display(),
        );
        std::fs::write(dir.join("rabbitmq.conf"), config)?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        give_to(RABBIT_USER, dir)?;
        let node = format!("{name}@localhost");
        let mut command = Command::new("rabbitmq-server");
        command
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("mnesia").join("node.pid"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"));
        let log = dir.join("server.log");
        let mut rabbit = Self { node, dir: dir.to_owned(), port, server: Some(spawn_logged(&mut command, &log)?) };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if run(Command::new("rabbitmqctl").args(["-n", &rabbit.node, "-q", "await_startup", "--timeout", "10"]))
                .is_ok()
            {
                return Ok(rabbit);
            }
            if let Some(status) = rabbit.server.as_mut().map(Child::try_wait).transpose()?.flatten() {
                bail!("rabbitmq-server exited with {status}:\n{}", tail(&log, 30));
            }
            if Instant::now() >= deadline {
                bail!("RabbitMQ node {} did not start within {START_TIMEOUT:?}:\n{}", rabbit.node, tail(&log, 30));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The `amqps` URL of the node's default vhost.
    pub fn url(&self) -> String {
        format!("amqps://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

impl Drop for TlsRabbit {
    fn drop(&mut self) {
        stop_leftover(&self.dir);
        if let Some(mut server) = self.server.take() {
            // The wrapper scripts end with the VM; reap them.
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// Kills the Erlang VM of the node under `dir` (a grandchild of `rabbitmq-server`) by the PID it recorded, if
/// that process still runs from `dir`.
pub(super) fn stop_leftover(dir: &Path) {
    let pid = std::fs::read_to_string(dir.join("mnesia").join("node.pid")).ok();
    let Some(pid) = pid.and_then(|pid| pid.trim().parse::<u32>().ok()) else { return };
    let needle = dir.display().to_string();
    let runs_from_dir = ["cmdline", "environ"].iter().any(|file| {
        std::fs::read(format!("/proc/{pid}/{file}")).is_ok_and(|text| String::from_utf8_lossy(&text).contains(&needle))
    });
    if runs_from_dir {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
}
