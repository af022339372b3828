//! Wiring: database, broker, the consumer, the dispatcher, the retry timer and the admin HTTP server.

use std::sync::Arc;

use actix_web::{dev::Server, web, App, HttpServer};
use anyhow::Result;
use platform::{
    amqp::{consume, Broker, ConsumerSettings, Publisher},
    dispatch::Dispatcher,
};
use shared_contracts::queues;
use tokio::task::JoinHandle;

use crate::{
    config::Config, dead_letters::DeadLetters, http::AdminAccess, messaging::CoordinatorHandler,
    operations::Operations, recovery, store,
};

/// A coordinator, built and listening, not yet serving.
pub struct Application {
    port: u16,
    server: Server,
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// Creates and migrates the database, connects the broker in the background, and binds the admin API.
    pub async fn build(config: Config) -> Result<Self> {
        let pool =
            platform::db::prepare("coordinator", &config.database_url, store::MIGRATIONS, config.db_pool_size).await?;

        let broker = Broker::new(&config.amqp_url, "coordinator", &queues::WORK_QUEUES)?;
        let publisher = Arc::new(Publisher::new(broker.clone()));
        let dispatcher = Dispatcher::new(publisher.clone());
        let dead_letters = web::Data::new(DeadLetters::new(broker.clone(), publisher));
        let policy = config.retry_policy();
        let handler = Arc::new(CoordinatorHandler::new(pool.clone(), dispatcher.clone(), policy));
        let settings = ConsumerSettings {
            prefetch: config.worker_prefetch,
            max_batch: config.worker_batch,
            parallel: config.worker_parallel,
        };
        let operations = web::Data::new(Operations::new(pool.clone(), dispatcher.clone(), policy));
        let access = web::Data::new(AdminAccess::new(config.admin_token.clone()));
        let background = vec![
            tokio::spawn(consume(broker, queues::COORDINATOR, settings, handler)),
            tokio::spawn(recovery::run(pool.clone(), dispatcher, policy)),
        ];

        let listener = platform::http::listen(&config.http_addr)?;
        let port = listener.local_addr()?.port();
        let pool = web::Data::new(pool);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(pool.clone())
                .app_data(operations.clone())
                .app_data(access.clone())
                .app_data(dead_letters.clone())
                .wrap(actix_web::middleware::from_fn(platform::http::request_metrics("coordinator")))
                .configure(platform::http::configure_common)
                .configure(crate::http::configure)
                .default_service(web::to(platform::http::not_found))
        })
        .workers(config.http_workers)
        .listen(listener)?
        .run();
        Ok(Self { port, server, background })
    }

    /// The port the admin API listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the process is told to stop, then stops the background tasks.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for task in self.background {
            task.abort();
        }
        result
    }
}
