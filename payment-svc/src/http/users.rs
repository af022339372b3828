//! Users and their credit: create, bulk-create, look up, add funds, pay without an order.

use actix_web::{web, HttpResponse};
use diesel_async::AsyncConnection;
use platform::{
    db::Pool,
    http::{check_id, parse_amount, parse_positive, Amount, ApiError, ErrorBody as Error, Id, UnfinishedBody},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::HttpError;
use crate::{domain, store::users};

/// The most users one `batch_init` creates.
const MAX_BATCH_USERS: u64 = 10_000_000;

#[derive(Serialize, ToSchema)]
/// A new user.
pub(super) struct CreatedUser {
    user_id: String,
}

/// What a `batch_init` answers.
#[derive(Serialize, ToSchema)]
pub(super) struct BatchInitialised {
    msg: &'static str,
}

/// A user and their credit.
#[derive(Serialize, ToSchema)]
pub(super) struct User<'a> {
    user_id: &'a str,
    credit: u64,
}

/// A user's credit after a change.
#[derive(Serialize, ToSchema)]
pub(super) struct CreditChanged<'a> {
    done: bool,
    user_id: &'a str,
    credit: u64,
}

/// `POST /payment/create_user`: a new user with credit 0.
#[utoipa::path(
    post,
    path = "/payment/create_user",
    operation_id = "createUser",
    summary = "Creates a user with credit 0.",
    responses(
        (status = 200, description = "The new user.", body = CreatedUser),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn create_user(pool: web::Data<Pool>) -> Result<HttpResponse, ApiError> {
    let mut conn = pool.get().await?;
    let user_id = users::create(&mut conn).await?;
    Ok(HttpResponse::Ok().json(CreatedUser { user_id }))
}

/// `POST /payment/batch_init/{n}/{starting_money}`: users `"0"` … `"n-1"` with that credit. Waits up to 10 s for
/// unfinished checkout sagas to end, then is refused (409) while any still are (they would later charge or refund
/// against the new credit); also refused (400) when the new
/// credit leaves no room for what may be refunded to a user.
#[utoipa::path(
    post,
    path = "/payment/batch_init/{n}/{starting_money}",
    operation_id = "batchInitUsers",
    summary = "Replaces users \"0\" to \"n - 1\", each with this credit.",
    description = "What may be refunded to them stays refundable. Only while no checkout saga is unfinished: it \
        waits up to 10 s for unfinished sagas to end, then asks the coordinator again, with the users locked, before \
        anything is written.",
    params(
        ("n" = u64, Path, minimum = 1, maximum = 10000000, description = "Number of users, 1 to 10000000."),
        ("starting_money" = Amount, Path, description = "Credit of each."),
    ),
    responses(
        (status = 200, description = "Done.", body = BatchInitialised),
        (status = 400, description = "A malformed path segment, or no room: a user's new credit and what may be \
            refunded to them would together exceed 9223372036854775807.", body = Error),
        (status = 409, description = "Checkout sagas were still unfinished after 10 s; nothing was changed. Try \
            again when they have ended.", body = UnfinishedBody),
        (status = 503, description = "The database is unavailable, or the coordinator could not say whether \
            checkout sagas are unfinished; nothing was changed.", body = Error),
    )
)]
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
#[utoipa::path(
    get,
    path = "/payment/find_user/{user_id}",
    operation_id = "findUser",
    summary = "A user's credit.",
    params(("user_id" = Id, Path, description = "The user.")),
    responses(
        (status = 200, description = "The user.", body = User),
        (status = 400, description = "A malformed user ID.", body = Error),
        (status = 404, description = "No such user.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn find_user(pool: web::Data<Pool>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let user_id = check_id("user_id", &path)?;
    let mut conn = pool.get().await?;
    let credit = users::find(&mut conn, user_id).await?;
    Ok(HttpResponse::Ok().json(User { user_id, credit }))
}

/// `POST /payment/add_funds/{user_id}/{amount}`.
#[utoipa::path(
    post,
    path = "/payment/add_funds/{user_id}/{amount}",
    operation_id = "addFunds",
    summary = "Adds credit, as long as credit and what may be refunded to the user together stay within \
        9223372036854775807.",
    params(("user_id" = Id, Path, description = "The user."), ("amount" = Amount, Path, description = "Credit to add.")),
    responses(
        (status = 200, description = "The credit after the change.", body = CreditChanged),
        (status = 400, description = "A malformed path segment, or no room: the credit and what may be refunded to \
            the user would together exceed 9223372036854775807.", body = Error),
        (status = 404, description = "No such user.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
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
#[utoipa::path(
    post,
    path = "/payment/pay/{user_id}/{amount}",
    operation_id = "pay",
    summary = "Takes credit, not tied to an order.",
    params(("user_id" = Id, Path, description = "The user."), ("amount" = Amount, Path, description = "Credit to take.")),
    responses(
        (status = 200, description = "The credit after the change.", body = CreditChanged),
        (status = 400, description = "A malformed path segment, or not enough credit.", body = Error),
        (status = 404, description = "No such user.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn pay(pool: web::Data<Pool>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (user_id, amount) = path.into_inner();
    let user_id = check_id("user_id", &user_id)?;
    let amount = parse_amount("amount", &amount)?;
    let mut conn = pool.get().await?;
    let credit = users::pay(&mut conn, user_id, amount, users::Payment::Final).await?;
    Ok(HttpResponse::Ok().json(CreditChanged { done: true, user_id, credit }))
}
