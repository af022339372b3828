//! The saga loop against an in-memory [`SagaStore`]: what the consumer, the retry timer and operators see,
//! without a database.

use std::{collections::HashMap, convert::Infallible, sync::Mutex};

use async_trait::async_trait;
use shared_contracts::{FailureReason, LineItem, PaymentReply, StockReply};

use super::*;
use crate::{
    audit::Credential,
    domain::{SagaState, Undo},
};

/// Sagas and their history in memory, as the PostgreSQL store keeps them in its tables.
#[derive(Default)]
struct MemoryStore {
    sagas: Mutex<HashMap<SagaId, Stored>>,
    history: Mutex<Vec<TransitionRecord>>,
}

struct Stored {
    record: SagaRecord,
    next_retry_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn in_ms(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::milliseconds(ms)
}

#[async_trait]
impl SagaStore for MemoryStore {
    type Error = Infallible;

    async fn insert_new(
        &self,
        new: &[NewSaga],
        state: &SagaState,
        retry_in_ms: i64,
    ) -> Result<Vec<SagaId>, Infallible> {
        let mut sagas = self.sagas.lock().expect("not poisoned");
        let mut inserted = Vec::new();
        for saga in new {
            if sagas.contains_key(&saga.id) {
                continue;
            }
            let now = chrono::Utc::now();
            let record = SagaRecord {
                id: saga.id,
                request: saga.request.clone(),
                state: state.clone(),
                version: 1,
                retries: 0,
                created_at: now,
                updated_at: now,
                traceparent: saga.traceparent.clone(),
            };
            sagas.insert(saga.id, Stored { record, next_retry_at: Some(in_ms(retry_in_ms)) });
            inserted.push(saga.id);
        }
        Ok(inserted)
    }

    async fn lock(&self, ids: &[SagaId]) -> Result<Vec<SagaRecord>, Infallible> {
        let sagas = self.sagas.lock().expect("not poisoned");
        Ok(ids.iter().filter_map(|id| sagas.get(id)).map(|stored| stored.record.clone()).collect())
    }

    async fn lock_retry_due(&self, limit: i64) -> Result<Vec<SagaRecord>, Infallible> {
        let sagas = self.sagas.lock().expect("not poisoned");
        let now = chrono::Utc::now();
        let due = sagas.values().filter(|stored| stored.next_retry_at.is_some_and(|at| at <= now));
        Ok(due.take(limit as usize).map(|stored| stored.record.clone()).collect())
    }

    async fn write(&self, updates: &[SagaUpdate], history: &[TransitionRecord]) -> Result<(), Infallible> {
        let mut sagas = self.sagas.lock().expect("not poisoned");
        for update in updates {
            let stored = sagas.get_mut(&update.id).expect("updates are of locked sagas");
            if stored.record.state != update.state {
                stored.record.updated_at = chrono::Utc::now();
            }
            stored.record.state = update.state.clone();
            stored.record.retries = update.retries;
            stored.record.version += 1;
            stored.next_retry_at = update.retry_in_ms.map(in_ms);
        }
        self.history.lock().expect("not poisoned").extend_from_slice(history);
        Ok(())
    }
}

impl MemoryStore {
    fn saga(&self, id: SagaId) -> SagaRecord {
        self.sagas.lock().expect("not poisoned")[&id].record.clone()
    }

    fn next_retry_at(&self, id: SagaId) -> Option<chrono::DateTime<chrono::Utc>> {
        self.sagas.lock().expect("not poisoned")[&id].next_retry_at
    }

    /// The saga's retry time has come.
    fn make_due(&self, id: SagaId) {
        self.sagas.lock().expect("not poisoned").get_mut(&id).expect("a saga").next_retry_at = Some(in_ms(-1));
    }

    /// The saga began `secs` seconds ago.
    fn age(&self, id: SagaId, secs: i64) {
        let mut sagas = self.sagas.lock().expect("not poisoned");
        sagas.get_mut(&id).expect("a saga").record.created_at -= chrono::Duration::seconds(secs);
    }

