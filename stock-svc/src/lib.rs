//! stock-svc: owns the items of the shop, their stock and their price.
//!
//! It serves two kinds of client. Over REST (`/stock/...`, see [`startup`]) it creates items, reports them and
//! adds or subtracts stock, each change one atomic SQL statement so that concurrent subtracts never take more than
//! there is. Over RabbitMQ (see [`messaging`]) it is the stock participant of the checkout saga: it reserves the
//! lines of a checkout all or nothing, and releases them when the coordinator compensates. What it decided for
//! each saga is recorded (see [`store::saga_steps`]) so that redelivered commands are answered the same way and
//! change nothing; the rules for that, and the bound on stock that leaves room for every release, live, free of
//! I/O, in [`domain`]. Before `batch_init` overwrites stock it asks the coordinator whether sagas are unfinished
//! (see [`platform::sagas`]).

pub mod config;
pub mod domain;
mod http;
pub mod messaging;
pub mod startup;
pub mod store;
