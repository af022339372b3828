//! The state machine on its own, then against a model of the two participants over a network that reorders,
//! duplicates and drops messages.

use proptest::prelude::*;
use shared_contracts::{FailureReason, PaymentReply, StockReply};

use super::*;

fn stock(reply: StockReply) -> Event {
    Event::Stock { reply }
}

fn payment(reply: PaymentReply) -> Event {
    Event::Payment { reply }
}

fn out_of_stock() -> FailureReason {
    FailureReason::OutOfStock { item_id: "1".into() }
}

fn no_credit() -> FailureReason {
    FailureReason::InsufficientCredit { user_id: "2".into() }
}

fn run(events: &[Event]) -> (SagaState, Vec<Command>) {
    let mut current = start();
    let mut commands = std::mem::take(&mut current.commands);
    for event in events {
        current = transition(&current.state, event);
        commands.append(&mut current.commands);
    }
    (current.state, commands)
}

#[test]
fn a_new_saga_reserves_and_charges_at_once() {
    let started = start();
    assert_eq!(started.commands, vec![Command::ReserveStock, Command::ChargePayment]);
    assert_eq!(started.state.status(), Status::Executing);
}

#[test]
fn both_steps_done_completes_and_reports_paid() {
    let (state, commands) = run(&[payment(PaymentReply::Charged), stock(StockReply::Reserved)]);
    assert_eq!(state, SagaState::Completed);
    assert_eq!(commands.last(), Some(&Command::ReportPaid));
}

#[test]
fn stock_refused_refunds_the_payment_then_fails() {
    let (state, commands) =
        run(&[payment(PaymentReply::Charged), stock(StockReply::Rejected { reason: out_of_stock() })]);
    assert_eq!(
        state,
        SagaState::Compensating { stock: Undo::NotNeeded, payment: Undo::Pending, reason: out_of_stock() }
    );
    assert_eq!(commands[2..], [Command::RefundPayment]);

    let finished = transition(&state, &payment(PaymentReply::Refunded));
    assert_eq!(finished.state, SagaState::Failed { reason: out_of_stock() });
    assert_eq!(finished.commands, vec![Command::ReportFailed { reason: out_of_stock() }]);
}

#[test]
fn a_refusal_while_the_other_step_is_pending_compensates_that_step_too() {
    let (state, commands) = run(&[payment(PaymentReply::Rejected { reason: no_credit() })]);
    assert_eq!(state, SagaState::Compensating { stock: Undo::Pending, payment: Undo::NotNeeded, reason: no_credit() });
    assert_eq!(commands[2..], [Command::ReleaseStock]);
    // The reservation answered late: still compensating, the release covers it.
    let late = transition(&state, &stock(StockReply::Reserved));
    assert_eq!(late.state, state);
    assert!(late.commands.is_empty());
}

#[test]
fn both_refused_fails_without_waiting_for_the_compensation() {
    let (state, commands) = run(&[
        stock(StockReply::Rejected { reason: out_of_stock() }),
        payment(PaymentReply::Rejected { reason: no_credit() }),
    ]);
    // The refund was already on its way when the refusal came; the refusal alone settles the payment side.
    assert_eq!(state, SagaState::Failed { reason: out_of_stock() });
    assert_eq!(commands[2..], [Command::RefundPayment, Command::ReportFailed { reason: out_of_stock() }]);
}

#[test]
fn duplicates_change_nothing() {
    let (once, _) = run(&[stock(StockReply::Reserved)]);
    let twice = transition(&once, &stock(StockReply::Reserved));
    assert_eq!(twice.state, once);
    assert!(twice.commands.is_empty());
}

#[test]
fn retry_resends_exactly_the_unanswered_commands() {
    let (state, _) = run(&[stock(StockReply::Reserved)]);
    assert_eq!(transition(&state, &Event::RetryDue).commands, vec![Command::ChargePayment]);
    let (compensating, _) = run(&[Event::Abort]);
    assert_eq!(
        transition(&compensating, &Event::RetryDue).commands,
        vec![Command::ReleaseStock, Command::RefundPayment]
    );
    assert!(transition(&SagaState::Completed, &Event::RetryDue).commands.is_empty());
}

