//! Model-based test of the whole API: proptest generates sequences of calls to every endpoint of both API
//! versions over a small pool of IDs, with concurrent bursts among them; each sequence runs against a freshly
//! started system and the model in `system_tests::model`. A failing sequence is shrunk by proptest, keeping to
//! sequences that fail the same way (see `Failure::signature`), then by deleting steps and splitting bursts
//! until no step can go; the smallest one found is printed with what it sent and was answered.
//!
//! Settings: `MODEL_CASES` (default 12) sequences of up to `MODEL_STEPS` (default 40) steps; `MODEL_SEED`
//! generates the same sequences again (the system's own timing still varies); `MODEL_SHRINK_SECS` (default 300)
//! bounds the shrinking, a third for proptest and the rest for deleting steps; `MODEL_EXCLUDE` leaves kinds of calls
//! out (see `Options`), to look past a known finding; `MODEL_SETTLE_SECS` is how long sagas may run on after a
//! step; `MODEL_VERBOSE=1` prints every run's calls.

use std::{
    cell::RefCell,
    str::FromStr,
    time::{Duration, Instant},
};

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use system_tests::{
    model::{
        ops::{sequence, Call, ItemRef, Num, OrderRef, Pick, Sequence, Step, UserRef},
        runner::{Failure, Options, Runner},
    },
    Leftovers, System,
};

fn setting<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The runs of one test: how many, the failure the shrinking keeps to, and the removal of what finished runs
/// left on the shared servers (dropping a database takes a PostgreSQL checkpoint, seconds on a busy machine, so
/// a thread of its own does it while the next run goes on).
struct Runs {
    count: u32,
    target: Option<String>,
    cleanup: Option<std::sync::mpsc::Sender<Leftovers>>,
    cleaner: Option<std::thread::JoinHandle<()>>,
}

impl Runs {
    fn new() -> Self {
        let (cleanup, leftovers) = std::sync::mpsc::channel::<Leftovers>();
        let cleaner = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            for leftover in leftovers {
                if let Err(e) = runtime.block_on(leftover.remove()) {
                    println!("model: could not remove a run's databases and vhost: {e:#}");
                }
            }
        });
        Self { count: 0, target: None, cleanup: Some(cleanup), cleaner: Some(cleaner) }
    }

    /// Waits until everything the runs left is removed.
    fn finish_cleanup(&mut self) {
        drop(self.cleanup.take());
        if let Some(cleaner) = self.cleaner.take() {
            let _ = cleaner.join();
        }
    }
}

/// Quiets the services' logs (they go to stderr, which the test harness does not capture) unless `RUST_LOG`
/// says otherwise; done once, before either test starts a system.
fn quiet_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RUST_LOG").is_none() {
            std::env::set_var("RUST_LOG", "error");
        }
    });
}

