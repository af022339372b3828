//! `POST /orders/checkout/{order_id}`: answers once the saga has decided, or with 504 when it takes longer than
//! the configured timeout (the saga still finishes, and `find` shows how).

use actix_web::{web, HttpResponse};
use platform::http::{check_id, ApiError};

use crate::checkout::{CheckoutAnswer, Checkouts};

/// Checks the order out and answers with the outcome.
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
        CheckoutAnswer::StillRunning => Err(ApiError::Timeout(format!(
            "checkout of order {order_id} is still in progress; GET /orders/find/{order_id} shows its outcome"
        ))),
        CheckoutAnswer::Discarded => Err(ApiError::Conflict(format!(
            "the checkout of order {order_id} was discarded because the order was re-initialised; check out again"
        ))),
    }
}
