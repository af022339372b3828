//! Drives a running [`System`] through a sequence of [`Step`]s. A single call is checked against the model
//! ([`Model::apply`]); a burst is sent all at once and checked by [`burst`]. After every step the runner waits,
//! polling the coordinator's `/admin/stats` up to a deadline, until no saga is running, then reads every known
//! item, user and order back and compares them with the model and the invariants.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use futures::future::join_all;
use platform::testing::eventually_ok;

use super::{
    burst,
    ops::{Call, Op, Req, Service, Step},
    rules::Follow,
    state::{amount, batch_ids, Item, Model, SeenOrder, Snapshot, SURELY_ALLOWED},
};
use crate::{Answer, System};

/// Saga statuses after which nothing more happens to a saga.
const TERMINAL: [&str; 4] = ["completed", "failed", "cancelled", "needs_attention"];
/// The longest any one request may take (a checkout waits at most `CHECKOUT_TIMEOUT_MS`, 30 s by default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a body is shown in the log.
const BODY_CHARS: usize = 240;

/// Why a step failed: what was sent and answered (if one call is to blame), and what is wrong.
#[derive(Debug, Clone, Default)]
pub struct Problem {
    /// The call and its answer.
    pub context: String,
    /// What the model or an invariant objects to.
    pub problem: String,
}

impl From<String> for Problem {
    fn from(problem: String) -> Self {
        Self { context: String::new(), problem }
    }
}

impl Problem {
    fn at(req: &Req, answer: &Answer, problem: String) -> Self {
        Self { context: format!("{req} → {}", show(answer)), problem }
    }
}

/// A failed step of a run.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The step's index (`None`: the setup).
    pub step: Option<usize>,
    /// The step as generated.
    pub shown: String,
    /// The kind of its call, or `burst`.
    pub kind: String,
    /// What went wrong.
    pub problem: Problem,
}

impl Failure {
    /// What the failure is, without the numbers and IDs that change from run to run: shrinking keeps to
    /// sequences that fail the same way.
    pub fn signature(&self) -> String {
        let mut text = String::new();
        let mut depth = 0;
        for c in self.problem.problem.chars() {
            match c {
                '{' | '(' => depth += 1,
                '}' | ')' => depth -= 1,
                _ if depth == 0 => text.push(c),
                _ => {}
            }
        }
        let words: Vec<&str> =
            text.split_whitespace().filter(|w| !w.chars().any(|c| c.is_ascii_digit() || c == '"')).take(5).collect();
        format!("{}: {}", self.kind, words.join(" "))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.step {
            Some(index) => write!(f, "step #{index} {}:", self.shown)?,
            None => write!(f, "setup:")?,
        }
        if !self.problem.context.is_empty() {
            write!(f, "\n  {}", self.problem.context)?;
        }
        write!(f, "\n  {}", self.problem.problem)
    }
}

/// What a run leaves out and how long it waits.
#[derive(Debug, Clone)]
pub struct Options {
    /// Calls not sent: kinds as [`Call::kind`] names them, `burst` (every burst), `huge` (calls with amounts
    /// near the maximum), `order_create_unknown_user`. For telling several findings apart.
    pub exclude: BTreeSet<String>,
    /// How long sagas may run on after a step before the step fails.
    pub settle: Duration,
}

impl Options {
    /// `MODEL_EXCLUDE` (comma-separated) and `MODEL_SETTLE_SECS` (default 20).
    pub fn from_env() -> Self {
        let exclude = std::env::var("MODEL_EXCLUDE").unwrap_or_default();
        let settle = std::env::var("MODEL_SETTLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
        Self {
            exclude: exclude.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            settle: Duration::from_secs(settle),
        }
    }
}

/// A system, the model of it, and what was sent so far.
pub struct Runner<'a> {
    system: &'a System,
    options: &'a Options,
    model: Model,
    log: Vec<String>,
}

/// The first characters of an answer, for the log.
fn show(answer: &Answer) -> String {
    let body = answer.body.to_string();
    let cut: String = body.chars().take(BODY_CHARS).collect();
    format!("{} {cut}{}", answer.status.as_u16(), if cut.len() < body.len() { "…" } else { "" })
}

impl<'a> Runner<'a> {
    /// A runner for `system`, which must be fresh.
    pub fn new(system: &'a System, options: &'a Options) -> Self {
        Self { system, options, model: Model::default(), log: Vec::new() }
    }

    /// What was sent and answered so far, one line per call.
    pub fn log(&self) -> String {
        self.log.join("\n")
    }

    fn note(&mut self, line: String) {
        self.log.push(line);
    }

