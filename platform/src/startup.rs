//! The one start-up path of every service: read the settings, prepare the database (created and migrated if
//! needed), reach the broker, let the service wire its own parts, serve HTTP with the middleware and routes all
//! services share, and, on SIGTERM or SIGINT, shut all of it down gracefully.
//!
//! A service describes itself by implementing [`Service`]: its name, migrations and queues, and `wire`, which
//! starts its consumers ([`Parts::consume`]) and other background tasks ([`Parts::spawn`]), takes its dispatchers
//! from [`Parts::dispatcher`], and returns the HTTP configuration of its own routes and their data. Its
//! `startup::Application` is then `platform::startup::Application<ItsService>`, and its `main` is [`main`].
//!
//! The application alone owns the signals (actix-web's own handling is off), and shuts down in this order, all
//! within [`ServiceSettings::shutdown_timeout`] of the signal:
//! 1. The HTTP server stops accepting connections and finishes the requests in flight; at the same time the
//!    consumers marked [`StopConsuming::AtOnce`] finish the batch they are handling and stop, leaving the rest of
//!    their queue to the other replicas.
//! 2. Once no request is left, the consumers marked [`StopConsuming::AfterRequests`] stop the same way (those
//!    requests waited for what these consume).
//! 3. The other background tasks are dropped at their next await (their work is redone from committed state).
//! 4. The dispatchers publish what they were handed.
//!
//! Whatever still runs at the deadline is dropped, so that the process exits in time even when a request hangs:
//! the broker then hands the unacked messages of a dropped consumer to another, and the committed state of an
//! unsent message has it sent again.

use std::{fmt::Display, io, marker::PhantomData, sync::Arc, time::Duration};

use actix_web::{dev::Server, middleware::from_fn, web, App, HttpServer};
use anyhow::Result;
use diesel_migrations::EmbeddedMigrations;
use futures::Future;
use tokio::{task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    amqp::{consume_until, BatchHandler, Broker, ConsumerSettings, Publisher},
    config::ServiceSettings,
    db,
    dispatch::Dispatcher,
    http,
};

/// What a service supplies to the shared start-up: who it is and how its own parts fit together.
pub trait Service: 'static {
    /// The service's short name (`stock`), used for its metrics, its logs and its broker connection.
    const NAME: &'static str;
    /// The migrations of its database.
    const MIGRATIONS: EmbeddedMigrations;
    /// The work queues it declares whenever it connects to the broker.
    const QUEUES: &'static [&'static str];

    /// Its whole configuration: the [`ServiceSettings`] plus its own, logged at start (so without secrets).
    type Config: Display + Send + 'static;

    /// The shared part of `config`.
    fn settings(config: &Self::Config) -> &ServiceSettings;

    /// Starts the service's consumers and background tasks on `parts` and returns its HTTP routes with their data.
    fn wire(config: Self::Config, parts: &mut Parts) -> Result<impl Routes>;
}

/// A service's own HTTP routes and their data, added to the shared ones on every HTTP worker.
pub trait Routes: Fn(&mut web::ServiceConfig) + Clone + Send + 'static {}

impl<F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static> Routes for F {}

/// When a consumer stops taking messages during a graceful shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopConsuming {
    /// As soon as the shutdown begins: what it has not taken goes to the queue's other consumers at once.
    AtOnce,
    /// Once the HTTP requests in flight have been answered, because they wait for what it consumes (order-svc's
    /// checkout requests wait for their saga's outcome).
    AfterRequests,
}

/// What the shared start-up has made ready for a service to wire: its database pool (which every HTTP handler
/// also finds as `web::Data<db::Pool>`) and its broker; and what the service starts on them, which the
/// [`Application`] owns and stops.
pub struct Parts {
    /// The pool of the service's (migrated) database.
    pub pool: db::Pool,
    /// The broker, with the service's queues.
    pub broker: Broker,
    /// What the service starts, handed to the [`Application`] once wired.
    background: Background,
}