#[test]
fn abort_compensates_everything_not_refused_and_terminal_states_ignore_it() {
    let (state, commands) = run(&[stock(StockReply::Reserved), Event::Abort]);
    assert_eq!(
        state,
        SagaState::Compensating { stock: Undo::Pending, payment: Undo::Pending, reason: FailureReason::Aborted }
    );
    assert_eq!(commands[2..], [Command::ReleaseStock, Command::RefundPayment]);
    assert_eq!(transition(&SagaState::Completed, &Event::Abort).state, SagaState::Completed);
}

#[test]
fn a_repeated_start_is_answered_with_the_outcome_once_there_is_one() {
    let running = run(&[stock(StockReply::Reserved)]).0;
    assert_eq!(transition(&running, &Event::StartRepeated), Transition { state: running.clone(), commands: vec![] });

    let completed = SagaState::Completed;
    let again = transition(&completed, &Event::StartRepeated);
    assert_eq!(again, Transition { state: completed, commands: vec![Command::ReportPaid] });

    let failed = run(&[
        stock(StockReply::Rejected { reason: out_of_stock() }),
        payment(PaymentReply::Rejected { reason: no_credit() }),
    ])
    .0;
    assert_eq!(failed, SagaState::Failed { reason: out_of_stock() });
    let again = transition(&failed, &Event::StartRepeated);
    assert_eq!(again.state, failed);
    assert_eq!(again.commands, vec![Command::ReportFailed { reason: out_of_stock() }]);
}

#[test]
fn status_names_round_trip() {
    for status in Status::ALL {
        assert_eq!(status.as_str().parse::<Status>(), Ok(status));
        // The admin API serialises statuses with serde, the database stores `as_str`: the names must agree.
        assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
    }
    assert!("paid".parse::<Status>().is_err());
}

#[test]
fn a_cancel_of_a_completed_saga_gives_everything_back_then_reports_cancelled() {
    let cancelled = transition(&SagaState::Completed, &Event::Cancel);
    assert_eq!(cancelled.state, SagaState::Cancelling { stock: Undo::Pending, payment: Undo::Pending });
    assert_eq!(cancelled.commands, vec![Command::ReleaseStock, Command::RefundPayment]);
    let half = transition(&cancelled.state, &payment(PaymentReply::Refunded));
    assert_eq!(half.state, SagaState::Cancelling { stock: Undo::Pending, payment: Undo::Done });
    assert!(half.commands.is_empty());
    let done = transition(&half.state, &stock(StockReply::Released));
    assert_eq!(done.state, SagaState::Cancelled);
    assert_eq!(done.commands, vec![Command::ReportCancelled]);
    // order-svc asking again hears the outcome again; nothing else moves a cancelled saga.
    assert_eq!(transition(&done.state, &Event::Cancel).commands, vec![Command::ReportCancelled]);
    for event in [Event::RetryDue, Event::Abort, Event::DeadlinePassed, stock(StockReply::Reserved)] {
        assert_eq!(transition(&done.state, &event), Transition { state: SagaState::Cancelled, commands: vec![] });
    }
}

#[test]
fn a_cancel_while_cancelling_or_executing_changes_nothing() {
    let cancelling = SagaState::Cancelling { stock: Undo::Pending, payment: Undo::Done };
    assert_eq!(transition(&cancelling, &Event::Cancel).state, cancelling);
    assert!(transition(&cancelling, &Event::Cancel).commands.is_empty());
    let executing = start().state;
    assert_eq!(transition(&executing, &Event::Cancel).state, executing);
}

