//! Wiring: the saga worker and the HTTP routes with the clients of the coordinator and order-svc, on the shared
//! start-up path ([`platform::startup`]).

use std::sync::Arc;

use actix_web::web;
use platform::{
    amqp::Publisher,
    config::ServiceSettings,
    sagas::CoordinatorClient,
    startup::{Parts, Routes, Service, StopConsuming},
};
use shared_contracts::queues;

use crate::{config::Config, messaging::PaymentWorker, orders::OrderClient, store::MIGRATIONS};

/// payment-svc as the shared start-up sees it.
pub struct Payment;

/// The running service: the HTTP server and the saga worker's consumer task.
pub type Application = platform::startup::Application<Payment>;

impl Service for Payment {
    const NAME: &'static str = "payment";
    const MIGRATIONS: diesel_migrations::EmbeddedMigrations = MIGRATIONS;
    /// The queue payment-svc consumes and the one it replies to.
    const QUEUES: &'static [&'static str] = &[queues::PAYMENT_COMMANDS, queues::COORDINATOR];
    type Config = Config;

    fn settings(config: &Config) -> &ServiceSettings {
        &config.service
    }

    fn wire(config: Config, parts: &mut Parts) -> anyhow::Result<impl Routes> {
        let handler = Arc::new(PaymentWorker::new(parts.pool.clone(), Arc::new(Publisher::new(parts.broker.clone()))));
        parts.consume(queues::PAYMENT_COMMANDS, config.service.consumer, handler, StopConsuming::AtOnce);

        let coordinator = web::Data::new(CoordinatorClient::new(&config.coordinator_url)?);
        let orders = web::Data::new(OrderClient::new(&config.order_url)?);
        Ok(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(coordinator.clone()).app_data(orders.clone()).configure(crate::http::routes);
        })
    }
}