    /// Makes the pool, the same in every run so that shrinking sees the same system: items `"0"`–`"3"` (stock
    /// 10, price 2) and a created item of price 1 and no stock; users `"0"`–`"3"` (credit 20) and a created user
    /// with no credit; orders `"0"`–`"3"` of user `"0"` holding two of item `"0"` (a `batch_init` of one item
    /// and one user is not random); and four created orders: of user `"1"` with items `"0"` and `"1"`, of user
    /// `"2"` with `"0"` and `"2"`, of the created user with `"0"` and `"3"` (its checkout fails on credit), of
    /// user `"3"` with the created item (its checkout fails on stock).
    pub async fn setup(&mut self) -> Result<(), Failure> {
        let text = |s: &str| s.to_owned();
        self.note("setup".to_owned());
        let failed = |problem| Failure { step: None, shown: String::new(), kind: "setup".to_owned(), problem };
        for req in [
            Call::StockBatchInit { n: text("4"), stock: text("10"), price: text("2") },
            Call::ItemCreate { price: text("1") },
            Call::PaymentBatchInit { n: text("4"), money: text("20") },
            Call::UserCreate,
            Call::OrdersBatchInit { n: text("4"), items: text("1"), users: text("1"), price: text("2") },
        ] {
            self.call(&req).await.map_err(failed)?;
        }
        let (new_item, new_user) = (self.model.created_items[0].clone(), self.model.created_users[0].clone());
        let orders = [
            (text("1"), vec![text("0"), text("1")]),
            (text("2"), vec![text("0"), text("2")]),
            (new_user, vec![text("0"), text("3")]),
            (text("3"), vec![new_item]),
        ];
        for (user, items) in orders {
            self.call(&Call::OrderCreate { user }).await.map_err(failed)?;
            let order = self.model.created_orders.last().cloned().unwrap_or_default();
            for item in items {
                self.call(&Call::AddItem { order: order.clone(), item, quantity: None }).await.map_err(failed)?;
            }
        }
        self.audit().await.map_err(failed)
    }

    /// Runs step `index`, then checks the system.
    pub async fn step(&mut self, index: usize, step: &Step) -> Result<(), Failure> {
        self.note(format!("#{index} {step}"));
        let started = Instant::now();
        let outcome = match step {
            Step::Seq(op) => self.single(op).await,
            Step::Burst(_) if self.options.exclude.contains("burst") => {
                self.note("   skipped (MODEL_EXCLUDE)".to_owned());
                Ok(())
            }
            Step::Burst(ops) => self.burst(ops).await,
        };
        self.note(format!("   ({} ms)", started.elapsed().as_millis()));
        let kind = match step {
            Step::Seq(op) => op.kind().to_owned(),
            Step::Burst(_) => "burst".to_owned(),
        };
        outcome.map_err(|problem| Failure { step: Some(index), shown: step.to_string(), kind, problem })
    }

    fn excluded(&self, op: &Op, req: &Req) -> bool {
        let exclude = &self.options.exclude;
        exclude.contains(op.kind())
            || (exclude.contains("huge") && req.numbers().iter().any(|n| amount(n).is_some_and(|v| v > SURELY_ALLOWED)))
            || (exclude.contains("order_create_unknown_user")
                && matches!(req, Call::OrderCreate { user } if !self.model.users.contains_key(user)))
    }

    async fn single(&mut self, op: &Op) -> Result<(), Problem> {
        let req = self.model.resolve(op);
        if self.excluded(op, &req) {
            self.note(format!("   {req}: skipped (MODEL_EXCLUDE)"));
            return Ok(());
        }
        self.call(&req).await?;
        self.audit().await
    }

    /// Sends one call and has the model check and follow it.
    async fn call(&mut self, req: &Req) -> Result<(), Problem> {
        let answer = self.send(req).await?;
        self.note(format!("   {req} → {}", show(&answer)));
        let follow = self.model.apply(req, &answer).map_err(|e| Problem::at(req, &answer, e))?;
        match &follow {
            Follow::Nothing => {}
            Follow::BatchOrders { n, .. } => {
                for id in batch_ids(i128::from(*n)) {
                    let found = self.send(&Call::OrderFind { order: id.clone() }).await?;
                    self.model.install_batch_order(&id, &found, &follow)?;
                }
            }
            Follow::Resync => {
                self.settle().await?;
                let seen = self.snapshot().await?;
                self.model.adopt(&seen);
                self.note("   (the model took the state over from the system)".to_owned());
            }
        }
        Ok(())
    }

    async fn burst(&mut self, ops: &[Op]) -> Result<(), Problem> {
        let reqs: Vec<Req> = ops.iter().map(|op| self.model.resolve(op)).collect();
        let admitted = burst::admit(&self.model, &reqs);
        let mut sent = Vec::new();
        for ((req, admit), op) in reqs.into_iter().zip(admitted).zip(ops) {
            if admit && !self.excluded(op, &req) {
                sent.push(req);
            } else {
                self.note(format!("   {req}: left out of the burst"));
            }
        }
        let answers = join_all(sent.iter().map(|req| self.send(req))).await;
        let mut records = Vec::new();
        for (req, answer) in sent.into_iter().zip(answers) {
            let answer = answer?;
            self.note(format!("   {req} → {}", show(&answer)));
            records.push((req, answer));
        }
        for (req, answer) in &records {
            burst::judge_answer(req, answer).map_err(|e| Problem::at(req, answer, e))?;
        }
        let (items, users, orders) = burst::created(&records);
        self.model.created_items.extend(items);
        self.model.created_users.extend(users);
        self.model.created_orders.extend(orders);
        self.settle().await?;
        let mut direct_paid = BTreeMap::new();
        for (user, order) in burst::direct_pairs(&records) {
            let status =
                self.send(&Call::PaymentStatus { user: user.clone(), order: order.clone(), post: false }).await?;
            direct_paid.insert((user, order), status.body["paid"].as_bool().unwrap_or(false));
        }
        let seen = self.snapshot().await?;
        burst::check(&self.model, &records, &seen).map_err(|e| format!("after the burst: {e}"))?;
        burst::take_over(&mut self.model, &records, &seen, &direct_paid)?;
        Ok(self.model.check_invariants(&seen).map_err(|e| format!("after the burst: {e}"))?)
    }

