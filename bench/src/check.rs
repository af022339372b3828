//! The conservation check after a run, through the public API only: every unit of stock that left the items and
//! every unit of credit that left the users must be accounted for by exactly the paid orders.
//!
//! With the data set created by `--init` and nothing else changing it:
//! `items * stock0 - sum(stock) = sum(quantities of paid orders)` and
//! `users * credit0 - sum(credit) = sum(totals of paid orders)`.

use std::future::Future;
use std::time::Duration;

use backon::{ConstantBuilder, ExponentialBuilder, Retryable};
use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::api::{Api, ApiError};
use crate::options::DataSet;

/// The figures of one check and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Whether both balances hold and every entity could be read.
    pub passed: bool,
    /// How many times the whole check ran (a failed check is repeated in case sagas were still finishing).
    pub attempts: u32,
    /// Orders read that are paid.
    pub paid_orders: u64,
    /// `items * stock0 - sum(stock)`.
    pub stock_taken: i128,
    /// Sum of quantities over paid orders.
    pub paid_quantities: i128,
    /// `users * credit0 - sum(credit)`.
    pub credit_spent: i128,
    /// Sum of totals over paid orders.
    pub paid_totals: i128,
    /// Entities that could not be read even after retries (any makes the check fail).
    pub unreadable: u64,
    /// The first read error, if any.
    pub first_error: Option<String>,
    /// Seconds the last attempt took.
    pub seconds: f64,
}

/// How often the whole check runs before it is declared failed.
const ATTEMPTS: u32 = 3;
/// Time between attempts: long enough for the coordinator to finish or compensate sagas still in flight.
const BETWEEN_ATTEMPTS: Duration = Duration::from_secs(10);
/// Tries of a single read before the entity counts as unreadable.
const READ_TRIES: usize = 3;
/// The pause after a single read's first failed try; it doubles after each further one.
const FIRST_READ_PAUSE: Duration = Duration::from_millis(200);

/// Runs the check, repeating it when it fails, and returns the last report.
pub async fn run(api: &Api, data: &DataSet, concurrency: usize) -> CheckReport {
    let mut attempts = 0;
    let attempt = || {
        attempts += 1;
        let attempt = attempts;
        async move {
            let started = std::time::Instant::now();
            let mut report = once(api, data, concurrency).await;
            report.attempts = attempt;
            report.seconds = started.elapsed().as_secs_f64();
            // A failed check is an `Err` so that it is repeated.
            if report.passed {
                Ok(report)
            } else {
                Err(Box::new(report))
            }
        }
    };
    let repeats = ConstantBuilder::new().with_delay(BETWEEN_ATTEMPTS).with_max_times(ATTEMPTS as usize - 1);
    attempt
        .retry(repeats)
        .notify(|report, pause| {
            eprintln!("  check attempt {} failed; retrying in {} s", report.attempts, pause.as_secs())
        })
        .await
        .unwrap_or_else(|last| *last)
}

/// What one read contributes: an item's stock, a user's credit, or a paid order's quantities and total.
#[derive(Default)]
struct Reading {
    amount: i128,
    total: i128,
    paid: bool,
}

/// Sums of the readings of one kind of entity, plus what could not be read.
#[derive(Default)]
struct Tally {
    amounts: i128,
    totals: i128,
    paid: u64,
    unreadable: u64,
    first_error: Option<String>,
}

async fn once(api: &Api, data: &DataSet, concurrency: usize) -> CheckReport {
    let stock = tally(data.items, concurrency, |id| async move {
        api.item(id).await.map(|item| Reading { amount: i128::from(item.stock), ..Reading::default() })
    })
    .await;
    let credit = tally(data.users, concurrency, |id| async move {
        api.user(id).await.map(|user| Reading { amount: i128::from(user.credit), ..Reading::default() })
    })
    .await;
    let orders = tally(data.orders, concurrency, |id| async move {
        api.order(id).await.map(|order| {
            let quantities = order.items.iter().map(|(_, quantity)| i128::from(*quantity)).sum();
            if order.paid {
                Reading { amount: quantities, total: i128::from(order.total_cost), paid: true }
            } else {
                Reading::default()
            }
        })
    })
    .await;

    let stock_taken = i128::from(data.items) * i128::from(data.stock) - stock.amounts;
    let credit_spent = i128::from(data.users) * i128::from(data.credit) - credit.amounts;
    let unreadable = stock.unreadable + credit.unreadable + orders.unreadable;
    CheckReport {
        passed: unreadable == 0 && stock_taken == orders.amounts && credit_spent == orders.totals,
        attempts: 0,
        paid_orders: orders.paid,
        stock_taken,
        paid_quantities: orders.amounts,
        credit_spent,
        paid_totals: orders.totals,
        unreadable,
        first_error: stock.first_error.or(credit.first_error).or(orders.first_error),
        seconds: 0.0,
    }
}

/// Reads entities `0..n` with `concurrency` reads in flight and adds up their readings.
async fn tally<'a, F, Fut>(n: u64, concurrency: usize, read: F) -> Tally
where
    F: Fn(u64) -> Fut + Copy + 'a,
    Fut: Future<Output = Result<Reading, ApiError>> + 'a,
{
    let mut reads = stream::iter(0..n).map(|id| with_retries(id, read)).buffer_unordered(concurrency);
    let mut tally = Tally::default();
    while let Some(result) = reads.next().await {
        match result {
            Ok(reading) => {
                tally.amounts += reading.amount;
                tally.totals += reading.total;
                tally.paid += u64::from(reading.paid);
            }
            Err(error) => {
                tally.unreadable += 1;
                tally.first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
    tally
}

async fn with_retries<F, Fut>(id: u64, read: F) -> Result<Reading, ApiError>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Reading, ApiError>>,
{
    let pauses = ExponentialBuilder::new().with_min_delay(FIRST_READ_PAUSE).with_max_times(READ_TRIES - 1);
    (|| read(id))
        .retry(pauses)
        // A 4xx (unknown ID) will not change on retry; transport errors and 5xx might.
        .when(|error| !matches!(error, ApiError::Status { status: 400..=499, .. }))
        .await
}
