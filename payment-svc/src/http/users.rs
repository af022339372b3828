//! Users and their credit: create, bulk-create, look up, add funds, pay without an order.

use actix_web::{web, HttpResponse};
use diesel_async::AsyncConnection;
use platform::{
    db::Pool,
    http::{check_id, parse_amount, parse_positive, ApiError},
};
use serde::Serialize;

use super::HttpError;
use crate::{domain, store::users};

/// The most users one `batch_init` creates.
const MAX_BATCH_USERS: u64 = 10_000_000;

#[derive(Serialize)]
struct CreatedUser {
    user_id: String,
}

#[derive(Serialize)]
struct BatchInitialised {
    msg: &'static str,
}

#[derive(Serialize)]
struct User<'a> {
    user_id: &'a str,
    credit: u64,
}

#[derive(Serialize)]
struct CreditChanged<'a> {
    done: bool,
    user_id: &'a str,
    credit: u64,
}

/// `POST /payment/create_user`: a new user with credit 0.
pub(super) async fn create_user(pool: web::Data<Pool>) -> Result<HttpResponse, ApiError> {
    let mut conn = pool.get().await?;
    let user_id = users::create(&mut conn).await?;
    Ok(HttpResponse::Ok().json(CreatedUser { user_id }))
}

/// `POST /payment/batch_init/{n}/{starting_money}`: users `"0"` … `"n-1"` with that credit. Waits up to 10 s for
/// unfinished checkout sagas to end, then is refused (409) while any still are (they would later charge or refund
/// against the new credit); also refused (400) when the new
/// credit leaves no room for what may be refunded to a user.
pub(super) async fn batch_init(
    pool: web::Data<Pool>,
    coordinator: web::Data<platform::sagas::CoordinatorClient>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (n, starting_money) = path.into_inner();
    let n = parse_positive("n", &n)?;
    if n > MAX_BATCH_USERS {
        return Err(ApiError::BadRequest(format!("n must be at most {MAX_BATCH_USERS}, got {n}")).into());
    }
    let credit = parse_amount("starting_money", &starting_money)?;
    // Unfinished sagas usually end within seconds: wait for them without holding any lock.
    coordinator.wait_until_none_unfinished(platform::sagas::BATCH_INIT_PATIENCE).await?;
    pool.get()
        .await?
        .transaction::<_, HttpError, _>(async |conn| {
            // Locked before the coordinator is asked, so that no charge or refund can reach these users between
            // its answer and the write.
            if let Some((user_id, refundable)) = users::lock_numbered(conn, n).await? {
                domain::check_new_credit(&user_id, credit, refundable)?;
            }
            match coordinator.unfinished_sagas().await? {
                0 => Ok(users::batch_init(conn, n, credit).await?),
                unfinished => {
                    Err(ApiError::Unfinished { unfinished, what: "checkout sagas", changes: "credit" }.into())
                }
            }
        })
        .await?;
    Ok(HttpResponse::Ok().json(BatchInitialised { msg: "Batch init for users successful" }))
}

/// `GET /payment/find_user/{user_id}`.
pub(super) async fn find_user(pool: web::Data<Pool>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let user_id = check_id("user_id", &path)?;
    let mut conn = pool.get().await?;
    let credit = users::find(&mut conn, user_id).await?;
    Ok(HttpResponse::Ok().json(User { user_id, credit }))
}

/// `POST /payment/add_funds/{user_id}/{amount}`.
pub(super) async fn add_funds(
    pool: web::Data<Pool>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user_id, amount) = path.into_inner();
    let user_id = check_id("user_id", &user_id)?;
    let amount = parse_amount("amount", &amount)?;
    let mut conn = pool.get().await?;
    let credit = users::add_funds(&mut conn, user_id, amount).await?;
    Ok(HttpResponse::Ok().json(CreditChanged { done: true, user_id, credit }))
}

/// `POST /payment/pay/{user_id}/{amount}`: 400 if the credit would go below zero.
pub(super) async fn pay(pool: web::Data<Pool>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (user_id, amount) = path.into_inner();
    let user_id = check_id("user_id", &user_id)?;
    let amount = parse_amount("amount", &amount)?;
    let mut conn = pool.get().await?;
    let credit = users::pay(&mut conn, user_id, amount, users::Payment::Final).await?;
    Ok(HttpResponse::Ok().json(CreditChanged { done: true, user_id, credit }))
}
