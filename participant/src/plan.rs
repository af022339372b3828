//! What a batch of commands does, worked out in memory from the records and resources the batch locked: one
//! outcome per command and what to write back. The commands apply in order, each exactly as [`decide`] rules,
//! each seeing what the ones before it did, so that two commands of one saga in a batch (a redelivery and its
//! duplicate, a step and its compensation) meet as they would one after the other. The store then writes the plan
//! with a few set-based statements instead of several round trips per command.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
};

use shared_contracts::SagaId;

use crate::{
    effect::{Effect, Held},
    protocol::{decide, Action, Command, Record, Reply},
};

/// The records of a batch's sagas as the store read them under lock: those it could read, and those it could not
/// (with what is wrong with them). A saga in neither has no record yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded<T> {
    /// The readable records.
    pub records: HashMap<SagaId, Record<T>>,
    /// The sagas whose record cannot be read, with what is wrong with it.
    pub unreadable: HashMap<SagaId, String>,
}

impl<T> Default for Recorded<T> {
    fn default() -> Self {
        Self { records: HashMap::new(), unreadable: HashMap::new() }
    }
}

impl<T> From<HashMap<SagaId, Record<T>>> for Recorded<T> {
    fn from(records: HashMap<SagaId, Record<T>>) -> Self {
        Self { records, unreadable: HashMap::new() }
    }
}

/// Why one command of a batch was not applied. It changed nothing, and retrying cannot help: the coordinator is
/// told with [`Reply::CannotApply`], and the command goes to the dead letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotApplied<U> {
    /// Its effect would break a rule of the participant's data.
    #[error(transparent)]
    Unprocessable(U),
    /// What is recorded for its saga cannot be read.
    #[error("the saga's recorded step is unreadable: {0}")]
    UnreadableRecord(String),
}

/// What became of one command of a batch: its reply, or why it was not applied.
pub type Outcome<E> = Result<Reply, NotApplied<<E as Effect>::Unprocessable>>;

/// The record of a saga that had none before the batch, as the batch leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord<R, T> {
    /// What the saga's step asked for; `None` for a tombstone, which no step preceded.
    pub request: Option<R>,
    /// The record.
    pub record: Record<T>,
}

/// What a batch of commands does, as [`plan_batch`] decides it.
pub struct BatchPlan<E: Effect> {
    /// Per command, in the order the commands were given: the reply, or why the command was not applied.
    pub outcomes: Vec<Outcome<E>>,
    /// The new value of every resource the batch changed.
    pub resources: BTreeMap<String, E::Resource>,
    /// The records of sagas that had none before the batch.
    pub inserted: BTreeMap<SagaId, NewRecord<E::Request, E::Taken>>,
    /// The sagas whose record, `Applied` before the batch, it compensated, with what was given back. (A
    /// compensation is the one change a record that exists can undergo.)
    pub compensated: BTreeMap<SagaId, E::Taken>,
}

impl<E: Effect> fmt::Debug for BatchPlan<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchPlan")
            .field("outcomes", &self.outcomes)
            .field("resources", &self.resources)
            .field("inserted", &self.inserted)
            .field("compensated", &self.compensated)
            .finish()
    }
}

/// The keys of the resources a batch must lock and read before it is planned: every resource a step asks for,
/// and every resource of a recorded step that a compensation may give back to (commands of sagas whose record is
/// unreadable touch none). Sorted, without duplicates: the order the store locks them in, so that batches
/// locking overlapping resources queue instead of deadlocking.
pub fn keys_to_lock<'a, E: Effect>(
    recorded: &'a Recorded<E::Taken>,
    commands: &[(SagaId, &'a Command<E::Request>)],
) -> Vec<&'a str> {
    let mut keys = BTreeSet::new();
    for (saga_id, command) in commands.iter().filter(|(saga_id, _)| !recorded.unreadable.contains_key(saga_id)) {
        match command {
            Command::Step(request) => keys.extend(E::keys_of_request(request)),
            Command::Compensate => {
                if let Some(Record::Applied(taken)) = recorded.records.get(saga_id) {
                    keys.extend(E::keys_of_taken(taken));
                }
            }
        }
    }
    keys.into_iter().collect()
}

