//! What the other services ask the coordinator over HTTP, outside the admin API: how many sagas are still under
//! way, which stock-svc and payment-svc check before a `batch_init` overwrites levels that running sagas may
//! still change. It reveals a count only, so it needs no admin credential.

use actix_web::{http::Method, web, HttpResponse};
use platform::{db::Pool, http::resource, http::ApiError};

use crate::store;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/internal/sagas/unfinished", Method::GET, unfinished));
}

/// `GET /internal/sagas/unfinished`: `{"unfinished": N}`, the sagas not yet in a terminal status.
#[utoipa::path(
    get,
    path = "/internal/sagas/unfinished",
    operation_id = "unfinishedSagas",
    summary = "How many sagas are still under way.",
    description = "stock-svc and payment-svc ask before a batch_init; no admin credential is needed, only a count is \
        revealed.",
    responses(
        (status = 200, description = "The count.", body = super::openapi::Unfinished),
        (status = 503, description = "The database is unavailable.", body = platform::http::ErrorBody),
    )
)]
pub(super) async fn unfinished(pool: web::Data<Pool>) -> Result<HttpResponse, ApiError> {
    let unfinished = store::count_unfinished(&mut *pool.get().await?).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "unfinished": unfinished })))
}
