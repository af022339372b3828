//! A RabbitMQ node of the test's own (its own node name, ports and mnesia directory), so the test can crash and
//! restart it. The node keeps its durable queues and persistent messages in its mnesia directory across
//! restarts, as a real broker on a persistent volume does.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::process::{give_to, is_alive, kill_pid, run, runs_with, spawn_logged, tail};

/// The OS user the broker runs as when the test runs as root (`rabbitmq-server` switches to it by itself).
const RABBIT_USER: &str = "rabbitmq";
/// How long a start may take: a node boots in about 4 s on an idle machine, much slower on a busy one.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running (or crashed) private RabbitMQ node.
pub struct PrivateRabbit {
    node: String,
    dir: PathBuf,
    port: u16,
    dist_port: u16,
    server: Option<Child>,
}

impl PrivateRabbit {
    /// Prepares a node named `name@localhost` under `dir` listening on `port` and starts it.
    pub fn start(dir: &Path, name: &str, port: u16, dist_port: u16) -> Result<Self> {
        std::fs::create_dir_all(dir.join("mnesia"))?;
        std::fs::create_dir_all(dir.join("log"))?;
        // Our own configuration file: the system one would make the node listen on the shared broker's port.
        std::fs::write(dir.join("rabbitmq.conf"), format!("listeners.tcp.local = 127.0.0.1:{port}\n"))?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        give_to(RABBIT_USER, dir)?;
        let mut rabbit = Self { node: format!("{name}@localhost"), dir: dir.to_owned(), port, dist_port, server: None };
        rabbit.resume()?;
        Ok(rabbit)
    }

    /// The AMQP URL of the node's default vhost.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The node's main log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Starts the (stopped) node and returns once it is fully booted.
    pub fn resume(&mut self) -> Result<()> {
        let mut command = Command::new("rabbitmq-server");
        command
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_PID_FILE", pid_file(&self.dir))
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("enabled_plugins"));
        self.server = Some(spawn_logged(&mut command, &self.log())?);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.ctl(&["-q", "await_startup", "--timeout", "10"]).is_ok() {
                return Ok(());
            }
            if let Some(server) = self.server.as_mut() {
                if let Some(status) = server.try_wait()? {
                    bail!("rabbitmq-server exited with {status}:\n{}", tail(&self.log(), 30));
                }
            }
            if Instant::now() >= deadline {
                bail!("RabbitMQ node {} did not start within {START_TIMEOUT:?}:\n{}", self.node, tail(&self.log(), 30));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Kills the node's Erlang VM with SIGKILL: no clean shutdown, connections just drop.
    pub fn crash(&mut self) -> Result<()> {
        let pid = read_pid(&self.dir).context("reading the RabbitMQ pid file")?;
        if !runs_with(pid, &self.dir.display().to_string()) {
            bail!("RabbitMQ node {} is not running (pid {pid})", self.node);
        }
        kill_pid(pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        while is_alive(pid) {
            if Instant::now() >= deadline {
                bail!("RabbitMQ (pid {pid}) survived SIGKILL for 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(mut server) = self.server.take() {
            // The wrapper scripts end with the VM; reap them.
            let _ = server.kill();
            let _ = server.wait();
        }
        Ok(())
    }

    /// `(queue, messages)` for every queue of the default vhost.
    pub fn queue_depths(&self) -> Result<Vec<(String, u64)>> {
        let listing = self.ctl(&["-q", "list_queues", "name", "messages"])?;
        Ok(listing
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let name = fields.next()?.to_owned();
                let messages = fields.next()?.parse().ok()?;
                Some((name, messages))
            })
            .collect())
    }

    fn ctl(&self, args: &[&str]) -> Result<String> {
        run(Command::new("rabbitmqctl").args(["-n", &self.node]).args(args))
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let _ = self.crash();
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

fn pid_file(dir: &Path) -> PathBuf {
    dir.join("mnesia").join("node.pid")
}

fn read_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(pid_file(dir)).ok()?.trim().parse().ok()
}

/// Used by leftover clean-up: kills the node that ran under `dir`, if it still runs.
pub(super) fn stop_leftover(dir: &Path) {
    if let Some(pid) = read_pid(dir).filter(|&pid| runs_with(pid, &dir.display().to_string())) {
        kill_pid(pid);
    }
}
