//! payment-svc: owns the users of the shop and their credit.
//!
//! It serves two kinds of client. Over REST (`/payment/...`, see [`startup`]) it creates users, reports and adds
//! credit, and takes payments, optionally recorded against an order so that paying twice charges once and a
//! cancel refunds once; a cancel of an order paid by a checkout has order-svc cancel the order (see [`orders`]),
//! and `batch_init` first asks the coordinator whether sagas are unfinished (see [`platform::sagas`]). Over RabbitMQ (see [`messaging`]) it is the payment participant of the checkout saga: it
//! charges a checkout's total and refunds it when the coordinator compensates. Every payment is a row of the
//! `payments` table (see [`store`]); for the saga that row is also the inbox that makes redelivered commands
//! harmless. The protocol of a participant (the record per saga, the tombstone of an early refund, the repeated
//! replies, the worker) is the `participant` crate's; payment-svc supplies its effect, charging and refunding
//! credit, and the bound on credit that leaves room for every refund, free of I/O, in [`domain`], and where it
//! keeps its records, in [`store::saga`].

pub mod config;
pub mod domain;
mod http;
pub mod messaging;
pub mod orders;
pub mod startup;
pub mod store;