/// The sequences that found the defects of the code before the cancellation work, and a few more that the fixes
/// must keep working; each runs once against a system of its own.
fn known_sequences() -> Vec<(&'static str, Vec<Step>)> {
    use Call::*;
    use Step::{Burst, Seq};
    let order = |k| OrderRef::Is(Pick::Batch(k));
    let created = |k| OrderRef::Is(Pick::Created(k));
    let owner = |k| UserRef::OwnerOf(Pick::Batch(k));
    let lit = Num::Lit;
    vec![
        ("an order for an unknown user is refused", vec![Seq(OrderCreate { user: UserRef::Is(Pick::Unknown(4)) })]),
        (
            "a paid order is cancelled once, and may be checked out again",
            vec![
                Seq(Checkout { order: order(3) }),
                Seq(OrderCancel { order: order(3) }),
                Seq(OrderCancel { order: order(3) }),
                Seq(Checkout { order: order(3) }),
            ],
        ),
        (
            "cancelling a checkout's payment cancels the order",
            vec![
                Seq(Checkout { order: order(0) }),
                Seq(PaymentCancel { user: owner(0), order: order(0) }),
                Seq(PaymentStatus { user: owner(0), order: order(0), post: false }),
            ],
        ),
        (
            "stock may not grow past what leaves room for a cancel",
            vec![
                Seq(Checkout { order: order(0) }),
                Seq(StockAdd { item: ItemRef::InOrder(Pick::Batch(0), 0), amount: Num::Fill(0) }),
            ],
        ),
        (
            "credit may not be set past what leaves room for a refund",
            vec![Seq(Checkout { order: order(0) }), Seq(PaymentBatchInit { n: lit(1), money: Num::Huge(0) })],
        ),
        (
            "a cancel after stock was filled to the maximum still ends",
            vec![
                Seq(StockAdd { item: ItemRef::Is(Pick::Batch(0)), amount: Num::Fill(0) }),
                Seq(Checkout { order: order(0) }),
                Seq(OrderCancel { order: order(0) }),
            ],
        ),
        (
            "a batch_init of orders during their checkout",
            vec![
                Burst(vec![
                    OrdersBatchInit { n: lit(3), items: lit(3), users: lit(3), price: lit(1) },
                    Checkout { order: order(0) },
                ]);
                3
            ],
        ),
        (
            "a batch_init of stock and of credit during checkouts that fail",
            vec![
                Burst(vec![
                    Checkout { order: created(2) },
                    Checkout { order: created(3) },
                    StockBatchInit { n: lit(4), stock: lit(10), price: lit(2) },
                ]),
                Burst(vec![
                    Checkout { order: created(2) },
                    Checkout { order: created(3) },
                    PaymentBatchInit { n: lit(4), money: lit(20) },
                ]),
            ],
        ),
    ]
}

#[test]
fn known_sequences_agree_with_the_model() {
    quiet_logs();
    let options = Options::from_env();
    let runs = RefCell::new(Runs::new());
    let failed: Vec<String> = known_sequences()
        .into_iter()
        .filter_map(|(name, steps)| {
            runs.borrow_mut().target = None;
            let failure = attempt(&steps, &options, &runs)?;
            Some(format!("{name}:\n{}\n{failure}", Sequence(&steps)))
        })
        .collect();
    runs.borrow_mut().finish_cleanup();
    assert!(failed.is_empty(), "{} known sequences fail:\n\n{}", failed.len(), failed.join("\n\n"));
}

#[test]
fn random_sequences_of_calls_agree_with_the_model() {
    quiet_logs();
    let cases = setting("MODEL_CASES", 12);
    let max_steps = setting("MODEL_STEPS", 40);
    let seed = setting("MODEL_SEED", rand::random::<u64>());
    let shrink = Duration::from_secs(setting("MODEL_SHRINK_SECS", 300));
    println!("model: {cases} cases of up to {max_steps} steps, seed {seed} (MODEL_SEED={seed} generates them again)");
    let config = Config {
        cases,
        max_shrink_iters: u32::MAX,
        max_shrink_time: u32::try_from(shrink.as_millis() / 3).unwrap_or(u32::MAX),
        failure_persistence: None,
        ..Config::default()
    };
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let options = Options::from_env();
    let runs = RefCell::new(Runs::new());
    let started = Instant::now();
    let result = runner.run(&sequence(max_steps), |steps| match attempt(&steps, &options, &runs) {
        Some(failure) => Err(TestCaseError::fail(failure)),
        None => Ok(()),
    });
    let steps = match result {
        Ok(()) => {
            println!("model: {cases} cases passed in {:.1?}", started.elapsed());
            runs.borrow_mut().finish_cleanup();
            return;
        }
        Err(TestError::Abort(reason)) => panic!("model: aborted: {reason}"),
        Err(TestError::Fail(_, steps)) => steps,
    };
    let (steps, message) = minimise(steps, &options, &runs, started + shrink);
    runs.borrow_mut().finish_cleanup();
    panic!(
        "model: a sequence fails (seed {seed}, {} runs, {:.1?}); the smallest found, {} steps:\n{}\n{message}",
        runs.borrow().count,
        started.elapsed(),
        steps.len(),
        Sequence(&steps),
    );
}

