//! The REST API of stock-svc under `/stock/`, and the one place where a refusal becomes a status code.
//!
//! Path segments are taken as strings and parsed here, so that every malformed number is a 400 with a JSON body
//! that says what is wrong, never a panic or a bare actix error.

use actix_web::{http::Method, web};
use platform::http::{parse_amount, resource, ApiError};
use utoipa::OpenApi;

use crate::{domain::StockError, store::items::StoreError};

mod items;

/// Mounts the routes of the API with their full path, as the gateway passes paths through.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/stock/item/create/{price}", Method::POST, items::create))
        .service(resource("/stock/batch_init/{n}/{starting_stock}/{item_price}", Method::POST, items::batch_init))
        .service(resource("/stock/find/{item_id}", Method::GET, items::find))
        .service(resource("/stock/add/{item_id}/{amount}", Method::POST, items::add))
        .service(resource("/stock/subtract/{item_id}/{amount}", Method::POST, items::subtract))
        .service(platform::http::openapi(StockApi::openapi()));
}

/// The OpenAPI document of the routes above (`docs/openapi/stock.json` is its committed copy).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "stock-svc",
        description = "Items, their stock and price. Mounted under /stock/ behind the gateway. Every error answer, \
            including an unknown route (404) and a wrong method (405), has the body `{\"error\": string}`. Stock is \
            bounded so that every compensation fits: per item, the stock and the units reserved by checkout sagas \
            and not yet released together never exceed 9223372036854775807 (MAX_STOCK, the largest BIGINT); a write \
            that adds stock beyond that is refused with 400, so that giving any reservation back always fits."
    ),
    paths(items::create, items::batch_init, items::find, items::add, items::subtract),
    components(schemas(items::CreatedItem, items::BatchInitialised, items::ChangedItem, crate::domain::ItemState))
)]
struct StockApi;

/// The path segment `raw`, called `what` in errors, as an amount the database stores.
fn amount(what: &str, raw: &str) -> Result<i64, ApiError> {
    let value = parse_amount(what, raw)?;
    i64::try_from(value).map_err(|_| ApiError::BadRequest(format!("{what} is too large: {value}")))
}

impl From<StockError> for ApiError {
    fn from(refusal: StockError) -> Self {
        match refusal {
            StockError::UnknownItem(_) => Self::NotFound(refusal.to_string()),
            StockError::NotEnoughStock { .. } => Self::Rejected(refusal.to_string()),
            StockError::TooMuchStock { .. } | StockError::NoRoomForReserved { .. } => {
                Self::BadRequest(refusal.to_string())
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(refusal) => refusal.into(),
            StoreError::Database(e) => e.into(),
        }
    }
}
