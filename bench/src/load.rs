//! The load phase: clients send checkouts of random orders, and one collector task turns their answers into a
//! [`Summary`]. The collector alone owns the record of which orders were already seen paid, so no locks are needed.
//!
//! Closed mode measures what the system sustains with a fixed number of clients. Rate mode sends at a fixed arrival
//! rate without waiting for answers and measures latency from each request's scheduled time, so a slow system
//! shows up as latency rather than silently lowering the offered load (no coordinated omission).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::{Answer, Api};
use crate::options::Mode;
use crate::stats::{Recorder, Summary};
use crate::usage::Snapshot;

/// What the load phase is to do.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Closed loop or fixed rate.
    pub mode: Mode,
    /// Checkouts pick order IDs in `0..orders`.
    pub orders: u64,
    /// Time before the measurement starts.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Rate mode: outstanding requests beyond which arrivals are dropped (and counted) to bound memory.
    pub max_in_flight: usize,
}

/// One checkout as a client saw it.
enum Sample {
    Answered { order: u64, answer: Answer, started: Instant, latency: Duration },
    Dropped { scheduled: Instant },
}

/// The measurement window, shared by the clients (when to stop) and the collector (what to count).
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn contains(&self, at: Instant) -> bool {
        at >= self.start && at < self.end
    }
}

const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs the load phase and returns the figures of its measured window.
pub async fn run(api: &Api, plan: Plan) -> Summary {
    let began = Instant::now();
    let window = Window { start: began + plan.warmup, end: began + plan.warmup + plan.duration };
    let (samples, received) = mpsc::unbounded_channel();
    let collector = tokio::spawn(collect(received, plan.orders, window));
    let counters = tokio::spawn(counters_over(window));
    match plan.mode {
        Mode::Closed { clients } => closed_loop(api, clients, plan.orders, window.end, samples).await,
        Mode::Rate { per_second } => fixed_rate(api, per_second, plan, window.end, samples).await,
    }
    let recorder = match collector.await {
        Ok(recorder) => recorder,
        Err(join_error) => {
            eprintln!("the result collector failed: {join_error}; reporting nothing");
            Recorder::default()
        }
    };
    let mut summary = recorder.summarise(plan.duration);
    match counters.await {
        Ok(Ok((start, end))) => summary.usage = Some(end.since(&start, summary.fresh_checkouts)),
        Ok(Err(error)) => eprintln!("cannot read the CPU counters in /proc: {error:#}; reporting no CPU use"),
        Err(join_error) => eprintln!("the CPU counter task failed: {join_error}; reporting no CPU use"),
    }
    summary
}

/// The machine's and every process's CPU counters at the start and at the end of the measured window.
async fn counters_over(window: Window) -> anyhow::Result<(Snapshot, Snapshot)> {
    tokio::time::sleep_until(window.start).await;
    let start = tokio::task::spawn_blocking(Snapshot::take).await??;
    tokio::time::sleep_until(window.end).await;
    let end = tokio::task::spawn_blocking(Snapshot::take).await??;
    Ok((start, end))
}

async fn closed_loop(api: &Api, clients: usize, orders: u64, end: Instant, samples: mpsc::UnboundedSender<Sample>) {
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (api, samples) = (api.clone(), samples.clone());
        tasks.spawn(async move {
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let order = rand::rng().random_range(0..orders);
                let answer = api.checkout(order).await;
                let sample = Sample::Answered { order, answer, started, latency: started.elapsed() };
                if samples.send(sample).is_err() {
                    break;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn fixed_rate(api: &Api, per_second: f64, plan: Plan, end: Instant, samples: mpsc::UnboundedSender<Sample>) {
    let began = Instant::now();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for n in 0u64.. {
        let scheduled = began + Duration::from_secs_f64(n as f64 / per_second);
        if scheduled >= end {
            break;
        }
        tokio::time::sleep_until(scheduled).await;
        while tasks.try_join_next().is_some() {}
        if in_flight.load(Ordering::Relaxed) >= plan.max_in_flight {
            let _ = samples.send(Sample::Dropped { scheduled });
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (api, samples, in_flight) = (api.clone(), samples.clone(), in_flight.clone());
        let order = rand::rng().random_range(0..plan.orders);
        tasks.spawn(async move {
            let answer = api.checkout(order).await;
            let latency = scheduled.elapsed();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = samples.send(Sample::Answered { order, answer, started: scheduled, latency });
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Receives every sample until all clients are done. Warm-up answers still mark orders paid, so that a checkout in
/// the window of an order paid during warm-up counts as a repeat.
async fn collect(mut samples: mpsc::UnboundedReceiver<Sample>, orders: u64, window: Window) -> Recorder {
    let mut seen_paid = vec![false; usize::try_from(orders).unwrap_or(usize::MAX)];
    let mut recorder = Recorder::default();
    let mut progress = tokio::time::interval_at(Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let (mut answered, mut succeeded) = (0u64, 0u64);
    loop {
        tokio::select! {
            sample = samples.recv() => match sample {
                Some(Sample::Answered { order, answer, started, latency }) => {
                    let success = matches!(answer, Answer::Status(200..=299));
                    let fresh = success && !mark_paid(&mut seen_paid, order);
                    answered += 1;
                    succeeded += u64::from(success);
                    if window.contains(started) {
                        recorder.record(answer, latency, fresh);
                    }
                }
                Some(Sample::Dropped { scheduled }) => {
                    if window.contains(scheduled) {
                        recorder.record_dropped();
                    }
                }
                None => return recorder,
            },
            _ = progress.tick() => {
                let phase = if Instant::now() < window.start { "warm-up" } else { "measuring" };
                eprintln!("  {phase}: {answered} answered, {succeeded} 2xx so far");
            }
        }
    }
}

/// Marks `order` paid and says whether it already was.
fn mark_paid(seen_paid: &mut [bool], order: u64) -> bool {
    match usize::try_from(order).ok().and_then(|index| seen_paid.get_mut(index)) {
        Some(slot) => std::mem::replace(slot, true),
        None => false,
    }
}
