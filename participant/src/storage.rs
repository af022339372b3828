//! The protocol's one transaction, over a narrow storage trait that each participant's store implements with its
//! own tables and statements.
//!
//! [`apply_batch`] locks the records of the batch's sagas and reads them, locks and reads the resources the batch
//! may touch, lets [`plan_batch`] decide every command in memory, and writes the plan back, all in one
//! transaction and a fixed number of statements however many commands the batch holds. A redelivered command then
//! finds its record and repeats the recorded answer without touching any resource. Records are locked before
//! resources, each in key order, so concurrent batches queue instead of deadlocking; a saga recorded by another
//! transaction between our read and our insert makes the insert fail, and the whole batch rolls back and is
//! redelivered, and then finds the record.

use std::collections::HashMap;

use async_trait::async_trait;
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use shared_contracts::SagaId;

use crate::{
    effect::Effect,
    plan::{keys_to_lock, plan_batch, BatchPlan, Outcome, Recorded},
    protocol::Command,
};

/// Where a participant keeps its records and resources. Every method runs inside the transaction of
/// [`apply_batch`].
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The effect whose records and resources these are.
    type Effect: Effect;

    /// The records of those of `sagas` (sorted, distinct) that have one, locked until the end of the transaction
    /// in saga order.
    async fn lock_records(
        conn: &AsyncPgConnection,
        sagas: &[SagaId],
    ) -> QueryResult<Recorded<<Self::Effect as Effect>::Taken>>;

    /// The resources of those of `keys` (sorted, distinct) that exist, locked until the end of the transaction in
    /// key order.
    async fn lock_resources(
        conn: &AsyncPgConnection,
        keys: &[&str],
    ) -> QueryResult<HashMap<String, <Self::Effect as Effect>::Resource>>;

    /// Writes what `plan` changed: the resources, the new records and the compensated ones.
    async fn write(conn: &AsyncPgConnection, plan: &BatchPlan<Self::Effect>) -> QueryResult<()>;
}

/// Applies `commands` in order, in one transaction of `S`, and returns per command its reply or why it was not
/// applied. An `Err` is a database failure (or a lost race for a saga's record): nothing was written.
pub async fn apply_batch<S: Storage>(
    conn: &mut AsyncPgConnection,
    commands: &[(SagaId, &Command<<S::Effect as Effect>::Request>)],
) -> QueryResult<Vec<Outcome<S::Effect>>> {
    if commands.is_empty() {
        return Ok(Vec::new());
    }
    // The records are locked in the round trip of the BEGIN.
    platform::db::transaction(conn, async |conn| {
        let mut sagas: Vec<SagaId> = commands.iter().map(|(saga_id, _)| *saga_id).collect();
        sagas.sort_unstable();
        sagas.dedup();
        let recorded = S::lock_records(conn, &sagas).await?;
        let resources = S::lock_resources(conn, &keys_to_lock::<S::Effect>(&recorded, commands)).await?;
        let plan = plan_batch::<S::Effect>(&recorded, &resources, commands);
        S::write(conn, &plan).await?;
        Ok(plan.outcomes)
    })
    .await
}
