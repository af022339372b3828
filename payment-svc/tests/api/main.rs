//! Integration tests of payment-svc: each test starts the whole service on a random port against a fresh
//! database (and, for the saga worker, a fresh RabbitMQ vhost) and talks to it the way its clients do.

mod bad_input;
mod cancellation;
mod concurrency;
mod helpers;
mod migrations;
mod openapi;
mod order_payments;
mod users;
mod worker;
