//! stock-svc: owns the items of the shop, their stock and their price.
//!
//! It serves two kinds of client. Over REST (`/stock/...`, see [`startup`]) it creates items, reports them and
//! adds or subtracts stock, each change one atomic SQL statement so that concurrent subtracts never take more than
//! there is. Over RabbitMQ (see [`messaging`]) it is the stock participant of the checkout saga: it reserves the
//! lines of a checkout all or nothing, and releases them when the coordinator compensates. The protocol of a
//! participant (the record per saga that answers redelivered commands the same way, the tombstone of an early
//! release, the worker) is the `participant` crate's; stock-svc supplies its effect, reserving and releasing
//! lines, and the bound on stock that leaves room for every release, free of I/O, in [`domain`], and where it
//! keeps its records, in [`store::saga_steps`]. Before `batch_init` overwrites stock it asks the coordinator
//! whether sagas are unfinished (see [`platform::sagas`]).

pub mod config;
pub mod domain;
mod http;
pub mod messaging;
pub mod startup;
pub mod store;
