//! `POST /orders/checkout/{order_id}` and `POST /orders/cancel/{order_id}`: each answers once the saga has
//! decided, or with 504 when it takes longer than the configured timeout (the saga still finishes, and `find`
//! shows how).

use actix_web::{web, HttpResponse};
use platform::http::{check_id, ApiError, ErrorBody as Error, Id};
use serde::Serialize;
use shared_contracts::FailureReason;
use utoipa::ToSchema;

use crate::{
    checkout::{CheckoutError, Checkouts},
    domain::{CancelAnswer, CheckoutAnswer, Stuck},
};

/// Checks the order out and answers with the outcome: 200 once paid (at once if it already was); 400 with the
/// reason, also machine-readable as `reason`, when the saga failed and took nothing; 404 for an unknown order,
/// 400 for an empty one; 409 while the order is being cancelled; 500 when the saga could neither complete nor be
/// fully undone (the order is unpaid, an operator must repair the saga).
#[utoipa::path(
    post,
    path = "/orders/checkout/{order_id}",
    operation_id = "checkout",
    summary = "Checks an order out: reserves its stock and charges its user, or neither. Waits for the saga's outcome.",
    params(("order_id" = Id, Path, description = "The order.")),
    responses(
        (status = 200, description = "Paid (also at once when the order already was).", body = Paid),
        (status = 400, description = "Refused: out of stock, not enough credit, no items, or a malformed order ID. A \
            checkout refused by its saga also carries `reason`.", body = Refused),
        (status = 404, description = "No such order.", body = Error),
        (status = 409, description = "A cancellation of the order is in progress (`a cancellation of this order is in \
            progress`); or the order was re-initialised by a batch_init while the checkout waited.", body = Error),
        (status = 500, description = "The saga could neither complete nor be fully undone. The order is not paid; an \
            operator must repair the saga through the coordinator.", body = Error),
        (status = 503, description = "The database or the broker is unavailable.", body = Error),
        (status = 504, description = "No outcome within CHECKOUT_TIMEOUT_MS; the saga still finishes and \
            GET /orders/find/{order_id} shows it.", body = Error),
    )
)]
pub(super) async fn check_out(
    checkouts: web::Data<Checkouts>,
    order_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order_id = check_id("order_id", &order_id)?;
    match checkouts.check_out(order_id).await? {
        CheckoutAnswer::Paid => Ok(HttpResponse::Ok().json(Paid { order_id, paid: true })),
        // Besides the message every error has, the reason in machine-readable form.
        CheckoutAnswer::Failed(reason) => {
            Ok(HttpResponse::BadRequest().json(Refused { error: reason.to_string(), reason: Some(reason) }))
        }
        CheckoutAnswer::NeedsAttention(stuck) => Ok(needs_attention(&stuck)),
        CheckoutAnswer::StillRunning => Err(CheckoutError::CheckoutStillRunning(order_id.to_owned()).into()),
        CheckoutAnswer::Discarded => Err(CheckoutError::CheckoutDiscarded(order_id.to_owned()).into()),
    }
}

/// Cancels a paid order as a compensating saga: the coordinator gives its stock back and refunds its payment,
/// each exactly once, and the order is unpaid and open again (to be changed or checked out anew).
///
/// - 200 `{"order_id", "paid": false, "cancelled": true}` once the saga is undone; at once, changing nothing, when
///   the order's last checkout is already cancelled, so a repeated cancel is harmless.
/// - Concurrent cancels of one order run one cancellation and all wait for it.
/// - 404 for an unknown order, 400 for a malformed ID.
/// - 409 "order is not paid" for an order that is neither paid nor cancelled.
/// - 409 while a checkout of the order is in flight: refused, not waited for; cancel once it has finished.
/// - While the cancellation runs the order stays paid and frozen: adding or removing items, removing the order
///   and checking it out answer 409 "a cancellation of this order is in progress".
/// - 500 when the saga can never be undone (a compensation cannot apply): the order stays paid, an operator must
///   repair the saga, and a later cancel asks again.
/// - 504 after `CHECKOUT_TIMEOUT_MS` without an outcome; the cancellation still finishes (it is sent again until
///   the coordinator answers), and `find` shows it.
#[utoipa::path(
    post,
    path = "/orders/cancel/{order_id}",
    operation_id = "cancelOrder",
    summary = "Cancels a paid order as a compensating saga. Waits for the saga's outcome.",
    description = "Its stock is given back and its payment refunded, each exactly once, and the order is unpaid and \
        open again.",
    params(("order_id" = Id, Path, description = "The order.")),
    responses(
        (status = 200, description = "Cancelled (also at once when the order's last checkout already was).", body = Cancelled),
        (status = 400, description = "A malformed order ID.", body = Error),
        (status = 404, description = "No such order.", body = Error),
        (status = 409, description = "Refused, nothing changed: the order is not paid (`order is not paid`), or a \
            checkout of it is in progress (refused, not waited for); or the order was re-initialised.", body = Error),
        (status = 500, description = "The saga can never be undone. The order stays paid; an operator must repair \
            the saga through the coordinator, and a later cancel asks again.", body = Error),
        (status = 503, description = "The database or the broker is unavailable.", body = Error),
        (status = 504, description = "No outcome within CHECKOUT_TIMEOUT_MS; the cancellation still finishes and \
            GET /orders/find/{order_id} shows it.", body = Error),
    )
)]
pub(super) async fn cancel(
    checkouts: web::Data<Checkouts>,
    order_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order_id = check_id("order_id", &order_id)?;
    match checkouts.cancel(order_id).await? {
        CancelAnswer::Cancelled => Ok(HttpResponse::Ok().json(Cancelled { order_id, paid: false, cancelled: true })),
        CancelAnswer::NeedsAttention(stuck) => Ok(needs_attention(&stuck)),
        CancelAnswer::StillRunning => Err(CheckoutError::CancelStillRunning(order_id.to_owned()).into()),
        CancelAnswer::Discarded => Err(CheckoutError::CancelDiscarded(order_id.to_owned()).into()),
    }
}

/// A paid order.
#[derive(Serialize, ToSchema)]
pub(super) struct Paid<'a> {
    order_id: &'a str,
    paid: bool,
}

/// A checkout refused: the message, and why in machine-readable form when the saga refused it.
#[derive(Serialize, ToSchema)]
pub(super) struct Refused {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<FailureReason>,
}

/// A cancelled order.
#[derive(Serialize, ToSchema)]
pub(super) struct Cancelled<'a> {
    order_id: &'a str,
    paid: bool,
    cancelled: bool,
}

/// 500 for a saga that an operator must repair. Not an `ApiError`: nothing failed in this request, which is
/// answered with the saga's end, but the client must know that neither of the clean ends was reached.
fn needs_attention(stuck: &Stuck) -> HttpResponse {
    tracing::error!(saga_id = %stuck.saga_id, problem = %stuck.problem, "a saga needs an operator");
    HttpResponse::InternalServerError().json(serde_json::json!({ "error": stuck.to_string() }))
}
