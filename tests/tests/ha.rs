//! High availability: with two processes of every service behind the gateway and the broker as a three-node
//! cluster, no client sees a failure when one process dies or the system is restarted one process at a time.
//!
//! The course's consistency scenario runs once per fault: one item with stock 100, 1,000 users with credit 1,
//! each with an order for the item, and 1,000 checkouts at once through the gateway. While it runs (10 answers
//! in), one fault: a SIGKILL of one replica of each service in turn, a SIGKILL of the broker node that leads the
//! coordinator's queue, and a rolling restart (SIGTERM, wait for the exit, start again, wait until healthy) of
//! every service process and then every broker node, one at a time. After each: every answer is a 2xx or a 4xx
//! (a connection error counts as a failure), exactly 100 are 2xx, the databases agree with what clients were told
//! (paid exactly the 2xx orders, stock 0, credit down by exactly 100), and every saga is terminal.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use futures::{stream, StreamExt, TryStreamExt};
use platform::testing::eventually_ok;
use serde_json::Value;
use shared_contracts::queues;
use system_tests::{
    chaos::Service,
    ha::{HaSystem, BROKER_NODES, REPLICAS},
};

const USERS: usize = 1000;
const STOCK: i64 = 100;
/// Requests in flight while the scenario's entities are created: few, since on a machine busy with other tests
/// the setup's queue for database connections must stay within the pools' 5 s wait.
const SETUP_CONCURRENCY: usize = 16;
/// A fault strikes once this many checkouts of the burst have been answered: early, while most of the 100 that
/// succeed are still in flight (struck after 150, the kills found most of them answered already).
const STRIKE_AFTER: usize = 10;
/// The rolling restart takes far longer than a burst (about a minute): its checkouts go out at this pace until it
/// is over, then the rest at once, so that every restart happens under load and the 100 that succeed (the first
/// 100, until the stock runs out) are spread over the restarts rather than all before the first.
const ROLLING_PACE: Duration = Duration::from_millis(500);
/// The rolling restart begins once this many of its paced checkouts have been answered.
const ROLLING_STRIKE_AFTER: usize = 3;
/// After the last answer, every saga must be terminal within this.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// One fault, injected into one run of the scenario.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL of replica 0 of a service; it is started again after the scenario.
    Kill(Service),
    /// SIGKILL of the broker node leading the coordinator's queue; started again after the scenario.
    KillBrokerLeader,
    /// SIGTERM and restart of every process, one at a time: the services, then the broker nodes.
    RollingRestart,
}

const FAULTS: [Fault; 6] = [
    Fault::Kill(Service::Orders),
    Fault::Kill(Service::Payment),
    Fault::Kill(Service::Stock),
    Fault::Kill(Service::Coordinator),
    Fault::KillBrokerLeader,
    Fault::RollingRestart,
];

/// The entities of one run of the scenario.
struct Scenario {
    item: String,
    /// `(user, order)` pairs.
    orders: Vec<(String, String)>,
}

/// What one checkout was told: its status, or `None` for a connection error or timeout.
struct Answer {
    order: String,
    status: Option<u16>,
    at: Instant,
}

