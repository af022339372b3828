//! The protocol itself, free of I/O: what a participant records for one saga, the commands it is sent, the replies
//! it gives, and [`decide`], which says what a command means given the record.
//!
//! The record of one saga is a small state machine. It starts with none; the step is applied (recorded
//! [`Record::Applied`] with what it took) or refused ([`Record::Rejected`]); the compensation gives an applied
//! step back ([`Record::Compensated`]) or, when it comes first, leaves a [`Record::Tombstone`] so that the late
//! step takes nothing. Every other combination repeats the answer already given, which is what makes redelivered
//! and duplicated commands harmless.

use shared_contracts::FailureReason;

/// A command of the coordinator to a participant, in the protocol's words; `R` is what the step asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<R> {
    /// Do the step (reserve the lines, charge the amount), all or nothing.
    Step(R),
    /// Give back what the step took for this saga; if it has not run yet, make sure it never takes anything.
    Compensate,
}

/// A participant's answer to one command, in the protocol's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The step took what it asked for.
    Applied,
    /// The step took nothing, for this reason.
    Rejected {
        /// Why.
        reason: FailureReason,
    },
    /// Whatever the step took is back, and nothing will be taken for the saga any more.
    Compensated,
    /// The command can never be applied; nothing changed, and the command goes to the dead letters.
    CannotApply {
        /// Why, for operators.
        problem: String,
    },
}

/// What a participant recorded for one saga; `T` is what its step took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<T> {
    /// The step was applied and took this.
    Applied(T),
    /// The step was refused and took nothing.
    Rejected(FailureReason),
    /// The step was applied, then compensated: what it took (this) is back.
    Compensated(T),
    /// The compensation came before any step: none will be applied for this saga.
    Tombstone,
}

/// What a participant must do for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'a, R, T> {
    /// The command was decided before: answer the same way and change nothing.
    Repeat(Reply),
    /// First time: try the step that asks for this, and record the outcome.
    Attempt(&'a R),
    /// Give back what the step took (this) and record the saga as compensated.
    Restore(T),
    /// Record a tombstone so that a later step is refused, and answer compensated.
    Tombstone,
}

/// Decides what `command` means for a saga whose record is `recorded`.
pub fn decide<'a, R, T: Clone>(recorded: Option<&Record<T>>, command: &'a Command<R>) -> Action<'a, R, T> {
    match (recorded, command) {
        (None, Command::Step(request)) => Action::Attempt(request),
        (Some(Record::Applied(_)), Command::Step(_)) => Action::Repeat(Reply::Applied),
        (Some(Record::Rejected(reason)), Command::Step(_)) => {
            Action::Repeat(Reply::Rejected { reason: reason.clone() })
        }
        (Some(Record::Compensated(_) | Record::Tombstone), Command::Step(_)) => {
            Action::Repeat(Reply::Rejected { reason: FailureReason::Cancelled })
        }
        (None, Command::Compensate) => Action::Tombstone,
        (Some(Record::Applied(taken)), Command::Compensate) => Action::Restore(taken.clone()),
        (Some(Record::Rejected(_) | Record::Compensated(_) | Record::Tombstone), Command::Compensate) => {
            Action::Repeat(Reply::Compensated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Recorded = Record<u32>;

    fn step(asked: u32) -> Command<u32> {
        Command::Step(asked)
    }

    #[test]
    fn a_first_step_is_attempted() {
        assert_eq!(decide::<_, u32>(None, &step(3)), Action::Attempt(&3));
    }

    #[test]
    fn a_repeated_step_repeats_its_answer() {
        assert_eq!(decide(Some(&Recorded::Applied(3)), &step(3)), Action::Repeat(Reply::Applied));
        let reason = FailureReason::UnknownItem { item_id: "x".into() };
        assert_eq!(
            decide(Some(&Recorded::Rejected(reason.clone())), &step(3)),
            Action::Repeat(Reply::Rejected { reason })
        );
    }

    #[test]
    fn a_step_after_its_compensation_is_refused_as_cancelled() {
        let cancelled = Action::Repeat(Reply::Rejected { reason: FailureReason::Cancelled });
        assert_eq!(decide(Some(&Recorded::Compensated(3)), &step(3)), cancelled);
        assert_eq!(decide(Some(&Recorded::Tombstone), &step(3)), cancelled);
    }

    #[test]
    fn a_compensation_gives_back_exactly_what_the_step_took() {
        assert_eq!(decide::<u32, _>(Some(&Recorded::Applied(3)), &Command::Compensate), Action::Restore(3));
    }

    #[test]
    fn a_compensation_before_any_step_leaves_a_tombstone() {
        assert_eq!(decide::<u32, u32>(None, &Command::Compensate), Action::Tombstone);
    }

    #[test]
    fn a_compensation_with_nothing_to_give_back_changes_nothing() {
        let rejected = Recorded::Rejected(FailureReason::OutOfStock { item_id: "a".into() });
        for recorded in [rejected, Recorded::Compensated(3), Recorded::Tombstone] {
            assert_eq!(decide::<u32, _>(Some(&recorded), &Command::Compensate), Action::Repeat(Reply::Compensated));
        }
    }
}
