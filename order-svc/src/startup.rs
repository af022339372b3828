//! Putting order-svc together on the shared start-up path ([`platform::startup`]): the outcome consumer and the
//! resending of checkouts and cancellations without an outcome as background tasks, the stock-svc and
//! payment-svc clients, and the HTTP routes.

use std::{sync::Arc, time::Duration};

use actix_web::web;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use platform::{
    amqp::Publisher,
    config::ServiceSettings,
    startup::{Parts, Routes, Service, StopConsuming},
};
use shared_contracts::queues;

use crate::{
    checkout::{Checkouts, OutcomeWaiters},
    config::Config,
    http,
    messaging::OutcomeHandler,
    payment::PaymentClient,
    resend::{self, ResendPolicy},
    stock::StockClient,
};

/// order-svc as the shared start-up sees it.
pub struct Order;

/// A built order-svc, listening, with its background tasks running.
pub type Application = platform::startup::Application<Order>;

impl Service for Order {
    const NAME: &'static str = "order";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
    /// order-svc consumes outcomes and publishes checkout and cancellation requests.
    const QUEUES: &'static [&'static str] = &[queues::ORDER_OUTCOMES, queues::COORDINATOR];
    type Config = Config;

    fn settings(config: &Config) -> &ServiceSettings {
        &config.service
    }

    fn wire(config: Config, parts: &mut Parts) -> anyhow::Result<impl Routes> {
        let pool = parts.pool.clone();
        let dispatcher = parts.dispatcher(Arc::new(Publisher::new(parts.broker.clone())));
        let resend_policy = ResendPolicy { first: config.resend_after, max: config.resend_max };
        parts.spawn(resend::run(pool.clone(), dispatcher.clone(), resend_policy));
        let waiters = Arc::new(OutcomeWaiters::default());
        let outcomes = Arc::new(OutcomeHandler::new(pool.clone(), waiters.clone()));
        // Checkout requests wait for the outcomes this consumes, so it stops only once they are answered.
        parts.consume(queues::ORDER_OUTCOMES, config.service.consumer, outcomes, StopConsuming::AfterRequests);

        let stock = web::Data::new(StockClient::new(&config.stock_url)?);
        let payment = web::Data::new(PaymentClient::new(&config.payment_url)?);
        let timeout = Duration::from_millis(config.checkout_timeout_ms);
        let (checkouts, intake) = Checkouts::new(pool, dispatcher, resend_policy, waiters, timeout);
        parts.spawn(intake);
        let checkouts = web::Data::new(checkouts);
        Ok(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(stock.clone()).app_data(payment.clone()).app_data(checkouts.clone()).configure(http::routes);
        })
    }
}