    /// Waits until no saga runs, then compares the system with the model and checks the invariants.
    async fn audit(&mut self) -> Result<(), Problem> {
        self.settle().await?;
        let seen = self.snapshot().await?;
        self.model.compare(&seen)?;
        Ok(self.model.check_invariants(&seen)?)
    }

    async fn send(&self, req: &Req) -> Result<Answer, String> {
        let (method, service, path) = req.http();
        let base = match service {
            Service::Stock => &self.system.stock,
            Service::Payment => &self.system.payment,
            Service::Orders => &self.system.orders,
        };
        let call = self.system.call(method, format!("{base}{path}"));
        match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
            Ok(Ok(answer)) if answer.status.is_server_error() => {
                Err(format!("{req} → {}: a 5xx (only infrastructure failures may answer 5xx)", show(&answer)))
            }
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(format!("{req}: {e:#}")),
            Err(_) => Err(format!("{req}: no answer within {REQUEST_TIMEOUT:?}")),
        }
    }

    /// Polls the coordinator until every saga is terminal; fails past the deadline, at once if a saga needs
    /// attention or the coordinator's stats cannot be read.
    async fn settle(&self) -> Result<(), String> {
        // `Some(Err(..))` ends the wait with a failure; `Err(..)` (still running) asks again.
        let settled = eventually_ok("every saga to be terminal after the step", self.options.settle, async || {
            let stats = match self.system.get_ok(&self.system.coordinator, "/admin/stats").await {
                Ok(stats) => stats,
                Err(e) => return Ok(Some(Err(format!("{e:#}")))),
            };
            let Some(sagas) = stats["sagas"].as_object() else {
                return Ok(Some(Err(format!("stats without sagas: {stats}"))));
            };
            let count = |status: &str| sagas.get(status).and_then(|n| n.as_i64()).unwrap_or(0);
            if count("needs_attention") > 0 {
                let listed = self
                    .system
                    .get_ok(&self.system.coordinator, "/admin/sagas?status=needs_attention")
                    .await
                    .map_or_else(|e| e.to_string(), |v| v.to_string());
                return Ok(Some(Err(format!("a saga needs attention: {listed}"))));
            }
            let running = sagas.keys().filter(|s| !TERMINAL.contains(&s.as_str())).map(|s| count(s)).sum::<i64>();
            if running == 0 {
                return Ok(Some(Ok(())));
            }
            Err(anyhow::anyhow!("sagas still not terminal: {stats}"))
        })
        .await;
        settled.map_err(|e| format!("{e:#}"))?
    }

    /// Reads back every item, user and order the model knows of or the services may have made.
    async fn snapshot(&self) -> Result<Snapshot, String> {
        let (items, users, orders) = self.model.ids_to_read();
        let item_reads = join_all(items.iter().map(|id| self.send_find(Call::StockFind { item: id.clone() })));
        let user_reads = join_all(users.iter().map(|id| self.send_find(Call::FindUser { user: id.clone() })));
        let order_reads = join_all(orders.iter().map(|id| self.send_find(Call::OrderFind { order: id.clone() })));
        let (item_reads, user_reads, order_reads) = futures::join!(item_reads, user_reads, order_reads);
        let mut seen = Snapshot::default();
        for (id, read) in items.into_iter().zip(item_reads) {
            if let Some(body) = read? {
                let number = |key: &str| body[key].as_i64().map(i128::from).ok_or(format!("item {id}: {body}"));
                seen.items.insert(id.clone(), Item { stock: number("stock")?, price: number("price")? });
            }
        }
        for (id, read) in users.into_iter().zip(user_reads) {
            if let Some(body) = read? {
                let credit = body["credit"].as_i64().map(i128::from).ok_or(format!("user {id}: {body}"))?;
                seen.users.insert(id, credit);
            }
        }
        for (id, read) in orders.into_iter().zip(order_reads) {
            if let Some(body) = read? {
                seen.orders.insert(id, SeenOrder::from_body(&body)?);
            }
        }
        Ok(seen)
    }

    /// The body of a `find`, `None` on 404.
    async fn send_find(&self, req: Req) -> Result<Option<serde_json::Value>, String> {
        let answer = self.send(&req).await?;
        match answer.status.as_u16() {
            200 => Ok(Some(answer.body)),
            404 => Ok(None),
            _ => Err(format!("reading back: {req} → {}", show(&answer))),
        }
    }
}
