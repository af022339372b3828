//! The saga worker's side of the store: applying one `PaymentCommand`, in a savepoint of the batch's
//! transaction.
//!
//! The payment row keyed [`domain::saga_payment_key`] is the saga's inbox. A command first locks that row and
//! reads it, [`domain`] decides, and the decision is written back before the savepoint is released, so a
//! redelivered command finds the row and repeats the recorded answer without touching any credit.

use diesel::{
    sql_types::{BigInt, Jsonb, Nullable, Text},
    OptionalExtension, QueryResult, QueryableByName,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared_contracts::{FailureReason, PaymentCommand, PaymentReply, SagaId};

use super::{bigint, from_bigint, users};
use crate::domain::{self, ChargeStep, RefundStep, SagaPayment};

/// Why a command was not applied.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command can never be applied (its effect would break a rule of the data); retrying cannot help.
    #[error("{0}")]
    Unprocessable(String),
    /// Another transaction recorded this saga's payment between our read and our write, twice in a row.
    #[error("saga {0} was being recorded by another transaction")]
    Raced(SagaId),
    /// The database failed; the whole batch is retried later.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
}

#[derive(QueryableByName)]
struct PaymentRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = BigInt)]
    amount: i64,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    reason: Option<serde_json::Value>,
}

impl PaymentRow {
    fn into_saga_payment(self) -> Result<SagaPayment, CommandError> {
        match self.state.as_str() {
            "charged" => Ok(SagaPayment::Charged { user_id: self.user_id, amount: from_bigint(self.amount) }),
            "refunded" => Ok(SagaPayment::Refunded),
            "cancelled" => Ok(SagaPayment::Cancelled),
            "rejected" => {
                let reason = self.reason.ok_or_else(|| unreadable("a rejection without a reason"))?;
                let reason: FailureReason = serde_json::from_value(reason).map_err(|e| unreadable(&e.to_string()))?;
                Ok(SagaPayment::Rejected { reason })
            }
            other => Err(unreadable(&format!("state {other:?}"))),
        }
    }
}

fn unreadable(what: &str) -> CommandError {
    CommandError::Unprocessable(format!("the recorded saga payment is unreadable: {what}"))
}

/// Applies `command` for `saga_id` in a savepoint and returns the reply for the coordinator. Run inside the
/// batch's transaction; on an error nothing of this command remains.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    saga_id: SagaId,
    command: &PaymentCommand,
) -> Result<PaymentReply, CommandError> {
    // A lost race rolls back our savepoint; the second attempt reads the winner's row and repeats its answer.
    match conn.transaction(async |conn| apply_once(conn, saga_id, command).await).await {
        Err(CommandError::Raced(_)) => conn.transaction(async |conn| apply_once(conn, saga_id, command).await).await,
        result => result,
    }
}

async fn apply_once(
    conn: &mut AsyncPgConnection,
    saga_id: SagaId,
    command: &PaymentCommand,
) -> Result<PaymentReply, CommandError> {
    let key = domain::saga_payment_key(saga_id);
    let recorded = load_for_update(conn, &key).await?;
    match command {
        PaymentCommand::Charge { user_id, order_id, amount } => match domain::on_charge(recorded.as_ref()) {
            ChargeStep::Repeat(reply) => Ok(reply),
            ChargeStep::Attempt => {
                let credit = users::credit_for_update(conn, user_id).await?;
                let outcome = domain::charge(user_id, credit, *amount);
                if let Some(new_credit) = outcome.new_credit {
                    users::set_credit(conn, user_id, new_credit).await?;
                }
                record(conn, saga_id, &key, user_id, order_id, &outcome.record).await?;
                Ok(outcome.reply())
            }
        },
        PaymentCommand::Refund => {
            match domain::on_refund(recorded.as_ref()) {
                RefundStep::LeaveTombstone => record(conn, saga_id, &key, "", "", &SagaPayment::Cancelled).await?,
                RefundStep::GiveBack { user_id, amount } => give_back(conn, &key, &user_id, amount).await?,
                RefundStep::NothingToDo => {}
            }
            Ok(PaymentReply::Refunded)
        }
    }
}

async fn load_for_update(conn: &mut AsyncPgConnection, key: &str) -> Result<Option<SagaPayment>, CommandError> {
    let row: Option<PaymentRow> =
        diesel::sql_query("SELECT user_id, amount, state, reason FROM payments WHERE key = $1 FOR UPDATE")
            .bind::<Text, _>(key)
            .get_result(conn)
            .await
            .optional()?;
    row.map(PaymentRow::into_saga_payment).transpose()
}

/// Inserts the saga's payment row. It was absent when we looked; if someone inserted it since, that is a race.
async fn record(
    conn: &mut AsyncPgConnection,
    saga_id: SagaId,
    key: &str,
    user_id: &str,
    order_id: &str,
    payment: &SagaPayment,
) -> Result<(), CommandError> {
    let (state, amount, reason) = match payment {
        SagaPayment::Charged { amount, .. } => ("charged", *amount, None),
        SagaPayment::Rejected { reason } => {
            let reason = serde_json::to_value(reason).map_err(|e| CommandError::Unprocessable(e.to_string()))?;
            ("rejected", 0, Some(reason))
        }
        SagaPayment::Refunded => ("refunded", 0, None),
        SagaPayment::Cancelled => ("cancelled", 0, None),
    };
    let inserted = diesel::sql_query(
        "INSERT INTO payments (key, user_id, order_id, amount, state, reason) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (key) DO NOTHING",
    )
    .bind::<Text, _>(key)
    .bind::<Text, _>(user_id)
    .bind::<Text, _>(order_id)
    .bind::<BigInt, _>(bigint(amount)?)
    .bind::<Text, _>(state)
    .bind::<Nullable<Jsonb>, _>(reason)
    .execute(conn)
    .await?;
    if inserted == 0 {
        return Err(CommandError::Raced(saga_id));
    }
    Ok(())
}

async fn give_back(conn: &mut AsyncPgConnection, key: &str, user_id: &str, amount: u64) -> Result<(), CommandError> {
    let credit = users::credit_for_update(conn, user_id)
        .await?
        .ok_or_else(|| CommandError::Unprocessable(format!("user {user_id} of a charged payment no longer exists")))?;
    let new_credit =
        domain::deposit(user_id, credit, amount).map_err(|refusal| CommandError::Unprocessable(refusal.to_string()))?;
    users::set_credit(conn, user_id, new_credit).await?;
    mark_refunded(conn, key).await?;
    Ok(())
}

async fn mark_refunded(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<()> {
    diesel::sql_query("UPDATE payments SET state = 'refunded', updated_at = now() WHERE key = $1")
        .bind::<Text, _>(key)
        .execute(conn)
        .await
        .map(drop)
}
