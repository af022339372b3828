//! Fault tolerance: the four services run as separate processes on a private PostgreSQL server and RabbitMQ
//! node while a stream of concurrent checkouts goes on, and one after another the coordinator, stock-svc,
//! payment-svc and order-svc are killed with SIGKILL and restarted, then the broker and then the database are
//! crashed and restarted. Afterwards every saga must be terminal within seconds, without a human, and the
//! databases must agree with each other and with what the clients were told: nothing below zero, stock and
//! credit conserved, a 2xx checkout paid exactly once, a 4xx one with nothing taken.
//!
//! Clients treat a connection error, a 5xx or a 504 as "broken": either outcome is then allowed, and they move
//! on to the next order. No order is checked out twice, so each order has at most one saga.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use platform::testing::eventually_ok;
use system_tests::chaos::{Cluster, ClusterSettings, Service};

const ITEMS: u64 = 200;
const STOCK_PER_ITEM: i64 = 50;
const USERS: u64 = 500;
/// Three orders' worth: users with more orders than that are refused on credit.
const CREDIT_PER_USER: i64 = 6;
const ITEM_PRICE: i64 = 1;
/// More than the clients can use up, so the stream never runs dry before the faults are over.
const ORDERS: u64 = 20_000;
const CLIENTS: usize = 24;
/// Checkouts per second over all clients: enough for a few thousand over the run without starving 2 cores.
const RATE_PER_SECOND: f64 = 70.0;
/// Normal traffic before each fault, so every fault strikes a busy system.
const BETWEEN_FAULTS: Duration = Duration::from_secs(3);
/// How long a killed process or crashed server stays down.
const OUTAGE: Duration = Duration::from_secs(2);
/// The longest a fault may keep checkouts from succeeding after the restart.
const RECOVERY_LIMIT: Duration = Duration::from_secs(45);
/// After the last recovery, every saga must be terminal within this.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// One fault of the sequence.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill(Service),
    RestartBroker,
    RestartDatabase,
}

const FAULTS: [Fault; 6] = [
    Fault::Kill(Service::Coordinator),
    Fault::Kill(Service::Stock),
    Fault::Kill(Service::Payment),
    Fault::Kill(Service::Orders),
    Fault::RestartBroker,
    Fault::RestartDatabase,
];

/// What a client was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    Paid,
    Refused,
    Broken,
}

#[derive(Debug)]
struct Attempt {
    order: u64,
    told: Told,
    status: Option<u16>,
    answered: Instant,
}

/// The checkout stream: which order comes next, when to stop, and every answer.
#[derive(Default)]
struct Traffic {
    next_order: AtomicU64,
    stop: AtomicBool,
    attempts: Mutex<Vec<Attempt>>,
}

impl Traffic {
    fn record(&self, attempt: Attempt) {
        self.attempts.lock().unwrap_or_else(|e| e.into_inner()).push(attempt);
    }

    /// When the first checkout answered 2xx at or after `since` was answered.
    fn first_paid_since(&self, since: Instant) -> Option<Instant> {
        let attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        attempts.iter().filter(|a| a.told == Told::Paid && a.answered >= since).map(|a| a.answered).min()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_saga_ends_consistent_when_services_broker_and_database_fail() {
    let run_started = Instant::now();
    // The shipped defaults: lost commands, starts and outcomes come back within RETRY_MAX_MS / RESEND_MAX_MS
    // (5 s) of a recovery, so every saga is terminal well within SETTLE_LIMIT without shortened timings.
    let settings = ClusterSettings::shipped_defaults();
    let mut cluster = Cluster::start(&settings).await.expect("starting the cluster");
    println!("chaos: cluster up after {:.1?}", run_started.elapsed());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("an HTTP client");
    initialise(&cluster, &http).await.expect("batch_init");

    let traffic = Arc::new(Traffic::default());
    let period = Duration::from_secs_f64(CLIENTS as f64 / RATE_PER_SECOND);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(client(traffic.clone(), http.clone(), cluster.url(Service::Orders), period)))
        .collect();

    let mut recoveries = Vec::new();
    for fault in FAULTS {
        tokio::time::sleep(BETWEEN_FAULTS).await;
        let struck = Instant::now();
        let back = inject(&mut cluster, &http, fault).await.unwrap_or_else(|e| panic!("{fault:?}: {e:#}"));
        let recovered = wait_for_paid_checkout(&traffic, back)
            .await
            .unwrap_or_else(|e| panic!("no recovery from {fault:?}: {e:#}"));
        let recovery = Recovery { fault, struck, back, recovered };
        println!("chaos: {recovery}");
        recoveries.push(recovery);
    }
    let last_recovery = recoveries.last().map(|r| r.recovered).expect("faults were injected");
    tokio::time::sleep(BETWEEN_FAULTS).await;
    traffic.stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("a client task panicked");
    }
    let settled = wait_until_settled(&cluster, &http, last_recovery + SETTLE_LIMIT).await.expect("settling");
    println!("chaos: every saga terminal {:.2?} after the last recovery", settled - last_recovery);

