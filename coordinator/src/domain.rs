//! The checkout saga as a pure state machine: `(state, event) -> (state, commands)`, no I/O.
//!
//! A checkout reserves stock and charges payment in parallel. When both succeed the saga completes; when either
//! is refused the saga compensates every step that was not itself refused (a step still pending may have run or
//! may run later, so it is compensated too: participants treat a compensation that arrives first as a tombstone
//! that blocks the action for good) and fails once every compensation is confirmed. Late or duplicated replies
//! change nothing. Terminal states ignore everything but a repeated start, which they answer with their outcome.
//!
//! ```text
//!             Reserved + Charged
//! Executing ───────────────────────▶ Completed
//!     │ Rejected (either) / Abort
//!     ▼
//! Compensating ── Released + Refunded (those needed) ──▶ Failed
//! ```

use serde::{Deserialize, Serialize};
use shared_contracts::{FailureReason, PaymentReply, StockReply};

/// Where a forward step (reserve stock, charge payment) stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Step {
    /// Command sent, no answer yet.
    Pending,
    /// The participant did it.
    Done,
    /// The participant refused and did nothing.
    Rejected {
        /// Why.
        reason: FailureReason,
    },
}

/// Where the compensation of a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Undo {
    /// The step was refused, so there is nothing to undo.
    NotNeeded,
    /// Compensation sent, not confirmed yet.
    Pending,
    /// The participant confirmed: nothing of the step remains and it can never happen.
    Done,
}

/// The state of one checkout saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SagaState {
    /// Reserve and charge are under way.
    Executing {
        /// The stock reservation.
        stock: Step,
        /// The payment.
        payment: Step,
    },
    /// Something was refused or the saga was aborted; undoing what may have been done.
    Compensating {
        /// Undoing the stock reservation.
        stock: Undo,
        /// Undoing the payment.
        payment: Undo,
        /// Why the checkout fails.
        reason: FailureReason,
    },
    /// Stock taken and payment charged, exactly once. Terminal.
    Completed,
    /// Nothing taken, nothing charged. Terminal.
    Failed {
        /// Why.
        reason: FailureReason,
    },
}

/// The coarse status of a saga, stored beside the state for filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// See [`SagaState::Executing`].
    Executing,
    /// See [`SagaState::Compensating`].
    Compensating,
    /// See [`SagaState::Completed`].
    Completed,
    /// See [`SagaState::Failed`].
    Failed,
}

impl Status {
    /// The name stored in the database and used in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Executing => "executing",
            Self::Compensating => "compensating",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    /// Every status, in lifecycle order.
    pub const ALL: [Status; 4] = [Self::Executing, Self::Compensating, Self::Completed, Self::Failed];

    /// Whether the saga is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown state {s:?}; expected one of executing, compensating, completed, failed"))
    }
}

/// What can happen to a saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// stock-svc answered.
    Stock {
        /// The answer.
        reply: StockReply,
    },
    /// payment-svc answered.
    Payment {
        /// The answer.
        reply: PaymentReply,
    },
    /// Commands have gone unanswered for too long: send the pending ones again.
    RetryDue,
    /// An operator asked to give up: compensate and fail.
    Abort,
    /// order-svc sent the saga's `StartCheckout` again: it has not heard the outcome. A finished saga reports it
    /// once more; a running one will report it when it ends.
    StartRepeated,
}

/// What the saga asks the outside world to do. The I/O layer turns these into messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Ask stock-svc to take the checkout's items.
    ReserveStock,
    /// Ask stock-svc to give them back (or never take them).
    ReleaseStock,
    /// Ask payment-svc to charge the total.
    ChargePayment,
    /// Ask payment-svc to refund it (or never charge it).
    RefundPayment,
    /// Tell order-svc the checkout succeeded.
    ReportPaid,
    /// Tell order-svc the checkout failed, and why.
    ReportFailed {
        /// Why.
        reason: FailureReason,
    },
}

/// The result of applying an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state after the event.
    pub state: SagaState,
    /// What to send, in order.
    pub commands: Vec<Command>,
}

impl SagaState {
    /// The coarse status of this state.
    pub fn status(&self) -> Status {
        match self {
            Self::Executing { .. } => Status::Executing,
            Self::Compensating { .. } => Status::Compensating,
            Self::Completed => Status::Completed,
            Self::Failed { .. } => Status::Failed,
        }
    }

    /// Whether any command of this state still waits for an answer (so a retry timer should run).
    pub fn awaits_replies(&self) -> bool {
        !self.pending_commands().is_empty()
    }

    /// The commands whose answers this state is waiting for: what a retry sends again.
    pub fn pending_commands(&self) -> Vec<Command> {
        let mut commands = Vec::new();
        match self {
            Self::Executing { stock, payment } => {
                if *stock == Step::Pending {
                    commands.push(Command::ReserveStock);
                }
                if *payment == Step::Pending {
                    commands.push(Command::ChargePayment);
                }
            }
            Self::Compensating { stock, payment, .. } => {
                if *stock == Undo::Pending {
                    commands.push(Command::ReleaseStock);
                }
                if *payment == Undo::Pending {
                    commands.push(Command::RefundPayment);
                }
            }
            Self::Completed | Self::Failed { .. } => {}
        }
        commands
    }
}

