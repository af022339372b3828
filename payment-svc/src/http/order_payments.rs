//! Payments against an order: pay once, cancel (refund) once, and whether the order is paid.

use actix_web::{web, HttpResponse};
use platform::{
    db::Pool,
    http::{check_id, parse_amount, ApiError},
};
use serde::Serialize;

use crate::store::order_payments::{self, OrderPayment};

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

/// `POST /payment/cancel/{user_id}/{order_id}`: refunds what the user paid for the order, once.
pub(super) async fn cancel(pool: web::Data<Pool>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (user_id, order_id) = path.into_inner();
    let user_id = check_id("user_id", &user_id)?;
    let order_id = check_id("order_id", &order_id)?;
    let mut conn = pool.get().await?;
    let refunded = order_payments::cancel(&mut conn, user_id, order_id).await?;
    Ok(HttpResponse::Ok().json(Cancelled { done: true, refunded }))
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
