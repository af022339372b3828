//! Wiring: the saga worker and the HTTP routes with their coordinator client, on the shared start-up path
//! ([`platform::startup`]).

use std::sync::Arc;

use actix_web::web;
use platform::{
    amqp::Publisher,
    config::ServiceSettings,
    sagas::CoordinatorClient,
    startup::{Parts, Routes, Service, StopConsuming},
};
use shared_contracts::queues;

use crate::{config::Config, http, messaging::StockWorker, store::MIGRATIONS};

/// stock-svc as the shared start-up sees it.
pub struct Stock;

/// A built stock-svc, listening and consuming, ready to run.
pub type Application = platform::startup::Application<Stock>;

impl Service for Stock {
    const NAME: &'static str = "stock";
    const MIGRATIONS: diesel_migrations::EmbeddedMigrations = MIGRATIONS;
    /// The queue stock-svc consumes and the one it replies to.
    const QUEUES: &'static [&'static str] = &[queues::STOCK_COMMANDS, queues::COORDINATOR];
    type Config = Config;

    fn settings(config: &Config) -> &ServiceSettings {
        &config.service
    }

    fn wire(config: Config, parts: &mut Parts) -> anyhow::Result<impl Routes> {
        let handler = Arc::new(StockWorker::new(parts.pool.clone(), Publisher::new(parts.broker.clone())));
        parts.consume(queues::STOCK_COMMANDS, config.service.consumer, handler, StopConsuming::AtOnce);

        let coordinator = web::Data::new(CoordinatorClient::new(&config.coordinator_url)?);
        Ok(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(coordinator.clone()).configure(http::routes);
        })
    }
}
