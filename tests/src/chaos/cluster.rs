//! The four services as separate processes (the binaries cargo built next to the test executable), on a private
//! PostgreSQL server and RabbitMQ node, with the operations a chaos test needs: SIGKILL and restart a service,
//! crash and restart the broker or the database.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use platform::testing::eventually_ok;

use super::{
    free_port, postgres,
    process::{kill_pid, run, runs_with, spawn_logged, tail},
    rabbitmq, PrivatePostgres, PrivateRabbit,
};

/// How long a (re)started service may take to answer `/health`.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
/// Log lines printed per process when a test fails.
pub(crate) const TAIL_LINES: usize = 40;
/// The scratch directories of chaos runs start with this.
const SCRATCH_PREFIX: &str = "chaos-";
/// The file in a scratch directory listing the PIDs of the services started there.
pub(crate) const PIDS_FILE: &str = "services.pids";

/// One of the four deployables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// stock-svc.
    Stock,
    /// payment-svc.
    Payment,
    /// The saga coordinator.
    Coordinator,
    /// order-svc.
    Orders,
}

impl Service {
    /// Every service, in start order: the coordinator first (stock-svc and payment-svc ask it about unfinished
    /// sagas), order-svc last (it calls stock-svc and payment-svc).
    pub const ALL: [Service; 4] = [Service::Coordinator, Service::Stock, Service::Payment, Service::Orders];

    /// The binary's name.
    pub fn binary(self) -> &'static str {
        match self {
            Service::Stock => "stock-svc",
            Service::Payment => "payment-svc",
            Service::Coordinator => "coordinator",
            Service::Orders => "order-svc",
        }
    }

    /// The name of its database.
    pub fn database(self) -> &'static str {
        match self {
            Service::Stock => "stock",
            Service::Payment => "payment",
            Service::Coordinator => "coordinator",
            Service::Orders => "orders",
        }
    }
}

/// A service process, which can be killed and started again with the same settings and port.
pub(crate) struct ServiceProcess {
    pub(crate) service: Service,
    pub(crate) binary: PathBuf,
    pub(crate) env: Vec<(&'static str, String)>,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
    pub(crate) child: Option<Child>,
}

impl ServiceProcess {
    pub(crate) fn spawn(&mut self, pids_file: &Path) -> Result<()> {
        let mut command = Command::new(&self.binary);
        command.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        let child = spawn_logged(&mut command, &self.log)?;
        // Recorded so that a later run can stop this process if this run is killed before it cleans up.
        let mut pids = std::fs::read_to_string(pids_file).unwrap_or_default();
        pids.push_str(&format!("{}\n", child.id()));
        std::fs::write(pids_file, pids)?;
        self.child = Some(child);
        Ok(())
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the process answers `/health` on its port; fails at once if it exits.
    pub(crate) async fn wait_healthy(&mut self, http: &reqwest::Client) -> Result<()> {
        let url = format!("http://127.0.0.1:{}/health", self.port);
        let what = format!("{} to answer {url}", self.service.binary());
        // `Some(Err(..))`: the process exited, which ends the wait at once.
        let healthy = eventually_ok(&what, HEALTHY_TIMEOUT, async || {
            if let Ok(response) = http.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(Some(Ok(())));
                }
            }
            Ok(self.child.as_mut().map(Child::try_wait).transpose()?.flatten().map(|status| {
                Err(anyhow::anyhow!("{} exited with {status}:\n{}", self.service.binary(), tail(&self.log, TAIL_LINES)))
            }))
        })
        .await?;
        healthy
    }