    let attempts = std::mem::take(&mut *traffic.attempts.lock().unwrap_or_else(|e| e.into_inner()));
    let count = |told: Told| attempts.iter().filter(|a| a.told == told).count();
    println!(
        "chaos: checkouts attempted {}, 2xx {}, 4xx {}, broken {}",
        attempts.len(),
        count(Told::Paid),
        count(Told::Refused),
        count(Told::Broken)
    );
    for (i, recovery) in recoveries.iter().enumerate() {
        let until = recoveries.get(i + 1).map_or(last_recovery + SETTLE_LIMIT, |next| next.struck);
        let broken: Vec<Option<u16>> = attempts
            .iter()
            .filter(|a| a.told == Told::Broken && a.answered >= recovery.struck && a.answered < until)
            .map(|a| a.status)
            .collect();
        println!("chaos: {recovery}; broken answers until the next fault: {}", describe(&broken));
    }
    let depths = cluster.queue_depths().expect("listing queues");
    println!("chaos: queues after settling: {depths:?}");
    for (queue, messages) in &depths {
        assert!(
            !(queue == shared_contracts::queues::DEAD_LETTERS && *messages > 0),
            "{messages} dead-lettered messages"
        );
    }
    check_consistency(&cluster, &attempts).await.expect("the databases are consistent");
    println!("chaos: whole run {:.1?}", run_started.elapsed());
}

/// How one fault went: when it struck, when the failed part was back (restarted and answering), and when the
/// next checkout succeeded.
struct Recovery {
    fault: Fault,
    struck: Instant,
    back: Instant,
    recovered: Instant,
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}: down {:.2?}, first paid checkout {:.2?} after it was back",
            self.fault,
            self.back - self.struck,
            self.recovered - self.back
        )
    }
}

/// `n × status` per status of broken answers (`none` is a connection error or client timeout).
fn describe(broken: &[Option<u16>]) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for status in broken {
        *counts.entry(status.map_or("none".to_owned(), |s| s.to_string())).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(status, n)| format!("{n} × {status}")).collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// 200 items, 500 users and the orders, all through the public API.
async fn initialise(cluster: &Cluster, http: &reqwest::Client) -> Result<()> {
    let calls = [
        (Service::Stock, format!("/stock/batch_init/{ITEMS}/{STOCK_PER_ITEM}/{ITEM_PRICE}")),
        (Service::Payment, format!("/payment/batch_init/{USERS}/{CREDIT_PER_USER}")),
        (Service::Orders, format!("/orders/batch_init/{ORDERS}/{ITEMS}/{USERS}/{ITEM_PRICE}")),
    ];
    for (service, path) in calls {
        let response = http.post(format!("{}{path}", cluster.url(service))).send().await?;
        ensure!(response.status().is_success(), "{path} answered {}", response.status());
    }
    Ok(())
}

