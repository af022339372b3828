//! order-svc: owns the orders of the shop, their lines and totals, and the checkout intent of each.
//!
//! Over REST (`/orders/...`, see [`startup`]) it creates orders for users payment-svc knows (see [`payment`]),
//! adds and removes items at the price stock-svc quotes (see [`stock`]), and takes checkout and cancellation
//! requests. A checkout is not carried out here: order-svc records the intent in its database (see
//! [`store::checkouts`]) and, once that has committed, sends the coordinator a `StartCheckout`, again and again
//! with growing pauses (see [`resend`]) until the outcome comes back. A cancellation of a paid order goes the same
//! way with a `CancelCheckout` for the saga that paid it (see [`store::cancellations`]). The coordinator's verdict
//! comes back on the outcome queue (see [`messaging`]), is recorded, and wakes the requests waiting for it (see
//! [`checkout`]).
//! Which changes an order still allows, what a checkout or cancellation request does, how an outcome moves a
//! checkout and how totals add up is decided free of I/O in [`domain`]; the store loads and writes the rows
//! around those decisions, and every message to the coordinator is built in [`messaging`].

pub mod checkout;
pub mod config;
pub mod domain;
mod http;
pub mod messaging;
pub mod payment;
mod peer;
pub mod resend;
pub mod startup;
pub mod stock;
pub mod store;
