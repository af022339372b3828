//! Integration tests of stock-svc: each test starts the whole service on a random port against a fresh database
//! and RabbitMQ vhost, and talks to it the way its clients do, over HTTP and AMQP.

mod bad_input;
mod concurrency;
mod helpers;
mod items;
mod migrations;
mod openapi;
mod sigterm;
mod worker;