impl Parts {
    /// Runs `task` in the background until the application stops, when it is dropped at its next await after
    /// the HTTP requests and the consumers have finished: for timers whose work is redone from committed state,
    /// and tasks that serve the HTTP requests.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.background.tasks.spawn(task);
    }

    /// Consumes `queue` with `handler` as `settings` say, until the shutdown stops it `when` it says (see
    /// [`consume_until`] for how a consumer stops).
    pub fn consume<H: BatchHandler>(
        &mut self,
        queue: &'static str,
        settings: ConsumerSettings,
        handler: Arc<H>,
        when: StopConsuming,
    ) {
        let stop = match when {
            StopConsuming::AtOnce => self.background.stop_at_once.clone(),
            StopConsuming::AfterRequests => self.background.stop_after_requests.clone(),
        };
        self.background.consumers.spawn(consume_until(self.broker.clone(), queue, settings, handler, stop));
    }

    /// A dispatcher publishing through `publisher`, which the application flushes once its consumers and tasks
    /// have stopped.
    pub fn dispatcher(&mut self, publisher: Arc<Publisher>) -> Dispatcher {
        let dispatcher = Dispatcher::new(publisher);
        self.background.dispatchers.push(dispatcher.clone());
        dispatcher
    }
}

/// What runs beside the HTTP server, in the order it is stopped.
#[derive(Default)]
struct Background {
    /// Told to stop as the shutdown begins.
    stop_at_once: CancellationToken,
    /// Told to stop once the HTTP requests are answered.
    stop_after_requests: CancellationToken,
    /// The consumers, which stop when their token says.
    consumers: JoinSet<()>,
    /// The other tasks, dropped once the consumers have stopped.
    tasks: JoinSet<()>,
    /// Flushed last, when nothing hands them messages any more.
    dispatchers: Vec<Dispatcher>,
}

impl Background {
    /// Stops what is left once the HTTP requests are answered, dropping whatever still runs at `deadline`.
    async fn stop(mut self, service: &str, deadline: Instant) {
        self.stop_at_once.cancel();
        self.stop_after_requests.cancel();
        if !join_until(&mut self.consumers, service, deadline).await {
            tracing::warn!(
                service,
                "consumers still running at the shutdown deadline; dropped, the broker redelivers what they held"
            );
        }
        self.tasks.abort_all();
        if !join_until(&mut self.tasks, service, deadline).await {
            tracing::warn!(service, "background tasks still running at the shutdown deadline; dropped");
        }
        let flushed = futures::future::join_all(self.dispatchers.iter().map(Dispatcher::flush));
        if tokio::time::timeout_at(deadline, flushed).await.is_err() {
            tracing::warn!(service, "messages still being published at the shutdown deadline; they will be sent again");
        }
    }
}

/// Waits until every task of `tasks` has ended (a panic is logged), or until `deadline`: false then.
async fn join_until(tasks: &mut JoinSet<()>, service: &str, deadline: Instant) -> bool {
    let joined = async {
        while let Some(ended) = tasks.join_next().await {
            if ended.is_err_and(|e| e.is_panic()) {
                tracing::error!(service, "a background task panicked");
            }
        }
    };
    tokio::time::timeout_at(deadline, joined).await.is_ok()
}

/// Begins the graceful shutdown of an [`Application`], as SIGTERM does.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Begins the shutdown; [`Application::run_until_stopped`] returns once it is over.
    pub fn shut_down(&self) {
        self.0.cancel();
    }
}

/// A built service: listening on its port, with its background tasks running, not yet serving.
pub struct Application<S> {
    /// The port the listener is bound to.
    port: u16,
    /// The HTTP server, which serves only while this future is polled.
    server: Server,
    /// What the service wired beside the server, stopped after it.
    background: Background,
    /// Cancelled by a [`ShutdownHandle`], which begins the shutdown as a signal does.
    shutdown: CancellationToken,
    /// The bound of the whole shutdown, from the signal on.
    shutdown_timeout: Duration,
    service: PhantomData<S>,
}

