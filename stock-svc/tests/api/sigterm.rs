//! The stock-svc binary itself on SIGTERM: the process, not actix-web, owns the signal, stops its consumer and
//! exits cleanly, at once when nothing is in flight, even with an idle keep-alive connection open. Its log, written
//! to a file here, is plain text: terminal colour codes only go to a terminal.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use amqprs::channel::QueueDeclareArguments;
use platform::{
    amqp::Broker,
    testing::{eventually, fresh_database, fresh_vhost, unique_name},
};
use shared_contracts::queues;

/// How long the binary may take to start (migrations included) and to stop.
const WITHIN: Duration = Duration::from_secs(30);

/// The consumers of stock-svc's command queue.
async fn consumers(broker: &Broker) -> Option<u32> {
    let (connection, channel) = broker.connect().await.ok()?;
    let declare = QueueDeclareArguments::new(queues::STOCK_COMMANDS).passive(true).finish();
    let declared = channel.queue_declare(declare).await.ok().flatten();
    let _ = channel.close().await;
    let _ = connection.close().await;
    declared.map(|(_, _, consumers)| consumers)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_stops_gracefully_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let amqp_url = fresh_vhost().await.expect("a vhost");
    let log_path = std::env::temp_dir().join(format!("{}.log", unique_name("stock_sigterm")));
    let log = std::fs::File::create(&log_path).expect("a log file");
    let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_stock-svc"))
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", fresh_database("stock").await.expect("a database"))
        .env("AMQP_URL", &amqp_url)
        .env("SHUTDOWN_TIMEOUT_MS", "10000")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("stock-svc starts");
    let health = format!("http://127.0.0.1:{port}/health");
    // One client for every call, so the connection of the last one stays open, idle, through the shutdown.
    let client = reqwest::Client::new();
    eventually("stock-svc to answer /health", WITHIN, async || {
        client.get(&health).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;
    let broker = Broker::new(&amqp_url, "test", &[queues::STOCK_COMMANDS]).expect("a valid AMQP URL");
    eventually("its consumer to subscribe", WITHIN, async || consumers(&broker).await.filter(|n| *n == 1)).await;

    let began = Instant::now();
    let pid = process.id().expect("the process runs").to_string();
    let sent = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill runs");
    assert!(sent.success(), "SIGTERM was sent");
    let exited = tokio::time::timeout(WITHIN, process.wait()).await.expect("stock-svc exits").expect("its status");
    let took = began.elapsed();

    let logged = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    assert!(exited.success(), "stock-svc exited with {exited}:\n{logged}");
    assert!(took < Duration::from_secs(5), "with nothing in flight it stopped in {took:?}, not at once:\n{logged}");
    assert!(logged.contains("SIGTERM received") && logged.contains("stopped consuming"), "{logged}");
    assert!(!logged.contains('\x1b'), "the log file holds terminal escape codes:\n{logged}");
    assert_eq!(consumers(&broker).await, Some(0), "the consumer has cancelled");
}
