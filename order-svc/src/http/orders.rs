//! Order management: create, `batch_init`, find, add and remove items, remove an order.

use actix_web::{web, HttpResponse};
use platform::{
    db::Pool,
    http::{check_id, parse_amount, parse_positive, ApiError},
};
use serde::Serialize;

use crate::{
    domain::BatchInit,
    payment::PaymentClient,
    stock::StockClient,
    store::{orders, OrderView},
};

/// An order as `find` shows it; items are `[item_id, quantity]` pairs, as the course API has them.
#[derive(Serialize)]
struct OrderBody {
    order_id: String,
    paid: bool,
    items: Vec<(String, u64)>,
    user_id: String,
    total_cost: u64,
}

/// What `addItem` and `removeItem` answer: the order's lines and total after the change.
#[derive(Serialize)]
struct LinesBody {
    order_id: String,
    total_cost: u64,
    items: Vec<(String, u64)>,
}

fn pairs(order: &OrderView) -> Vec<(String, u64)> {
    order.items.iter().map(|line| (line.item_id.clone(), line.quantity)).collect()
}

fn lines_body(order: OrderView) -> LinesBody {
    LinesBody { items: pairs(&order), order_id: order.order_id, total_cost: order.total }
}

/// `POST /orders/create/{user_id}`: a new empty order, for a user payment-svc knows (404 otherwise, 503 when it
/// does not answer). The user may still be gone by the checkout, which then fails with the reason.
pub(super) async fn create(
    pool: web::Data<Pool>,
    payment: web::Data<PaymentClient>,
    user_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user_id = check_id("user_id", &user_id)?;
    payment.check_user(user_id).await?;
    let order_id = uuid::Uuid::new_v4().to_string();
    orders::create(&mut *pool.get().await?, &order_id, user_id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "order_id": order_id })))
}

/// `POST /orders/batch_init/{n}/{n_items}/{n_users}/{item_price}`: replaces orders `"0"` to `"n - 1"`. Refused
/// with 409, changing nothing, while checkouts or cancellations of those orders are in flight; the answer says
/// how many, also as `unfinished`.
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
    Ok(HttpResponse::Ok().json(serde_json::json!({ "msg": "Batch init for orders successful" })))
}

/// `GET /orders/find/{order_id}`.
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
pub(super) async fn add_item(
    pool: web::Data<Pool>,
    stock: web::Data<StockClient>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (order_id, item_id, quantity) = path.into_inner();
    add(&pool, &stock, &order_id, &item_id, parse_positive("quantity", &quantity)?).await
}

/// `POST /orders/addItem/{order_id}/{item_id}`: one unit.
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
pub(super) async fn remove(pool: web::Data<Pool>, order_id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let order_id = check_id("order_id", &order_id)?;
    orders::delete(&mut *pool.get().await?, order_id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "done": true })))
}
