//! The one start-up path of every service: read the settings, prepare the database (created and migrated if
//! needed), reach the broker, let the service wire its own parts, serve HTTP with the middleware and routes all
//! services share, and, when the server stops, stop every background task the service started.
//!
//! A service describes itself by implementing [`Service`]: its name, migrations and queues, and `wire`, which
//! starts its background tasks through [`Parts::spawn`] and returns the HTTP configuration of its own routes and
//! their data. Its `startup::Application` is then `platform::startup::Application<ItsService>`, and its `main`
//! is [`main`].

use std::{fmt::Display, io, marker::PhantomData, time::Duration};

use actix_web::{
    dev::{Server, ServerHandle},
    middleware::from_fn,
    web, App, HttpServer,
};
use anyhow::Result;
use diesel_migrations::EmbeddedMigrations;
use futures::Future;
use tokio::task::JoinSet;

use crate::{amqp::Broker, config::ServiceSettings, db, http};

/// How long the background tasks may take to stop once the server has stopped; they are aborted at their next
/// await, so this bound is only reached by a task stuck in blocking code.
const TASKS_STOP_WITHIN: Duration = Duration::from_secs(5);

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

    /// Starts the service's background tasks on `parts` and returns its HTTP routes with their data.
    fn wire(config: Self::Config, parts: &mut Parts) -> Result<impl Routes>;
}

/// A service's own HTTP routes and their data, added to the shared ones on every HTTP worker.
pub trait Routes: Fn(&mut web::ServiceConfig) + Clone + Send + 'static {}

impl<F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static> Routes for F {}

/// What the shared start-up has made ready for a service to wire: its database pool (which every HTTP handler
/// also finds as `web::Data<db::Pool>`) and its broker, and the tasks it runs in the background, which the
/// [`Application`] owns.
pub struct Parts {
    /// The pool of the service's (migrated) database.
    pub pool: db::Pool,
    /// The broker, with the service's queues.
    pub broker: Broker,
    tasks: JoinSet<()>,
}

impl Parts {
    /// Runs `task` in the background until the application stops.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }
}

/// A built service: listening on its port, with its background tasks running, not yet serving.
pub struct Application<S> {
    port: u16,
    server: Server,
    tasks: JoinSet<()>,
    service: PhantomData<S>,
}

impl<S: Service> Application<S> {
    /// Creates and migrates the database, sets up the broker, wires the service and binds the HTTP listener.
    pub async fn build(config: S::Config) -> Result<Self> {
        let settings = S::settings(&config).clone();
        let pool = db::prepare(&settings.database_url, S::MIGRATIONS, settings.db_pool_size).await?;
        let broker = Broker::new(&settings.amqp_url, S::NAME, S::QUEUES)?;
        let mut parts = Parts { pool: pool.clone(), broker, tasks: JoinSet::new() };
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
        .listen(listener)?
        .run();
        Ok(Self { port, server, tasks: parts.tasks, service: PhantomData })
    }

    /// The port the HTTP server listens on (the real one when the settings asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the HTTP server, and so the application, as a signal would.
    pub fn server_handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped (by a signal), then stops the background tasks and waits for them,
    /// for [`TASKS_STOP_WITHIN`] at most.
    pub async fn run_until_stopped(mut self) -> io::Result<()> {
        let served = self.server.await;
        self.tasks.abort_all();
        let stopped = tokio::time::timeout(TASKS_STOP_WITHIN, async {
            while let Some(ended) = self.tasks.join_next().await {
                if ended.is_err_and(|e| e.is_panic()) {
                    tracing::error!(service = S::NAME, "a background task panicked");
                }
            }
        });
        if stopped.await.is_err() {
            tracing::warn!(service = S::NAME, "background tasks still running after the server stopped");
        }
        served
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
