//! Users and their credit. Every REST change of credit is a single atomic `UPDATE` whose `WHERE` clause carries
//! the rule, so two concurrent payments can never both succeed past zero; the slower path that reads the credit
//! afterwards only runs to explain a refusal. Transactions that decide a new credit themselves (a cancel's refund,
//! a batch of saga commands) lock the rows first and write the decided credit back.

use std::collections::BTreeMap;

use diesel::{
    sql_types::{Array, BigInt, Text},
    OptionalExtension, QueryResult, QueryableByName,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use platform::db::prepared;

use super::{bigint, from_bigint, StoreError};
use crate::domain::{self, CreditRefusal, MAX_CREDIT};

#[derive(QueryableByName)]
struct Credit {
    #[diesel(sql_type = BigInt)]
    credit: i64,
}

#[derive(QueryableByName)]
struct UserCredit {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = BigInt)]
    credit: i64,
}

/// Creates a user with credit 0 and returns its new ID.
pub async fn create(conn: &mut AsyncPgConnection) -> QueryResult<String> {
    let user_id = uuid::Uuid::new_v4().to_string();
    diesel::sql_query("INSERT INTO users (id, credit) VALUES ($1, 0)").bind::<Text, _>(&user_id).execute(conn).await?;
    Ok(user_id)
}

/// Makes users `"0"` … `"n-1"` with `credit` each, overwriting the credit of those that exist, in one statement.
pub async fn batch_init(conn: &mut AsyncPgConnection, n: u64, credit: u64) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO users (id, credit) SELECT g::text, $2 FROM generate_series(0::bigint, $1 - 1) AS g \
         ON CONFLICT (id) DO UPDATE SET credit = EXCLUDED.credit",
    )
    .bind::<BigInt, _>(bigint(n)?)
    .bind::<BigInt, _>(bigint(credit)?)
    .execute(conn)
    .await
    .map(drop)
}

/// The credit of `user_id`, if there is such a user.
pub async fn credit(conn: &mut AsyncPgConnection, user_id: &str) -> QueryResult<Option<u64>> {
    diesel::sql_query("SELECT credit FROM users WHERE id = $1")
        .bind::<Text, _>(user_id)
        .get_result::<Credit>(conn)
        .await
        .optional()
        .map(|row| row.map(|r| from_bigint(r.credit)))
}

/// Like [`credit`], and locks the user's row until the end of the transaction.
pub async fn credit_for_update(conn: &mut AsyncPgConnection, user_id: &str) -> QueryResult<Option<u64>> {
    diesel::sql_query("SELECT credit FROM users WHERE id = $1 FOR UPDATE")
        .bind::<Text, _>(user_id)
        .get_result::<Credit>(conn)
        .await
        .optional()
        .map(|row| row.map(|r| from_bigint(r.credit)))
}

/// Sets the credit of `user_id`, whose row the caller has locked and whose new credit the domain decided.
pub async fn set_credit(conn: &mut AsyncPgConnection, user_id: &str, credit: u64) -> QueryResult<()> {
    diesel::sql_query("UPDATE users SET credit = $2 WHERE id = $1")
        .bind::<Text, _>(user_id)
        .bind::<BigInt, _>(bigint(credit)?)
        .execute(conn)
        .await
        .map(drop)
}

/// The credit of `user_id`, or [`StoreError::UnknownUser`].
pub async fn find(conn: &mut AsyncPgConnection, user_id: &str) -> Result<u64, StoreError> {
    credit(conn, user_id).await?.ok_or_else(|| StoreError::UnknownUser(user_id.to_owned()))
}

/// Adds `amount` to the credit of `user_id` and returns the new credit; refused if it would exceed
/// [`MAX_CREDIT`].
pub async fn add_funds(conn: &mut AsyncPgConnection, user_id: &str, amount: u64) -> Result<u64, StoreError> {
    let updated =
        diesel::sql_query("UPDATE users SET credit = credit + $2 WHERE id = $1 AND credit <= $3 - $2 RETURNING credit")
            .bind::<Text, _>(user_id)
            .bind::<BigInt, _>(bigint(amount)?)
            .bind::<BigInt, _>(bigint(MAX_CREDIT)?)
            .get_result::<Credit>(conn)
            .await
            .optional()?;
    match updated {
        Some(row) => Ok(from_bigint(row.credit)),
        None => {
            // The credit may have changed since the update missed; the refusal stands either way.
            let credit = find(conn, user_id).await?;
            let refusal = domain::deposit(user_id, credit, amount).err();
            Err(refusal.unwrap_or(CreditRefusal::WouldOverflow { user_id: user_id.to_owned(), credit, amount }).into())
        }
    }
}

/// Takes `amount` from the credit of `user_id` and returns the new credit; refused, changing nothing, if the
/// credit would go below zero.
pub async fn pay(conn: &mut AsyncPgConnection, user_id: &str, amount: u64) -> Result<u64, StoreError> {
    let updated =
        diesel::sql_query("UPDATE users SET credit = credit - $2 WHERE id = $1 AND credit >= $2 RETURNING credit")
            .bind::<Text, _>(user_id)
            .bind::<BigInt, _>(bigint(amount)?)
            .get_result::<Credit>(conn)
            .await
            .optional()?;
    match updated {
        Some(row) => Ok(from_bigint(row.credit)),
        None => {
            // The credit may have changed since the update missed; the refusal stands either way.
            let credit = find(conn, user_id).await?;
            let refusal = domain::pay(user_id, credit, amount).err();
            Err(refusal.unwrap_or(CreditRefusal::Insufficient { user_id: user_id.to_owned(), credit, amount }).into())
        }
    }
}

/// The credit of each of `user_ids` that exists, locking their rows until the end of the transaction. Rows are
/// locked in byte order of their IDs, whatever the database's collation, so that transactions locking overlapping
/// users this way queue behind each other instead of deadlocking.
pub async fn lock_credits(conn: &mut AsyncPgConnection, user_ids: &[&str]) -> QueryResult<BTreeMap<String, u64>> {
    if user_ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows: Vec<UserCredit> = prepared(
        diesel::sql_query(r#"SELECT id, credit FROM users WHERE id = ANY($1) ORDER BY id COLLATE "C" FOR UPDATE"#)
            .bind::<Array<Text>, _>(user_ids),
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|row| (row.id, from_bigint(row.credit))).collect())
}

/// Sets the credit of every user in `credits`, whose rows the caller has locked and whose new credit the domain
/// decided, in one statement.
pub async fn set_credits(mut conn: &AsyncPgConnection, credits: &BTreeMap<String, u64>) -> QueryResult<()> {
    if credits.is_empty() {
        return Ok(());
    }
    let user_ids: Vec<&str> = credits.keys().map(String::as_str).collect();
    let amounts = credits.values().map(|&credit| bigint(credit)).collect::<QueryResult<Vec<i64>>>()?;
    prepared(
        diesel::sql_query(
            "UPDATE users SET credit = c.credit FROM unnest($1::text[], $2::bigint[]) AS c(id, credit) \
         WHERE users.id = c.id",
        )
        .bind::<Array<Text>, _>(user_ids)
        .bind::<Array<BigInt>, _>(amounts),
    )
    .execute(&mut conn)
    .await
    .map(drop)
}