/// When a fault struck and when it was over: for a kill, the end of the burst (the process stays down until the
/// scenario ends); for the rolling restart, when the last process was back.
struct Window {
    struck: Instant,
    over: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_client_sees_a_failure_when_one_process_dies_or_restarts() {
    let run_started = Instant::now();
    let mut system = HaSystem::start().await.expect("starting the system");
    println!(
        "ha: {REPLICAS} replicas of each service and {BROKER_NODES} broker nodes up after {:.1?}",
        run_started.elapsed()
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(USERS)
        .build()
        .expect("an HTTP client");
    let mut report = Vec::new();
    for fault in FAULTS {
        let creating = Instant::now();
        let scenario = create(&http, &system.url()).await.unwrap_or_else(|e| panic!("{fault:?}: creating: {e:#}"));
        println!("ha: {fault:?}: scenario created in {:.1?}", creating.elapsed());
        let started = Instant::now();
        let (answers, window) =
            burst(&mut system, &http, &scenario, fault).await.unwrap_or_else(|e| panic!("{fault:?}: {e:#}"));
        let last_answer = Instant::now();
        let settled =
            wait_until_terminal(&system, &scenario).await.unwrap_or_else(|e| panic!("{fault:?}: settling: {e:#}"));
        let during: Vec<&Answer> = answers.iter().filter(|a| a.at >= window.struck && a.at <= window.over).collect();
        let line = format!(
            "{fault:?}: answers {:?} in {:.1?}, of which {:?} while the fault lasted ({:.1?} from {:.1?}); every saga \
             terminal {:.2?} after the last answer",
            classes(answers.iter()),
            last_answer - started,
            classes(during.into_iter()),
            window.over - window.struck,
            window.struck - started,
            settled - last_answer
        );
        println!("ha: {line}");
        report.push(line);
        check(&system, &scenario, &answers).await.unwrap_or_else(|e| panic!("{fault:?}: {e:#}"));
        restore(&mut system, fault).await.unwrap_or_else(|e| panic!("{fault:?}: restoring: {e:#}"));
    }
    let depths = system.queue_depths().expect("listing queues");
    let dead: u64 = depths.iter().filter(|(q, _)| q == queues::DEAD_LETTERS).map(|(_, n)| n).sum();
    assert_eq!(dead, 0, "dead-lettered messages: {depths:?}");
    println!("ha: summary\n  {}\nha: whole run {:.1?}", report.join("\n  "), run_started.elapsed());
}

/// One item with stock 100, 1,000 users with credit 1, and an order of one item each, through the gateway.
async fn create(http: &reqwest::Client, gateway: &str) -> Result<Scenario> {
    let item = post(http, &format!("{gateway}/stock/item/create/1")).await?["item_id"]
        .as_str()
        .context("no item_id")?
        .to_owned();
    post(http, &format!("{gateway}/stock/add/{item}/{STOCK}")).await?;
    let orders = stream::iter(0..USERS)
        .map(|_| async {
            let user = post(http, &format!("{gateway}/payment/create_user")).await?["user_id"]
                .as_str()
                .context("no user_id")?
                .to_owned();
            post(http, &format!("{gateway}/payment/add_funds/{user}/1")).await?;
            let order = post(http, &format!("{gateway}/orders/create/{user}")).await?["order_id"]
                .as_str()
                .context("no order_id")?
                .to_owned();
            post(http, &format!("{gateway}/orders/addItem/{order}/{item}/1")).await?;
            Ok::<_, anyhow::Error>((user, order))
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(Scenario { item, orders })
}

async fn post(http: &reqwest::Client, url: &str) -> Result<Value> {
    let response = http.post(url).send().await.with_context(|| format!("POST {url}"))?;
    let status = response.status();
    ensure!(status.is_success(), "POST {url} answered {status}");
    Ok(response.json().await.unwrap_or(Value::Null))
}

/// Checks out every order of `scenario` at once (or, for the rolling restart, paced until the restart is over)
/// and injects `fault` once [`STRIKE_AFTER`] (or [`ROLLING_STRIKE_AFTER`]) answers are in; returns the answers
/// and when the fault struck.
async fn burst(
    system: &mut HaSystem,
    http: &reqwest::Client,
    scenario: &Scenario,
    fault: Fault,
) -> Result<(Vec<Answer>, Window)> {
    let answered = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(Mutex::new(Vec::with_capacity(USERS)));
    let restarting = Arc::new(std::sync::atomic::AtomicBool::new(matches!(fault, Fault::RollingRestart)));
    let gateway = system.url();
    let clients: Vec<_> = scenario
        .orders
        .iter()
        .enumerate()
        .map(|(i, (_, order))| {
            let (http, url, order) = (http.clone(), format!("{gateway}/orders/checkout/{order}"), order.clone());
            let (answered, answers, restarting) = (answered.clone(), answers.clone(), restarting.clone());
            tokio::spawn(async move {
                // Paced while the rolling restart lasts: checkout i waits its turn, unless the restart is over.
                let turn = Instant::now() + ROLLING_PACE * i as u32;
                while restarting.load(Ordering::SeqCst) && Instant::now() < turn {
                    tokio::time::sleep(ROLLING_PACE.min(turn - Instant::now())).await;
                }
                let status = http.post(&url).send().await.ok().map(|r| r.status().as_u16());
                answers.lock().unwrap_or_else(|e| e.into_inner()).push(Answer { order, status, at: Instant::now() });
                answered.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let strike_after = if matches!(fault, Fault::RollingRestart) { ROLLING_STRIKE_AFTER } else { STRIKE_AFTER };
    eventually_ok("answers before the fault", SETTLE_LIMIT, async || {
        Ok((answered.load(Ordering::SeqCst) >= strike_after).then_some(()))
    })
    .await?;
    let struck = Instant::now();
    strike(system, fault).await?;
    let mut over = Instant::now();
    restarting.store(false, Ordering::SeqCst);
    for client in clients {
        client.await.context("a client panicked")?;
    }
    if !matches!(fault, Fault::RollingRestart) {
        over = Instant::now();
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
    Ok((answers, Window { struck, over }))
}

async fn strike(system: &mut HaSystem, fault: Fault) -> Result<()> {
    match fault {
        Fault::Kill(service) => system.kill(service, 0),
        Fault::KillBrokerLeader => {
            let leader = system.broker_leader(queues::COORDINATOR)?;
            println!("ha: killing broker node {leader}, the leader of {}", queues::COORDINATOR);
            system.kill_broker_node(leader)?;
        }
        Fault::RollingRestart => {
            for (service, index) in system.processes() {
                let took = system.terminate(service, index).await?;
                system.restart(service, index).await?;
                println!("ha: restarted {} replica {index} (exit after SIGTERM took {took:.2?})", service.binary());
            }
            for node in 1..=BROKER_NODES {
                system.restart_broker_node(node)?;
                println!("ha: restarted broker node {node}");
            }
        }
    }
    Ok(())
}

/// Brings back what the fault took away, so the next scenario starts with every process running.
async fn restore(system: &mut HaSystem, fault: Fault) -> Result<()> {
    match fault {
        Fault::Kill(service) => system.restart(service, 0).await,
        Fault::KillBrokerLeader => {
            for node in 1..=BROKER_NODES {
                // The killed node is the one that is not running; the others refuse a revive.
                let _ = system.revive_broker_node(node);
            }
            Ok(())
        }
        Fault::RollingRestart => Ok(()),
    }
}

/// `status class → count`: "2xx", "4xx", "5xx" or "none" (no answer).
fn classes<'a>(answers: impl Iterator<Item = &'a Answer>) -> BTreeMap<&'static str, usize> {
    let mut classes = BTreeMap::new();
    for answer in answers {
        let class = match answer.status {
            Some(200..=299) => "2xx",
            Some(400..=499) => "4xx",
            Some(_) => "5xx",
            None => "none",
        };
        *classes.entry(class).or_default() += 1;
    }
    classes
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.with_context(|| url.to_owned())?;
    tokio::spawn(connection);
    Ok(client)
}

/// Waits until every saga of the scenario is terminal and order-svc has no checkout of it in flight.
async fn wait_until_terminal(system: &HaSystem, scenario: &Scenario) -> Result<Instant> {
    let coordinator = connect(&system.database_url(Service::Coordinator)).await?;
    let orders = connect(&system.database_url(Service::Orders)).await?;
    let ids: Vec<&str> = scenario.orders.iter().map(|(_, order)| order.as_str()).collect();
    eventually_ok("every saga to be terminal", SETTLE_LIMIT, async || {
        let unfinished: i64 = coordinator
            .query_one(
                "SELECT count(*) FROM sagas WHERE order_id = ANY($1)
                 AND status NOT IN ('completed', 'failed', 'cancelled')",
                &[&ids],
            )
            .await?
            .get(0);
        let pending: i64 = orders
            .query_one(
                "SELECT count(*) FROM checkouts WHERE order_id = ANY($1) AND state IN ('pending', 'cancelling')",
                &[&ids],
            )
            .await?
            .get(0);
        Ok((unfinished == 0 && pending == 0).then(Instant::now))
    })
    .await
}

/// The scenario's outcome, from the answers and from the databases.
async fn check(system: &HaSystem, scenario: &Scenario, answers: &[Answer]) -> Result<()> {
    ensure!(answers.len() == USERS, "{} of {USERS} checkouts were answered", answers.len());
    let failures: Vec<_> = answers
        .iter()
        .filter(|a| !matches!(a.status, Some(200..=299 | 400..=499)))
        .map(|a| (a.order.as_str(), a.status))
        .collect();
    ensure!(
        failures.is_empty(),
        "{} answers were neither 2xx nor 4xx: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let told_paid: HashSet<&str> =
        answers.iter().filter(|a| matches!(a.status, Some(200..=299))).map(|a| a.order.as_str()).collect();
    ensure!(told_paid.len() == STOCK as usize, "{} checkouts answered 2xx, not {STOCK}", told_paid.len());

    let ids: Vec<&str> = scenario.orders.iter().map(|(_, order)| order.as_str()).collect();
    let users: Vec<&str> = scenario.orders.iter().map(|(user, _)| user.as_str()).collect();
    let orders = connect(&system.database_url(Service::Orders)).await?;
    let paid: HashSet<String> = orders
        .query("SELECT id FROM orders WHERE id = ANY($1) AND paid", &[&ids])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let paid: HashSet<&str> = paid.iter().map(String::as_str).collect();
    ensure!(paid == told_paid, "paid orders ({}) are not the ones answered 2xx ({})", paid.len(), told_paid.len());

    let stock = connect(&system.database_url(Service::Stock)).await?;
    let left: i64 = stock.query_one("SELECT stock FROM items WHERE item_id = $1", &[&scenario.item]).await?.get(0);
    ensure!(left == 0, "the item has stock {left} left, not 0");

    let payment = connect(&system.database_url(Service::Payment)).await?;
    let credit: i64 = payment
        .query_one("SELECT coalesce(sum(credit), 0)::bigint FROM users WHERE id = ANY($1)", &[&users])
        .await?
        .get(0);
    ensure!(credit == USERS as i64 - STOCK, "the users have credit {credit} left, not {}", USERS as i64 - STOCK);

    let coordinator = connect(&system.database_url(Service::Coordinator)).await?;
    let completed: HashSet<String> = coordinator
        .query("SELECT order_id FROM sagas WHERE order_id = ANY($1) AND status = 'completed'", &[&ids])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    ensure!(completed.len() == told_paid.len(), "{} sagas completed for {} paid orders", completed.len(), paid.len());
    ensure!(completed.iter().all(|order| told_paid.contains(order.as_str())), "a completed saga's order is not paid");
    Ok(())
}