    fn events(&self, id: SagaId) -> Vec<String> {
        let history = self.history.lock().expect("not poisoned");
        history.iter().filter(|line| line.saga_id == id).map(|line| line.event["event"].to_string()).collect()
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        first: Duration::from_millis(500),
        max: Duration::from_secs(4),
        deadline: Duration::from_secs(20),
        compensation_deadline: Duration::from_secs(300),
    }
}

fn checkout() -> CheckoutRequest {
    CheckoutRequest {
        order_id: "order-1".into(),
        user_id: "user-1".into(),
        items: vec![LineItem { item_id: "a".into(), quantity: 2 }],
        total: 30,
    }
}

const TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn sent(commands: &[SagaCommand]) -> Vec<(SagaId, Command)> {
    commands.iter().map(|c| (c.saga_id, c.command.clone())).collect()
}

async fn handle(engine: &Engine, store: &MemoryStore, inputs: impl FnOnce(&mut Batch)) -> Vec<SagaCommand> {
    let mut batch = Batch::default();
    inputs(&mut batch);
    let Ok(commands) = engine.handle(store, batch).await;
    commands
}

async fn started(engine: &Engine, store: &MemoryStore) -> SagaId {
    let id = SagaId::new();
    handle(engine, store, |batch| batch.start(NewSaga { id, request: checkout(), traceparent: Some(TRACE.into()) }))
        .await;
    id
}

fn reply(batch: &mut Batch, id: SagaId, event: Event) {
    batch.event(id, event, None);
}

#[tokio::test]
async fn a_start_creates_the_saga_and_sends_both_steps_in_its_trace() {
    let (engine, store) = (Engine::new(policy()), MemoryStore::default());
    let id = SagaId::new();
    let commands = handle(&engine, &store, |batch| {
        batch.start(NewSaga { id, request: checkout(), traceparent: Some(TRACE.into()) });
        // A redelivery of the same start in the same batch.
        batch.start(NewSaga { id, request: checkout(), traceparent: None });
    })
    .await;
    assert_eq!(sent(&commands), [(id, Command::ReserveStock), (id, Command::ChargePayment)]);
    assert!(commands.iter().all(|c| c.request == checkout() && c.traceparent.as_deref() == Some(TRACE)));
    assert_eq!(store.saga(id).state, domain::start().state);
    assert_eq!(store.events(id), ["\"start\""]);
    assert!(store.next_retry_at(id).is_some());
}

#[tokio::test]
async fn replies_complete_the_saga_and_report_paid_once() {
    let (engine, store) = (Engine::new(policy()), MemoryStore::default());
    let id = started(&engine, &store).await;
    let commands = handle(&engine, &store, |batch| {
        reply(batch, id, Event::Stock { reply: StockReply::Reserved });
        reply(batch, id, Event::Payment { reply: PaymentReply::Charged });
    })
    .await;
    assert_eq!(sent(&commands), [(id, Command::ReportPaid)]);
    assert_eq!(store.saga(id).state, SagaState::Completed);
    assert_eq!(store.events(id), ["\"start\"", "\"stock\"", "\"payment\""]);
    assert_eq!(store.next_retry_at(id), None, "a finished saga is not retried");
}

#[tokio::test]
async fn a_duplicate_reply_changes_nothing_sends_nothing_and_leaves_no_trace() {
    let (engine, store) = (Engine::new(policy()), MemoryStore::default());
    let id = started(&engine, &store).await;
    handle(&engine, &store, |batch| reply(batch, id, Event::Stock { reply: StockReply::Reserved })).await;
    let before = store.saga(id);
    let commands =
        handle(&engine, &store, |batch| reply(batch, id, Event::Stock { reply: StockReply::Reserved })).await;
    assert!(commands.is_empty(), "{commands:?}");
    let after = store.saga(id);
    assert_eq!((after.state, after.version), (before.state, before.version));
    assert_eq!(store.events(id), ["\"start\"", "\"stock\""]);
}

#[tokio::test]
async fn a_reply_for_an_unknown_saga_is_ignored() {
    let (engine, store) = (Engine::new(policy()), MemoryStore::default());
    let commands =
        handle(&engine, &store, |batch| reply(batch, SagaId::new(), Event::Stock { reply: StockReply::Reserved }))
            .await;
    assert!(commands.is_empty());
    assert!(store.history.lock().expect("not poisoned").is_empty());
}

#[tokio::test]
async fn a_repeated_start_of_a_finished_saga_reports_its_outcome_again() {
    let (engine, store) = (Engine::new(policy()), MemoryStore::default());
    let id = started(&engine, &store).await;
    handle(&engine, &store, |batch| {
        reply(batch, id, Event::Stock { reply: StockReply::Reserved });
        reply(batch, id, Event::Payment { reply: PaymentReply::Charged });
    })
    .await;
    let commands = handle(&engine, &store, |batch| {
        batch.start(NewSaga { id, request: checkout(), traceparent: Some(TRACE.into()) })
    })
    .await;
    assert_eq!(sent(&commands), [(id, Command::ReportPaid)]);
    assert_eq!(store.events(id).last().map(String::as_str), Some("\"start_repeated\""));
}

#[tokio::test]
async fn a_due_saga_is_sent_its_unanswered_commands_again_in_its_trace() {
    let (engine, store) = (Engine::new(policy()), MemoryStore::default());
    let id = started(&engine, &store).await;
    handle(&engine, &store, |batch| reply(batch, id, Event::Payment { reply: PaymentReply::Charged })).await;
    let Ok((due, commands)) = engine.retry_due(&store, 10, chrono::Utc::now()).await;
    assert_eq!((due, commands.len()), (0, 0), "retried before its time");

    store.make_due(id);
    let updated_at = store.saga(id).updated_at;
    let Ok((due, commands)) = engine.retry_due(&store, 10, chrono::Utc::now()).await;
    assert_eq!(due, 1);
    assert_eq!(sent(&commands), [(id, Command::ReserveStock)]);
    assert_eq!(commands[0].traceparent.as_deref(), Some(TRACE));
    let saga = store.saga(id);
    assert_eq!(saga.retries, 1);
    assert_eq!(saga.updated_at, updated_at, "a retry is no progress");
    assert!(store.next_retry_at(id).is_some_and(|at| at > chrono::Utc::now()), "the retry was not rescheduled");
    assert_eq!(store.events(id).last().map(String::as_str), Some("\"retry_due\""));
}

#[tokio::test]
async fn a_due_saga_past_its_deadline_compensates_what_may_have_been_done() {
    let (engine, store) = (Engine::new(policy()), MemoryStore::default());
    let id = started(&engine, &store).await;
    handle(&engine, &store, |batch| reply(batch, id, Event::Stock { reply: StockReply::Reserved })).await;
    store.age(id, 21);
    store.make_due(id);
    let Ok((due, commands)) = engine.retry_due(&store, 10, chrono::Utc::now()).await;
    assert_eq!(due, 1);
    assert_eq!(sent(&commands), [(id, Command::ReleaseStock), (id, Command::RefundPayment)]);
    assert_eq!(
        store.saga(id).state,
        SagaState::Compensating { stock: Undo::Pending, payment: Undo::Pending, reason: FailureReason::TimedOut }
    );
    assert_eq!(store.saga(id).retries, 0, "giving up is progress");
    assert_eq!(store.events(id).last().map(String::as_str), Some("\"deadline_passed\""));
}

#[tokio::test]
async fn an_operator_action_goes_through_the_same_loop_and_is_refused_where_not_allowed() {
    let (engine, store) = (Engine::new(policy()), MemoryStore::default());
    let id = started(&engine, &store).await;
    let Ok(acted) = engine.act(&store, id, &Event::Abort, SagaState::check_abort, &operator()).await;
    let (state, commands) = acted.expect("an executing saga can be aborted");
    assert_eq!(state, store.saga(id).state);
    let history = store.history.lock().expect("not poisoned").clone();
    let actors: Vec<_> = history.iter().filter(|line| line.saga_id == id).map(|line| line.actor.clone()).collect();
    assert_eq!(actors, [None, Some(operator())], "the start is no one's, the abort the operator's");
    assert_eq!(sent(&commands), [(id, Command::ReleaseStock), (id, Command::RefundPayment)]);

    let Ok(missing) = engine.act(&store, SagaId::new(), &Event::Abort, SagaState::check_abort, &operator()).await;
    assert_eq!(missing, Err(Refusal::Missing));

    handle(&engine, &store, |batch| {
        reply(batch, id, Event::Stock { reply: StockReply::Released });
        reply(batch, id, Event::Payment { reply: PaymentReply::Refunded });
    })
    .await;
    assert_eq!(store.saga(id).state, SagaState::Failed { reason: FailureReason::Aborted });
    let version = store.saga(id).version;
    let Ok(refused) = engine.act(&store, id, &Event::RetryDue, SagaState::check_retry, &operator()).await;
    assert!(matches!(refused, Err(Refusal::NotAllowed(_))), "{refused:?}");
    assert_eq!(store.saga(id).version, version, "a refused action wrote something");
}

#[tokio::test]
async fn a_cancel_of_a_paid_checkout_gives_everything_back() {
    let (engine, store) = (Engine::new(policy()), MemoryStore::default());
    let id = started(&engine, &store).await;
    handle(&engine, &store, |batch| {
        reply(batch, id, Event::Stock { reply: StockReply::Reserved });
        reply(batch, id, Event::Payment { reply: PaymentReply::Charged });
    })
    .await;
    let commands = handle(&engine, &store, |batch| reply(batch, id, Event::Cancel)).await;
    assert_eq!(sent(&commands), [(id, Command::ReleaseStock), (id, Command::RefundPayment)]);
    assert!(matches!(store.saga(id).state, SagaState::Cancelling { .. }));
}

#[test]
fn a_checkout_past_its_deadline_gives_up_and_one_within_it_is_retried() {
    let executing = domain::start().state;
    let now = chrono::Utc::now();
    assert_eq!(policy().due_event(&record(executing.clone(), 21, 1), now), Event::DeadlinePassed);
    assert_eq!(policy().due_event(&record(executing, 19, 19), now), Event::RetryDue);
}

#[test]
fn a_compensation_is_given_its_own_deadline_from_its_last_progress() {
    let compensating =
        SagaState::Compensating { stock: Undo::Pending, payment: Undo::Done, reason: FailureReason::TimedOut };
    let now = chrono::Utc::now();
    assert_eq!(policy().due_event(&record(compensating.clone(), 1000, 299), now), Event::RetryDue);
    assert_eq!(policy().due_event(&record(compensating, 1000, 301), now), Event::DeadlinePassed);
}

#[test]
fn retry_delay_doubles_up_to_the_cap() {
    let policy = policy();
    let delays: Vec<i64> = (0..6).map(|r| policy.delay_ms(r)).collect();
    assert_eq!(delays, vec![500, 1000, 2000, 4000, 4000, 4000]);
    assert_eq!(policy.delay_ms(i32::MAX), 4000);
}

fn record(state: SagaState, age_secs: i64, unchanged_secs: i64) -> SagaRecord {
    let now = chrono::Utc::now();
    SagaRecord {
        id: SagaId::new(),
        request: checkout(),
        state,
        version: 1,
        retries: 0,
        created_at: now - chrono::Duration::seconds(age_secs),
        updated_at: now - chrono::Duration::seconds(unchanged_secs),
        traceparent: None,
    }
}

fn operator() -> Actor {
    Actor::new(Some("alice"), Credential::Loopback)
}
