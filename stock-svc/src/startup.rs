//! Wiring: prepares the database, starts the saga worker and builds the HTTP server with its coordinator client.

use std::sync::Arc;

use actix_web::{dev::Server, middleware::from_fn, web, App, HttpServer};
use platform::{
    amqp::{consume, Broker, ConsumerSettings, Publisher},
    db,
    http::{configure_common, not_found, request_metrics},
};
use shared_contracts::queues;
use tokio::task::JoinHandle;

use crate::{config::Config, http, messaging::StockWorker, store::MIGRATIONS};

/// The queues stock-svc declares: the one it consumes and the one it replies to.
const QUEUES: &[&str] = &[queues::STOCK_COMMANDS, queues::COORDINATOR];

/// A built stock-svc, listening and consuming, ready to run.
pub struct Application {
    port: u16,
    server: Server,
    worker: JoinHandle<()>,
}

impl Application {
    /// Creates and migrates the database, starts the saga worker and binds the HTTP listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = db::prepare("stock", &config.database_url, MIGRATIONS, config.db_pool_size).await?;

        let broker = Broker::new(&config.amqp_url, "stock", QUEUES)?;
        let handler = Arc::new(StockWorker::new(pool.clone(), Publisher::new(broker.clone())));
        let settings = ConsumerSettings {
            prefetch: config.worker_prefetch,
            max_batch: config.worker_batch,
            parallel: config.worker_parallel,
        };
        let worker = tokio::spawn(consume(broker, queues::STOCK_COMMANDS, settings, handler));

        let coordinator = web::Data::new(platform::sagas::CoordinatorClient::new(&config.coordinator_url)?);
        let listener = platform::http::listen(&config.http_addr)?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(pool.clone()))
                .app_data(coordinator.clone())
                .wrap(from_fn(request_metrics("stock")))
                .configure(configure_common)
                .configure(http::routes)
                .default_service(web::to(not_found))
        })
        .workers(config.http_workers)
        .listen(listener)?
        .run();
        Ok(Self { port, server, worker })
    }

    /// The port the HTTP server listens on (the real one when configured with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the process is told to stop, then stops the worker too.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.worker.abort();
        served
    }
}
