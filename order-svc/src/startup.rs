//! Putting order-svc together: database (created and migrated if needed), RabbitMQ (the outcome consumer and the
//! resending of checkouts and cancellations without an outcome as background tasks), the stock-svc and
//! payment-svc clients, and the HTTP server.

use std::{sync::Arc, time::Duration};

use actix_web::{dev::Server, middleware, web, App, HttpServer};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use platform::{
    amqp::{consume, Broker, ConsumerSettings, Publisher},
    dispatch::Dispatcher,
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

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The queues order-svc uses: it consumes outcomes and publishes checkout and cancellation requests.
const QUEUES: [&str; 2] = [queues::ORDER_OUTCOMES, queues::COORDINATOR];

/// A built order-svc, listening, with its background tasks running.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Prepares the database, starts the outcome consumer and the resending, and binds the HTTP listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = platform::db::prepare("order", &config.database_url, MIGRATIONS, config.db_pool_size).await?;

        let broker = Broker::new(&config.amqp_url, "order", &QUEUES)?;
        let dispatcher = Dispatcher::new(Arc::new(Publisher::new(broker.clone())));
        let resend_policy = ResendPolicy { first: config.resend_after, max: config.resend_max };
        tokio::spawn(resend::run(pool.clone(), dispatcher.clone(), resend_policy));
        let waiters = Arc::new(OutcomeWaiters::default());
        let outcomes = Arc::new(OutcomeHandler::new(pool.clone(), waiters.clone()));
        tokio::spawn(consume(broker, queues::ORDER_OUTCOMES, ConsumerSettings::default(), outcomes));

        let stock = web::Data::new(StockClient::new(&config.stock_url)?);
        let payment = web::Data::new(PaymentClient::new(&config.payment_url)?);
        let timeout = Duration::from_millis(config.checkout_timeout_ms);
        let checkouts = web::Data::new(Checkouts::new(pool.clone(), dispatcher, resend_policy, waiters, timeout));
        let pool = web::Data::new(pool);

        let listener = platform::http::listen(&config.http_addr)?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(pool.clone())
                .app_data(stock.clone())
                .app_data(payment.clone())
                .app_data(checkouts.clone())
                .wrap(middleware::from_fn(platform::http::request_metrics("order")))
                .configure(platform::http::configure_common)
                .configure(http::routes)
                .default_service(web::to(platform::http::not_found))
        })
        .workers(config.http_workers)
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    /// The port the HTTP server listens on (the real one when the configuration asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the server is stopped (by a signal).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
