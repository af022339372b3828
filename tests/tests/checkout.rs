//! Checkout end to end: order-svc records the intent, the coordinator runs the saga, stock-svc and payment-svc
//! do the work, and the client's answer agrees with every database afterwards.

use futures::{stream, StreamExt};
use reqwest::StatusCode;
use system_tests::System;

#[tokio::test]
async fn the_course_scenario_fails_on_stock_then_on_credit_then_succeeds_exactly_once() {
    let system = System::start().await.unwrap();
    let user =
        system.post_ok(&system.payment, "/payment/create_user").await.unwrap()["user_id"].as_str().unwrap().to_owned();
    let item1 =
        system.post_ok(&system.stock, "/stock/item/create/5").await.unwrap()["item_id"].as_str().unwrap().to_owned();
    let item2 =
        system.post_ok(&system.stock, "/stock/item/create/5").await.unwrap()["item_id"].as_str().unwrap().to_owned();
    system.post_ok(&system.stock, &format!("/stock/add/{item1}/15")).await.unwrap();
    system.post_ok(&system.stock, &format!("/stock/add/{item2}/1")).await.unwrap();

    // Two of item2, with only one in stock; credit is enough, so only stock can refuse.
    system.post_ok(&system.payment, &format!("/payment/add_funds/{user}/15")).await.unwrap();
    let order = system.order_with(&user, &[(&item1, 1), (&item2, 2)]).await.unwrap();
    let refused = system.checkout(&order).await.unwrap();
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{:?}", refused.body);
    let reason = refused.body["error"].as_str().unwrap();
    assert!(reason.contains(&item2) && reason.contains("out of stock"), "{reason}");
    assert_eq!((system.stock_of(&item1).await.unwrap(), system.stock_of(&item2).await.unwrap()), (15, 1));
    assert!(!system.is_paid(&order).await.unwrap());
    assert_eq!(system.credit_of(&user).await.unwrap(), 15);

    // One of item2 now, total 10, but only 5 credit left after paying for something else.
    system.call(reqwest::Method::DELETE, format!("{}/orders/removeItem/{order}/{item2}", system.orders)).await.unwrap();
    system.post_ok(&system.orders, &format!("/orders/addItem/{order}/{item2}/1")).await.unwrap();
    system.post_ok(&system.payment, &format!("/payment/pay/{user}/10")).await.unwrap();
    let refused = system.checkout(&order).await.unwrap();
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{:?}", refused.body);
    assert!(refused.body["error"].as_str().unwrap().contains("credit"), "{:?}", refused.body);
    assert_eq!((system.stock_of(&item1).await.unwrap(), system.stock_of(&item2).await.unwrap()), (15, 1));
    assert_eq!(system.credit_of(&user).await.unwrap(), 5);

    system.post_ok(&system.payment, &format!("/payment/add_funds/{user}/10")).await.unwrap();
    let paid = system.checkout(&order).await.unwrap();
    assert_eq!(paid.status, StatusCode::OK, "{:?}", paid.body);
    assert_eq!((system.stock_of(&item1).await.unwrap(), system.stock_of(&item2).await.unwrap()), (14, 0));
    assert_eq!(system.credit_of(&user).await.unwrap(), 5);
    assert!(system.is_paid(&order).await.unwrap());
    let status = system.get_ok(&system.payment, &format!("/payment/status/{user}/{order}")).await.unwrap();
    assert_eq!(status["paid"], true);

    // Checking out a paid order again charges nothing.
    let again = system.checkout(&order).await.unwrap();
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(system.credit_of(&user).await.unwrap(), 5);
    assert_eq!(system.stock_of(&item1).await.unwrap(), 14);

    let counts = system.saga_counts().await.unwrap();
    assert_eq!((counts["completed"].as_i64(), counts["failed"].as_i64()), (Some(1), Some(2)), "{counts}");
}

