//! The dead-letter queue through the admin API: what dies is listed without being taken away, and a replay sends
//! it back to the queue it died in, where the coordinator consumes it.

mod support;

use amqprs::{
    channel::BasicPublishArguments,
    connection::{Connection, OpenConnectionArguments},
    BasicProperties, FieldTable, FieldValue,
};
use serde_json::Value;
use shared_contracts::{queues, CoordinatorMessage, Envelope, SagaId, StockCommand};
use support::{request, start, WAIT};

const GARBAGE: &str = "{\"not\": \"an envelope\"}";

/// Publishes `body` straight to the dead-letter queue, with an `x-death` header naming `queue` when given, the
/// way RabbitMQ records where a message died.
async fn plant_dead_letter(amqp_url: &str, body: Vec<u8>, died_in: Option<&str>) {
    let connection = Connection::open(&OpenConnectionArguments::try_from(amqp_url).unwrap()).await.unwrap();
    let channel = connection.open_channel(None).await.unwrap();
    let mut properties = BasicProperties::default();
    properties.with_persistence(true).with_message_id("planted");
    if let Some(queue) = died_in {
        let mut death = FieldTable::new();
        death.insert("queue".try_into().unwrap(), FieldValue::S(queue.try_into().unwrap()));
        death.insert("reason".try_into().unwrap(), FieldValue::S("rejected".try_into().unwrap()));
        death.insert("count".try_into().unwrap(), FieldValue::l(1));
        let mut headers = FieldTable::new();
        headers.insert("x-death".try_into().unwrap(), FieldValue::A(vec![FieldValue::F(death)].try_into().unwrap()));
        properties.with_headers(headers);
    }
    channel.basic_publish(properties, body, BasicPublishArguments::new("", queues::DEAD_LETTERS)).await.unwrap();
    channel.close().await.unwrap();
    connection.close().await.unwrap();
}

fn bodies(listing: &Value) -> Vec<&str> {
    listing["messages"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn dead_letters_are_listed_without_being_taken_away() {
    let h = start(None).await;
    h.broker.publish(queues::COORDINATOR, GARBAGE.as_bytes().to_vec()).await.unwrap();

    let listed =
        h.get_until("/admin/dead-letters", |body| body["messages"].as_array().is_some_and(|m| !m.is_empty())).await;
    let message = &listed["messages"][0];
    assert_eq!(message["body"], GARBAGE);
    assert_eq!(message["original_queue"], queues::COORDINATOR);
    assert_eq!(message["reason"], "rejected");
    assert_eq!(message["deaths"], 1);

    // Looking twice shows the same, and the message is still in the queue afterwards.
    let (status, again) = h.get("/admin/dead-letters?limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(again["messages"], listed["messages"]);
    assert_eq!(h.broker.next(queues::DEAD_LETTERS, WAIT).await.unwrap(), GARBAGE.as_bytes());
    assert_eq!(h.get("/admin/dead-letters").await.1["messages"], Value::Array(vec![]));

    for bad in ["/admin/dead-letters?limit=0", "/admin/dead-letters?limit=x", "/admin/dead-letters?limit=1001"] {
        let (status, body) = h.get(bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].is_string(), "{body}");
    }
    assert_eq!(h.get("/admin/dead-letters/replay").await.0, 405);
}

#[tokio::test]
async fn a_replay_sends_each_dead_letter_back_to_the_queue_it_died_in() {
    let h = start(None).await;
    let saga = SagaId::new();
    let start_checkout = Envelope::new(saga, CoordinatorMessage::StartCheckout(request("order-7")));
    plant_dead_letter(&h.amqp_url, start_checkout.to_bytes(), Some(queues::COORDINATOR)).await;
    plant_dead_letter(&h.amqp_url, b"no death record".to_vec(), None).await;
    h.broker.publish(queues::COORDINATOR, GARBAGE.as_bytes().to_vec()).await.unwrap();
    let listed =
        h.get_until("/admin/dead-letters", |body| body["messages"].as_array().is_some_and(|m| m.len() == 3)).await;
    let mut listed_bodies = bodies(&listed);
    listed_bodies.sort();
    let start_body = String::from_utf8(start_checkout.to_bytes()).unwrap();
    let mut expected = vec![GARBAGE, "no death record", start_body.as_str()];
    expected.sort();
    assert_eq!(listed_bodies, expected);

    let (status, report) = h.post("/admin/dead-letters/replay").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report, serde_json::json!({"replayed": 2, "skipped": 1}));

    // The replayed checkout request started its saga...
    let reserve: Envelope<StockCommand> = h.broker.next_envelope(queues::STOCK_COMMANDS, WAIT).await.unwrap();
    assert_eq!((reserve.saga_id, reserve.body), (saga, StockCommand::Reserve { items: request("order-7").items }));
    let (status, shown) = h.get(&format!("/admin/sagas/{saga}")).await;
    assert_eq!(status, 200);
    assert_eq!(shown["saga"]["order_id"], "order-7");
    // ...the garbage died again in the coordinator queue, and the message without a record never left.
    let back =
        h.get_until("/admin/dead-letters", |body| body["messages"].as_array().is_some_and(|m| m.len() == 2)).await;
    let mut back_bodies = bodies(&back);
    back_bodies.sort();
    assert_eq!(back_bodies, ["no death record", GARBAGE]);
    let garbage = back["messages"].as_array().unwrap().iter().find(|m| m["body"] == GARBAGE).unwrap();
    assert_eq!(garbage["original_queue"], queues::COORDINATOR);
    // A replay publishes a fresh message, so its death record starts over.
    assert_eq!(garbage["deaths"], 1);
}

#[tokio::test]
async fn dead_letters_need_the_admin_token_when_one_is_set() {
    let h = start(Some("s3cret")).await;
    assert_eq!(h.get("/admin/dead-letters").await.0, 401);
    assert_eq!(h.post("/admin/dead-letters/replay").await.0, 401);
    let response = h.http.get(format!("{}/admin/dead-letters", h.admin)).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(response.status(), 200);
}
