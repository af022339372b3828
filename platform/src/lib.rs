//! Infrastructure that every service of the checkout backend shares, and nothing else.
//!
//! - [`config`]: reading settings from the environment, and the settings every service shares.
//! - [`telemetry`]: logs and the Prometheus recorder, set up once per process.
//! - [`db`]: the PostgreSQL pool, embedded migrations and database creation.
//! - [`http`]: the error type every REST handler returns, number parsing for path segments, request metrics,
//!   `/health` and `/metrics`.
//! - [`amqp`]: RabbitMQ connections that come back after a broker restart, a publisher with confirms, and a
//!   batching consumer with manual acks and dead-lettering.
//! - [`dispatch`]: publishing the messages a committed change calls for, in the background.
//! - [`poison`]: telling a message the database refuses from a database that is out of reach.
//! - [`sagas`]: asking the coordinator how many sagas are unfinished.
//! - [`trace`]: the W3C trace context across HTTP and AMQP.
//! - [`startup`]: the one start-up path of every service: database, broker, HTTP server, background tasks.
//! - [`tls`]: the TLS client settings of the links to PostgreSQL and RabbitMQ.

pub mod amqp;
pub mod config;
pub mod db;
pub mod dispatch;
pub mod http;
pub mod poison;
pub mod sagas;
pub mod startup;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod trace;
