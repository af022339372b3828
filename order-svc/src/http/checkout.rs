//! `POST /orders/checkout/{order_id}` and `POST /orders/cancel/{order_id}`: each answers once the saga has
//! decided, or with 504 when it takes longer than the configured timeout (the saga still finishes, and `find`
//! shows how).

use actix_web::{web, HttpResponse};
use platform::http::{check_id, ApiError};

use crate::{
    checkout::{CheckoutError, Checkouts},
    domain::{CancelAnswer, CheckoutAnswer, Stuck},
};

/// Checks the order out and answers with the outcome: 200 once paid (at once if it already was); 400 with the
/// reason, also machine-readable as `reason`, when the saga failed and took nothing; 404 for an unknown order,
/// 400 for an empty one; 409 while the order is being cancelled; 500 when the saga could neither complete nor be
/// fully undone (the order is unpaid, an operator must repair the saga).
pub(super) async fn check_out(
    checkouts: web::Data<Checkouts>,
    order_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order_id = check_id("order_id", &order_id)?;
    match checkouts.check_out(order_id).await? {
        CheckoutAnswer::Paid => Ok(HttpResponse::Ok().json(serde_json::json!({ "order_id": order_id, "paid": true }))),
        // Besides the message every error has, the reason in machine-readable form.
        CheckoutAnswer::Failed(reason) => {
            Ok(HttpResponse::BadRequest().json(serde_json::json!({ "error": reason.to_string(), "reason": reason })))
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
pub(super) async fn cancel(
    checkouts: web::Data<Checkouts>,
    order_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order_id = check_id("order_id", &order_id)?;
    match checkouts.cancel(order_id).await? {
        CancelAnswer::Cancelled => Ok(HttpResponse::Ok().json(serde_json::json!({
            "order_id": order_id, "paid": false, "cancelled": true
        }))),
        CancelAnswer::NeedsAttention(stuck) => Ok(needs_attention(&stuck)),
        CancelAnswer::StillRunning => Err(CheckoutError::CancelStillRunning(order_id.to_owned()).into()),
        CancelAnswer::Discarded => Err(CheckoutError::CancelDiscarded(order_id.to_owned()).into()),
    }
}

/// 500 for a saga that an operator must repair. Not an `ApiError`: nothing failed in this request, which is
/// answered with the saga's end, but the client must know that neither of the clean ends was reached.
fn needs_attention(stuck: &Stuck) -> HttpResponse {
    tracing::error!(saga_id = %stuck.saga_id, problem = %stuck.problem, "a saga needs an operator");
    HttpResponse::InternalServerError().json(serde_json::json!({ "error": stuck.to_string() }))
}
