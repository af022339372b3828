//! The whole system as `REPLICAS=2 BROKER_NODES=3 scripts/up.sh` runs it: two processes of every service behind
//! the gateway (nginx, rendered from `scripts/nginx.conf.template` by `scripts/lib.sh`), a RabbitMQ cluster of
//! three nodes behind its TCP proxy (`scripts/rabbitmq-cluster.sh`) with quorum queues, and the services'
//! databases on a private PostgreSQL server. Everything has its own ports, node names and directories, so it runs
//! beside a system started by `scripts/up.sh` and beside other tests. Tests SIGKILL one replica or one broker node,
//! or restart every process one at a time with SIGTERM, while clients keep talking to the gateway.
//!
//! Everything lives in one scratch directory (`$TMPDIR/ha-<pid>`), stopped when the [`HaSystem`] is dropped; the
//! directory (with every log) is kept after a failure, or with `CHAOS_KEEP=1`. A run killed from outside cannot
//! clean up, so [`HaSystem::start`] first stops what an earlier, dead run left behind.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use rand::Rng as _;

use crate::chaos::{
    binaries_dir, free_port,
    process::{run, runs_with, tail, terminate_pid},
    stop_leftovers_of_dead_runs, PrivatePostgres, Scratch, Service, ServiceProcess, PIDS_FILE, TAIL_LINES,
};

/// Processes per service.
pub const REPLICAS: usize = 2;
/// Nodes of the broker cluster.
pub const BROKER_NODES: usize = 3;
/// The scratch directories of these runs start with this.
const SCRATCH_PREFIX: &str = "ha-";
/// Each process's database connections, as `REPLICAS=2 scripts/up.sh` gives them: 80 of the private server's 200.
const DB_POOL_SIZE: usize = 10;
/// How long a service may take to exit after SIGTERM: its `SHUTDOWN_TIMEOUT_MS` (10 s) and a margin.
pub const TERMINATION_LIMIT: Duration = Duration::from_secs(15);

/// One process of one service.
struct Replica {
    index: usize,
    process: ServiceProcess,
}

/// The system. Dropping it stops everything it started.
pub struct HaSystem {
    // Drop order is field order: the services first, then the gateway, the broker and the database.
    replicas: Vec<Replica>,
    gateway: Gateway,
    broker: BrokerCluster,
    postgres: PrivatePostgres,
    http: reqwest::Client,
    pids_file: PathBuf,
    scratch: Scratch,
}