impl<S: Service> Application<S> {
    /// Creates and migrates the database, sets up the broker, wires the service and binds the HTTP listener.
    pub async fn build(config: S::Config) -> Result<Self> {
        let settings = S::settings(&config).clone();
        let pool = db::prepare(&settings.database_url, S::MIGRATIONS, settings.db_pool_size).await?;
        let broker = Broker::new(&settings.amqp_url, S::NAME, S::QUEUES)?;
        let mut parts = Parts { pool: pool.clone(), broker, background: Background::default() };
        parts.spawn(db::report_pool_usage(S::NAME, pool));
        let configure = S::wire(config, &mut parts)?;
        let pool = web::Data::new(parts.pool.clone());

        let listener = http::listen(&settings.http_addr)?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(pool.clone())
                .wrap(from_fn(http::request_metrics(S::NAME)))
                .configure(http::configure_common)
                .configure(configure.clone())
                .default_service(web::to(http::not_found))
        })
        .workers(settings.http_workers)
        // The application handles the signals (see `run_until_stopped`), and drops the workers at its own
        // deadline; actix-web's bound is only a backstop.
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout.as_secs().saturating_add(1))
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            background: parts.background,
            shutdown: CancellationToken::new(),
            shutdown_timeout: settings.shutdown_timeout,
            service: PhantomData,
        })
    }

    /// The port the HTTP server listens on (the real one when the settings asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that shuts the application down, as a signal would.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Serves until SIGTERM, SIGINT or a [`ShutdownHandle`] says to stop (or the server fails), then shuts down
    /// as the [module](self) describes and returns, within the shutdown timeout.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        let Self { mut server, background, shutdown, shutdown_timeout, .. } = self;
        let failed = tokio::select! {
            served = &mut server => Some(served),
            () = shutdown_requested(&shutdown) => None,
        };
        let deadline = Instant::now() + shutdown_timeout;
        tracing::info!(service = S::NAME, timeout_ms = shutdown_timeout.as_millis() as u64, "shutting down");
        background.stop_at_once.cancel();
        let served = match failed {
            Some(served) => served,
            None => {
                // Sent at once; the server future completes when the workers have finished their requests.
                drop(server.handle().stop(true));
                match tokio::time::timeout_at(deadline, &mut server).await {
                    Ok(served) => served,
                    Err(_) => {
                        tracing::warn!(service = S::NAME, "HTTP requests still running at the shutdown deadline");
                        // Dropping the server closes the connections of its workers.
                        drop(server);
                        Ok(())
                    }
                }
            }
        };
        background.stop(S::NAME, deadline).await;
        tracing::info!(service = S::NAME, "stopped");
        served
    }
}

/// Waits for SIGTERM or SIGINT (Ctrl-C), or for `handle` to be cancelled.
async fn shutdown_requested(handle: &CancellationToken) {
    tokio::select! {
        () = handle.cancelled() => {}
        signal = os_signal() => tracing::info!("{signal} received"),
    }
}

/// The name of the first stop signal that arrives; never, if the signals cannot be listened to (logged).
async fn os_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut interrupt)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen to SIGTERM and SIGINT; only a kill stops this process");
                std::future::pending().await
            }
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(e) => {
                tracing::error!(error = %e, "cannot listen to Ctrl-C; only a kill stops this process");
                std::future::pending().await
            }
        }
    }
}

/// A service's whole process: telemetry, the configuration `read` from the environment (and logged), then the
/// service until it is stopped.
pub async fn main<S: Service>(read: impl FnOnce() -> Result<S::Config>) -> Result<()> {
    crate::telemetry::init_for(S::NAME);
    let config = read()?;
    tracing::info!(%config, "starting {}", S::NAME);
    let served = Application::<S>::build(config).await?.run_until_stopped().await;
    crate::telemetry::shutdown();
    served?;
    Ok(())
}
