//! The intake of checkout requests: the requests that arrive together begin in one transaction (see
//! [`checkouts::begin_many`], which [`crate::domain::plan_intake`] decides for), and the starts they record go to
//! the dispatcher after the commit. Also why a checkout or cancellation request fails ([`CheckoutError`]).

use std::{future::Future, sync::Arc};

use futures::FutureExt;

use platform::{db::Pool, dispatch::Dispatcher};
use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex};

use crate::{
    domain::Begun,
    messaging,
    resend::ResendPolicy,
    store::{
        checkouts::{self, BegunBatch},
        StoreError,
    },
};

/// The most checkout starts that share one transaction.
const MAX_INTAKE_BATCH: usize = 256;
/// Transactions of checkout starts that may run at once.
const INTAKE_WORKERS: usize = 1;

/// Why a checkout or cancellation request ends without the end of its saga. The one mapping to an HTTP answer is
/// in [`crate::http`].
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// The order is unknown, its rules refuse the request, or the database failed this request's transaction.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transaction this request shared with others failed; the one error is reported to each of them.
    #[error("database error: {0}")]
    Batch(Arc<StoreError>),
    /// The intake's tasks have stopped, so no checkout can begin.
    #[error("database error: the checkout intake has stopped")]
    IntakeStopped,
    /// The deadline passed with the checkout of this order still running; it finishes on its own.
    #[error("checkout of order {0} is still in progress; GET /orders/find/{0} shows its outcome")]
    CheckoutStillRunning(String),
    /// The deadline passed with the cancellation of this order still running; it finishes on its own.
    #[error("cancellation of order {0} is still in progress; GET /orders/find/{0} shows its outcome")]
    CancelStillRunning(String),
    /// The checkout of this order vanished while the request waited: a `batch_init` replaced the order.
    #[error("the checkout of order {0} was discarded because the order was re-initialised; check out again")]
    CheckoutDiscarded(String),
    /// The cancellation of this order vanished while the request waited: a `batch_init` replaced the order.
    #[error("the cancellation of order {0} was discarded because the order was re-initialised")]
    CancelDiscarded(String),
}

/// One request to begin a checkout.
struct Start {
    order_id: String,
    /// The request's trace context, which the saga continues.
    traceparent: Option<String>,
    answer: oneshot::Sender<Result<Begun, CheckoutError>>,
}

/// Where checkout requests go to begin; its tasks take them in batches.
pub(super) struct Intake {
    starts: mpsc::Sender<Start>,
}

impl Intake {
    /// The intake, and the work of its tasks, for the caller to run in the background: they begin checkouts on
    /// `pool`, hand their starts to `dispatcher` and have them sent again as `resend` says. Once that work is
    /// stopped, [`Intake::begin`] fails with [`CheckoutError::IntakeStopped`].
    pub(super) fn new(
        pool: Pool,
        dispatcher: Dispatcher,
        resend: ResendPolicy,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (starts, received) = mpsc::channel(4 * MAX_INTAKE_BATCH);
        let received = Arc::new(AsyncMutex::new(received));
        let workers = (0..INTAKE_WORKERS).map(move |_| run(pool.clone(), dispatcher.clone(), resend, received.clone()));
        (Self { starts }, futures::future::join_all(workers.collect::<Vec<_>>()).map(drop))
    }

    /// Begins the checkout of `order_id` in a transaction shared with the other requests that arrive meanwhile.
    pub(super) async fn begin(&self, order_id: &str) -> Result<Begun, CheckoutError> {
        let (answer, answered) = oneshot::channel();
        let traceparent = platform::trace::traceparent(&tracing::Span::current());
        let start = Start { order_id: order_id.to_owned(), traceparent, answer };
        self.starts.send(start).await.map_err(|_| CheckoutError::IntakeStopped)?;
        answered.await.map_err(|_| CheckoutError::IntakeStopped)?
    }
}

/// Takes the checkout starts waiting in `starts` in batches and begins each batch in one transaction, so that
/// concurrent checkouts share the locks, inserts and commit instead of paying for them one by one. Under low
/// load a batch is a single request and costs what it would alone.
async fn run(pool: Pool, dispatcher: Dispatcher, resend: ResendPolicy, starts: Arc<AsyncMutex<mpsc::Receiver<Start>>>) {
    loop {
        let batch = {
            let mut starts = starts.lock().await;
            let Some(first) = starts.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_INTAKE_BATCH {
                match starts.try_recv() {
                    Ok(start) => batch.push(start),
                    Err(_) => break,
                }
            }
            batch
        };
        let order_ids: Vec<String> = batch.iter().map(|start| start.order_id.clone()).collect();
        let begun = match pool.get().await {
            Ok(mut conn) => checkouts::begin_many(&mut conn, &order_ids, resend.first_ms()).await,
            Err(e) => Err(e.into()),
        };
        match begun {
            Ok(BegunBatch { answers, started }) => {
                // Each start continues the trace of the request that started it.
                let messages = started
                    .into_iter()
                    .map(|(request, start)| {
                        messaging::to_coordinator(start).in_trace(batch[request].traceparent.clone())
                    })
                    .collect();
                for (start, answer) in batch.into_iter().zip(answers) {
                    let _ = start.answer.send(answer.map_err(CheckoutError::from));
                }
                dispatcher.send(messages).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), "beginning a batch of checkouts failed");
                let e = Arc::new(e);
                for start in batch {
                    let _ = start.answer.send(Err(CheckoutError::Batch(e.clone())));
                }
            }
        }
    }
}
