//! The handlers of `/stock/...`: parse the path, run one store call, answer with JSON. `batch_init` alone runs
//! several, in one transaction around its question to the coordinator.

use actix_web::{web, HttpResponse};
use diesel_async::AsyncConnection;
use platform::{
    db::Pool,
    http::{check_id, parse_positive, Amount, ApiError, ErrorBody as Error, Id, UnfinishedBody},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::amount;
use crate::{
    domain::{self, ItemState},
    store::items,
};

/// The most items one `batch_init` may create.
const MAX_BATCH_INIT: u64 = 10_000_000;

/// An item's state after a change.
#[derive(Serialize, ToSchema)]
pub(super) struct ChangedItem<'a> {
    item_id: &'a str,
    #[serde(flatten)]
    state: ItemState,
}

/// A new item.
#[derive(Serialize, ToSchema)]
pub(super) struct CreatedItem {
    item_id: String,
}

/// What a `batch_init` answers.
#[derive(Serialize, ToSchema)]
pub(super) struct BatchInitialised {
    msg: &'static str,
}

/// `POST /stock/item/create/{price}`: a new item with no stock.
#[utoipa::path(
    post,
    path = "/stock/item/create/{price}",
    operation_id = "createItem",
    summary = "Creates an item with no stock at this price.",
    params(("price" = Amount, Path, description = "Unit price.")),
    responses(
        (status = 200, description = "The new item.", body = CreatedItem),
        (status = 400, description = "A malformed path segment: not digits, or too large.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub async fn create(pool: web::Data<Pool>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let price = amount("price", &path)?;
    let item_id = items::create(&mut *pool.get().await?, price).await?;
    Ok(HttpResponse::Ok().json(CreatedItem { item_id }))
}

/// `POST /stock/batch_init/{n}/{starting_stock}/{item_price}`: items `"0"` to `"n-1"`, replacing any with those IDs.
/// Waits up to 10 s for unfinished checkout sagas to end, then is refused (409) while any still are (they would
/// later give stock back onto the new levels); also refused (400) when the new stock leaves no room for what an
/// item has reserved.
#[utoipa::path(
    post,
    path = "/stock/batch_init/{n}/{starting_stock}/{item_price}",
    operation_id = "batchInitItems",
    summary = "Replaces items \"0\" to \"n - 1\", each with this stock and price.",
    description = "The units checkouts have reserved of them stay reserved. Only while no checkout saga is \
        unfinished: it waits up to 10 s for unfinished sagas to end, then asks the coordinator again, with the items \
        locked, before anything is written.",
    params(
        ("n" = u64, Path, minimum = 1, maximum = 10000000, description = "Number of items, 1 to 10000000."),
        ("starting_stock" = Amount, Path, description = "Stock of each."),
        ("item_price" = Amount, Path, description = "Price of each."),
    ),
    responses(
        (status = 200, description = "Done.", body = BatchInitialised),
        (status = 400, description = "A malformed path segment, or no room: an item's new stock and the units \
            checkouts have reserved of it would together exceed 9223372036854775807.", body = Error),
        (status = 409, description = "Checkout sagas were still unfinished after 10 s; nothing was changed. Try \
            again when they have ended.", body = UnfinishedBody),
        (status = 503, description = "The database is unavailable, or the coordinator could not say whether \
            checkout sagas are unfinished; nothing was changed.", body = Error),
    )
)]
pub async fn batch_init(
    pool: web::Data<Pool>,
    coordinator: web::Data<platform::sagas::CoordinatorClient>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (n, starting_stock, item_price) = path.into_inner();
    let count = parse_positive("n", &n)?;
    if count > MAX_BATCH_INIT {
        return Err(ApiError::BadRequest(format!("n must be at most {MAX_BATCH_INIT}, got {count}")));
    }
    let stock = amount("starting_stock", &starting_stock)?;
    let price = amount("item_price", &item_price)?;
    let count = count as i64;
    // Unfinished sagas usually end within seconds: wait for them without holding any lock.
    coordinator.wait_until_none_unfinished(platform::sagas::BATCH_INIT_PATIENCE).await?;
    pool.get()
        .await?
        .transaction::<_, ApiError, _>(async |conn| {
            // Locked before the coordinator is asked, so that no reservation can take from these items between
            // its answer and the write.
            if let Some((item_id, reserved)) = items::lock_numbered(conn, count).await? {
                domain::check_new_stock(&item_id, stock, reserved)?;
            }
            match coordinator.unfinished_sagas().await? {
                0 => Ok(items::batch_init(conn, count, stock, price).await?),
                unfinished => Err(ApiError::Unfinished { unfinished, what: "checkout sagas", changes: "stock" }),
            }
        })
        .await?;
    Ok(HttpResponse::Ok().json(BatchInitialised { msg: "Batch init for stock successful" }))
}

/// `GET /stock/find/{item_id}`: the item's stock and price.
#[utoipa::path(
    get,
    path = "/stock/find/{item_id}",
    operation_id = "findItem",
    summary = "An item's stock and price.",
    params(("item_id" = Id, Path, description = "The item.")),
    responses(
        (status = 200, description = "The item.", body = ItemState),
        (status = 400, description = "A malformed item ID.", body = Error),
        (status = 404, description = "No such item.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub async fn find(pool: web::Data<Pool>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let item_id = check_id("item_id", &path)?;
    match items::find(&mut *pool.get().await?, item_id).await? {
        Some(state) => Ok(HttpResponse::Ok().json(state)),
        None => Err(ApiError::NotFound(format!("item {item_id} does not exist"))),
    }
}

/// `POST /stock/add/{item_id}/{amount}`: the item's new state.
#[utoipa::path(
    post,
    path = "/stock/add/{item_id}/{amount}",
    operation_id = "addStock",
    summary = "Adds units to an item's stock, as long as stock and reserved units together stay within \
        9223372036854775807.",
    params(("item_id" = Id, Path, description = "The item."), ("amount" = Amount, Path, description = "Units to add.")),
    responses(
        (status = 200, description = "The item after the change.", body = ChangedItem),
        (status = 400, description = "A malformed path segment, or no room: the item's stock and the units \
            checkouts have reserved of it would together exceed 9223372036854775807.", body = Error),
        (status = 404, description = "No such item.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub async fn add(pool: web::Data<Pool>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let item_id = check_id("item_id", &path.0)?;
    let amount = amount("amount", &path.1)?;
    let state = items::add(&mut *pool.get().await?, item_id, amount).await?;
    Ok(HttpResponse::Ok().json(ChangedItem { item_id, state }))
}

/// `POST /stock/subtract/{item_id}/{amount}`: the item's new state; 400 if the stock is short.
#[utoipa::path(
    post,
    path = "/stock/subtract/{item_id}/{amount}",
    operation_id = "subtractStock",
    summary = "Takes units from an item's stock; never below zero.",
    params(("item_id" = Id, Path, description = "The item."), ("amount" = Amount, Path, description = "Units to take.")),
    responses(
        (status = 200, description = "The item after the change.", body = ChangedItem),
        (status = 400, description = "A malformed path segment, or not enough stock.", body = Error),
        (status = 404, description = "No such item.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub async fn subtract(pool: web::Data<Pool>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let item_id = check_id("item_id", &path.0)?;
    let amount = amount("amount", &path.1)?;
    let state = items::subtract(&mut *pool.get().await?, item_id, amount).await?;
    Ok(HttpResponse::Ok().json(ChangedItem { item_id, state }))
}
