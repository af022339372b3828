//! Payments against an order: pay once, cancel (refund) once, and whether the order is paid.

use actix_web::{web, HttpResponse};
use platform::{
    db::Pool,
    http::{check_id, parse_amount, ApiError},
};
use serde::Serialize;

use super::HttpError;
use crate::{
    orders::OrderClient,
    store::order_payments::{self, OrderPayment},
};

#[derive(Serialize)]
struct Paid<'a> {
    done: bool,
    user_id: &'a str,
    credit: u64,
    already_paid: bool,
}

#[derive(Serialize)]
struct Cancelled {
    done: bool,
    refunded: u64,
}

#[derive(Serialize)]
struct PaidStatus {
    paid: bool,
}

/// `POST /payment/pay/{user_id}/{order_id}/{amount}`: charges once per user and order.
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
pub(super) async fn status(pool: web::Data<Pool>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (user_id, order_id) = path.into_inner();
    let user_id = check_id("user_id", &user_id)?;
    let order_id = check_id("order_id", &order_id)?;
    let mut conn = pool.get().await?;
    let paid = order_payments::is_paid(&mut conn, user_id, order_id).await?;
    Ok(HttpResponse::Ok().json(PaidStatus { paid }))
}
