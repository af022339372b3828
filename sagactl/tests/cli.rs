//! `sagactl` as an operator runs it: the real binary against a coordinator started for the test, with its own
//! database and vhost, and sagas made by playing order-svc and stock-svc on the broker.

use std::time::Duration;

use coordinator::{config::Config, startup::Application};
use platform::testing::{eventually, fresh_database, fresh_vhost, TestBroker};
use serde_json::Value;
use shared_contracts::{
    queues, CheckoutRequest, CoordinatorMessage, Envelope, FailureReason, LineItem, PaymentReply, SagaId, StockCommand,
    StockReply,
};

const WAIT: Duration = Duration::from_secs(15);

struct Coordinator {
    url: String,
    broker: TestBroker,
}

async fn start_coordinator(admin_token: Option<&str>) -> Coordinator {
    platform::telemetry::init();
    let mut config = Config::from_env().unwrap();
    config.service.http_addr = "127.0.0.1:0".into();
    config.service.database_url = fresh_database("sagactl").await.unwrap();
    config.service.amqp_url = fresh_vhost().await.unwrap();
    config.retry_after = Duration::from_secs(60);
    config.admin_token = admin_token.map(str::to_owned);
    let broker = TestBroker::connect(&config.service.amqp_url).await.unwrap();
    let app = Application::build(config).await.unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    Coordinator { url, broker }
}

/// Runs `sagactl --url <coordinator> args...` and returns its exit code, stdout and stderr.
async fn sagactl(url: &str, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sagactl"))
        .arg("--url")
        .arg(url)
        .args(args)
        .env_remove("ADMIN_TOKEN")
        .env_remove("SAGACTL_URL")
        .env_remove("SAGACTL_OPERATOR")
        .env_remove("USER")
        .output()
        .await
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (output.status.code().unwrap_or(-1), text(output.stdout), text(output.stderr))
}