impl HaSystem {
    /// Starts the database, the broker cluster, the gateway and every replica, and waits until each replica
    /// answers `/health`. Blocks the calling thread while the servers boot (use a multi-thread runtime).
    pub async fn start() -> Result<Self> {
        let bin_dir = binaries_dir()?;
        stop_leftovers_of_dead_runs(SCRATCH_PREFIX, |dir| {
            BrokerCluster::stop_leftover(dir);
            Gateway::stop_leftover(dir);
        });
        let scratch = Scratch::create(SCRATCH_PREFIX)?;
        let dir = scratch.path.clone();
        println!("ha: scratch directory {}", dir.display());
        let postgres = tokio::task::block_in_place(|| PrivatePostgres::start(&dir.join("postgres"), free_port()?))?;
        let broker = tokio::task::block_in_place(|| BrokerCluster::start(&dir))?;
        let ports: Vec<Vec<u16>> = Service::ALL
            .iter()
            .map(|_| (0..REPLICAS).map(|_| free_port()).collect::<Result<_>>())
            .collect::<Result<_>>()?;
        let gateway = tokio::task::block_in_place(|| Gateway::start(&dir.join("gateway"), &ports))?;

        let mut replicas = Vec::new();
        for (&service, ports) in Service::ALL.iter().zip(&ports) {
            for (index, &port) in ports.iter().enumerate() {
                let env = vec![
                    ("HTTP_ADDR", format!("127.0.0.1:{port}")),
                    ("DATABASE_URL", postgres.url(service.database())),
                    ("AMQP_URL", broker.url()),
                    ("AMQP_QUORUM_QUEUES", "true".to_owned()),
                    // As scripts/up.sh wires several replicas: every peer through the gateway, which skips a
                    // dead replica.
                    ("STOCK_URL", gateway.url()),
                    ("PAYMENT_URL", gateway.url()),
                    ("ORDER_URL", gateway.url()),
                    ("COORDINATOR_URL", gateway.coordinator_url()),
                    ("DB_POOL_SIZE", DB_POOL_SIZE.to_string()),
                    ("RUST_LOG", "warn".to_owned()),
                ];
                let process = ServiceProcess {
                    service,
                    binary: bin_dir.join(service.binary()),
                    env,
                    port,
                    log: dir.join(format!("{}-{index}.log", service.binary())),
                    child: None,
                };
                replicas.push(Replica { index, process });
            }
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        let mut system = Self { replicas, gateway, broker, postgres, http, pids_file: dir.join(PIDS_FILE), scratch };
        // All replicas of a service start together, as a Deployment's pods do: their databases are created and
        // migrated under an advisory lock.
        for replica in &mut system.replicas {
            replica.process.spawn(&system.pids_file)?;
        }
        for replica in &mut system.replicas {
            replica.process.wait_healthy(&system.http).await?;
        }
        Ok(system)
    }

    /// The gateway's base URL: the public API, as clients use it.
    pub fn url(&self) -> String {
        self.gateway.url()
    }

    /// The base URL in front of the coordinator's replicas (its admin API).
    pub fn coordinator_url(&self) -> String {
        self.gateway.coordinator_url()
    }

    /// The URL of `service`'s database.
    pub fn database_url(&self, service: Service) -> String {
        self.postgres.url(service.database())
    }

    /// Every process as (service, replica index), in start order.
    pub fn processes(&self) -> Vec<(Service, usize)> {
        self.replicas.iter().map(|r| (r.process.service, r.index)).collect()
    }

    /// SIGKILLs replica `index` of `service`.
    pub fn kill(&mut self, service: Service, index: usize) {
        self.replica_mut(service, index).process.kill();
    }

    /// Starts replica `index` of `service` (after [`HaSystem::kill`]) and waits until it answers `/health`.
    pub async fn restart(&mut self, service: Service, index: usize) -> Result<()> {
        let pids_file = self.pids_file.clone();
        let http = self.http.clone();
        let process = &mut self.replica_mut(service, index).process;
        process.kill();
        process.spawn(&pids_file)?;
        process.wait_healthy(&http).await
    }

    /// Stops replica `index` of `service` with SIGTERM, as a rolling update does, and fails unless it exits
    /// cleanly within [`TERMINATION_LIMIT`]; returns how long it took.
    pub async fn terminate(&mut self, service: Service, index: usize) -> Result<Duration> {
        let started = std::time::Instant::now();
        let status = self.replica_mut(service, index).process.terminate(TERMINATION_LIMIT).await?;
        if !status.success() {
            bail!("{} replica {index} exited with {status} after SIGTERM", service.binary());
        }
        Ok(started.elapsed())
    }

    /// The index (1-based) of the broker node leading `queue`.
    pub fn broker_leader(&self, queue: &str) -> Result<usize> {
        tokio::task::block_in_place(|| self.broker.leader(queue))
    }

    /// SIGKILLs broker node `node` (1-based).
    pub fn kill_broker_node(&self, node: usize) -> Result<()> {
        tokio::task::block_in_place(|| self.broker.run(&["kill", &node.to_string()]).map(drop))
    }

    /// Starts broker node `node` again after a kill and waits until it has booted.
    pub fn revive_broker_node(&self, node: usize) -> Result<()> {
        tokio::task::block_in_place(|| self.broker.run(&["revive", &node.to_string()]).map(drop))
    }

    /// Stops broker node `node` with SIGTERM, starts it again, and waits until it is back in the cluster.
    pub fn restart_broker_node(&self, node: usize) -> Result<()> {
        tokio::task::block_in_place(|| self.broker.run(&["restart", &node.to_string()]).map(drop))
    }

    /// `(queue, messages)` for every queue of the services' vhost.
    pub fn queue_depths(&self) -> Result<Vec<(String, u64)>> {
        tokio::task::block_in_place(|| self.broker.queue_depths())
    }

    fn replica_mut(&mut self, service: Service, index: usize) -> &mut Replica {
        self.replicas
            .iter_mut()
            .find(|r| r.process.service == service && r.index == index)
            .expect("every service has its replicas")
    }

    /// The ends of every log, for a failure report.
    pub fn log_tails(&self) -> String {
        let logs = self
            .replicas
            .iter()
            .map(|r| (format!("{}-{}", r.process.service.binary(), r.index), r.process.log.clone()))
            .chain(self.broker.logs())
            .chain([
                ("gateway".to_owned(), self.gateway.dir.join("logs/nginx-error.log")),
                ("postgres".to_owned(), self.postgres.log().to_owned()),
            ]);
        let mut report = String::new();
        for (name, log) in logs {
            report.push_str(&format!("----- {name}: {} -----\n{}\n", log.display(), tail(&log, TAIL_LINES)));
        }
        report
    }
}

impl Drop for HaSystem {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("ha: the test failed; logs are kept in {}\n{}", self.scratch.path.display(), self.log_tails());
            self.scratch.keep = true;
        } else if std::env::var_os("CHAOS_KEEP").is_some() {
            eprintln!("ha: CHAOS_KEEP is set; logs are kept in {}", self.scratch.path.display());
            self.scratch.keep = true;
        }
    }
}

