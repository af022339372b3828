//! The handlers of `/stock/...`: parse the path, run one store call, answer with JSON. `batch_init` alone runs
//! several, in one transaction around its question to the coordinator.

use actix_web::{web, HttpResponse};
use diesel_async::AsyncConnection;
use platform::{
    db::Pool,
    http::{check_id, parse_positive, ApiError},
};
use serde::Serialize;

use super::amount;
use crate::{
    domain::{self, ItemState},
    store::items,
};

/// The most items one `batch_init` may create.
const MAX_BATCH_INIT: u64 = 10_000_000;

/// An item's state after a change.
#[derive(Serialize)]
struct ChangedItem<'a> {
    item_id: &'a str,
    #[serde(flatten)]
    state: ItemState,
}

/// `POST /stock/item/create/{price}`: a new item with no stock.
pub async fn create(pool: web::Data<Pool>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let price = amount("price", &path)?;
    let item_id = items::create(&mut *pool.get().await?, price).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "item_id": item_id })))
}

/// `POST /stock/batch_init/{n}/{starting_stock}/{item_price}`: items `"0"` to `"n-1"`, replacing any with those IDs.
/// Waits up to 10 s for unfinished checkout sagas to end, then is refused (409) while any still are (they would
/// later give stock back onto the new levels); also refused (400) when the new stock leaves no room for what an
/// item has reserved.
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
    Ok(HttpResponse::Ok().json(serde_json::json!({ "msg": "Batch init for stock successful" })))
}

/// `GET /stock/find/{item_id}`: the item's stock and price.
pub async fn find(pool: web::Data<Pool>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let item_id = check_id("item_id", &path)?;
    match items::find(&mut *pool.get().await?, item_id).await? {
        Some(state) => Ok(HttpResponse::Ok().json(state)),
        None => Err(ApiError::NotFound(format!("item {item_id} does not exist"))),
    }
}

/// `POST /stock/add/{item_id}/{amount}`: the item's new state.
pub async fn add(pool: web::Data<Pool>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let item_id = check_id("item_id", &path.0)?;
    let amount = amount("amount", &path.1)?;
    let state = items::add(&mut *pool.get().await?, item_id, amount).await?;
    Ok(HttpResponse::Ok().json(ChangedItem { item_id, state }))
}

/// `POST /stock/subtract/{item_id}/{amount}`: the item's new state; 400 if the stock is short.
pub async fn subtract(pool: web::Data<Pool>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let item_id = check_id("item_id", &path.0)?;
    let amount = amount("amount", &path.1)?;
    let state = items::subtract(&mut *pool.get().await?, item_id, amount).await?;
    Ok(HttpResponse::Ok().json(ChangedItem { item_id, state }))
}