/// Checks out the next order, paced to `period`, until told to stop.
async fn client(traffic: Arc<Traffic>, http: reqwest::Client, orders_url: String, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !traffic.stop.load(Ordering::SeqCst) {
        ticks.tick().await;
        let order = traffic.next_order.fetch_add(1, Ordering::SeqCst);
        if order >= ORDERS {
            return;
        }
        let answer = http.post(format!("{orders_url}/orders/checkout/{order}")).send().await;
        let status = answer.as_ref().ok().map(|r| r.status().as_u16());
        let told = match status {
            Some(200..=299) => Told::Paid,
            Some(400..=499) => Told::Refused,
            _ => Told::Broken,
        };
        traffic.record(Attempt { order, told, status, answered: Instant::now() });
    }
}

/// Injects `fault`, brings the failed part back, and returns when it was back (restarted and answering).
async fn inject(cluster: &mut Cluster, http: &reqwest::Client, fault: Fault) -> Result<Instant> {
    println!("chaos: {fault:?}");
    match fault {
        Fault::Kill(service) => {
            cluster.kill(service);
            tokio::time::sleep(OUTAGE).await;
            cluster.restart(service).await?;
            Ok(Instant::now())
        }
        Fault::RestartBroker => {
            cluster.crash_broker()?;
            reads_answer_without_the_broker(cluster, http).await?;
            cluster.restart_broker()?;
            Ok(Instant::now())
        }
        Fault::RestartDatabase => {
            cluster.crash_database()?;
            tokio::time::sleep(OUTAGE).await;
            cluster.restart_database()?;
            Ok(Instant::now())
        }
    }
}