/// The repository's root, where the scripts are.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate is in the repository").to_owned()
}

/// The broker cluster, run by `scripts/rabbitmq-cluster.sh` in a directory, with node names and ports of its own.
struct BrokerCluster {
    dir: PathBuf,
    name: String,
    port: u16,
    dist_port: u16,
}

/// The services' broker user, password and vhost: the script's defaults.
const BROKER_CREDENTIALS: &str = "checkout:checkout";
const BROKER_VHOST: &str = "checkout";

impl BrokerCluster {
    fn start(scratch: &Path) -> Result<Self> {
        let (port, dist_port) = free_port_ranges()?;
        let cluster =
            Self { dir: scratch.join("rabbitmq-cluster"), name: format!("ha-{}", std::process::id()), port, dist_port };
        cluster.run(&["start", &BROKER_NODES.to_string()])?;
        Ok(cluster)
    }

    fn url(&self) -> String {
        format!("amqp://{BROKER_CREDENTIALS}@127.0.0.1:{}/{BROKER_VHOST}", self.port)
    }

    fn command(dir: &Path) -> Command {
        let mut command = Command::new(repository().join("scripts/rabbitmq-cluster.sh"));
        command.env("RABBITMQ_CLUSTER_DIR", dir);
        command
    }

    /// Runs the script with `args` against this cluster and returns what it printed.
    fn run(&self, args: &[&str]) -> Result<String> {
        run(Self::command(&self.dir)
            .args(args)
            .env("RABBITMQ_CLUSTER_NAME", &self.name)
            .env("RABBITMQ_CLUSTER_PORT", self.port.to_string())
            .env("RABBITMQ_CLUSTER_DIST_PORT", self.dist_port.to_string()))
        .with_context(|| format!("scripts/rabbitmq-cluster.sh {}", args.join(" ")))
    }

    fn leader(&self, queue: &str) -> Result<usize> {
        let answer = self.run(&["leader", queue])?;
        answer.trim().parse().with_context(|| format!("the leader of {queue} is {answer:?}"))
    }

