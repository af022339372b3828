//! The dead-letter queue through the admin API: what dies is listed without being taken away, and a replay sends
//! it back to the queue it died in, where the coordinator consumes it.

mod support;

use diesel::{sql_types::Text, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{json, Value};
use shared_contracts::{queues, CoordinatorMessage, Envelope, SagaId, StockCommand};
use support::{request, start, WAIT};

const GARBAGE: &str = "{\"not\": \"an envelope\"}";

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
    let died_at: chrono::DateTime<chrono::Utc> = message["died_at"].as_str().unwrap().parse().unwrap();
    assert!((chrono::Utc::now() - died_at).num_seconds().abs() < 60, "{message}");

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
    h.plant_dead_letter(start_checkout.to_bytes(), Some(queues::COORDINATOR), Some("planted")).await;
    h.plant_dead_letter(b"no death record".to_vec(), None, Some("planted")).await;
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
    assert_eq!(h.post("/admin/dead-letters/m/replay").await.0, 401);
    assert_eq!(h.post("/admin/dead-letters/m/discard").await.0, 401);
    let response = h.http.get(format!("{}/admin/dead-letters", h.admin)).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(response.status(), 200);
}

fn ids(listing: &Value) -> Vec<&str> {
    listing["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect()
}

/// One row of the audit log, as text.
#[derive(QueryableByName, Debug)]
struct AuditRow {
    #[diesel(sql_type = Text)]
    actor: String,
    #[diesel(sql_type = Text)]
    credential: String,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Text)]
    sagas: String,
    #[diesel(sql_type = Text)]
    details: String,
}

async fn audit_log(database_url: &str) -> Vec<AuditRow> {
    let mut conn = AsyncPgConnection::establish(database_url).await.unwrap();
    diesel::sql_query(
        "SELECT actor, credential, action, array_to_string(saga_ids, ',') AS sagas, details::text AS details
         FROM operator_actions ORDER BY id",
    )
    .load(&mut conn)
    .await
    .unwrap()
}

/// Three dead letters in the queue: a checkout request with a message ID, a stock command without one, and one
/// that died nowhere known. Returns the saga of the checkout, the stock command's body, and the listing.
async fn three_dead_letters(h: &support::Harness) -> (SagaId, Vec<u8>, Value) {
    let saga = SagaId::new();
    let start_checkout = Envelope::new(saga, CoordinatorMessage::StartCheckout(request("order-9")));
    h.plant_dead_letter(start_checkout.to_bytes(), Some(queues::COORDINATOR), Some("m-start")).await;
    let release = Envelope::new(SagaId::new(), StockCommand::Release).to_bytes();
    h.plant_dead_letter(release.clone(), Some(queues::STOCK_COMMANDS), None).await;
    h.plant_dead_letter(b"from nowhere".to_vec(), None, Some("m-nowhere")).await;
    let listed =
        h.get_until("/admin/dead-letters", |body| body["messages"].as_array().is_some_and(|m| m.len() == 3)).await;
    (saga, release, listed)
}

