//! Users and their money: the credit, and `refundable`, what they paid that may still be given back (see
//! [`Account`]). Every REST change of credit is a single atomic `UPDATE` whose `WHERE` clause carries the rule,
//! so two concurrent payments can never both succeed past zero nor two deposits past the maximum; the slower path
//! that reads the account afterwards only runs to explain a refusal, in the words of the domain. Transactions that
//! decide a new account themselves (a cancel's refund, a batch of saga commands) lock the rows first and write the
//! decided account back.

use std::collections::{BTreeMap, HashMap};

use diesel::{
    sql_types::{Array, BigInt, Text},
    OptionalExtension, QueryResult, QueryableByName,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use platform::db::prepared;

use super::{bigint, from_bigint, StoreError};
use crate::domain::{self, Account, CreditRefusal, MAX_CREDIT};

#[derive(QueryableByName)]
struct Credit {
    #[diesel(sql_type = BigInt)]
    credit: i64,
}

#[derive(QueryableByName)]
struct UserAccount {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = BigInt)]
    credit: i64,
    #[diesel(sql_type = BigInt)]
    refundable: i64,
}

impl UserAccount {
    fn account(&self) -> Account {
        Account { credit: from_bigint(self.credit), refundable: from_bigint(self.refundable) }
    }
}

/// Creates a user with credit 0 and returns its new ID.
pub async fn create(conn: &mut AsyncPgConnection) -> QueryResult<String> {
    let user_id = uuid::Uuid::new_v4().to_string();
    diesel::sql_query("INSERT INTO users (id, credit) VALUES ($1, 0)").bind::<Text, _>(&user_id).execute(conn).await?;
    Ok(user_id)
}

/// The user with the most that may be refunded among those of `"0"` … `"n-1"` that exist, and that amount; every
/// one of them is locked until the end of the transaction (in the order [`lock_accounts`] locks users).
pub async fn lock_numbered(conn: &mut AsyncPgConnection, n: u64) -> QueryResult<Option<(String, u64)>> {
    let most: Option<UserAccount> = diesel::sql_query(
        r#"WITH locked AS MATERIALIZED (
               SELECT id, credit, refundable FROM users
               WHERE id IN (SELECT g::text FROM generate_series(0::bigint, $1 - 1) AS g)
               ORDER BY id COLLATE "C" FOR UPDATE)
           SELECT id, credit, refundable FROM locked ORDER BY refundable DESC, id COLLATE "C" LIMIT 1"#,
    )
    .bind::<BigInt, _>(bigint(n)?)
    .get_result(conn)
    .await
    .optional()?;
    Ok(most.map(|row| {
        let refundable = row.account().refundable;
        (row.id, refundable)
    }))
}

/// Makes users `"0"` … `"n-1"` with `credit` each, overwriting the credit of those that exist, in one statement;
/// what may be refunded to them stays. The caller has checked, under [`lock_numbered`], that `credit` leaves room
/// for it.
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

/// The account of `user_id`, if there is such a user.
async fn account(conn: &mut AsyncPgConnection, user_id: &str) -> QueryResult<Option<Account>> {
    diesel::sql_query("SELECT id, credit, refundable FROM users WHERE id = $1")
        .bind::<Text, _>(user_id)
        .get_result::<UserAccount>(conn)
        .await
        .optional()
        .map(|row| row.as_ref().map(UserAccount::account))
}

/// Like [`account`], and locks the user's row until the end of the transaction.
pub async fn account_for_update(conn: &mut AsyncPgConnection, user_id: &str) -> QueryResult<Option<Account>> {
    diesel::sql_query("SELECT id, credit, refundable FROM users WHERE id = $1 FOR UPDATE")
        .bind::<Text, _>(user_id)
        .get_result::<UserAccount>(conn)
        .await
        .optional()
        .map(|row| row.as_ref().map(UserAccount::account))
}

/// Sets the account of `user_id`, whose row the caller has locked and whose new account the domain decided.
pub async fn set_account(conn: &mut AsyncPgConnection, user_id: &str, account: Account) -> QueryResult<()> {
    diesel::sql_query("UPDATE users SET credit = $2, refundable = $3 WHERE id = $1")
        .bind::<Text, _>(user_id)
        .bind::<BigInt, _>(bigint(account.credit)?)
        .bind::<BigInt, _>(bigint(account.refundable)?)
        .execute(conn)
        .await
        .map(drop)
}

/// The credit of `user_id`, or [`StoreError::UnknownUser`].
pub async fn find(conn: &mut AsyncPgConnection, user_id: &str) -> Result<u64, StoreError> {
    credit(conn, user_id).await?.ok_or_else(|| StoreError::UnknownUser(user_id.to_owned()))
}