    /// Sends SIGTERM, as Kubernetes does to a pod it stops, and waits up to `within` for the process to exit;
    /// returns how it exited. One that has not exited by then is killed, and that is an error.
    pub(crate) async fn terminate(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else { bail!("{} is not running", self.service.binary()) };
        run(Command::new("kill").args(["-TERM", &child.id().to_string()]))?;
        let what = format!("{} (pid {}) to exit after SIGTERM", self.service.binary(), child.id());
        match eventually_ok(&what, within, async || Ok(child.try_wait()?)).await {
            Ok(status) => Ok(status),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Settings of the services that a test chooses.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The coordinator's `RETRY_AFTER_MS`.
    pub retry_after_ms: u64,
    /// The coordinator's `RETRY_MAX_MS`.
    pub retry_max_ms: u64,
    /// order-svc's `CHECKOUT_TIMEOUT_MS`.
    pub checkout_timeout_ms: u64,
    /// order-svc's `RESEND_AFTER_MS`.
    pub resend_after_ms: u64,
    /// order-svc's `RESEND_MAX_MS`.
    pub resend_max_ms: u64,
}

impl ClusterSettings {
    /// The settings the services ship with (see README.md).
    pub fn shipped_defaults() -> Self {
        Self {
            retry_after_ms: 2000,
            retry_max_ms: 5000,
            checkout_timeout_ms: 30_000,
            resend_after_ms: 2000,
            resend_max_ms: 5000,
        }
    }
}

/// The whole system, running as processes. Dropping it stops everything it started.
pub struct Cluster {
    // Drop order is field order: the services go first, then the broker and the database, then the directory.
    services: Vec<ServiceProcess>,
    rabbit: PrivateRabbit,
    postgres: PrivatePostgres,
    http: reqwest::Client,
    pids_file: PathBuf,
    scratch: Scratch,
}

impl Cluster {
    /// Starts a private PostgreSQL server and RabbitMQ node and the four services on them, and waits until every
    /// service answers `/health`. Blocks the calling thread while the servers boot (use a multi-thread runtime).
    pub async fn start(settings: &ClusterSettings) -> Result<Self> {
        let bin_dir = binaries_dir()?;
        stop_leftovers_of_dead_runs(SCRATCH_PREFIX, |_| ());
        let scratch = Scratch::create(SCRATCH_PREFIX)?;
        let dir = scratch.path.clone();
        println!("chaos: scratch directory {}", dir.display());
        let postgres = tokio::task::block_in_place(|| PrivatePostgres::start(&dir.join("postgres"), free_port()?))?;
        let node = format!("{SCRATCH_PREFIX}{}", std::process::id());
        let rabbit = tokio::task::block_in_place(|| {
            PrivateRabbit::start(&dir.join("rabbitmq"), &node, free_port()?, free_port()?)
        })?;

        // Every port is chosen before any service starts, since the services are given each other's URLs.
        let ports: Vec<u16> = Service::ALL.iter().map(|_| free_port()).collect::<Result<_>>()?;
        let url_of = |wanted: Service| {
            let port = Service::ALL.iter().zip(&ports).find(|(s, _)| **s == wanted).map_or(0, |(_, port)| *port);
            format!("http://127.0.0.1:{port}")
        };
        let services = Service::ALL
            .iter()
            .zip(&ports)
            .map(|(&service, &port)| {
                let mut env = vec![
                    ("HTTP_ADDR", format!("127.0.0.1:{port}")),
                    ("DATABASE_URL", postgres.url(service.database())),
                    ("AMQP_URL", rabbit.url()),
                    ("RUST_LOG", "warn".to_owned()),
                ];
                match service {
                    Service::Orders => {
                        env.push(("STOCK_URL", url_of(Service::Stock)));
                        env.push(("PAYMENT_URL", url_of(Service::Payment)));
                        env.push(("CHECKOUT_TIMEOUT_MS", settings.checkout_timeout_ms.to_string()));
                        env.push(("RESEND_AFTER_MS", settings.resend_after_ms.to_string()));
                        env.push(("RESEND_MAX_MS", settings.resend_max_ms.to_string()));
                    }
                    Service::Coordinator => {
                        env.push(("RETRY_AFTER_MS", settings.retry_after_ms.to_string()));
                        env.push(("RETRY_MAX_MS", settings.retry_max_ms.to_string()));
                    }
                    Service::Stock => env.push(("COORDINATOR_URL", url_of(Service::Coordinator))),
                    Service::Payment => {
                        env.push(("COORDINATOR_URL", url_of(Service::Coordinator)));
                        env.push(("ORDER_URL", url_of(Service::Orders)));
                    }
                }
                ServiceProcess {
                    service,
                    binary: bin_dir.join(service.binary()),
                    env,
                    port,
                    log: dir.join(format!("{}.log", service.binary())),
                    child: None,
                }
            })
            .collect();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        let mut cluster = Self { services, rabbit, postgres, http, pids_file: dir.join(PIDS_FILE), scratch };
        for service in Service::ALL {
            cluster.restart(service).await?;
        }
        Ok(cluster)
    }

    /// The base URL of `service`'s HTTP API.
    pub fn url(&self, service: Service) -> String {
        format!("http://127.0.0.1:{}", self.process(service).port)
    }

    /// The URL of `service`'s database.
    pub fn database_url(&self, service: Service) -> String {
        self.postgres.url(service.database())
    }

    /// Kills `service` with SIGKILL.
    pub fn kill(&mut self, service: Service) {
        self.process_mut(service).kill();
    }

    /// Starts `service` (after [`Cluster::kill`]) and waits until it answers `/health`.
    pub async fn restart(&mut self, service: Service) -> Result<()> {
        let pids_file = self.pids_file.clone();
        let process = self.process_mut(service);
        process.kill();
        process.spawn(&pids_file)?;
        self.wait_healthy(service).await
    }

    /// Kills the RabbitMQ node with SIGKILL.
    pub fn crash_broker(&mut self) -> Result<()> {
        tokio::task::block_in_place(|| self.rabbit.crash())
    }

    /// Starts the RabbitMQ node again and waits until it has booted.
    pub fn restart_broker(&mut self) -> Result<()> {
        tokio::task::block_in_place(|| self.rabbit.resume())
    }

    /// Stops PostgreSQL the hard way (every backend killed, crash recovery at the next start).
    pub fn crash_database(&self) -> Result<()> {
        tokio::task::block_in_place(|| self.postgres.crash())
    }

    /// Starts PostgreSQL again and waits until it accepts connections.
    pub fn restart_database(&self) -> Result<()> {
        tokio::task::block_in_place(|| self.postgres.resume())
    }

    /// `(queue, messages)` for every queue on the broker.
    pub fn queue_depths(&self) -> Result<Vec<(String, u64)>> {
        tokio::task::block_in_place(|| self.rabbit.queue_depths())
    }

    async fn wait_healthy(&mut self, service: Service) -> Result<()> {
        let http = self.http.clone();
        self.process_mut(service).wait_healthy(&http).await
    }

    fn process(&self, service: Service) -> &ServiceProcess {
        self.services.iter().find(|p| p.service == service).expect("every service has a process")
    }

    fn process_mut(&mut self, service: Service) -> &mut ServiceProcess {
        self.services.iter_mut().find(|p| p.service == service).expect("every service has a process")
    }

    /// The ends of every log, for a failure report.
    pub fn log_tails(&self) -> String {
        let mut report = String::new();
        let logs = self.services.iter().map(|p| (p.service.binary().to_owned(), p.log.clone())).chain([
            ("rabbitmq".to_owned(), self.rabbit.log()),
            ("postgres".to_owned(), self.postgres.log().to_owned()),
        ]);
        for (name, log) in logs {
            report.push_str(&format!("----- {name}: {} -----\n{}\n", log.display(), tail(&log, TAIL_LINES)));
        }
        report
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("chaos: the test failed; logs are kept in {}\n{}", self.scratch.path.display(), self.log_tails());
            self.scratch.keep = true;
        } else if std::env::var_os("CHAOS_KEEP").is_some() {
            eprintln!("chaos: CHAOS_KEEP is set; logs are kept in {}", self.scratch.path.display());
            self.scratch.keep = true;
        }
    }
}

/// The run's scratch directory, removed at the end unless a failure asks to keep it.
pub(crate) struct Scratch {
    pub(crate) path: PathBuf,
    pub(crate) keep: bool,
}

impl Scratch {
    /// `$TMPDIR/<prefix><pid>`, empty.
    pub(crate) fn create(prefix: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("{prefix}{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        // The servers run as their own users and must be able to reach their subdirectories.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        Ok(Self { path, keep: false })
    }
}

/// The file that marks a scratch directory kept for its logs: everything in it was stopped, and the leftover
/// clean-up of later runs leaves it alone.
const KEPT_MARKER: &str = "KEPT";

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            let _ = std::fs::write(self.path.join(KEPT_MARKER), "kept for its logs; remove by hand\n");
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Where cargo put the service binaries: the test executable is `<target>/debug/deps/chaos-<hash>`, the
/// binaries are in `<target>/debug/`.
pub(crate) fn binaries_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("{} is not in <target>/<profile>/deps", exe.display()))?
        .to_owned();
    for service in Service::ALL {
        if !dir.join(service.binary()).exists() {
            bail!(
                "{} is missing in {}: run `cargo build --workspace` first (scripts/test.sh does)",
                service.binary(),
                dir.display()
            );
        }
    }
    Ok(dir)
}

/// Stops the processes and servers of earlier runs (scratch directories named `<prefix><pid>`) whose test process
/// is gone (killed by a timeout before it could clean up), and removes their directories; `stop_more` stops
/// what else such a run may have started under its directory.
pub(crate) fn stop_leftovers_of_dead_runs(prefix: &str, stop_more: impl Fn(&Path)) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(prefix).and_then(|pid| pid.parse::<u32>().ok()) else { continue };
        let dir = entry.path();
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() || dir.join(KEPT_MARKER).exists() {
            continue;
        }
        eprintln!("cleaning up after the dead run {}", dir.display());
        for line in std::fs::read_to_string(dir.join(PIDS_FILE)).unwrap_or_default().lines() {
            if let Ok(service_pid) = line.trim().parse::<u32>() {
                // A recorded PID is killed only if it still runs one of our binaries.
                if Service::ALL.iter().any(|s| runs_with(service_pid, s.binary())) {
                    kill_pid(service_pid);
                }
            }
        }
        rabbitmq::stop_leftover(&dir.join("rabbitmq"));
        postgres::stop_leftover(&dir.join("postgres"));
        stop_more(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
