//! Integration tests of order-svc: each test starts the real order-svc, and the real stock-svc it reads prices
//! from, on random ports with databases and a RabbitMQ vhost of their own, and talks to them over HTTP (and, for
//! checkouts, over RabbitMQ, playing the coordinator).

mod checkout;
mod helpers;
mod openapi;
mod orders;