/// Adds `amount` to the credit of `user_id` and returns the new credit; refused if credit and refundable together
/// would exceed [`MAX_CREDIT`] (see [`domain::deposit`]).
pub async fn add_funds(conn: &mut AsyncPgConnection, user_id: &str, amount: u64) -> Result<u64, StoreError> {
    // `$3 - refundable` cannot overflow: both are between 0 and the maximum.
    let updated = diesel::sql_query(
        "UPDATE users SET credit = credit + $2 WHERE id = $1 AND credit <= $3 - refundable RETURNING credit",
    )
    .bind::<Text, _>(user_id)
    .bind::<BigInt, _>(bigint(amount)?)
    .bind::<BigInt, _>(bigint(MAX_CREDIT.saturating_sub(amount))?)
    .get_result::<Credit>(conn)
    .await
    .optional()?;
    match updated {
        Some(row) => Ok(from_bigint(row.credit)),
        None => {
            let account = account(conn, user_id).await?.ok_or_else(|| StoreError::UnknownUser(user_id.to_owned()))?;
            // The account may have changed since the update missed; the refusal stands either way.
            let refusal = domain::deposit(user_id, account, amount).err();
            Err(refusal
                .unwrap_or(CreditRefusal::WouldOverflow {
                    user_id: user_id.to_owned(),
                    credit: account.credit,
                    refundable: account.refundable,
                    amount,
                })
                .into())
        }
    }
}

/// How a payment is kept: gone for good, or refundable by a cancel later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payment {
    /// A payment without an order: nothing can give it back.
    Final,
    /// A payment for an order: counted as refundable until it is cancelled.
    Refundable,
}

/// Takes `amount` from the credit of `user_id` and returns the new credit; refused, changing nothing, if the
/// credit would go below zero. A [`Payment::Refundable`] is counted as refundable too (see
/// [`domain::charge_refundably`]).
pub async fn pay(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    amount: u64,
    payment: Payment,
) -> Result<u64, StoreError> {
    let sql = match payment {
        Payment::Final => "UPDATE users SET credit = credit - $2 WHERE id = $1 AND credit >= $2 RETURNING credit",
        // `LEAST(refundable, $3) + $2` is `refundable + $2` capped at the maximum, without overflowing.
        Payment::Refundable => {
            "UPDATE users SET credit = credit - $2, refundable = LEAST(refundable, $3) + $2 \
             WHERE id = $1 AND credit >= $2 RETURNING credit"
        }
    };
    let query = diesel::sql_query(sql).bind::<Text, _>(user_id).bind::<BigInt, _>(bigint(amount)?);
    let updated = match payment {
        Payment::Final => query.get_result::<Credit>(conn).await,
        Payment::Refundable => {
            query.bind::<BigInt, _>(bigint(MAX_CREDIT.saturating_sub(amount))?).get_result(conn).await
        }
    }
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

/// The account of each of `user_ids` that exists, locking their rows until the end of the transaction. Rows are
/// locked in byte order of their IDs, whatever the database's collation, so that transactions locking overlapping
/// users this way queue behind each other instead of deadlocking.
pub async fn lock_accounts(mut conn: &AsyncPgConnection, user_ids: &[&str]) -> QueryResult<HashMap<String, Account>> {
    if user_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<UserAccount> = prepared(
        diesel::sql_query(
            r#"SELECT id, credit, refundable FROM users WHERE id = ANY($1) ORDER BY id COLLATE "C" FOR UPDATE"#,
        )
        .bind::<Array<Text>, _>(user_ids),
    )
    .load(&mut conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let account = row.account();
            (row.id, account)
        })
        .collect())
}

/// Sets the account of every user in `accounts`, whose rows the caller has locked and whose new account the
/// domain decided, in one statement.
pub async fn set_accounts(mut conn: &AsyncPgConnection, accounts: &BTreeMap<String, Account>) -> QueryResult<()> {
    if accounts.is_empty() {
        return Ok(());
    }
    let user_ids: Vec<&str> = accounts.keys().map(String::as_str).collect();
    let credits = accounts.values().map(|account| bigint(account.credit)).collect::<QueryResult<Vec<i64>>>()?;
    let refundable = accounts.values().map(|account| bigint(account.refundable)).collect::<QueryResult<Vec<i64>>>()?;
    prepared(
        diesel::sql_query(
            "UPDATE users SET credit = a.credit, refundable = a.refundable \
             FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS a(id, credit, refundable) \
             WHERE users.id = a.id",
        )
        .bind::<Array<Text>, _>(user_ids)
        .bind::<Array<BigInt>, _>(credits)
        .bind::<Array<BigInt>, _>(refundable),
    )
    .execute(&mut conn)
    .await
    .map(drop)
}
