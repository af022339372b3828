//! A small in-memory effect the protocol is tested against: shelves holding a count of units, up to [`CAPACITY`].
//! A step takes units from several shelves, all or nothing; its compensation puts them back.

use std::collections::HashMap;

use shared_contracts::FailureReason;

use crate::effect::{Changes, Effect, Held};

/// The most a shelf holds.
pub const CAPACITY: i64 = 100;

/// What a step asks for, or took: units per shelf.
pub type Units = Vec<(String, i64)>;

/// The shelves' effect.
pub struct Shelves;

/// Why units cannot go back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The shelf is gone.
    #[error("shelf {0} is gone")]
    Gone(String),
    /// The shelf would hold more than [`CAPACITY`].
    #[error("shelf {0} is full")]
    Full(String),
}

impl Effect for Shelves {
    type Request = Units;
    type Taken = Units;
    type Resource = i64;
    type Unprocessable = Problem;

    fn keys_of_request(request: &Units) -> impl Iterator<Item = &str> {
        request.iter().map(|(shelf, _)| shelf.as_str())
    }

    fn keys_of_taken(taken: &Units) -> impl Iterator<Item = &str> {
        taken.iter().map(|(shelf, _)| shelf.as_str())
    }

    fn take(held: &Held<'_, i64>, request: &Units) -> Result<(Units, Changes<i64>), FailureReason> {
        let mut left: HashMap<String, i64> = HashMap::new();
        for (shelf, units) in request {
            let has = left.get(shelf).copied().or_else(|| held.get(shelf));
            let has = has.ok_or_else(|| FailureReason::UnknownItem { item_id: shelf.clone() })?;
            if has < *units {
                return Err(FailureReason::OutOfStock { item_id: shelf.clone() });
            }
            left.insert(shelf.clone(), has - units);
        }
        Ok((request.clone(), left.into_iter().collect()))
    }

    fn give_back(held: &Held<'_, i64>, taken: &Units) -> Result<Changes<i64>, Problem> {
        let mut after: HashMap<String, i64> = HashMap::new();
        for (shelf, units) in taken {
            let has = after.get(shelf).copied().or_else(|| held.get(shelf));
            let has = has.ok_or_else(|| Problem::Gone(shelf.clone()))?;
            if has + units > CAPACITY {
                return Err(Problem::Full(shelf.clone()));
            }
            after.insert(shelf.clone(), has + units);
        }
        Ok(after.into_iter().collect())
    }
}
