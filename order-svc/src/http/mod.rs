//! The REST API of order-svc, mounted under `/orders/`: order management in [`orders`], checkout and
//! cancellation in [`checkout`], and the one mapping of this service's errors to `ApiError` (and so to a status
//! and a JSON body). Refusals because of work in flight, or of a cancel of an unpaid order, are 409; other
//! refusals by the order's rules are 400.

mod checkout;
mod orders;

use actix_web::{http::Method, web};
use platform::http::{resource, ApiError};
use utoipa::OpenApi;

use crate::{
    checkout::CheckoutError,
    domain::{InvalidBatch, Refusal},
    payment::UserError,
    stock::PriceError,
    store::StoreError,
};

/// Mounts every route of the service. actix-web tries the routes' patterns in the order they are mounted, and the
/// request metrics match the path against them once more, so the checkout, the route under load, comes first; no
/// two patterns here match the same path, so the order changes nothing else.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/orders/checkout/{order_id}", Method::POST, checkout::check_out))
        .service(resource("/orders/cancel/{order_id}", Method::POST, checkout::cancel))
        .service(resource("/orders/create/{user_id}", Method::POST, orders::create))
        .service(resource("/orders/batch_init/{n}/{n_items}/{n_users}/{item_price}", Method::POST, orders::batch_init))
        .service(resource("/orders/find/{order_id}", Method::GET, orders::find))
        .service(resource("/orders/addItem/{order_id}/{item_id}/{quantity}", Method::POST, orders::add_item))
        .service(resource("/orders/addItem/{order_id}/{item_id}", Method::POST, orders::add_one_item))
        .service(resource("/orders/removeItem/{order_id}/{item_id}", Method::DELETE, orders::remove_item))
        .service(resource("/orders/remove/{order_id}", Method::DELETE, orders::remove))
        .service(platform::http::openapi(OrdersApi::openapi()));
}

/// The OpenAPI document of the routes above (`docs/openapi/orders.json` is its committed copy).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "order-svc",
        description = "Orders, their checkout and its cancellation. Mounted under /orders/ behind the gateway. Every \
            error answer, including an unknown route (404) and a wrong method (405), has the body \
            `{\"error\": string}`. Refusals because of work in flight on the order (a checkout or a cancellation), \
            and a cancel of an unpaid order, are 409; other refusals by the order's rules are 400. A 500 is answered \
            only for a saga that could neither complete nor be fully undone, which an operator must repair through \
            the coordinator."
    ),
    paths(
        orders::create,
        orders::batch_init,
        orders::find,
        orders::add_item,
        orders::add_one_item,
        orders::remove_item,
        orders::remove,
        checkout::check_out,
        checkout::cancel,
    ),
    components(schemas(
        orders::CreatedOrder,
        orders::BatchInitialised,
        orders::OrderBody,
        orders::LinesBody,
        orders::Removed,
        checkout::Paid,
        checkout::Refused,
        checkout::Cancelled,
        shared_contracts::FailureReason,
    ))
)]
struct OrdersApi;

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let message = refusal.to_string();
        match refusal {
            Refusal::AlreadyPaid | Refusal::NoItems => Self::Rejected(message),
            Refusal::CheckoutInProgress
            | Refusal::CancellationInProgress
            | Refusal::CancelDuringCheckout
            | Refusal::NotPaid
            | Refusal::PaidWithoutCheckout => Self::Conflict(message),
            Refusal::TooLarge => Self::BadRequest(message),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownOrder(_) | StoreError::ItemNotInOrder { .. } => Self::NotFound(e.to_string()),
            StoreError::Refused(refusal) => refusal.into(),
            StoreError::UnfinishedCheckouts(unfinished) => {
                Self::Unfinished { unfinished, what: "checkouts of these orders", changes: "the orders" }
            }
            StoreError::Corrupt(_) => {
                tracing::error!(error = %e, "inconsistent data");
                Self::Unavailable(e.to_string())
            }
            StoreError::Database(e) => e.into(),
            StoreError::Pool(e) => e.into(),
        }
    }
}

impl From<CheckoutError> for ApiError {
    fn from(e: CheckoutError) -> Self {
        match e {
            CheckoutError::Store(e) => e.into(),
            CheckoutError::Batch(_) | CheckoutError::IntakeStopped => Self::Unavailable(e.to_string()),
            CheckoutError::CheckoutStillRunning(_) | CheckoutError::CancelStillRunning(_) => {
                Self::Timeout(e.to_string())
            }
            CheckoutError::CheckoutDiscarded(_) | CheckoutError::CancelDiscarded(_) => Self::Conflict(e.to_string()),
        }
    }
}

impl From<PriceError> for ApiError {
    fn from(e: PriceError) -> Self {
        match e {
            PriceError::UnknownItem(_) => Self::NotFound(e.to_string()),
            PriceError::Unavailable(_) => {
                tracing::warn!(error = %e, "no price from stock-svc");
                Self::Unavailable(e.to_string())
            }
        }
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::UnknownUser(_) => Self::NotFound(e.to_string()),
            UserError::Unavailable(_) => {
                tracing::warn!(error = %e, "no answer about a user from payment-svc");
                Self::Unavailable(e.to_string())
            }
        }
    }
}

impl From<InvalidBatch> for ApiError {
    fn from(e: InvalidBatch) -> Self {
        Self::BadRequest(e.to_string())
    }
}