/// Runs `steps` once. A failure counts only if it is the one being shrunk (or the first one).
fn attempt(steps: &[Step], options: &Options, runs: &RefCell<Runs>) -> Option<String> {
    let run_started = Instant::now();
    let cleanup = runs.borrow().cleanup.clone();
    let outcome = run_case(steps, options, cleanup);
    let mut runs = runs.borrow_mut();
    runs.count += 1;
    let verdict = match &outcome {
        Ok(()) => "passed".to_owned(),
        Err(failed) => format!("{} [{}]", failed.0.to_string().replace('\n', " "), failed.0.signature()),
    };
    println!("model: run {} ({} steps, {:.1?}): {verdict}", runs.count, steps.len(), run_started.elapsed());
    let (failure, log) = *outcome.err()?;
    let signature = failure.signature();
    if runs.target.get_or_insert_with(|| signature.clone()) != &signature {
        println!("model:   a different failure; the shrinking keeps to [{}]", runs.target.as_deref().unwrap_or(""));
        return None;
    }
    Some(format!("{failure}\n-- what was sent and answered:\n{log}"))
}

/// Deletes steps (first everything after the failing one), and splits bursts, while the failure stays, until
/// none can go or `deadline` passes. A burst split into fewer calls may fail in a more specific way (a single
/// call is checked exactly), which is then kept instead.
fn minimise(mut steps: Vec<Step>, options: &Options, runs: &RefCell<Runs>, deadline: Instant) -> (Vec<Step>, String) {
    let Some(mut message) = (0..3).find_map(|_| attempt(&steps, options, runs)) else {
        return (steps, "(the shrunk sequence no longer failed when run again)".to_owned());
    };
    let failing_step = |message: &str| message.strip_prefix("step #")?.split(' ').next()?.parse::<usize>().ok();
    if let Some(last) = failing_step(&message) {
        steps.truncate(last + 1);
    }
    let mut changed = true;
    while changed && Instant::now() < deadline {
        changed = false;
        for index in (0..steps.len()).rev() {
            if index >= steps.len() {
                continue;
            }
            let mut candidates = vec![(false, [&steps[..index], &steps[index + 1..]].concat())];
            if let Step::Burst(ops) = &steps[index] {
                for k in 0..ops.len() {
                    let mut split = steps.clone();
                    let rest: Vec<_> =
                        ops.iter().enumerate().filter(|(j, _)| *j != k).map(|(_, o)| o.clone()).collect();
                    split[index] = if rest.len() > 1 { Step::Burst(rest) } else { Step::Seq(rest[0].clone()) };
                    candidates.push((true, split));
                }
            }
            for (is_split, candidate) in candidates {
                if Instant::now() >= deadline {
                    break;
                }
                let target = runs.borrow().target.clone();
                if is_split {
                    runs.borrow_mut().target = None;
                }
                let Some(failed) = attempt(&candidate, options, runs) else {
                    runs.borrow_mut().target = target;
                    continue;
                };
                steps = candidate;
                if let Some(last) = failing_step(&failed) {
                    steps.truncate(last + 1);
                }
                message = failed;
                changed = true;
                break;
            }
        }
    }
    (steps, message)
}

/// Runs `steps` against a new system in a runtime of its own; shutting the runtime down stops the services.
fn run_case(
    steps: &[Step],
    options: &Options,
    cleanup: Option<std::sync::mpsc::Sender<Leftovers>>,
) -> Result<(), Box<(Failure, String)>> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let (outcome, leftovers) = runtime.block_on(async {
        let started = Instant::now();
        let system = System::start().await.expect("the system starts");
        let up = started.elapsed();
        let mut runner = Runner::new(&system, options);
        let mut outcome = runner.setup().await;
        if std::env::var_os("MODEL_VERBOSE").is_some() {
            println!("model: the system started in {up:.1?}, the setup took {:.1?}", started.elapsed() - up);
        }
        for (index, step) in steps.iter().enumerate() {
            if outcome.is_err() {
                break;
            }
            outcome = runner.step(index, step).await;
        }
        if std::env::var_os("MODEL_VERBOSE").is_some() {
            println!("{}", runner.log());
        }
        (outcome.map_err(|failure| Box::new((failure, runner.log()))), system.leftovers())
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    if let Some(cleanup) = cleanup {
        let _ = cleanup.send(leftovers);
    }
    outcome
}