    fn queue_depths(&self) -> Result<Vec<(String, u64)>> {
        let listing =
            self.run(&["ctl", "1", "list_queues", "-p", BROKER_VHOST, "--no-table-headers", "name", "messages"])?;
        Ok(listing
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some((fields.next()?.to_owned(), fields.next()?.parse().ok()?))
            })
            .collect())
    }

    fn logs(&self) -> Vec<(String, PathBuf)> {
        (1..=BROKER_NODES)
            .map(|node| {
                (format!("rabbitmq node {node}"), self.dir.join(format!("log/{}-{node}@localhost.log", self.name)))
            })
            .collect()
    }

    /// Used by leftover clean-up: stops the cluster a dead run left under `scratch`.
    fn stop_leftover(scratch: &Path) {
        let dir = scratch.join("rabbitmq-cluster");
        if dir.exists() {
            let _ = run(Self::command(&dir).arg("stop"));
        }
    }
}

impl Drop for BrokerCluster {
    fn drop(&mut self) {
        if let Err(e) = self.run(&["stop"]) {
            eprintln!("ha: stopping the broker cluster: {e:#}");
        }
    }
}

/// A base port whose next [`BROKER_NODES`] ports are free, for the proxy and the nodes' AMQP listeners, and
/// another for their Erlang distribution ports (`scripts/rabbitmq-cluster.sh` gives node I port BASE + I).
fn free_port_ranges() -> Result<(u16, u16)> {
    let free =
        |base: u16| (0..=BROKER_NODES as u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
    let mut rng = rand::rng();
    for _ in 0..100 {
        let (port, dist_port) = (rng.random_range(20_000..29_000), rng.random_range(40_000..49_000));
        if free(port) && free(dist_port) {
            return Ok((port, dist_port));
        }
    }
    bail!("found no free ports for the broker cluster")
}

/// The gateway: nginx from the template scripts/up.sh uses, with one upstream server per replica.
struct Gateway {
    dir: PathBuf,
    port: u16,
    coordinator_port: u16,
}

impl Gateway {
    /// Renders and starts the gateway in `dir`; `ports[s][r]` is the port of replica `r` of `Service::ALL[s]`.
    fn start(dir: &Path, ports: &[Vec<u16>]) -> Result<Self> {
        let gateway = Self { dir: dir.to_owned(), port: free_port()?, coordinator_port: free_port()? };
        // The `server` lines come from scripts/lib.sh too, from each service's ports separated by commas.
        let ports_of = |wanted: Service| -> String {
            let index = Service::ALL.iter().position(|s| *s == wanted).expect("every service is in ALL");
            ports[index].iter().map(u16::to_string).collect::<Vec<_>>().join(",")
        };
        let script = r#"source scripts/lib.sh
servers() { local IFS=,; upstream_servers $1; }
start_nginx "$1" "$2" off "$3" "$(servers "$4")" "$(servers "$5")" "$(servers "$6")" "$(servers "$7")""#;
        run(Command::new("bash")
            .current_dir(repository())
            .args(["-c", script, "start_nginx"])
            .arg(dir)
            .arg(gateway.port.to_string())
            .arg(gateway.coordinator_port.to_string())
            .args([Service::Orders, Service::Payment, Service::Stock, Service::Coordinator].map(ports_of)))
        .context("starting the gateway")?;
        Ok(gateway)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn coordinator_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.coordinator_port)
    }

    fn pid(dir: &Path) -> Option<u32> {
        std::fs::read_to_string(dir.join("pids/nginx.pid")).ok()?.trim().parse().ok()
    }

    /// Stops the nginx that runs from `dir`: SIGTERM to its master, which takes the workers with it.
    fn stop(dir: &Path) {
        if let Some(pid) = Self::pid(dir).filter(|&pid| runs_with(pid, &dir.display().to_string())) {
            terminate_pid(pid);
        }
    }

    /// Used by leftover clean-up: stops the gateway a dead run left under `scratch`.
    fn stop_leftover(scratch: &Path) {
        Self::stop(&scratch.join("gateway"));
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        Self::stop(&self.dir);
    }
}
