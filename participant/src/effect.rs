//! What a participant supplies: its effect on its resources. stock-svc takes units from the holdings of items and
//! gives them back; payment-svc takes credit from the accounts of users and refunds it. Everything else (the
//! record, the decision, the batch, the transaction, the worker) is the protocol's, written once.

use std::{collections::HashMap, fmt::Debug};

use shared_contracts::FailureReason;

/// New values of resources, keyed by their ID, that an effect asks to write.
pub type Changes<R> = Vec<(String, R)>;

/// The resources of a batch as the commands before the current one left them: what was locked, with what the
/// batch changed so far laid over it. A key that is missing names no resource (no such item, no such user).
#[derive(Debug, Clone, Copy)]
pub struct Held<'a, R> {
    locked: &'a HashMap<String, R>,
    changed: &'a HashMap<String, R>,
}

impl<'a, R: Clone> Held<'a, R> {
    /// The resources `locked` with `changed` laid over them.
    pub fn new(locked: &'a HashMap<String, R>, changed: &'a HashMap<String, R>) -> Self {
        Self { locked, changed }
    }

    /// The resource `key` as it is now, if it exists.
    pub fn get(&self, key: &str) -> Option<R> {
        self.changed.get(key).or_else(|| self.locked.get(key)).cloned()
    }
}

/// A participant's effect on its in-memory resources: the only part of the protocol that differs between
/// participants. Both methods are all or nothing: they return every change, or an error and none.
pub trait Effect: Send + Sync + 'static {
    /// What a step asks for (the lines of a reservation, a charge).
    type Request: Debug + Clone + PartialEq + Send + Sync;
    /// What a step took, recorded so that the compensation gives exactly that back.
    type Taken: Debug + Clone + PartialEq + Send + Sync;
    /// One resource the effect changes (an item's holding, a user's account), keyed by its ID.
    type Resource: Debug + Clone + PartialEq + Send + Sync;
    /// Why a compensation can never be applied (the resource is gone, or giving back would break a rule).
    type Unprocessable: std::error::Error + Clone + PartialEq + Send + Sync + 'static;

    /// The keys of the resources a step asking for `request` may change.
    fn keys_of_request(request: &Self::Request) -> impl Iterator<Item = &str>;

    /// The keys of the resources a compensation of `taken` changes.
    fn keys_of_taken(taken: &Self::Taken) -> impl Iterator<Item = &str>;

    /// Applies a step asking for `request` to `held`: what it took and the resources' new values, or why it is
    /// refused. A step that touches one resource twice must account for that itself, since `held` does not
    /// change under it.
    fn take(
        held: &Held<'_, Self::Resource>,
        request: &Self::Request,
    ) -> Result<(Self::Taken, Changes<Self::Resource>), FailureReason>;

    /// Gives `taken` back to `held`: the resources' new values, or why that can never be done.
    fn give_back(
        held: &Held<'_, Self::Resource>,
        taken: &Self::Taken,
    ) -> Result<Changes<Self::Resource>, Self::Unprocessable>;
}
