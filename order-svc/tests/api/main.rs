//! Integration tests of order-svc: each test starts the real order-svc, the real stock-svc it reads prices from
//! and the real payment-svc it checks users with, on random ports with databases and a RabbitMQ vhost of their
//! own, and talks to them over HTTP (and, for checkouts and cancellations, over RabbitMQ, playing the coordinator).

mod cancel;
mod checkout;
mod helpers;
mod openapi;
mod orders;
mod plans;
mod shutdown;