/// Applies `commands` in order to the sagas' records `recorded` and the resources `resources` (a key missing from
/// `resources` names no resource), each command exactly as [`decide`] rules, every command seeing what the ones
/// before it did. A command that cannot be applied (its saga's record is unreadable, or its effect is
/// unprocessable) changes nothing and holds back none of the others.
pub fn plan_batch<E: Effect>(
    recorded: &Recorded<E::Taken>,
    resources: &HashMap<String, E::Resource>,
    commands: &[(SagaId, &Command<E::Request>)],
) -> BatchPlan<E> {
    let mut ledger = Ledger::<E> {
        recorded: &recorded.records,
        records: HashMap::new(),
        requests: HashMap::new(),
        compensated: BTreeMap::new(),
        locked: resources,
        changed: HashMap::new(),
    };
    let outcomes = commands
        .iter()
        .map(|&(saga_id, command)| match recorded.unreadable.get(&saga_id) {
            Some(what) => Err(NotApplied::UnreadableRecord(what.clone())),
            None => ledger.apply(saga_id, command).map_err(NotApplied::Unprocessable),
        })
        .collect();
    let Ledger { records, mut requests, compensated, changed, .. } = ledger;
    let resources = changed.into_iter().filter(|(key, value)| resources.get(key) != Some(value)).collect();
    let inserted = records
        .into_iter()
        .filter(|(saga_id, _)| !recorded.records.contains_key(saga_id))
        .map(|(saga_id, record)| (saga_id, NewRecord { request: requests.remove(&saga_id), record }))
        .collect();
    BatchPlan { outcomes, resources, inserted, compensated }
}

/// Records and resources as the commands of a batch so far leave them.
struct Ledger<'a, E: Effect> {
    /// The records before the batch.
    recorded: &'a HashMap<SagaId, Record<E::Taken>>,
    /// The records the batch wrote, of sagas recorded before it or not.
    records: HashMap<SagaId, Record<E::Taken>>,
    /// What the step of each saga first recorded by the batch asked for.
    requests: HashMap<SagaId, E::Request>,
    /// The sagas recorded before the batch that it compensated, with what was given back.
    compensated: BTreeMap<SagaId, E::Taken>,
    /// The resources before the batch.
    locked: &'a HashMap<String, E::Resource>,
    /// The resources the batch changed, with their new values.
    changed: HashMap<String, E::Resource>,
}

