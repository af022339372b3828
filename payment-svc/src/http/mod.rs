//! The REST API under `/payment/`, and the one mapping of store errors to answers.
//!
//! Handlers take every path segment as a string and parse it with `platform::http`, so that malformed numbers
//! and IDs are a 400 with a JSON body instead of actix's plain-text error.

mod order_payments;
mod users;

use actix_web::{http::Method, web};
use platform::http::{resource, ApiError};

use crate::{domain::CreditRefusal, store::StoreError};

/// Mounts the payment routes with their full paths, as the gateway passes them through.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/payment/create_user", Method::POST, users::create_user))
        .service(resource("/payment/batch_init/{n}/{starting_money}", Method::POST, users::batch_init))
        .service(resource("/payment/find_user/{user_id}", Method::GET, users::find_user))
        .service(resource("/payment/add_funds/{user_id}/{amount}", Method::POST, users::add_funds))
        .service(resource("/payment/pay/{user_id}/{amount}", Method::POST, users::pay))
        .service(resource("/payment/pay/{user_id}/{order_id}/{amount}", Method::POST, order_payments::pay))
        .service(resource("/payment/cancel/{user_id}/{order_id}", Method::POST, order_payments::cancel))
        .service(
            resource("/payment/status/{user_id}/{order_id}", Method::GET, order_payments::status)
                .route(web::post().to(order_payments::status)),
        )
        .service(platform::http::openapi(include_str!("../../../docs/openapi/payment.json")));
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownUser(_) | StoreError::NoPayment { .. } => ApiError::NotFound(e.to_string()),
            StoreError::Refused(refusal @ CreditRefusal::Insufficient { .. }) => {
                ApiError::Rejected(refusal.to_string())
            }
            StoreError::Refused(refusal @ CreditRefusal::WouldOverflow { .. }) => {
                ApiError::BadRequest(refusal.to_string())
            }
            StoreError::Database(e) => e.into(),
        }
    }
}