#[tokio::test]
async fn dead_letters_are_listed_decoded() {
    let h = start(None).await;
    let (saga, release, listed) = three_dead_letters(&h).await;
    let start = &listed["messages"][0];
    assert_eq!(start["id"], "m-start");
    assert_eq!(start["kind"], "start_checkout");
    assert_eq!(start["saga_id"], saga.to_string());
    assert_eq!(start["content"]["message"]["order_id"], "order-9");
    assert_eq!(start["original_queue"], queues::COORDINATOR);
    assert_eq!(start["reason"], "rejected");
    assert_eq!(start["died_at"], "2025-12-02T01:46:40Z");
    let stock = &listed["messages"][1];
    assert_eq!(stock["kind"], "release");
    assert_eq!(stock["message_id"], Value::Null);
    let id = stock["id"].as_str().unwrap();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    // The same content gets the same name on every listing.
    assert_eq!(h.get("/admin/dead-letters").await.1["messages"][1]["id"], id);
    let nowhere = &listed["messages"][2];
    assert_eq!(
        (&nowhere["kind"], &nowhere["saga_id"], &nowhere["content"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    assert_eq!(nowhere["body"], "from nowhere");
    drop(release);
}

#[tokio::test]
async fn one_dead_letter_is_replayed_and_the_others_stay_in_their_order() {
    let h = start(None).await;
    let (_, release, listed) = three_dead_letters(&h).await;
    let stock_id = ids(&listed)[1].to_owned();

    let response = h
        .http
        .post(format!("{}/admin/dead-letters/{stock_id}/replay", h.admin))
        .header("X-Operator", "olga")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["action"], "replay");
    assert_eq!(answer["message"]["id"], stock_id);

    // It is back in the queue it died in, and only it left the dead letters, the others in their order.
    assert_eq!(h.broker.next(queues::STOCK_COMMANDS, WAIT).await.unwrap(), release);
    let (_, left) = h.get("/admin/dead-letters").await;
    assert_eq!(ids(&left), ["m-start", "m-nowhere"]);
    assert_eq!(left["messages"], json!([listed["messages"][0], listed["messages"][2]]));

    let log = audit_log(&h.database_url).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!((log[0].actor.as_str(), log[0].credential.as_str()), ("olga", "loopback"));
    assert_eq!(log[0].action, "replay_dead_letter");

    // A message that died nowhere known cannot be replayed; one not waiting is not found; neither changes a thing.
    let (status, body) = h.post("/admin/dead-letters/m-nowhere/replay").await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("discard"), "{body}");
    assert_eq!(h.post(&format!("/admin/dead-letters/{stock_id}/replay")).await.0, 404);
    let (status, body) = h.post(&format!("/admin/dead-letters/{}/replay", "x".repeat(129))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(h.get("/admin/dead-letters/m-start/replay").await.0, 405);
    assert_eq!(ids(&h.get("/admin/dead-letters").await.1), ["m-start", "m-nowhere"]);
    assert_eq!(audit_log(&h.database_url).await.len(), 1);
}

#[tokio::test]
async fn a_discarded_dead_letter_is_gone_and_kept_in_the_audit_log() {
    let h = start(None).await;
    let (saga, _, listed) = three_dead_letters(&h).await;

    let response = h
        .http
        .post(format!("{}/admin/dead-letters/m-start/discard", h.admin))
        .header("X-Operator", "olga")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!((&answer["action"], &answer["message"]), (&json!("discard"), &listed["messages"][0]));

    let (_, left) = h.get("/admin/dead-letters").await;
    assert_eq!(left["messages"], json!([listed["messages"][1], listed["messages"][2]]));
    let log = audit_log(&h.database_url).await;
    assert_eq!(log.len(), 1, "{log:?}");
    let row = &log[0];
    assert_eq!(
        (row.actor.as_str(), row.credential.as_str(), row.action.as_str()),
        ("olga", "loopback", "discard_dead_letter")
    );
    assert_eq!(row.sagas, saga.to_string());
    let details: Value = serde_json::from_str(&row.details).unwrap();
    assert_eq!(details, listed["messages"][0], "the whole message is kept");

    // Also a message that names no queue can be discarded.
    assert_eq!(h.post("/admin/dead-letters/m-nowhere/discard").await.0, 200);
    assert_eq!(h.post("/admin/dead-letters/m-nowhere/discard").await.0, 404);
    assert_eq!(ids(&h.get("/admin/dead-letters").await.1), [listed["messages"][1]["id"].as_str().unwrap()]);
    let log = audit_log(&h.database_url).await;
    assert_eq!((log.len(), log[1].actor.as_str(), log[1].sagas.as_str()), (2, "anonymous", ""));
}

#[tokio::test]
async fn a_replay_of_all_is_audited() {
    let h = start(None).await;
    three_dead_letters(&h).await;
    assert_eq!(h.post("/admin/dead-letters/replay").await.1, json!({"replayed": 2, "skipped": 1}));
    let log = audit_log(&h.database_url).await;
    assert_eq!(log.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), ["replay_dead_letters"]);
}