async fn start_saga(c: &Coordinator, order_id: &str) -> SagaId {
    let saga = SagaId::new();
    let request = CheckoutRequest {
        order_id: order_id.into(),
        user_id: "user-9".into(),
        items: vec![LineItem { item_id: "a".into(), quantity: 3 }],
        total: 12,
    };
    let start = Envelope::new(saga, CoordinatorMessage::StartCheckout(request));
    c.broker.publish(queues::COORDINATOR, start.to_bytes()).await.unwrap();
    let reserve: Envelope<StockCommand> = c.broker.next_envelope(queues::STOCK_COMMANDS, WAIT).await.unwrap();
    assert_eq!(reserve.saga_id, saga);
    saga
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_lists_inspects_and_aborts_a_saga() {
    let c = start_coordinator(None).await;
    let saga = start_saga(&c, "order-cli").await;
    let reply = Envelope::new(saga, CoordinatorMessage::Stock(StockReply::Reserved));
    c.broker.publish(queues::COORDINATOR, reply.to_bytes()).await.unwrap();

    let (code, out, err) = sagactl(&c.url, &["list", "--order", "order-cli", "--status", "executing"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("SAGA") && lines[0].contains("STATUS"), "{out}");
    assert!(lines[1].starts_with(&saga.to_string()) && lines[1].contains("order-cli  user-9  executing"), "{out}");
    assert_eq!(lines[2], "1-1 of 1");

    // The stock reply may still be on its way: wait until the timeline shows it.
    let shown = eventually("the stock reply in the saga's timeline", WAIT, async || {
        let (code, out, err) = sagactl(&c.url, &["show", &saga.to_string()]).await;
        assert_eq!(code, 0, "{err}");
        out.contains("stock {").then_some(out)
    })
    .await;
    assert!(shown.contains("order       order-cli"), "{shown}");
    assert!(shown.contains("items       a x3 (total 12)"), "{shown}");
    assert!(shown.contains("reason      -\n"), "{shown}");
    assert!(shown.contains("attempts    0 retries since the last progress\n"), "{shown}");
    assert!(shown.contains("allowed     retry, abort\n"), "{shown}");
    // Columns are padded to their widest cell; compare the timeline with single spaces.
    let timeline: Vec<String> = shown
        .lines()
        .skip_while(|l| !l.starts_with("AT "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(timeline.len(), 3, "{shown}");
    assert!(timeline[1].ends_with(" start - -> executing reserve_stock, charge_payment"), "{shown}");
    assert!(timeline[2].ends_with(" stock {\"reply\":{\"type\":\"reserved\"}} executing -> executing"), "{shown}");

    let (code, out, err) = sagactl(&c.url, &["abort", &saga.to_string()]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("abort of saga {saga} done: now compensating\n"));
    assert_eq!(
        c.broker.next_envelope::<StockCommand>(queues::STOCK_COMMANDS, WAIT).await.unwrap().body,
        StockCommand::Release
    );

    let (code, out, _) = sagactl(&c.url, &["stats"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "STATUS           SAGAS\nneeds_attention  0\nexecuting        0\ncompensating     1\ncompleted        0\n\
         failed           0\ncancelling       0\ncancelled        0\n"
    );

    let (code, out, _) = sagactl(&c.url, &["list", "--stuck", "3600"]).await;
    assert_eq!((code, out.as_str()), (0, "no sagas match\n"));
}

/// Publishes a participant's reply for `saga`.
async fn reply(c: &Coordinator, saga: SagaId, message: CoordinatorMessage) {
    c.broker.publish(queues::COORDINATOR, Envelope::new(saga, message).to_bytes()).await.unwrap();
}

/// Runs `sagactl -o json args...` and returns its answer.
async fn json(url: &str, args: &[&str]) -> Value {
    let (code, out, err) = sagactl(url, &[&["-o", "json"], args].concat()).await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_finds_failed_sagas_by_reason_and_time_and_scripts_read_the_json() {
    let c = start_coordinator(None).await;
    let short = start_saga(&c, "order-short").await;
    reply(
        &c,
        short,
        CoordinatorMessage::Stock(StockReply::Rejected { reason: FailureReason::OutOfStock { item_id: "a".into() } }),
    )
    .await;
    reply(&c, short, CoordinatorMessage::Payment(PaymentReply::Refunded)).await;
    let failed = eventually("the saga to fail", WAIT, async || {
        let page = json(&c.url, &["list", "--status", "failed,needs_attention"]).await;
        (page["total"] == 1).then_some(page)
    })
    .await;
    let created = failed["sagas"][0]["created_at"].as_str().unwrap_or_else(|| panic!("{failed}")).to_owned();
    let waiting = start_saga(&c, "order-wait").await;

    // The JSON is the API's answer, as it is.
    let api_answer: Value =
        reqwest::get(format!("{}/admin/sagas?reason=out_of_stock", c.url)).await.unwrap().json().await.unwrap();
    assert_eq!(json(&c.url, &["list", "--reason", "out_of_stock"]).await, api_answer);
    assert_eq!(api_answer["sagas"][0]["id"], short.to_string());

    let (code, out, err) =
        sagactl(&c.url, &["list", "--created-after", &created, "--direction", "asc", "--limit", "1"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[1].starts_with(&short.to_string()) && lines[1].contains("failed  out_of_stock"), "{out}");
    assert_eq!(lines[2], "1-1 of 2");
    let (_, out, _) =
        sagactl(&c.url, &["list", "--created-after", &created, "--sort", "updated_at", "--offset", "1"]).await;
    assert!(out.lines().nth(1).unwrap().starts_with(&short.to_string()) && out.ends_with("2-2 of 2\n"), "{out}");
    let (_, out, _) = sagactl(&c.url, &["list", "--stuck", "0", "--user", "user-9", "--order", "order-wait"]).await;
    assert!(out.lines().nth(1).unwrap().starts_with(&waiting.to_string()), "{out}");

    let (code, shown, err) = sagactl(&c.url, &["show", &short.to_string()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(shown.contains("reason      out_of_stock {\"item_id\":\"a\"}\n"), "{shown}");
    assert!(shown.contains("allowed     -\n"), "{shown}");
    let detail = json(&c.url, &["show", &short.to_string()]).await;
    assert_eq!(detail["reason"]["kind"], "out_of_stock");
    assert_eq!(detail["allowed_actions"], serde_json::json!([]));
    assert!(shown.contains(&format!("trace       {}\n", detail["trace_id"].as_str().unwrap_or("-"))), "{shown}");
    assert_eq!(json(&c.url, &["stats"]).await["sagas"]["failed"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_exit_non_zero_with_the_servers_message() {
    let c = start_coordinator(Some("s3cret")).await;
    let (code, out, err) = sagactl(&c.url, &["stats"]).await;
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "sagactl: the coordinator answered 401: the admin API needs a valid bearer token\n");

    let (code, _, err) = sagactl(&c.url, &["--token", "s3cret", "show", "nope"]).await;
    assert_eq!(code, 1);
    assert_eq!(err, "sagactl: the coordinator answered 400: saga_id \"nope\" is not a UUID\n");
    let (code, _, err) = sagactl(&c.url, &["--token", "s3cret", "list", "--status", "paid"]).await;
    assert_eq!(code, 1);
    assert!(err.starts_with("sagactl: the coordinator answered 400: status: unknown state \"paid\""), "{err}");
    let (code, _, err) = sagactl(&c.url, &["--token", "s3cret", "list", "--stuck", "99999999999999"]).await;
    assert_eq!(code, 1);
    assert!(err.starts_with("sagactl: the coordinator answered 400: stuck_for must be at most"), "{err}");
    let (code, _, err) = sagactl(&c.url, &["--token", "s3cret", "list", "--created-after", "yesterday"]).await;
    assert_eq!(code, 1);
    assert!(err.starts_with("sagactl: the coordinator answered 400: created_after must be"), "{err}");

    let (code, _, err) = sagactl(&c.url, &["frobnicate"]).await;
    assert_eq!(code, 2);
    assert!(err.starts_with("error: unrecognized subcommand 'frobnicate'"), "{err}");
    let (code, _, err) = sagactl("http://127.0.0.1:9", &["stats"]).await;
    assert_eq!(code, 1);
    assert!(err.starts_with("sagactl: cannot talk to the coordinator at http://127.0.0.1:9"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_shown_and_replayed() {
    let c = start_coordinator(None).await;
    c.broker.publish(queues::COORDINATOR, b"garbage".to_vec()).await.unwrap();
    let listed = eventually("the dead letter in the listing", WAIT, async || {
        let (code, out, err) = sagactl(&c.url, &["dead-letters", "--limit", "5"]).await;
        assert_eq!(code, 0, "{err}");
        out.contains("garbage").then_some(out)
    })
    .await;
    let mut lines = listed.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["ID", "KIND", "SAGA", "QUEUE", "REASON", "DIED", "DEATHS", "BODY"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!((row[1], row[2], row[3], row[4]), ("-", "-", "checkout.coordinator", "rejected"));
    assert!(row[0].starts_with("sha256:"), "{listed}");
    assert_eq!(&row[row.len() - 2..], ["1", "garbage"]);
    let (code, out, _) = sagactl(&c.url, &["replay-dead-letters"]).await;
    assert_eq!((code, out.as_str()), (0, "replayed 1 dead letters; 0 left in place (no queue to go back to)\n"));
}

/// Runs `sagactl --url <coordinator> args...` with `input` on its standard input.
async fn sagactl_answering(url: &str, args: &[&str], input: &str) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sagactl"))
        .arg("--url")
        .arg(url)
        .args(args)
        .env_remove("ADMIN_TOKEN")
        .env_remove("SAGACTL_URL")
        .env_remove("SAGACTL_OPERATOR")
        .env_remove("USER")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (output.status.code().unwrap_or(-1), text(output.stdout), text(output.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_aborts_a_batch_after_a_dry_run_and_finds_it_in_the_audit_log() {
    let c = start_coordinator(None).await;
    let sagas = [start_saga(&c, "order-a").await, start_saga(&c, "order-b").await];
    let executing = || async {
        let (code, out, err) = sagactl(&c.url, &["-o", "json", "list", "--status", "executing"]).await;
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["total"].as_u64().unwrap()
    };

    let (code, out, err) = sagactl(&c.url, &["bulk", "abort", "--stuck", "0", "--dry-run"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("2 sagas match; 2 taken (oldest first)\nSAGA"), "{out}");
    assert!(sagas.iter().all(|saga| out.contains(&format!("{saga}  executing"))), "{out}");
    assert_eq!(executing().await, 2, "the dry run changed something");

    // Asked to confirm, an operator who does not say yes changes nothing.
    let (code, out, err) = sagactl_answering(&c.url, &["bulk", "abort", "--stuck", "0"], "n\n").await;
    assert_eq!((code, out.as_str()), (0, "nothing done\n"), "{err}");
    assert!(err.contains("2 sagas match") && err.ends_with("abort these sagas? [y/N] "), "{err}");
    assert_eq!(executing().await, 2);

    let (code, out, err) =
        sagactl_answering(&c.url, &["--operator", "olga", "bulk", "abort", "--stuck", "0"], "y\n").await;
    assert_eq!(code, 0, "{err}");
    assert!(sagas.iter().all(|saga| out.contains(&format!("{saga}  now compensating"))), "{out}");
    assert!(out.ends_with("bulk_abort 2 done, 0 refused\n"), "{out}");
    assert_eq!(executing().await, 0);

    let (code, out, err) = sagactl(&c.url, &["audit", "--action", "bulk_abort"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let fields: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(fields[1..4], ["olga", "loopback", "bulk_abort"], "{out}");
    assert!(lines[1].ends_with("2 done, 0 refused"), "{out}");
    assert_eq!(lines[2], "1 of 1 actions");
    let (code, out, _) = sagactl(&c.url, &["audit", "--saga", &sagas[0].to_string()]).await;
    assert_eq!(code, 0);
    assert!(out.ends_with("2 of 2 actions\n") && out.contains("now compensating"), "{out}");

    let (code, out, _) = sagactl(&c.url, &["failures"]).await;
    assert_eq!((code, out.as_str()), (0, "no failed sagas, none needing attention\n"));

    let (code, _, err) = sagactl(&c.url, &["bulk", "retry", "--yes"]).await;
    assert_eq!(code, 1);
    assert!(err.starts_with("sagactl: the coordinator answered 400: the filter is empty"), "{err}");
    let (code, _, err) = sagactl(&c.url, &["bulk", "retry", "--stuck", "99999999999999", "--yes"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("400: stuck_for must be at most"), "{err}");
}

/// The IDs and bodies in a `dead-letters` listing.
fn listed_letters(listing: &str) -> Vec<(String, String)> {
    listing
        .lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            (cells[0].to_owned(), cells[cells.len() - 1].to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_dead_letter_is_replayed_and_another_discarded() {
    let c = start_coordinator(None).await;
    for body in ["first", "second"] {
        c.broker.publish(queues::COORDINATOR, body.as_bytes().to_vec()).await.unwrap();
    }
    let letters = eventually("both dead letters in the listing", WAIT, async || {
        let (code, out, err) = sagactl(&c.url, &["dead-letters"]).await;
        assert_eq!(code, 0, "{err}");
        let letters = listed_letters(&out);
        (letters.len() == 2).then_some(letters)
    })
    .await;
    let id_of = |body: &str| letters.iter().find(|(_, b)| b == body).unwrap().0.clone();

    let (code, out, err) = sagactl(&c.url, &["dead-letters", "discard", &id_of("first")]).await;
    assert_eq!((code, out), (0, format!("discarded {} (kept in the audit log)\n", id_of("first"))), "{err}");
    let (_, out, _) = sagactl(&c.url, &["dead-letters"]).await;
    assert_eq!(listed_letters(&out), [(id_of("second"), "second".to_owned())]);

    let (code, out, err) = sagactl(&c.url, &["dead-letters", "replay", &id_of("second")]).await;
    assert_eq!((code, out), (0, format!("replayed {} to checkout.coordinator\n", id_of("second"))), "{err}");
    // Back in the coordinator's queue, where it dies again.
    eventually("the replayed dead letter to die again", WAIT, async || {
        let (_, out, _) = sagactl(&c.url, &["dead-letters"]).await;
        (listed_letters(&out) == [(id_of("second"), "second".to_owned())]).then_some(())
    })
    .await;

    let (code, _, err) = sagactl(&c.url, &["dead-letters", "discard", &id_of("first")]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no dead letter"), "{err}");
}
