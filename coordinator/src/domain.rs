//! The checkout saga as a pure state machine: `(state, event) -> (state, commands)`, no I/O.
//!
//! A checkout reserves stock and charges payment in parallel. When both succeed the saga completes; when either
//! is refused (or the saga misses its deadline, or an operator aborts it) the saga compensates every step that
//! was not itself refused (a step still pending may have run or may run later, so it is compensated too:
//! participants treat a compensation that arrives first as a tombstone that blocks the action for good) and fails
//! once every compensation is confirmed. A completed saga can be cancelled: it gives the stock back and refunds
//! the payment the same way, then ends cancelled. A compensation that a participant can never apply, or that
//! goes unanswered past its deadline, ends the saga in `NeedsAttention`, which an operator can retry; a late
//! confirmation still settles it. Late or duplicated replies change nothing.
//!
//! ```text
//!             Reserved + Charged                 Cancel
//! Executing ───────────────────────▶ Completed ──────────▶ Cancelling ── Released + Refunded ──▶ Cancelled
//!     │ Rejected (either) / Abort / deadline                    │
//!     ▼                                                         │ CannotApply / Abort / deadline
//! Compensating ── Released + Refunded (those needed) ──▶ Failed │
//!     │ CannotApply / Abort / deadline                          ▼
//!     └──────────────────────────────────────────────────▶ NeedsAttention ── operator retry ──▶ back
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

/// What a compensation is for: the end it reaches once every undo is confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "goal", rename_all = "snake_case")]
pub enum Goal {
    /// A checkout that could not complete: it ends [`SagaState::Failed`] with this reason.
    Fail {
        /// Why the checkout fails.
        reason: FailureReason,
    },
    /// A paid checkout being undone: it ends [`SagaState::Cancelled`].
    Cancel,
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
    /// Something was refused, the deadline passed or the saga was aborted; undoing what may have been done.
    Compensating {
        /// Undoing the stock reservation.
        stock: Undo,
        /// Undoing the payment.
        payment: Undo,
        /// Why the checkout fails.
        reason: FailureReason,
    },
    /// Stock taken and payment charged, exactly once. Terminal, unless the order is cancelled.
    Completed,
    /// Nothing taken, nothing charged. Terminal.
    Failed {
        /// Why.
        reason: FailureReason,
    },
    /// The paid checkout is being undone at the order's request: stock given back, payment refunded.
    Cancelling {
        /// Giving the stock back.
        stock: Undo,
        /// Refunding the payment.
        payment: Undo,
    },
    /// The paid checkout was undone: stock back, payment refunded, exactly once. Terminal.
    Cancelled,
    /// A compensation could never be applied, or went unanswered past its deadline, or an operator aborted it:
    /// what the saga took may not all be back. Terminal for the timer; an operator's retry resumes the
    /// compensation, and a late confirmation still settles it.
    NeedsAttention {
        /// Where the stock's undo stands.
        stock: Undo,
        /// Where the payment's undo stands.
        payment: Undo,
        /// What the compensation was for.
        goal: Goal,
        /// What went wrong, for operators.
        problem: String,
    },
}

/// The coarse status of a saga, stored beside the state for filtering. Its name (see [`Status::as_str`]) is the
/// same in the database, the admin API and the pages; it is parsed once where it comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// See [`SagaState::Cancelling`].
    Cancelling,
    /// See [`SagaState::Cancelled`].
    Cancelled,
    /// See [`SagaState::NeedsAttention`].
    NeedsAttention,
}

