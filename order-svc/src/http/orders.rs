//! Order management: create, `batch_init`, find, add and remove items, remove an order.

use actix_web::{web, HttpResponse};
use platform::{
    db::Pool,
    http::{check_id, parse_amount, parse_positive, ApiError, Count, ErrorBody as Error, Id, UnfinishedBody},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    domain::BatchInit,
    payment::PaymentClient,
    stock::StockClient,
    store::{orders, OrderView},
};

/// An order as `find` shows it; items are `[item_id, quantity]` pairs, as the course API has them.
#[derive(Serialize, ToSchema)]
pub(super) struct OrderBody {
    order_id: String,
    paid: bool,
    /// `[item_id, quantity]` pairs.
    #[schema(schema_with = item_pairs)]
    items: Vec<(String, u64)>,
    user_id: String,
    total_cost: u64,
}

/// What `addItem` and `removeItem` answer: the order's lines and total after the change.
#[derive(Serialize, ToSchema)]
pub(super) struct LinesBody {
    order_id: String,
    total_cost: u64,
    /// `[item_id, quantity]` pairs.
    #[schema(schema_with = item_pairs)]
    items: Vec<(String, u64)>,
}

/// A new order.
#[derive(Serialize, ToSchema)]
pub(super) struct CreatedOrder {
    #[schema(format = Uuid)]
    order_id: String,
}

/// What a `batch_init` answers.
#[derive(Serialize, ToSchema)]
pub(super) struct BatchInitialised {
    msg: &'static str,
}

/// What a removal answers.
#[derive(Serialize, ToSchema)]
pub(super) struct Removed {
    done: bool,
}

/// The schema of `[item_id, quantity]` pairs: arrays of two, a string and an integer. Written out because the
/// `prefixItems` that utoipa derives for a tuple is read by too few OpenAPI tools.
fn item_pairs() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::{schema::ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let element = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)));
    let pair = ArrayBuilder::new().items(element).min_items(Some(2)).max_items(Some(2));
    ArrayBuilder::new().items(pair).build()
}

fn pairs(order: &OrderView) -> Vec<(String, u64)> {
    order.items.iter().map(|line| (line.item_id.clone(), line.quantity)).collect()
}

fn lines_body(order: OrderView) -> LinesBody {
    LinesBody { items: pairs(&order), order_id: order.order_id, total_cost: order.total }
}

/// `POST /orders/create/{user_id}`: a new empty order, for a user payment-svc knows (404 otherwise, 503 when it
/// does not answer). The user may still be gone by the checkout, which then fails with the reason.
#[utoipa::path(
    post,
    path = "/orders/create/{user_id}",
    operation_id = "createOrder",
    summary = "Creates an empty order for a user that payment-svc knows.",
    params(("user_id" = Id, Path, description = "The user.")),
    responses(
        (status = 200, description = "The new order.", body = CreatedOrder),
        (status = 400, description = "A malformed user ID.", body = Error),
        (status = 404, description = "No such user: payment-svc does not know it. Nothing is created.", body = Error),
        (status = 503, description = "The database or payment-svc is unavailable, so the user could not be \
            checked. Nothing is created.", body = Error),
    )
)]
pub(super) async fn create(
    pool: web::Data<Pool>,
    payment: web::Data<PaymentClient>,
    user_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user_id = check_id("user_id", &user_id)?;
    payment.check_user(user_id).await?;
    let order_id = uuid::Uuid::new_v4().to_string();
    orders::create(&mut *pool.get().await?, &order_id, user_id).await?;
    Ok(HttpResponse::Ok().json(CreatedOrder { order_id }))
}