#[test]
fn a_compensation_that_cannot_apply_needs_attention_and_an_operator_retry_resumes_it() {
    let (state, _) = run(&[payment(PaymentReply::Charged), stock(StockReply::Rejected { reason: out_of_stock() })]);
    let stuck = transition(&state, &payment(PaymentReply::CannotApply { problem: "credit at its maximum".into() }));
    let SagaState::NeedsAttention { stock: Undo::NotNeeded, payment: Undo::Pending, goal, problem } = &stuck.state
    else {
        panic!("not needing attention: {:?}", stuck.state)
    };
    assert_eq!(*goal, Goal::Fail { reason: out_of_stock() });
    assert!(problem.contains("credit at its maximum"));
    assert!(matches!(stuck.commands[..], [Command::ReportNeedsAttention { .. }]));
    assert!(stuck.state.status().is_terminal() && !stuck.state.awaits_replies());
    // The operator's retry sends the refund again; its confirmation then fails the saga properly.
    let resumed = transition(&stuck.state, &Event::RetryDue);
    assert_eq!(resumed.state, state);
    assert_eq!(resumed.commands, vec![Command::RefundPayment]);
    let failed = transition(&resumed.state, &payment(PaymentReply::Refunded));
    assert_eq!(failed.state, SagaState::Failed { reason: out_of_stock() });
}

#[test]
fn a_late_confirmation_settles_a_saga_that_needs_attention() {
    let cancelling = SagaState::Cancelling { stock: Undo::Done, payment: Undo::Pending };
    let stuck = transition(&cancelling, &Event::DeadlinePassed);
    assert_eq!(stuck.state.status(), Status::NeedsAttention);
    let late = transition(&stuck.state, &payment(PaymentReply::Refunded));
    assert_eq!(late.state, SagaState::Cancelled);
    assert_eq!(late.commands, vec![Command::ReportCancelled]);
}

#[test]
fn the_deadline_compensates_an_executing_saga_and_abort_ends_a_compensating_one() {
    let (state, _) = run(&[stock(StockReply::Reserved)]);
    let timed_out = transition(&state, &Event::DeadlinePassed);
    assert_eq!(
        timed_out.state,
        SagaState::Compensating { stock: Undo::Pending, payment: Undo::Pending, reason: FailureReason::TimedOut }
    );
    assert_eq!(timed_out.commands, vec![Command::ReleaseStock, Command::RefundPayment]);
    assert!(timed_out.state.check_abort().is_ok());
    let aborted = transition(&timed_out.state, &Event::Abort);
    assert_eq!(aborted.state.status(), Status::NeedsAttention);
    assert!(aborted.state.check_abort().is_err());
    assert!(aborted.state.check_retry().is_ok());
    assert!(SagaState::Completed.check_retry().is_err());
}

/// A participant as the real ones behave: an inbox record per saga, compensation before action leaves a
/// tombstone. `able` says whether the forward action can succeed (enough stock or credit).
#[derive(Debug, Default)]
struct Participant {
    able: bool,
    record: Option<Record>,
    /// Units currently taken (stock reserved or credit charged) for the saga.
    taken: u32,
    /// How many times the forward action took something, over all time.
    times_taken: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Record {
    Done,
    Refused,
    Undone,
    Tombstone,
}

impl Participant {
    /// Returns true when the action is (or was) done, false when refused.
    fn act(&mut self) -> bool {
        match self.record {
            Some(Record::Done) => true,
            Some(_) => false,
            None if self.able => {
                self.record = Some(Record::Done);
                self.taken += 1;
                self.times_taken += 1;
                true
            }
            None => {
                self.record = Some(Record::Refused);
                false
            }
        }
    }

    fn undo(&mut self) {
        match self.record {
            Some(Record::Done) => {
                self.record = Some(Record::Undone);
                self.taken -= 1;
            }
            None => self.record = Some(Record::Tombstone),
            Some(_) => {}
        }
    }
}

#[derive(Debug, Clone)]
enum Message {
    Stock(Command),
    Payment(Command),
    Coordinator(Event),
}

struct World {
    state: SagaState,
    network: Vec<Message>,
    stock: Participant,
    payment: Participant,
    outcomes: Vec<Command>,
}

impl World {
    fn new(stock_able: bool, payment_able: bool) -> Self {
        let started = start();
        let mut world = Self {
            state: started.state,
            network: Vec::new(),
            stock: Participant { able: stock_able, ..Default::default() },
            payment: Participant { able: payment_able, ..Default::default() },
            outcomes: Vec::new(),
        };
        world.send(started.commands);
        world
    }