impl<E: Effect> Ledger<'_, E> {
    fn apply(&mut self, saga_id: SagaId, command: &Command<E::Request>) -> Result<Reply, E::Unprocessable> {
        let current = self.records.get(&saga_id).or_else(|| self.recorded.get(&saga_id));
        Ok(match decide(current, command) {
            Action::Repeat(reply) => reply,
            Action::Attempt(request) => {
                self.requests.insert(saga_id, request.clone());
                match E::take(&Held::new(self.locked, &self.changed), request) {
                    Ok((taken, changes)) => {
                        self.changed.extend(changes);
                        self.records.insert(saga_id, Record::Applied(taken));
                        Reply::Applied
                    }
                    Err(reason) => {
                        self.records.insert(saga_id, Record::Rejected(reason.clone()));
                        Reply::Rejected { reason }
                    }
                }
            }
            Action::Restore(taken) => {
                let changes = E::give_back(&Held::new(self.locked, &self.changed), &taken)?;
                self.changed.extend(changes);
                if self.recorded.contains_key(&saga_id) {
                    self.compensated.insert(saga_id, taken.clone());
                }
                self.records.insert(saga_id, Record::Compensated(taken));
                Reply::Compensated
            }
            Action::Tombstone => {
                self.records.insert(saga_id, Record::Tombstone);
                Reply::Compensated
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use shared_contracts::FailureReason;

    use super::*;
    use crate::shelf::{Problem, Shelves, Units, CAPACITY};

    fn saga(n: u128) -> SagaId {
        SagaId(uuid::Uuid::from_u128(n))
    }

    fn units(of: &[(&str, i64)]) -> Units {
        of.iter().map(|(shelf, units)| (shelf.to_string(), *units)).collect()
    }

    fn step(of: &[(&str, i64)]) -> Command<Units> {
        Command::Step(units(of))
    }

    fn shelves(of: &[(&str, i64)]) -> HashMap<String, i64> {
        units(of).into_iter().collect()
    }

    fn changed(of: &[(&str, i64)]) -> BTreeMap<String, i64> {
        units(of).into_iter().collect()
    }

    fn new(request: Option<Units>, record: Record<Units>) -> NewRecord<Units, Units> {
        NewRecord { request, record }
    }

    fn plan(
        recorded: impl Into<Recorded<Units>>,
        resources: &HashMap<String, i64>,
        commands: &[(SagaId, &Command<Units>)],
    ) -> BatchPlan<Shelves> {
        plan_batch::<Shelves>(&recorded.into(), resources, commands)
    }

    fn replied(replies: impl IntoIterator<Item = Reply>) -> Vec<Outcome<Shelves>> {
        replies.into_iter().map(Ok).collect()
    }

    fn short(shelf: &str) -> Reply {
        Reply::Rejected { reason: FailureReason::OutOfStock { item_id: shelf.into() } }
    }

    #[test]
    fn a_batch_takes_in_command_order_and_refuses_what_is_left_short() {
        let (take_3, take_2) = (step(&[("a", 3)]), step(&[("a", 2), ("b", 1)]));
        let commands = [(saga(1), &take_3), (saga(2), &take_3), (saga(3), &take_2)];

        let plan = plan(HashMap::new(), &shelves(&[("a", 5), ("b", 1)]), &commands);

        assert_eq!(plan.outcomes, replied([Reply::Applied, short("a"), Reply::Applied]));
        assert_eq!(plan.resources, changed(&[("a", 0), ("b", 0)]));
        let reason = FailureReason::OutOfStock { item_id: "a".into() };
        assert_eq!(
            plan.inserted,
            BTreeMap::from([
                (saga(1), new(Some(units(&[("a", 3)])), Record::Applied(units(&[("a", 3)])))),
                (saga(2), new(Some(units(&[("a", 3)])), Record::Rejected(reason))),
                (saga(3), new(Some(units(&[("a", 2), ("b", 1)])), Record::Applied(units(&[("a", 2), ("b", 1)])))),
            ])
        );
        assert!(plan.compensated.is_empty());
    }

    #[test]
    fn a_refused_step_takes_none_of_its_other_lines() {
        let command = step(&[("a", 1), ("zz", 1)]);

        let plan = plan(HashMap::new(), &shelves(&[("a", 5)]), &[(saga(1), &command)]);

        let unknown = FailureReason::UnknownItem { item_id: "zz".into() };
        assert_eq!(plan.outcomes, replied([Reply::Rejected { reason: unknown.clone() }]));
        assert!(plan.resources.is_empty());
        let request = Some(units(&[("a", 1), ("zz", 1)]));
        assert_eq!(plan.inserted, BTreeMap::from([(saga(1), new(request, Record::Rejected(unknown)))]));
    }

    #[test]
    fn a_compensation_of_a_recorded_step_gives_it_back_once_and_a_repeated_step_changes_nothing() {
        let recorded = HashMap::from([
            (saga(1), Record::Applied(units(&[("a", 2)]))),
            (saga(2), Record::Applied(units(&[("a", 1)]))),
        ]);
        let again = step(&[("a", 1)]);
        let commands = [(saga(1), &Command::Compensate), (saga(1), &Command::Compensate), (saga(2), &again)];

        let plan = plan(recorded, &shelves(&[("a", 0)]), &commands);

        assert_eq!(plan.outcomes, replied([Reply::Compensated, Reply::Compensated, Reply::Applied]));
        assert_eq!(plan.resources, changed(&[("a", 2)]));
        assert!(plan.inserted.is_empty());
        assert_eq!(plan.compensated, BTreeMap::from([(saga(1), units(&[("a", 2)]))]));
    }

    #[test]
    fn a_compensation_before_its_step_in_one_batch_leaves_a_tombstone_that_refuses_the_step() {
        let take = step(&[("a", 1)]);

        let plan = plan(HashMap::new(), &shelves(&[("a", 1)]), &[(saga(1), &Command::Compensate), (saga(1), &take)]);

        let cancelled = Reply::Rejected { reason: FailureReason::Cancelled };
        assert_eq!(plan.outcomes, replied([Reply::Compensated, cancelled]));
        assert!(plan.resources.is_empty());
        assert_eq!(plan.inserted, BTreeMap::from([(saga(1), new(None, Record::Tombstone))]));
    }

    #[test]
    fn a_step_and_its_compensation_in_one_batch_leave_the_resources_and_a_compensated_record() {
        let take = step(&[("a", 4)]);

        let plan = plan(HashMap::new(), &shelves(&[("a", 10)]), &[(saga(1), &take), (saga(1), &Command::Compensate)]);

        assert_eq!(plan.outcomes, replied([Reply::Applied, Reply::Compensated]));
        assert!(plan.resources.is_empty(), "10 - 4 + 4 is no change");
        let record = Record::Compensated(units(&[("a", 4)]));
        assert_eq!(plan.inserted, BTreeMap::from([(saga(1), new(Some(units(&[("a", 4)])), record))]));
        assert!(plan.compensated.is_empty(), "the saga had no record before the batch");
    }

    #[test]
    fn duplicate_steps_of_a_recorded_saga_repeat_the_answer_and_write_nothing() {
        let recorded = HashMap::from([(saga(1), Record::Applied(units(&[("a", 4)])))]);
        let take = step(&[("a", 4)]);

        let plan = plan(recorded, &shelves(&[("a", 6)]), &[(saga(1), &take), (saga(1), &take)]);

        assert_eq!(plan.outcomes, replied([Reply::Applied, Reply::Applied]));
        assert!(plan.resources.is_empty() && plan.inserted.is_empty() && plan.compensated.is_empty());
    }

    #[test]
    fn a_compensation_that_cannot_apply_changes_nothing_and_the_rest_of_the_batch_goes_on() {
        let recorded = HashMap::from([
            (saga(1), Record::Applied(units(&[("a", 1), ("b", 2)]))),
            (saga(2), Record::Applied(units(&[("a", 1), ("zz", 1)]))),
            (saga(3), Record::Applied(units(&[("a", 1)]))),
        ]);
        let take = step(&[("a", 2)]);
        let commands = [
            (saga(1), &Command::Compensate),
            (saga(2), &Command::Compensate),
            (saga(3), &Command::Compensate),
            (saga(4), &take),
        ];

        let plan = plan(recorded, &shelves(&[("a", 5), ("b", CAPACITY - 1)]), &commands);

        assert_eq!(
            plan.outcomes,
            [
                Err(NotApplied::Unprocessable(Problem::Full("b".into()))),
                Err(NotApplied::Unprocessable(Problem::Gone("zz".into()))),
                Ok(Reply::Compensated),
                Ok(Reply::Applied)
            ]
        );
        assert_eq!(plan.resources, changed(&[("a", 4)]), "only saga 3 and saga 4 moved units");
        assert_eq!(plan.compensated, BTreeMap::from([(saga(3), units(&[("a", 1)]))]));
        assert_eq!(plan.inserted.keys().collect::<Vec<_>>(), [&saga(4)]);
    }

    #[test]
    fn the_commands_of_a_saga_whose_record_is_unreadable_are_not_applied_and_touch_nothing() {
        let recorded =
            Recorded { records: HashMap::new(), unreadable: HashMap::from([(saga(1), "state \"lost\"".to_owned())]) };
        let (take_b, take_a) = (step(&[("b", 1)]), step(&[("a", 1)]));
        let commands = [(saga(1), &take_b), (saga(1), &Command::Compensate), (saga(2), &take_a)];

        assert_eq!(keys_to_lock::<Shelves>(&recorded, &commands), ["a"]);
        let plan = plan(recorded, &shelves(&[("a", 1), ("b", 1)]), &commands);

        let unreadable = Err(NotApplied::UnreadableRecord("state \"lost\"".into()));
        assert_eq!(plan.outcomes, [unreadable.clone(), unreadable, Ok(Reply::Applied)]);
        assert_eq!(
            plan.outcomes[0].as_ref().unwrap_err().to_string(),
            "the saga's recorded step is unreadable: state \"lost\""
        );
        assert_eq!(plan.resources, changed(&[("a", 0)]));
        assert_eq!(plan.inserted.keys().collect::<Vec<_>>(), [&saga(2)]);
    }

    #[test]
    fn the_keys_to_lock_are_those_of_the_steps_and_of_the_recorded_steps_to_give_back_sorted_and_distinct() {
        let recorded = Recorded::from(HashMap::from([
            (saga(1), Record::Applied(units(&[("c", 1)]))),
            (saga(2), Record::Compensated(units(&[("d", 1)]))),
        ]));
        let take = step(&[("b", 1), ("a", 1), ("b", 2)]);
        let commands = [(saga(1), &Command::Compensate), (saga(2), &Command::Compensate), (saga(3), &take)];
        assert_eq!(keys_to_lock::<Shelves>(&recorded, &commands), ["a", "b", "c"]);
    }

    /// The records and shelves of a database, as the store keeps them.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Model {
        records: HashMap<SagaId, NewRecord<Units, Units>>,
        shelves: HashMap<String, i64>,
    }

    impl Model {
        /// Plans `commands` as [`crate::apply_batch`] does (reading only what the batch needs) and writes the plan.
        fn run(&mut self, commands: &[(SagaId, &Command<Units>)]) -> Vec<Outcome<Shelves>> {
            let recorded = Recorded::from(
                commands
                    .iter()
                    .filter_map(|(saga_id, _)| Some((*saga_id, self.records.get(saga_id)?.record.clone())))
                    .collect::<HashMap<_, _>>(),
            );
            let shelves = keys_to_lock::<Shelves>(&recorded, commands)
                .into_iter()
                .filter_map(|shelf| Some((shelf.to_owned(), *self.shelves.get(shelf)?)))
                .collect();
            let plan = plan_batch::<Shelves>(&recorded, &shelves, commands);
            for (shelf, units) in plan.resources {
                assert!(self.shelves.insert(shelf, units).is_some(), "a shelf that does not exist");
            }
            for (saga_id, record) in plan.inserted {
                assert!(self.records.insert(saga_id, record).is_none(), "insert of a recorded saga");
            }
            for (saga_id, taken) in plan.compensated {
                let row = self.records.get_mut(&saga_id).expect("update of a recorded saga");
                assert_eq!(row.record, Record::Applied(taken.clone()));
                row.record = Record::Compensated(taken);
            }
            plan.outcomes
        }

        /// The units of `shelf` that applied steps hold.
        fn taken_from(&self, shelf: &str) -> i64 {
            let taken = self.records.values().filter_map(|row| match &row.record {
                Record::Applied(taken) => Some(taken),
                _ => None,
            });
            taken.flatten().filter(|(of, _)| of == shelf).map(|(_, units)| units).sum()
        }
    }

    /// A command of a random batch: a step on up to two of shelves `a`, `b`, `c` (`c` does not exist), or a
    /// compensation.
    fn any_command() -> impl Strategy<Value = Command<Units>> {
        prop_oneof![prop::collection::vec(("[a-c]", 0..8i64), 1..3).prop_map(Command::Step), Just(Command::Compensate),]
    }

    proptest! {
        #[test]
        fn a_batch_does_what_its_commands_do_one_at_a_time_and_every_unit_is_accounted_for(
            start in prop::collection::vec(0..20i64, 2),
            batches in prop::collection::vec(prop::collection::vec((0..5u128, any_command()), 0..12), 1..5),
        ) {
            let shelves = ["a", "b"].iter().zip(&start).map(|(shelf, units)| (shelf.to_string(), *units)).collect();
            let mut batched = Model { records: HashMap::new(), shelves };
            let mut one_by_one = batched.clone();
            for batch in &batches {
                let commands: Vec<_> = batch.iter().map(|(n, command)| (saga(*n), command)).collect();
                let outcomes = batched.run(&commands);
                let alone: Vec<_> = commands.iter().flat_map(|command| one_by_one.run(&[*command])).collect();
                prop_assert_eq!(outcomes.len(), commands.len());
                prop_assert!(outcomes.iter().all(Result::is_ok), "nothing overflows below the capacity");
                prop_assert_eq!(outcomes, alone);
                prop_assert_eq!(&batched, &one_by_one);
                for (shelf, units) in ["a", "b"].iter().zip(&start) {
                    prop_assert!(batched.shelves[*shelf] >= 0);
                    prop_assert_eq!(units - batched.shelves[*shelf], batched.taken_from(shelf));
                }
            }
        }
    }
}
