//! Wiring on the shared start-up path ([`platform::startup`]): the consumer, the dispatcher, the retry timer, the
//! pruning of old sagas, the gauges and the admin API's routes.

use std::sync::Arc;

use actix_web::web;
use platform::{
    amqp::Publisher,
    config::ServiceSettings,
    startup::{Parts, Routes, Service, StopConsuming},
};
use shared_contracts::queues;

use crate::{
    config::Config, dead_letters::DeadLetters, gauges, http::AdminAccess, messaging::CoordinatorHandler,
    operations::Operations, recovery, retention, store,
};

/// The coordinator as the shared start-up sees it.
pub struct Coordinator;

/// A coordinator, built and listening, not yet serving.
pub type Application = platform::startup::Application<Coordinator>;

impl Service for Coordinator {
    const NAME: &'static str = "coordinator";
    const MIGRATIONS: diesel_migrations::EmbeddedMigrations = store::MIGRATIONS;
    const QUEUES: &'static [&'static str] = &queues::WORK_QUEUES;
    type Config = Config;

    fn settings(config: &Config) -> &ServiceSettings {
        &config.service
    }

    fn wire(config: Config, parts: &mut Parts) -> anyhow::Result<impl Routes> {
        let pool = parts.pool.clone();
        let publisher = Arc::new(Publisher::new(parts.broker.clone()));
        let dispatcher = parts.dispatcher(publisher.clone());
        let dead_letters = web::Data::new(DeadLetters::new(parts.broker.clone(), publisher, pool.clone()));
        let policy = config.retry_policy();
        let handler = Arc::new(CoordinatorHandler::new(pool.clone(), dispatcher.clone(), policy));
        let operations = web::Data::new(Operations::new(pool.clone(), dispatcher.clone(), policy));
        let access = web::Data::new(AdminAccess::new(
            config.admin_token.clone(),
            config.admin_read_token.clone(),
            config.admin_hosts(),
        ));
        parts.consume(queues::COORDINATOR, config.service.consumer, handler, StopConsuming::AtOnce);
        parts.spawn(recovery::run(pool.clone(), dispatcher, policy));
        if let Some(age) = config.saga_retention {
            parts.spawn(retention::run(pool.clone(), age, config.retention_interval, config.retention_batch));
        }
        let counted = dead_letters.clone();
        parts.spawn(async move { gauges::run(pool, &counted, config.stuck_after, config.gauge_interval).await });

        Ok(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(operations.clone())
                .app_data(access.clone())
                .app_data(dead_letters.clone())
                .configure(crate::http::configure);
        })
    }
}
