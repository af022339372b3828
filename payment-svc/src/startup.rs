//! Building and running the service: database and migrations, the saga worker, the clients of the coordinator
//! and order-svc, and the HTTP server.

use std::sync::Arc;

use actix_web::{dev::Server, web, App, HttpServer};
use platform::amqp::{consume, Broker, Publisher};
use shared_contracts::queues;
use tokio::task::JoinHandle;

use crate::{config::Config, messaging::PaymentWorker, orders::OrderClient, store::MIGRATIONS};

/// The running service: the HTTP server and the saga worker's consumer task.
pub struct Application {
    port: u16,
    server: Server,
    worker: JoinHandle<()>,
}

impl Application {
    /// Prepares the database, starts the saga worker, and binds the HTTP server (not yet serving).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = platform::db::prepare("payment", &config.database_url, MIGRATIONS, config.db_pool_size).await?;

        let broker = Broker::new(&config.amqp_url, "payment", &[queues::PAYMENT_COMMANDS, queues::COORDINATOR])?;
        let handler = Arc::new(PaymentWorker::new(pool.clone(), Arc::new(Publisher::new(broker.clone()))));
        let worker = tokio::spawn(consume(broker, queues::PAYMENT_COMMANDS, config.consumer_settings(), handler));

        let coordinator = web::Data::new(platform::sagas::CoordinatorClient::new(&config.coordinator_url)?);
        let orders = web::Data::new(OrderClient::new(&config.order_url)?);
        let listener = platform::http::listen(&config.http_addr)?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(pool.clone()))
                .app_data(coordinator.clone())
                .app_data(orders.clone())
                .wrap(actix_web::middleware::from_fn(platform::http::request_metrics("payment")))
                .configure(platform::http::configure_common)
                .configure(crate::http::routes)
                .default_service(web::to(platform::http::not_found))
        })
        .workers(config.http_workers)
        .listen(listener)?
        .run();
        Ok(Self { port, server, worker })
    }

    /// The port the HTTP server listens on (the real one when the configuration asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the process is told to stop, then stops the saga worker too.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.worker.abort();
        result
    }
}