#[tokio::test]
async fn the_course_consistency_test_sells_exactly_the_stock_there_is() {
    let system = System::start().await.unwrap();
    system.post_ok(&system.stock, "/stock/batch_init/1/100/1").await.unwrap();
    system.post_ok(&system.payment, "/payment/batch_init/1000/1").await.unwrap();
    let orders: Vec<(String, String)> = stream::iter(0..1000)
        .map(|user| {
            let system = &system;
            async move {
                let user = user.to_string();
                (system.order_with(&user, &[("0", 1)]).await.unwrap(), user)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;

    let answers: Vec<(String, String, StatusCode)> = stream::iter(orders)
        .map(|(order, user)| {
            let system = &system;
            async move {
                let answer = system.checkout(&order).await.unwrap();
                (order, user, answer.status)
            }
        })
        .buffer_unordered(1000)
        .collect()
        .await;

    let succeeded = answers.iter().filter(|(_, _, status)| status.is_success()).count();
    let refused = answers.iter().filter(|(_, _, status)| *status == StatusCode::BAD_REQUEST).count();
    assert_eq!((succeeded, refused), (100, 900), "every checkout is either paid or refused");
    assert_eq!(system.stock_of("0").await.unwrap(), 0);
    for (order, user, status) in &answers {
        let paid = status.is_success();
        assert_eq!(system.is_paid(order).await.unwrap(), paid, "order {order} answered {status}");
        assert_eq!(system.credit_of(user).await.unwrap(), if paid { 0 } else { 1 }, "user {user}");
    }
    let counts = system.saga_counts().await.unwrap();
    assert_eq!(counts["completed"], 100, "{counts}");
    assert_eq!(counts["failed"], 900, "{counts}");
    assert_eq!((counts["executing"].as_i64(), counts["compensating"].as_i64()), (Some(0), Some(0)));
}

#[tokio::test]
async fn concurrent_checkouts_of_one_order_run_one_saga_and_charge_once() {
    let system = System::start().await.unwrap();
    system.post_ok(&system.stock, "/stock/batch_init/2/10/7").await.unwrap();
    system.post_ok(&system.payment, "/payment/batch_init/1/100").await.unwrap();
    let order = system.order_with("0", &[("0", 2), ("1", 1)]).await.unwrap();
    let answers: Vec<StatusCode> = stream::iter(0..20)
        .map(|_| {
            let system = &system;
            let order = order.clone();
            async move { system.checkout(&order).await.unwrap().status }
        })
        .buffer_unordered(20)
        .collect()
        .await;
    assert!(answers.iter().all(|status| *status == StatusCode::OK), "{answers:?}");
    assert_eq!(system.credit_of("0").await.unwrap(), 100 - 21);
    assert_eq!((system.stock_of("0").await.unwrap(), system.stock_of("1").await.unwrap()), (8, 9));
    assert_eq!(system.saga_counts().await.unwrap()["completed"], 1);
}

#[tokio::test]
async fn a_checkout_for_an_unknown_user_takes_nothing() {
    let system = System::start().await.unwrap();
    system.post_ok(&system.stock, "/stock/batch_init/1/10/3").await.unwrap();
    // An order cannot be created for a user payment-svc does not know...
    let created = system.call(reqwest::Method::POST, format!("{}/orders/create/nobody", system.orders)).await.unwrap();
    assert_eq!(created.status, StatusCode::NOT_FOUND, "{:?}", created.body);
    // ...but orders/batch_init names users by number without asking, so its order "0" belongs to a user "0" that
    // payment-svc has never heard of.
    system.post_ok(&system.orders, "/orders/batch_init/1/1/1/3").await.unwrap();
    let refused = system.checkout("0").await.unwrap();
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{:?}", refused.body);
    assert_eq!(refused.body["reason"]["kind"], "unknown_user", "{:?}", refused.body);
    assert_eq!(system.stock_of("0").await.unwrap(), 10);
    assert!(!system.is_paid("0").await.unwrap());
}

#[tokio::test]
async fn a_checkout_is_one_trace_from_the_client_to_the_saga() {
    let system = System::start().await.unwrap();
    system.post_ok(&system.stock, "/stock/batch_init/1/10/3").await.unwrap();
    system.post_ok(&system.payment, "/payment/batch_init/1/100").await.unwrap();
    let order = system.order_with("0", &[("0", 1)]).await.unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let answer = reqwest::Client::new()
        .post(format!("{}/orders/checkout/{order}", system.orders))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let sagas = system.get_ok(&system.coordinator, &format!("/admin/sagas?order_id={order}")).await.unwrap();
    let traceparent = sagas["sagas"][0]["traceparent"].as_str().unwrap_or_default().to_owned();
    assert!(traceparent.starts_with(&format!("00-{trace_id}-")), "the saga is not in the client's trace: {sagas}");
}