    fn send(&mut self, commands: Vec<Command>) {
        for command in commands {
            match command {
                Command::ReserveStock | Command::ReleaseStock => self.network.push(Message::Stock(command)),
                Command::ChargePayment | Command::RefundPayment => self.network.push(Message::Payment(command)),
                Command::ReportPaid
                | Command::ReportFailed { .. }
                | Command::ReportCancelled
                | Command::ReportNeedsAttention { .. } => self.outcomes.push(command),
            }
        }
    }

    fn apply(&mut self, event: &Event) {
        let next = transition(&self.state, event);
        self.state = next.state;
        self.send(next.commands);
    }

    fn deliver(&mut self, message: Message) {
        let reason = FailureReason::OutOfStock { item_id: "1".into() };
        match message {
            Message::Stock(Command::ReserveStock) => {
                let reply = if self.stock.act() { StockReply::Reserved } else { StockReply::Rejected { reason } };
                self.network.push(Message::Coordinator(Event::Stock { reply }));
            }
            Message::Stock(_) => {
                self.stock.undo();
                self.network.push(Message::Coordinator(Event::Stock { reply: StockReply::Released }));
            }
            Message::Payment(Command::ChargePayment) => {
                let reply = if self.payment.act() {
                    PaymentReply::Charged
                } else {
                    PaymentReply::Rejected { reason: FailureReason::InsufficientCredit { user_id: "u".into() } }
                };
                self.network.push(Message::Coordinator(Event::Payment { reply }));
            }
            Message::Payment(_) => {
                self.payment.undo();
                self.network.push(Message::Coordinator(Event::Payment { reply: PaymentReply::Refunded }));
            }
            Message::Coordinator(event) => self.apply(&event),
        }
    }
}

/// One disturbance: which in-flight message to take, and whether to deliver it, deliver it and keep a duplicate
/// in flight, or lose it; or a retry timer firing; or the deadline passing; or an operator abort; or order-svc
/// asking to cancel the order.
#[derive(Debug, Clone)]
enum Disturbance {
    Deliver { pick: usize, duplicate: bool, lose: bool },
    Retry,
    Deadline,
    Abort,
    Cancel,
}

fn steps() -> impl Strategy<Value = Vec<Disturbance>> {
    let step = prop_oneof![
        8 => (any::<usize>(), any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(pick, duplicate, lose)| Disturbance::Deliver { pick, duplicate, lose }),
        2 => Just(Disturbance::Retry),
        1 => Just(Disturbance::Deadline),
        1 => Just(Disturbance::Abort),
        1 => Just(Disturbance::Cancel),
    ];
    prop::collection::vec(step, 0..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the network, the deadlines, operators and cancels do, once it calms down (messages flow, timers
    /// fire, an operator retries a saga that needs attention) the saga ends, and either both steps took effect
    /// exactly once and order-svc hears "paid", or nothing remains taken and it hears "failed", or both took
    /// effect once and were undone once and it heard "paid", then "cancelled".
    #[test]
    fn every_saga_ends_with_stock_and_credit_conserved(
        stock_able in any::<bool>(),
        payment_able in any::<bool>(),
        disturbances in steps(),
    ) {
        let mut world = World::new(stock_able, payment_able);
        for disturbance in disturbances {
            match disturbance {
                Disturbance::Deliver { pick, duplicate, lose } if !world.network.is_empty() => {
                    let index = pick % world.network.len();
                    let message = if duplicate { world.network[index].clone() } else { world.network.remove(index) };
                    if !lose {
                        world.deliver(message);
                    }
                }
                Disturbance::Deliver { .. } => {}
                Disturbance::Retry => world.apply(&Event::RetryDue),
                Disturbance::Deadline => world.apply(&Event::DeadlinePassed),
                Disturbance::Abort if !world.state.status().is_terminal() => world.apply(&Event::Abort),
                Disturbance::Abort => {}
                // order-svc asks to cancel only an order it recorded as paid.
                Disturbance::Cancel if world.outcomes.contains(&Command::ReportPaid) => {
                    world.apply(&Event::Cancel)
                }
                Disturbance::Cancel => {}
            }
        }
        // Calm: deliver everything in order; when nothing is in flight, the retry timer fires (for a saga that
        // needs attention, an operator's retry).
        let mut rounds = 0;
        let settled = |state: &SagaState| {
            matches!(state, SagaState::Completed | SagaState::Failed { .. } | SagaState::Cancelled)
        };
        while !settled(&world.state) {
            rounds += 1;
            prop_assert!(rounds < 1000, "saga never ended: {:?}", world.state);
            if world.network.is_empty() {
                world.apply(&Event::RetryDue);
            } else {
                let message = world.network.remove(0);
                world.deliver(message);
            }
        }
        // Stale copies still in flight arrive after the end: they must change nothing.
        while let Some(message) = world.network.pop() {
            world.deliver(message);
        }
        prop_assert!(settled(&world.state), "a stale message moved the saga to {:?}", world.state);
        prop_assert!(world.stock.times_taken <= 1 && world.payment.times_taken <= 1);
        let reported: Vec<&Command> =
            world.outcomes.iter().filter(|c| !matches!(c, Command::ReportNeedsAttention { .. })).collect();
        match &world.state {
            SagaState::Completed => {
                prop_assert_eq!((world.stock.taken, world.payment.taken), (1, 1));
                prop_assert!(reported.iter().all(|c| **c == Command::ReportPaid), "{:?}", reported);
            }
            SagaState::Failed { reason } => {
                prop_assert_eq!((world.stock.taken, world.payment.taken), (0, 0));
                let failed = Command::ReportFailed { reason: reason.clone() };
                prop_assert!(!reported.is_empty() && reported.iter().all(|c| **c == failed), "{:?}", reported);
            }
            SagaState::Cancelled => {
                prop_assert_eq!((world.stock.taken, world.payment.taken), (0, 0));
                prop_assert_eq!((world.stock.times_taken, world.payment.times_taken), (1, 1));
                let first_cancel = reported.iter().position(|c| **c == Command::ReportCancelled);
                prop_assert!(first_cancel.is_some_and(|i| i > 0), "{:?}", reported);
                let (paid, cancelled) = reported.split_at(first_cancel.unwrap_or(0));
                prop_assert!(paid.iter().all(|c| **c == Command::ReportPaid), "{:?}", reported);
                prop_assert!(cancelled.iter().all(|c| **c == Command::ReportCancelled), "{:?}", reported);
            }
            other => prop_assert!(false, "not terminal: {:?}", other),
        }
        if stock_able && payment_able && world.outcomes == vec![Command::ReportPaid] {
            prop_assert_eq!(world.state.status(), Status::Completed);
        }
    }
}

#[test]
fn the_status_changes_are_those_of_the_diagram() {
    use Status::*;
    let expected = [
        (Executing, Compensating),
        (Executing, Completed),
        (Executing, Failed),
        (Compensating, Failed),
        (Compensating, NeedsAttention),
        (Completed, Cancelling),
        (Cancelling, Cancelled),
        (Cancelling, NeedsAttention),
        (NeedsAttention, Compensating),
        (NeedsAttention, Failed),
        (NeedsAttention, Cancelling),
        (NeedsAttention, Cancelled),
    ];
    assert_eq!(status_changes(), expected.into_iter().collect());
}

#[test]
fn the_failure_reason_is_kept_while_failing_and_after() {
    let reason = FailureReason::TimedOut;
    let compensating = SagaState::Compensating { stock: Undo::Pending, payment: Undo::Done, reason: reason.clone() };
    let stuck =
        |goal| SagaState::NeedsAttention { stock: Undo::Pending, payment: Undo::Done, goal, problem: "p".into() };
    assert_eq!(compensating.failure_reason(), Some(&reason));
    assert_eq!(SagaState::Failed { reason: reason.clone() }.failure_reason(), Some(&reason));
    assert_eq!(stuck(Goal::Fail { reason: reason.clone() }).failure_reason(), Some(&reason));
    assert_eq!(stuck(Goal::Cancel).failure_reason(), None);
    assert_eq!(stuck(Goal::Cancel).problem(), Some("p"));
    assert_eq!(SagaState::Cancelled.failure_reason(), None);
    assert_eq!(start().state.failure_reason(), None);
}
