//! Payments against an order: pay once, cancel (refund) once, and whether the order is paid.

use actix_web::{web, HttpResponse};
use platform::{
    db::Pool,
    http::{check_id, parse_amount, Amount, ApiError, ErrorBody as Error, Id},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::HttpError;
use crate::{
    orders::OrderClient,
    store::order_payments::{self, OrderPayment},
};

/// A user's credit after paying for an order.
#[derive(Serialize, ToSchema)]
pub(super) struct Paid<'a> {
    done: bool,
    user_id: &'a str,
    credit: u64,
    already_paid: bool,
}

/// What a cancel refunded (0 when everything was refunded before).
#[derive(Serialize, ToSchema)]
pub(super) struct Cancelled {
    done: bool,
    refunded: u64,
}

/// Whether an order is paid.
#[derive(Serialize, ToSchema)]
pub(super) struct PaidStatus {
    paid: bool,
}

/// `POST /payment/pay/{user_id}/{order_id}/{amount}`: charges once per user and order.
#[utoipa::path(
    post,
    path = "/payment/pay/{user_id}/{order_id}/{amount}",
    operation_id = "payOrder",
    summary = "Charges a user for an order, once: a repeat charges nothing.",
    description = "The payment may be refunded by a cancel until then.",
    params(
        ("user_id" = Id, Path, description = "The user."),
        ("order_id" = Id, Path, description = "The order."),
        ("amount" = Amount, Path, description = "Credit to take."),
    ),
    responses(
        (status = 200, description = "The credit after the charge.", body = Paid),
        (status = 400, description = "A malformed path segment, or not enough credit.", body = Error),
        (status = 404, description = "No such user.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn pay(
    pool: web::Data<Pool>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user_id, order_id, amount) = path.into_inner();
    let user_id = check_id("user_id", &user_id)?;
    let order_id = check_id("order_id", &order_id)?;
    let amount = parse_amount("amount", &amount)?;
    let mut conn = pool.get().await?;
    let body = match order_payments::pay(&mut conn, user_id, order_id, amount).await? {
        OrderPayment::Paid { credit } => Paid { done: true, user_id, credit, already_paid: false },
        OrderPayment::AlreadyPaid { credit } => Paid { done: true, user_id, credit, already_paid: true },
    };
    Ok(HttpResponse::Ok().json(body))
}

/// `POST /payment/cancel/{user_id}/{order_id}`: refunds what the user paid for the order, once. A payment made
/// over REST is refunded here; an order paid by a checkout is cancelled by order-svc, whose cancellation saga
/// gives back the payment and the stock, and whose refusal (a 4xx) is passed on.
#[utoipa::path(
    post,
    path = "/payment/cancel/{user_id}/{order_id}",
    operation_id = "cancelPayment",
    summary = "Refunds an order's payment, once.",
    description = "A payment made with /payment/pay/{user_id}/{order_id}/{amount} is refunded here. An order paid by \
        a checkout is not refunded here: order-svc is asked to cancel the order (POST /orders/cancel/{order_id}), \
        whose cancellation saga refunds the payment, returns the stock and marks the order unpaid, each once; the \
        answer comes when that is done.",
    params(("user_id" = Id, Path, description = "The user."), ("order_id" = Id, Path, description = "The order.")),
    responses(
        (status = 200, description = "What was refunded (0 when everything was refunded before).", body = Cancelled),
        (status = 400, description = "A malformed ID, or order-svc's 400, passed on.", body = Error),
        (status = 404, description = "No such user, or no payment for this order; or order-svc's 404 (it does not \
            know the order), passed on.", body = Error),
        (status = 409, description = "order-svc refused to cancel the order (a checkout of it is in progress, it is \
            not paid), passed on with its reason; nothing was refunded.", body = Error),
        (status = 503, description = "The database is unavailable, or order-svc could not be reached or failed; what \
            the checkout charged is not refunded yet.", body = Error),
    )
)]
pub(super) async fn cancel(
    pool: web::Data<Pool>,
    orders: web::Data<OrderClient>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (user_id, order_id) = path.into_inner();
    let user_id = check_id("user_id", &user_id)?;
    let order_id = check_id("order_id", &order_id)?;
    let cancellation = order_payments::cancel(&mut *pool.get().await?, user_id, order_id).await?;
    let Some(by_checkout) = cancellation.by_checkout else {
        return Ok(HttpResponse::Ok().json(Cancelled { done: true, refunded: cancellation.refunded }));
    };
    // No database connection is held while order-svc runs the cancellation saga.
    orders.cancel(order_id).await?;
    if order_payments::charged_by_checkout(&mut *pool.get().await?, user_id, order_id).await?.is_some() {
        return Err(ApiError::Unavailable(format!(
            "order-svc cancelled order {order_id}, but the payment of its checkout is still charged"
        ))
        .into());
    }
    Ok(HttpResponse::Ok().json(Cancelled { done: true, refunded: cancellation.refunded + by_checkout }))
}

/// `GET` or `POST /payment/status/{user_id}/{order_id}`.
#[utoipa::path(
    method(get, post),
    path = "/payment/status/{user_id}/{order_id}",
    operation_id = "paymentStatus",
    summary = "Whether the order is paid (POST as well as GET, as the course API's clients use POST).",
    params(("user_id" = Id, Path, description = "The user."), ("order_id" = Id, Path, description = "The order.")),
    responses(
        (status = 200, description = "The status.", body = PaidStatus),
        (status = 400, description = "A malformed ID.", body = Error),
        (status = 404, description = "No such user.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn status(pool: web::Data<Pool>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (user_id, order_id) = path.into_inner();
    let user_id = check_id("user_id", &user_id)?;
    let order_id = check_id("order_id", &order_id)?;
    let mut conn = pool.get().await?;
    let paid = order_payments::is_paid(&mut conn, user_id, order_id).await?;
    Ok(HttpResponse::Ok().json(PaidStatus { paid }))
}