impl Status {
    /// The name stored in the database and used in the admin API: the one serde gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Executing => "executing",
            Self::Compensating => "compensating",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::NeedsAttention => "needs_attention",
        }
    }

    /// Every status: the one that needs a human first, then in lifecycle order.
    pub const ALL: [Status; 7] = [
        Self::NeedsAttention,
        Self::Executing,
        Self::Compensating,
        Self::Completed,
        Self::Failed,
        Self::Cancelling,
        Self::Cancelled,
    ];

    /// Whether the saga is over: nothing more happens to it unless someone (order-svc cancelling, an operator
    /// retrying) asks. The one place that says which statuses are: every list of them derives from here.
    pub fn is_terminal(self) -> bool {
        match self {
            Self::Executing | Self::Compensating | Self::Cancelling => false,
            Self::Completed | Self::Failed | Self::Cancelled | Self::NeedsAttention => true,
        }
    }

    /// The statuses of sagas still under way, which the coordinator drives on its own.
    pub fn unfinished() -> impl Iterator<Item = Status> {
        Self::ALL.into_iter().filter(|status| !status.is_terminal())
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state {name:?}; expected one of {}", Status::ALL.map(Status::as_str).join(", "))]
pub struct UnknownStatus {
    /// The name given.
    pub name: String,
}

impl std::str::FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| UnknownStatus { name: s.to_owned() })
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
    /// Commands have gone unanswered for too long: send the pending ones again. From an operator, it also
    /// resumes the compensation of a saga that needs attention.
    RetryDue,
    /// The saga made no progress within its deadline: give up on what is still unanswered.
    DeadlinePassed,
    /// An operator asked to give up: compensate and fail, or stop waiting for a compensation.
    Abort,
    /// order-svc sent the saga's `StartCheckout` again: it has not heard the outcome. A finished saga reports it
    /// once more; a running one will report it when it ends.
    StartRepeated,
    /// order-svc asks to undo the paid checkout (sent again until it hears the outcome).
    Cancel,
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
    /// Tell order-svc the paid checkout was undone.
    ReportCancelled,
    /// Tell order-svc the saga needs an operator, and why.
    ReportNeedsAttention {
        /// What went wrong.
        problem: String,
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

/// Why an operator's action is refused for a saga in its current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is already {}, so there is nothing to {action}", status.as_str())]
pub struct NotAllowed {
    /// The saga's status.
    pub status: Status,
    /// The refused action's name.
    pub action: &'static str,
}

impl SagaState {
    /// The coarse status of this state.
    pub fn status(&self) -> Status {
        match self {
            Self::Executing { .. } => Status::Executing,
            Self::Compensating { .. } => Status::Compensating,
            Self::Completed => Status::Completed,
            Self::Failed { .. } => Status::Failed,
            Self::Cancelling { .. } => Status::Cancelling,
            Self::Cancelled => Status::Cancelled,
            Self::NeedsAttention { .. } => Status::NeedsAttention,
        }
    }

    /// Whether any command of this state still waits for an answer (so a retry timer should run).
    pub fn awaits_replies(&self) -> bool {
        !self.pending_commands().is_empty()
    }

    /// The commands whose answers this state is waiting for: what a retry sends again. A saga that needs
    /// attention waits for an operator, not for replies.
    pub fn pending_commands(&self) -> Vec<Command> {
        match self {
            Self::Executing { stock, payment } => {
                let mut commands = Vec::new();
                if *stock == Step::Pending {
                    commands.push(Command::ReserveStock);
                }
                if *payment == Step::Pending {
                    commands.push(Command::ChargePayment);
                }
                commands
            }
            Self::Compensating { stock, payment, .. } | Self::Cancelling { stock, payment } => {
                undo_commands(*stock, *payment)
            }
            Self::Completed | Self::Failed { .. } | Self::Cancelled | Self::NeedsAttention { .. } => Vec::new(),
        }
    }

    /// Why the checkout fails or failed: while it compensates, once it has failed, and when the compensation of
    /// a failing checkout needs attention. `None` for a saga that has not failed (a cancellation is no failure).
    pub fn failure_reason(&self) -> Option<&FailureReason> {
        match self {
            Self::Compensating { reason, .. }
            | Self::Failed { reason }
            | Self::NeedsAttention { goal: Goal::Fail { reason }, .. } => Some(reason),
            Self::Executing { .. }
            | Self::Completed
            | Self::Cancelling { .. }
            | Self::Cancelled
            | Self::NeedsAttention { goal: Goal::Cancel, .. } => None,
        }
    }

    /// What went wrong, for a saga that needs attention.
    pub fn problem(&self) -> Option<&str> {
        match self {
            Self::NeedsAttention { problem, .. } => Some(problem),
            Self::Executing { .. }
            | Self::Compensating { .. }
            | Self::Completed
            | Self::Failed { .. }
            | Self::Cancelling { .. }
            | Self::Cancelled => None,
        }
    }

    /// Whether an operator may retry the saga now: while it runs, and to resume a compensation that needs
    /// attention.
    pub fn check_retry(&self) -> Result<(), NotAllowed> {
        let status = self.status();
        // A saga that needs attention is terminal for the timer, but waits for exactly this.
        if status.is_terminal() && status != Status::NeedsAttention {
            return Err(NotAllowed { status, action: "retry" });
        }
        Ok(())
    }

    /// Whether an operator may abort the saga now: in every state that is not terminal.
    pub fn check_abort(&self) -> Result<(), NotAllowed> {
        let status = self.status();
        if status.is_terminal() {
            return Err(NotAllowed { status, action: "abort" });
        }
        Ok(())
    }
}

/// Every change of status [`transition`] can make, as `(from, to)`: found by applying every event to a state of
/// every shape, so that the state diagram on the operator pages is drawn from the machine itself.
pub fn status_changes() -> std::collections::BTreeSet<(Status, Status)> {
    let reason = || FailureReason::Cancelled;
    let steps = [Step::Pending, Step::Done, Step::Rejected { reason: reason() }];
    let undos = [Undo::NotNeeded, Undo::Pending, Undo::Done];
    let mut states = vec![SagaState::Completed, SagaState::Failed { reason: reason() }, SagaState::Cancelled];
    for stock in &steps {
        for payment in &steps {
            states.push(SagaState::Executing { stock: stock.clone(), payment: payment.clone() });
        }
    }
    for stock in undos {
        for payment in undos {
            states.push(SagaState::Compensating { stock, payment, reason: reason() });
            states.push(SagaState::Cancelling { stock, payment });
            for goal in [Goal::Fail { reason: reason() }, Goal::Cancel] {
                states.push(SagaState::NeedsAttention { stock, payment, goal, problem: String::new() });
            }
        }
    }
    let problem = || "x".to_owned();
    let events = [
        Event::Stock { reply: StockReply::Reserved },
        Event::Stock { reply: StockReply::Rejected { reason: reason() } },
        Event::Stock { reply: StockReply::Released },
        Event::Stock { reply: StockReply::CannotApply { problem: problem() } },
        Event::Payment { reply: PaymentReply::Charged },
        Event::Payment { reply: PaymentReply::Rejected { reason: reason() } },
        Event::Payment { reply: PaymentReply::Refunded },
        Event::Payment { reply: PaymentReply::CannotApply { problem: problem() } },
        Event::RetryDue,
        Event::DeadlinePassed,
        Event::Abort,
        Event::StartRepeated,
        Event::Cancel,
    ];
    let mut changes = std::collections::BTreeSet::new();
    for state in &states {
        for event in &events {
            let (from, to) = (state.status(), transition(state, event).state.status());
            if from != to {
                changes.insert((from, to));
            }
        }
    }
    changes
}

fn undo_commands(stock: Undo, payment: Undo) -> Vec<Command> {
    let mut commands = Vec::new();
    if stock == Undo::Pending {
        commands.push(Command::ReleaseStock);
    }
    if payment == Undo::Pending {
        commands.push(Command::RefundPayment);
    }
    commands
}

/// A new saga: both forward steps start at once.
pub fn start() -> Transition {
    Transition {
        state: SagaState::Executing { stock: Step::Pending, payment: Step::Pending },
        commands: vec![Command::ReserveStock, Command::ChargePayment],
    }
}

/// Applies `event` to `state`. Every state matches every event, and every reply a participant can give,
/// by name: a new event or reply does not compile until each state says what it does with it.
pub fn transition(state: &SagaState, event: &Event) -> Transition {
    match state {
        SagaState::Executing { stock, payment } => executing(state, stock, payment, event),
        SagaState::Compensating { stock, payment, reason } => {
            undoing(state, *stock, *payment, Goal::Fail { reason: reason.clone() }, event)
        }
        SagaState::Cancelling { stock, payment } => undoing(state, *stock, *payment, Goal::Cancel, event),
        SagaState::NeedsAttention { stock, payment, goal, problem } => {
            needing_attention(state, *stock, *payment, goal, problem, event)
        }
        SagaState::Completed => completed(state, event),
        SagaState::Failed { reason } => failed(state, reason, event),
        SagaState::Cancelled => cancelled(state, event),
    }
}

fn executing(state: &SagaState, stock: &Step, payment: &Step, event: &Event) -> Transition {
    match event {
        Event::RetryDue => Transition { state: state.clone(), commands: state.pending_commands() },
        Event::Abort => compensate(stock, payment, FailureReason::Aborted),
        Event::DeadlinePassed => compensate(stock, payment, FailureReason::TimedOut),
        // Running: it reports when it ends. A cancel cannot come before the checkout was paid.
        Event::StartRepeated | Event::Cancel => unchanged(state),
        Event::Stock { reply: StockReply::Reserved } => stock_answered(state, stock, payment, Step::Done),
        Event::Stock { reply: StockReply::Rejected { reason } } => {
            stock_answered(state, stock, payment, Step::Rejected { reason: reason.clone() })
        }
        // Answers to a compensation, which cannot belong here: nothing changes.
        Event::Stock { reply: StockReply::Released | StockReply::CannotApply { .. } } => unchanged(state),
        Event::Payment { reply: PaymentReply::Charged } => payment_answered(state, stock, payment, Step::Done),
        Event::Payment { reply: PaymentReply::Rejected { reason } } => {
            payment_answered(state, stock, payment, Step::Rejected { reason: reason.clone() })
        }
        Event::Payment { reply: PaymentReply::Refunded | PaymentReply::CannotApply { .. } } => unchanged(state),
    }
}

/// stock-svc answered the reservation with `answer`; only the first answer counts, a duplicate changes nothing.
fn stock_answered(state: &SagaState, stock: &Step, payment: &Step, answer: Step) -> Transition {
    match stock {
        Step::Pending => after_forward_reply(answer, payment.clone()),
        Step::Done | Step::Rejected { .. } => unchanged(state),
    }
}

/// payment-svc answered the charge with `answer`; only the first answer counts, a duplicate changes nothing.
fn payment_answered(state: &SagaState, stock: &Step, payment: &Step, answer: Step) -> Transition {
    match payment {
        Step::Pending => after_forward_reply(stock.clone(), answer),
        Step::Done | Step::Rejected { .. } => unchanged(state),
    }
}

/// A compensation under way (of a failing checkout, or a cancellation), towards `goal`.
fn undoing(state: &SagaState, stock: Undo, payment: Undo, goal: Goal, event: &Event) -> Transition {
    let stuck = |problem: &str| Transition {
        state: SagaState::NeedsAttention { stock, payment, goal: goal.clone(), problem: problem.to_owned() },
        commands: vec![Command::ReportNeedsAttention { problem: problem.to_owned() }],
    };
    match event {
        Event::RetryDue => Transition { state: state.clone(), commands: state.pending_commands() },
        Event::DeadlinePassed => stuck("the compensation went unanswered past its deadline"),
        Event::Abort => stuck("an operator aborted the saga while it was compensating"),
        Event::Stock { reply: StockReply::Released } => after_undo(settle(stock), payment, &goal),
        // A refusal means the participant recorded that it did nothing and never will: that side needs no
        // undoing after all.
        Event::Stock { reply: StockReply::Rejected { .. } } => match stock {
            Undo::Pending => after_undo(Undo::Done, payment, &goal),
            Undo::NotNeeded | Undo::Done => unchanged(state),
        },
        Event::Stock { reply: StockReply::CannotApply { problem } } => match stock {
            Undo::Pending => stuck(&format!("stock cannot be given back: {problem}")),
            Undo::NotNeeded | Undo::Done => unchanged(state),
        },
        // A late answer to the reservation: the compensation already covers it.
        Event::Stock { reply: StockReply::Reserved } => unchanged(state),
        Event::Payment { reply: PaymentReply::Refunded } => after_undo(stock, settle(payment), &goal),
        Event::Payment { reply: PaymentReply::Rejected { .. } } => match payment {
            Undo::Pending => after_undo(stock, Undo::Done, &goal),
            Undo::NotNeeded | Undo::Done => unchanged(state),
        },
        Event::Payment { reply: PaymentReply::CannotApply { problem } } => match payment {
            Undo::Pending => stuck(&format!("the payment cannot be refunded: {problem}")),
            Undo::NotNeeded | Undo::Done => unchanged(state),
        },
        Event::Payment { reply: PaymentReply::Charged } => unchanged(state),
        // Running: it reports when it ends.
        Event::StartRepeated | Event::Cancel => unchanged(state),
    }
}

/// A saga that needs an operator: an operator's retry resumes the compensation, late confirmations settle it,
/// and order-svc asking again hears the problem again.
fn needing_attention(
    state: &SagaState,
    stock: Undo,
    payment: Undo,
    goal: &Goal,
    problem: &str,
    event: &Event,
) -> Transition {
    let report = || again(state, Command::ReportNeedsAttention { problem: problem.to_owned() });
    match event {
        Event::RetryDue => {
            let resumed = undoing_state(stock, payment, goal.clone());
            let commands = resumed.pending_commands();
            Transition { state: resumed, commands }
        }
        Event::Stock { reply: StockReply::Released } => settle_late(settle(stock), payment, goal, problem),
        Event::Payment { reply: PaymentReply::Refunded } => settle_late(stock, settle(payment), goal, problem),
        // What it is waiting for is an operator; other answers change nothing.
        Event::Stock { reply: StockReply::Reserved | StockReply::Rejected { .. } | StockReply::CannotApply { .. } }
        | Event::Payment {
            reply: PaymentReply::Charged | PaymentReply::Rejected { .. } | PaymentReply::CannotApply { .. },
        }
        | Event::DeadlinePassed
        | Event::Abort => unchanged(state),
        // order-svc hears the problem when it asks about what the compensation is for.
        Event::StartRepeated => match goal {
            Goal::Fail { .. } => report(),
            Goal::Cancel => unchanged(state),
        },
        Event::Cancel => match goal {
            Goal::Cancel => report(),
            Goal::Fail { .. } => unchanged(state),
        },
    }
}

/// Paid: order-svc asking again hears so again, and a cancel gives everything back.
fn completed(state: &SagaState, event: &Event) -> Transition {
    match event {
        Event::StartRepeated => again(state, Command::ReportPaid),
        Event::Cancel => Transition {
            state: SagaState::Cancelling { stock: Undo::Pending, payment: Undo::Pending },
            commands: vec![Command::ReleaseStock, Command::RefundPayment],
        },
        Event::Stock { reply: StockReply::Reserved | StockReply::Released }
        | Event::Stock { reply: StockReply::Rejected { .. } | StockReply::CannotApply { .. } }
        | Event::Payment { reply: PaymentReply::Charged | PaymentReply::Refunded }
        | Event::Payment { reply: PaymentReply::Rejected { .. } | PaymentReply::CannotApply { .. } }
        | Event::RetryDue
        | Event::DeadlinePassed
        | Event::Abort => unchanged(state),
    }
}

/// Failed: order-svc asking again hears why again.
fn failed(state: &SagaState, reason: &FailureReason, event: &Event) -> Transition {
    match event {
        Event::StartRepeated => again(state, Command::ReportFailed { reason: reason.clone() }),
        // Nothing of a failed checkout is held, so undoing it is done already.
        Event::Cancel => again(state, Command::ReportCancelled),
        Event::Stock { reply: StockReply::Reserved | StockReply::Released }
        | Event::Stock { reply: StockReply::Rejected { .. } | StockReply::CannotApply { .. } }
        | Event::Payment { reply: PaymentReply::Charged | PaymentReply::Refunded }
        | Event::Payment { reply: PaymentReply::Rejected { .. } | PaymentReply::CannotApply { .. } }
        | Event::RetryDue
        | Event::DeadlinePassed
        | Event::Abort => unchanged(state),
    }
}

/// Cancelled: order-svc asking to cancel again hears so again; nothing else moves it.
fn cancelled(state: &SagaState, event: &Event) -> Transition {
    match event {
        Event::Cancel => again(state, Command::ReportCancelled),
        Event::Stock { reply: StockReply::Reserved | StockReply::Released }
        | Event::Stock { reply: StockReply::Rejected { .. } | StockReply::CannotApply { .. } }
        | Event::Payment { reply: PaymentReply::Charged | PaymentReply::Refunded }
        | Event::Payment { reply: PaymentReply::Rejected { .. } | PaymentReply::CannotApply { .. } }
        | Event::RetryDue
        | Event::DeadlinePassed
        | Event::Abort
        | Event::StartRepeated => unchanged(state),
    }
}

/// A confirmation that reached a saga needing attention: once nothing is left to undo, it reaches its goal after
/// all.
fn settle_late(stock: Undo, payment: Undo, goal: &Goal, problem: &str) -> Transition {
    if stock == Undo::Pending || payment == Undo::Pending {
        let state = SagaState::NeedsAttention { stock, payment, goal: goal.clone(), problem: problem.to_owned() };
        return Transition { state, commands: Vec::new() };
    }
    finish(goal)
}

fn settle(undo: Undo) -> Undo {
    if undo == Undo::Pending {
        Undo::Done
    } else {
        undo
    }
}

fn undoing_state(stock: Undo, payment: Undo, goal: Goal) -> SagaState {
    match goal {
        Goal::Fail { reason } => SagaState::Compensating { stock, payment, reason },
        Goal::Cancel => SagaState::Cancelling { stock, payment },
    }
}

fn finish(goal: &Goal) -> Transition {
    match goal {
        Goal::Fail { reason } => Transition {
            state: SagaState::Failed { reason: reason.clone() },
            commands: vec![Command::ReportFailed { reason: reason.clone() }],
        },
        Goal::Cancel => Transition { state: SagaState::Cancelled, commands: vec![Command::ReportCancelled] },
    }
}

fn unchanged(state: &SagaState) -> Transition {
    Transition { state: state.clone(), commands: Vec::new() }
}

/// The state stays; `command` is sent again (an outcome order-svc has not heard).
fn again(state: &SagaState, command: Command) -> Transition {
    Transition { state: state.clone(), commands: vec![command] }
}

fn after_forward_reply(stock: Step, payment: Step) -> Transition {
    match (&stock, &payment) {
        (Step::Done, Step::Done) => Transition { state: SagaState::Completed, commands: vec![Command::ReportPaid] },
        // The stock's reason wins when both were refused.
        (Step::Rejected { reason }, Step::Pending | Step::Done | Step::Rejected { .. })
        | (Step::Pending | Step::Done, Step::Rejected { reason }) => {
            let reason = reason.clone();
            compensate(&stock, &payment, reason)
        }
        (Step::Pending, Step::Pending | Step::Done) | (Step::Done, Step::Pending) => {
            Transition { state: SagaState::Executing { stock, payment }, commands: Vec::new() }
        }
    }
}

/// Undo every step that was not refused; fail at once when there is nothing to undo.
fn compensate(stock: &Step, payment: &Step, reason: FailureReason) -> Transition {
    let undo = |step: &Step| if matches!(step, Step::Rejected { .. }) { Undo::NotNeeded } else { Undo::Pending };
    after_undo(undo(stock), undo(payment), &Goal::Fail { reason }).with_sent_undos()
}

fn after_undo(stock: Undo, payment: Undo, goal: &Goal) -> Transition {
    if stock != Undo::Pending && payment != Undo::Pending {
        return finish(goal);
    }
    Transition { state: undoing_state(stock, payment, goal.clone()), commands: Vec::new() }
}

impl Transition {
    /// A compensation that has just begun sends every undo it waits for.
    fn with_sent_undos(mut self) -> Self {
        if self.commands.is_empty() {
            self.commands = self.state.pending_commands();
        }
        self
    }
}

#[cfg(test)]
mod tests;
