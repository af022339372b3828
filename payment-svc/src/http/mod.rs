//! The REST API under `/payment/`, and the one mapping of store errors to answers.
//!
//! Handlers take every path segment as a string and parse it with `platform::http`, so that malformed numbers
//! and IDs are a 400 with a JSON body instead of actix's plain-text error.

mod order_payments;
mod users;

use actix_web::{
    http::{Method, StatusCode},
    web, HttpResponse, ResponseError,
};
use platform::http::{resource, resource_for, ApiError, ErrorBody};
use utoipa::OpenApi;

use crate::{domain::CreditRefusal, orders::CancelError, store::StoreError};

/// Mounts the payment routes with their full paths, as the gateway passes them through.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/payment/create_user", Method::POST, users::create_user))
        .service(resource("/payment/batch_init/{n}/{starting_money}", Method::POST, users::batch_init))
        .service(resource("/payment/find_user/{user_id}", Method::GET, users::find_user))
        .service(resource("/payment/add_funds/{user_id}/{amount}", Method::POST, users::add_funds))
        .service(resource("/payment/pay/{user_id}/{amount}", Method::POST, users::pay))
        .service(resource("/payment/pay/{user_id}/{order_id}/{amount}", Method::POST, order_payments::pay))
        .service(resource("/payment/cancel/{user_id}/{order_id}", Method::POST, order_payments::cancel))
        .service(resource_for(
            "/payment/status/{user_id}/{order_id}",
            &[Method::GET, Method::POST],
            order_payments::status,
        ))
        .service(platform::http::openapi(PaymentApi::openapi()));
}

/// The OpenAPI document of the routes above (`docs/openapi/payment.json` is its committed copy).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "payment-svc",
        description = "Users, their credit, and payments per order. Mounted under /payment/ behind the gateway. \
            Every error answer, including an unknown route (404) and a wrong method (405), has the body \
            `{\"error\": string}`. Credit is bounded so that every refund fits: per user, the credit and what of \
            theirs may still be refunded (charged checkout payments, charged payments for an order) together never \
            exceed 9223372036854775807 (MAX_CREDIT, the largest BIGINT); adding funds beyond that is refused with 400."
    ),
    paths(
        users::create_user,
        users::batch_init,
        users::find_user,
        users::add_funds,
        users::pay,
        order_payments::pay,
        order_payments::cancel,
        order_payments::status,
    ),
    components(schemas(
        users::CreatedUser,
        users::BatchInitialised,
        users::User,
        users::CreditChanged,
        order_payments::Paid,
        order_payments::Cancelled,
        order_payments::PaidStatus,
    ))
)]
struct PaymentApi;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownUser(_) | StoreError::NoPayment { .. } => ApiError::NotFound(e.to_string()),
            StoreError::Refused(refusal) => refusal.into(),
            StoreError::Database(e) => e.into(),
        }
    }
}

impl From<CreditRefusal> for ApiError {
    fn from(refusal: CreditRefusal) -> Self {
        match refusal {
            CreditRefusal::Insufficient { .. } => ApiError::Rejected(refusal.to_string()),
            CreditRefusal::WouldOverflow { .. } | CreditRefusal::NoRoomForRefunds { .. } => {
                ApiError::BadRequest(refusal.to_string())
            }
        }
    }
}

/// Why a handler did not succeed: an error every service answers the same way, or one whose answer is not one of
/// those.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// Answered as `platform::http` answers it.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// order-svc refused to cancel the order: its status and reason, passed on.
    #[error("{error}")]
    OrderRefused {
        /// order-svc's status, a 4xx.
        status: StatusCode,
        /// order-svc's reason.
        error: String,
    },
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Api(e) => e.status_code(),
            Self::OrderRefused { status, .. } => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let error = self.to_string();
        match self {
            Self::Api(e) => e.error_response(),
            Self::OrderRefused { status, .. } => HttpResponse::build(*status).json(ErrorBody { error: &error }),
        }
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        Self::Api(e.into())
    }
}

impl From<CreditRefusal> for HttpError {
    fn from(refusal: CreditRefusal) -> Self {
        Self::Api(refusal.into())
    }
}

impl From<diesel::result::Error> for HttpError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Api(e.into())
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for HttpError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::Api(e.into())
    }
}

impl From<platform::sagas::Unanswered> for HttpError {
    fn from(e: platform::sagas::Unanswered) -> Self {
        Self::Api(e.into())
    }
}

impl From<CancelError> for HttpError {
    fn from(e: CancelError) -> Self {
        match e {
            CancelError::Refused { status, error } => {
                // Any 4xx is a valid status; the fallback is never taken.
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                Self::OrderRefused { status, error }
            }
            CancelError::Unavailable(_) => {
                tracing::warn!(error = %e, "order-svc did not cancel an order");
                Self::Api(ApiError::Unavailable(e.to_string()))
            }
        }
    }
}
