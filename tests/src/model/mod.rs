//! Model-based testing of the whole REST API: random sequences of calls to every endpoint of both API versions,
//! over a small pool of IDs, run against a live [`crate::System`] and an in-memory model of what the API
//! promises.
//!
//! - [`ops`]: the calls, with symbolic IDs, and the proptest strategies that generate and shrink sequences.
//! - [`state`]: the model, pure: the data as the API shows it, the invariants, what is read back.
//! - [`rules`]: what each call must answer and how it changes stock, credit, orders and payments.
//! - [`burst`]: concurrent bursts, where each call may have any allowed outcome and the SPEC's invariants
//!   (conservation of stock and credit, nothing negative, 2xx checkouts paid, 4xx ones taking nothing) decide.
//! - [`runner`]: sends the calls, waits for sagas to end (polling the coordinator), reads the system back.
//!
//! The semantics encoded are the SPEC's, including the cancellation of paid orders (`POST /orders/cancel/{id}`,
//! and `/payment/cancel/{user}/{order}` on a checkout's payment), `404` for an order of an unknown user, the
//! maximum of stock and credit that leaves room for every refund and release, and `409` for a `batch_init`
//! while sagas are unfinished.

pub mod burst;
pub mod ops;
pub mod rules;
pub mod runner;
pub mod state;