/// `POST /orders/batch_init/{n}/{n_items}/{n_users}/{item_price}`: replaces orders `"0"` to `"n - 1"`. Refused
/// with 409, changing nothing, while checkouts or cancellations of those orders are in flight; the answer says
/// how many, also as `unfinished`.
#[utoipa::path(
    post,
    path = "/orders/batch_init/{n}/{n_items}/{n_users}/{item_price}",
    operation_id = "batchInitOrders",
    summary = "Replaces orders \"0\" to \"n - 1\" with random items and users.",
    description = "Each order has two units of one item; so that its total fits, item_price is at most \
        4611686018427387903.",
    params(
        ("n" = u64, Path, minimum = 1, maximum = 10000000, description = "Number of orders, 1 to 10000000."),
        ("n_items" = u64, Path, minimum = 1, maximum = 10000000, description = "Items to draw from, 1 to 10000000."),
        ("n_users" = u64, Path, minimum = 1, maximum = 10000000, description = "Users to draw from, 1 to 10000000."),
        ("item_price" = u64, Path, minimum = 0, maximum = 4611686018427387903_u64, description = "Price of each item."),
    ),
    responses(
        (status = 200, description = "Done.", body = BatchInitialised),
        (status = 400, description = "A malformed or out-of-range path segment.", body = Error),
        (status = 409, description = "Checkouts or cancellations of orders \"0\" to \"n - 1\" are still in flight; \
            nothing changed. Try again when they have ended.", body = UnfinishedBody),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn batch_init(
    pool: web::Data<Pool>,
    path: web::Path<(String, String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (n, n_items, n_users, item_price) = path.into_inner();
    let batch = BatchInit::new(
        parse_positive("n", &n)?,
        parse_positive("n_items", &n_items)?,
        parse_positive("n_users", &n_users)?,
        parse_amount("item_price", &item_price)?,
    )?;
    orders::batch_init(&mut *pool.get().await?, &batch).await?;
    Ok(HttpResponse::Ok().json(BatchInitialised { msg: "Batch init for orders successful" }))
}

/// `GET /orders/find/{order_id}`.
#[utoipa::path(
    get,
    path = "/orders/find/{order_id}",
    operation_id = "findOrder",
    summary = "An order.",
    params(("order_id" = Id, Path, description = "The order.")),
    responses(
        (status = 200, description = "The order.", body = OrderBody),
        (status = 400, description = "A malformed order ID.", body = Error),
        (status = 404, description = "No such order.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn find(pool: web::Data<Pool>, order_id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let order_id = check_id("order_id", &order_id)?;
    let order = orders::find(&mut *pool.get().await?, order_id).await?;
    Ok(HttpResponse::Ok().json(OrderBody {
        items: pairs(&order),
        order_id: order.order_id,
        paid: order.paid,
        user_id: order.user_id,
        total_cost: order.total,
    }))
}

/// `POST /orders/addItem/{order_id}/{item_id}/{quantity}`.
#[utoipa::path(
    post,
    path = "/orders/addItem/{order_id}/{item_id}/{quantity}",
    operation_id = "addItem",
    summary = "Adds units of an item to an order at the item's current price.",
    params(
        ("order_id" = Id, Path, description = "The order."),
        ("item_id" = Id, Path, description = "The item."),
        ("quantity" = Count, Path, description = "Units."),
    ),
    responses(
        (status = 200, description = "The order's lines after the change.", body = LinesBody),
        (status = 400, description = "A malformed path segment, the order is paid, or its total would exceed \
            9223372036854775807.", body = Error),
        (status = 404, description = "No such order or item.", body = Error),
        (status = 409, description = "A checkout of the order is in progress (`a checkout of this order is in \
            progress`), or a cancellation of it is (`a cancellation of this order is in progress`).", body = Error),
        (status = 503, description = "The database or stock-svc is unavailable.", body = Error),
    )
)]
pub(super) async fn add_item(
    pool: web::Data<Pool>,
    stock: web::Data<StockClient>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (order_id, item_id, quantity) = path.into_inner();
    add(&pool, &stock, &order_id, &item_id, parse_positive("quantity", &quantity)?).await
}

/// `POST /orders/addItem/{order_id}/{item_id}`: one unit.
#[utoipa::path(
    post,
    path = "/orders/addItem/{order_id}/{item_id}",
    operation_id = "addOneItem",
    summary = "Adds one unit of an item to an order.",
    params(("order_id" = Id, Path, description = "The order."), ("item_id" = Id, Path, description = "The item.")),
    responses(
        (status = 200, description = "The order's lines after the change.", body = LinesBody),
        (status = 400, description = "A malformed path segment, the order is paid, or its total would exceed \
            9223372036854775807.", body = Error),
        (status = 404, description = "No such order or item.", body = Error),
        (status = 409, description = "A checkout of the order is in progress (`a checkout of this order is in \
            progress`), or a cancellation of it is (`a cancellation of this order is in progress`).", body = Error),
        (status = 503, description = "The database or stock-svc is unavailable.", body = Error),
    )
)]
pub(super) async fn add_one_item(
    pool: web::Data<Pool>,
    stock: web::Data<StockClient>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (order_id, item_id) = path.into_inner();
    add(&pool, &stock, &order_id, &item_id, 1).await
}

/// Adds at the item's current price, as stock-svc quotes it.
async fn add(
    pool: &Pool,
    stock: &StockClient,
    order_id: &str,
    item_id: &str,
    quantity: u64,
) -> Result<HttpResponse, ApiError> {
    let order_id = check_id("order_id", order_id)?;
    let item_id = check_id("item_id", item_id)?;
    let price = stock.price(item_id).await?;
    let order = orders::add_item(&mut *pool.get().await?, order_id, item_id, quantity, price).await?;
    Ok(HttpResponse::Ok().json(lines_body(order)))
}

/// `DELETE /orders/removeItem/{order_id}/{item_id}`: removes the item's whole line.
#[utoipa::path(
    delete,
    path = "/orders/removeItem/{order_id}/{item_id}",
    operation_id = "removeItem",
    summary = "Removes an item's line from an order.",
    params(("order_id" = Id, Path, description = "The order."), ("item_id" = Id, Path, description = "The item.")),
    responses(
        (status = 200, description = "The order's lines after the change.", body = LinesBody),
        (status = 400, description = "A malformed path segment, or the order is paid.", body = Error),
        (status = 404, description = "No such order, or the item is not in it.", body = Error),
        (status = 409, description = "A checkout of the order is in progress (`a checkout of this order is in \
            progress`), or a cancellation of it is (`a cancellation of this order is in progress`).", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn remove_item(
    pool: web::Data<Pool>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (order_id, item_id) = path.into_inner();
    let order_id = check_id("order_id", &order_id)?;
    let item_id = check_id("item_id", &item_id)?;
    let order = orders::remove_item(&mut *pool.get().await?, order_id, item_id).await?;
    Ok(HttpResponse::Ok().json(lines_body(order)))
}

/// `DELETE /orders/remove/{order_id}`.
#[utoipa::path(
    delete,
    path = "/orders/remove/{order_id}",
    operation_id = "removeOrder",
    summary = "Deletes an order.",
    params(("order_id" = Id, Path, description = "The order.")),
    responses(
        (status = 200, description = "Done.", body = Removed),
        (status = 400, description = "A malformed order ID, or the order is paid (cancel it first).", body = Error),
        (status = 404, description = "No such order.", body = Error),
        (status = 409, description = "A checkout of the order is in progress (`a checkout of this order is in \
            progress`), or a cancellation of it is (`a cancellation of this order is in progress`).", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn remove(pool: web::Data<Pool>, order_id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let order_id = check_id("order_id", &order_id)?;
    orders::delete(&mut *pool.get().await?, order_id).await?;
    Ok(HttpResponse::Ok().json(Removed { done: true }))
}