/// A new saga: both forward steps start at once.
pub fn start() -> Transition {
    Transition {
        state: SagaState::Executing { stock: Step::Pending, payment: Step::Pending },
        commands: vec![Command::ReserveStock, Command::ChargePayment],
    }
}

/// Applies `event` to `state`.
pub fn transition(state: &SagaState, event: &Event) -> Transition {
    match (state, event) {
        (_, Event::RetryDue) => Transition { state: state.clone(), commands: state.pending_commands() },
        (SagaState::Completed, Event::StartRepeated) => {
            Transition { state: state.clone(), commands: vec![Command::ReportPaid] }
        }
        (SagaState::Failed { reason }, Event::StartRepeated) => {
            Transition { state: state.clone(), commands: vec![Command::ReportFailed { reason: reason.clone() }] }
        }
        (_, Event::StartRepeated) => unchanged(state),
        (SagaState::Executing { stock, payment }, Event::Abort) => compensate(stock, payment, FailureReason::Aborted),
        (SagaState::Executing { stock, payment }, Event::Stock { reply }) => {
            let stock = match (stock, reply) {
                (Step::Pending, StockReply::Reserved) => Step::Done,
                (Step::Pending, StockReply::Rejected { reason }) => Step::Rejected { reason: reason.clone() },
                // A duplicate, or a compensation answer that cannot belong here: nothing changes.
                _ => return unchanged(state),
            };
            after_forward_reply(stock, payment.clone())
        }
        (SagaState::Executing { stock, payment }, Event::Payment { reply }) => {
            let payment = match (payment, reply) {
                (Step::Pending, PaymentReply::Charged) => Step::Done,
                (Step::Pending, PaymentReply::Rejected { reason }) => Step::Rejected { reason: reason.clone() },
                _ => return unchanged(state),
            };
            after_forward_reply(stock.clone(), payment)
        }
        (SagaState::Compensating { stock, payment, reason }, Event::Stock { reply: StockReply::Released }) => {
            after_undo(if *stock == Undo::Pending { Undo::Done } else { *stock }, *payment, reason)
        }
        (SagaState::Compensating { stock, payment, reason }, Event::Payment { reply: PaymentReply::Refunded }) => {
            after_undo(*stock, if *payment == Undo::Pending { Undo::Done } else { *payment }, reason)
        }
        // A refusal means the participant recorded that it did nothing and never will: that side needs no
        // undoing after all.
        (
            SagaState::Compensating { stock: Undo::Pending, payment, reason },
            Event::Stock { reply: StockReply::Rejected { .. } },
        ) => after_undo(Undo::Done, *payment, reason),
        (
            SagaState::Compensating { stock, payment: Undo::Pending, reason },
            Event::Payment { reply: PaymentReply::Rejected { .. } },
        ) => after_undo(*stock, Undo::Done, reason),
        // Late answers to forward commands while compensating, a second abort, anything after the end: the
        // compensation already covers them, or there is nothing left to do.
        (SagaState::Compensating { .. }, _) | (SagaState::Completed, _) | (SagaState::Failed { .. }, _) => {
            unchanged(state)
        }
    }
}

fn unchanged(state: &SagaState) -> Transition {
    Transition { state: state.clone(), commands: Vec::new() }
}

fn after_forward_reply(stock: Step, payment: Step) -> Transition {
    match (&stock, &payment) {
        (Step::Done, Step::Done) => Transition { state: SagaState::Completed, commands: vec![Command::ReportPaid] },
        (Step::Rejected { reason }, _) | (_, Step::Rejected { reason }) => {
            let reason = reason.clone();
            compensate(&stock, &payment, reason)
        }
        _ => Transition { state: SagaState::Executing { stock, payment }, commands: Vec::new() },
    }
}

/// Undo every step that was not refused; fail at once when there is nothing to undo.
fn compensate(stock: &Step, payment: &Step, reason: FailureReason) -> Transition {
    let undo = |step: &Step| if matches!(step, Step::Rejected { .. }) { Undo::NotNeeded } else { Undo::Pending };
    let state = SagaState::Compensating { stock: undo(stock), payment: undo(payment), reason: reason.clone() };
    let commands = state.pending_commands();
    if commands.is_empty() {
        return Transition {
            state: SagaState::Failed { reason: reason.clone() },
            commands: vec![Command::ReportFailed { reason }],
        };
    }
    Transition { state, commands }
}

fn after_undo(stock: Undo, payment: Undo, reason: &FailureReason) -> Transition {
    if stock != Undo::Pending && payment != Undo::Pending {
        return Transition {
            state: SagaState::Failed { reason: reason.clone() },
            commands: vec![Command::ReportFailed { reason: reason.clone() }],
        };
    }
    Transition { state: SagaState::Compensating { stock, payment, reason: reason.clone() }, commands: Vec::new() }
}

#[cfg(test)]
mod tests;