/// With the broker down, the reads that need only a service's own database keep answering.
async fn reads_answer_without_the_broker(cluster: &Cluster, http: &reqwest::Client) -> Result<()> {
    let reads = [
        (Service::Stock, "/stock/find/0"),
        (Service::Orders, "/orders/find/0"),
        (Service::Payment, "/payment/find_user/0"),
    ];
    let until = Instant::now() + OUTAGE;
    while Instant::now() < until {
        for (service, path) in reads {
            let response = http
                .get(format!("{}{path}", cluster.url(service)))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .with_context(|| format!("GET {path} with the broker down"))?;
            ensure!(response.status().is_success(), "GET {path} answered {} with the broker down", response.status());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn wait_for_paid_checkout(traffic: &Traffic, since: Instant) -> Result<Instant> {
    let within = (since + RECOVERY_LIMIT).saturating_duration_since(Instant::now());
    eventually_ok(&format!("a paid checkout within {RECOVERY_LIMIT:?}"), within, async || {
        Ok(traffic.first_paid_since(since))
    })
    .await
}

/// Waits until the coordinator has no unfinished saga and order-svc no pending or cancelling checkout.
async fn wait_until_settled(cluster: &Cluster, http: &reqwest::Client, deadline: Instant) -> Result<Instant> {
    let orders = connect(&cluster.database_url(Service::Orders)).await?;
    let within = deadline.saturating_duration_since(Instant::now());
    // `Some(Err(..))`: the coordinator or order-svc's database could not be asked, which ends the wait at once.
    let settled = eventually_ok("the system to settle", within, async || {
        let answered: Result<_> = async {
            let stats: serde_json::Value =
                http.get(format!("{}/admin/stats", cluster.url(Service::Coordinator))).send().await?.json().await?;
            let pending: i64 = orders
                .query_one("SELECT count(*) FROM checkouts WHERE state IN ('pending', 'cancelling')", &[])
                .await?
                .get(0);
            Ok((stats, pending))
        }
        .await;
        let (stats, pending) = match answered {
            Ok(answer) => answer,
            Err(e) => return Ok(Some(Err(e))),
        };
        let running: i64 = ["executing", "compensating", "cancelling"]
            .iter()
            .map(|status| stats["sagas"][status].as_i64().unwrap_or(-1))
            .sum();
        if running == 0 && pending == 0 {
            return Ok(Some(Ok(Instant::now())));
        }
        bail!("not settled: coordinator {stats}, order-svc pending checkouts {pending}")
    })
    .await?;
    settled
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.with_context(|| url.to_owned())?;
    tokio::spawn(connection);
    Ok(client)
}

/// The invariants, on the four databases directly.
async fn check_consistency(cluster: &Cluster, attempts: &[Attempt]) -> Result<()> {
    let stock = connect(&cluster.database_url(Service::Stock)).await?;
    let payment = connect(&cluster.database_url(Service::Payment)).await?;
    let orders = connect(&cluster.database_url(Service::Orders)).await?;
    let coordinator = connect(&cluster.database_url(Service::Coordinator)).await?;

    let row = stock.query_one("SELECT count(*) FILTER (WHERE stock < 0), sum(stock)::bigint FROM items", &[]).await?;
    let (negative_stock, stock_left): (i64, i64) = (row.get(0), row.get(1));
    let row =
        payment.query_one("SELECT count(*) FILTER (WHERE credit < 0), sum(credit)::bigint FROM users", &[]).await?;
    let (negative_credit, credit_left): (i64, i64) = (row.get(0), row.get(1));
    ensure!(negative_stock == 0 && negative_credit == 0, "{negative_stock} items, {negative_credit} users below 0");

    let paid: HashMap<String, (i64, i64)> = orders
        .query(
            "SELECT o.id, o.total, coalesce(sum(i.quantity), 0)::bigint FROM orders o
             LEFT JOIN order_items i ON i.order_id = o.id WHERE o.paid GROUP BY o.id, o.total",
            &[],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    let paid_total: i64 = paid.values().map(|(total, _)| total).sum();
    let paid_quantity: i64 = paid.values().map(|(_, quantity)| quantity).sum();
    let initial_stock = ITEMS as i64 * STOCK_PER_ITEM;
    let initial_credit = USERS as i64 * CREDIT_PER_USER;
    println!(
        "chaos: paid orders {}, stock {stock_left} + sold {paid_quantity} (of {initial_stock}), credit {credit_left} \
         + charged {paid_total} (of {initial_credit})",
        paid.len()
    );
    ensure!(stock_left + paid_quantity == initial_stock, "stock is not conserved");
    ensure!(credit_left + paid_total == initial_credit, "credit is not conserved");

    let sagas: Vec<(String, String)> = coordinator
        .query("SELECT order_id, status FROM sagas", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let completed: HashSet<&str> = sagas.iter().filter(|(_, s)| s == "completed").map(|(o, _)| o.as_str()).collect();
    let sagas_per_order: HashSet<&str> = sagas.iter().map(|(o, _)| o.as_str()).collect();
    ensure!(sagas_per_order.len() == sagas.len(), "some order has more than one saga");
    ensure!(sagas.iter().all(|(_, s)| s == "completed" || s == "failed"), "a saga is not terminal");
    let paid_ids: HashSet<&str> = paid.keys().map(String::as_str).collect();
    ensure!(completed == paid_ids, "completed sagas {} != paid orders {}", completed.len(), paid_ids.len());

    for attempt in attempts {
        let order = attempt.order.to_string();
        match attempt.told {
            Told::Paid => ensure!(paid_ids.contains(order.as_str()), "order {order} was answered 2xx but is not paid"),
            Told::Refused => {
                ensure!(attempt.status == Some(400), "order {order} was answered {:?}", attempt.status);
                ensure!(!paid_ids.contains(order.as_str()), "order {order} was answered 4xx but is paid");
            }
            Told::Broken => {}
        }
    }

    let row = payment
        .query_one(
            "SELECT count(*), coalesce(sum(amount), 0)::bigint FROM payments WHERE key LIKE 'saga:%' AND state = 'charged'",
            &[],
        )
        .await?;
    let (charged, charged_sum): (i64, i64) = (row.get(0), row.get(1));
    ensure!(
        (charged, charged_sum) == (paid.len() as i64, paid_total),
        "payment-svc charged {charged} sagas for {charged_sum}, order-svc has {} paid for {paid_total}",
        paid.len()
    );
    let reserved: i64 = stock.query_one("SELECT count(*) FROM saga_steps WHERE state = 'reserved'", &[]).await?.get(0);
    ensure!(reserved == paid.len() as i64, "stock-svc holds {reserved} reservations for {} paid orders", paid.len());
    Ok(())
}
