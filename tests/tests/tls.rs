//! TLS to PostgreSQL and RabbitMQ, against real private servers that serve a certificate from a CA made for the
//! test: the services' own pool and broker code (`platform::db`, `platform::amqp`) connects when told to trust
//! that CA, and refuses a server it is told not to trust or cannot verify.

use std::{sync::Arc, time::Duration};

use anyhow::{ensure, Context, Result};
use async_trait::async_trait;
use diesel::{sql_types::Bool, QueryableByName};
use diesel_async::RunQueryDsl;
use platform::amqp::{BatchHandler, Broker, ConsumerSettings, Delivery, Outgoing, Publisher, Verdict};
use system_tests::{
    chaos::free_port,
    tls::{Pki, Scratch, TlsPostgres, TlsRabbit},
};

#[derive(QueryableByName)]
struct Encrypted {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

/// Opens a connection from a fresh pool for `url` and asks the server whether that connection is encrypted.
async fn encrypted(url: &str) -> Result<bool> {
    let pool = platform::db::pool(url, 1)?;
    let mut conn = pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let row: Encrypted =
        diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").get_result(&mut conn).await?;
    let one: Vec<One> = diesel::sql_query("SELECT 1 AS one").load(&mut conn).await?;
    ensure!(one.len() == 1 && one[0].one == 1, "SELECT 1 answered wrongly");
    Ok(row.ssl)
}

#[derive(QueryableByName)]
struct One {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    one: i32,
}

/// The error of a connection that should have been refused.
async fn refusal(url: &str) -> String {
    match encrypted(url).await {
        Ok(ssl) => panic!("{url} connected (ssl = {ssl}) but should have been refused"),
        Err(e) => {
            let error = format!("{e:#}");
            eprintln!("refused as expected: {error}");
            error
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connects_over_tls_only_to_a_server_it_trusts() -> Result<()> {
    let scratch = Scratch::new("postgres")?;
    let pki = Pki::generate(&scratch.path().join("pki"), "test CA")?;
    let other = Pki::generate(&scratch.path().join("other-pki"), "another CA")?;
    let server = TlsPostgres::start(&scratch.path().join("pg"), free_port()?, Some(&pki))?;
    let ca = format!("sslrootcert={}", pki.ca.display());
    let wrong_ca = format!("sslrootcert={}", other.ca.display());

    // verify-full with the right CA: the database is created and migrated over TLS and the pool works.
    let url = server.url("127.0.0.1", "stock", &format!("sslmode=verify-full&{ca}"));
    platform::db::create_database_if_missing(&url).await?;
    platform::db::migrate(&url, stock_svc::store::MIGRATIONS).await?;
    assert!(encrypted(&url).await?, "verify-full connected without TLS");
    assert!(encrypted(&server.url("localhost", "stock", &format!("sslmode=verify-full&{ca}"))).await?);

    // verify-full with another CA is refused, by the pool and by database creation alike.
    let wrong = server.url("127.0.0.1", "stock", &format!("sslmode=verify-full&{wrong_ca}"));
    let error = refusal(&wrong).await;
    assert!(error.contains("certificate"), "unexpected error: {error}");
    assert!(platform::db::create_database_if_missing(&wrong).await.is_err());
    assert!(refusal(&server.url("127.0.0.1", "stock", &format!("sslmode=verify-ca&{wrong_ca}")))
        .await
        .contains("certificate"));

    // 127.0.0.2 is not a name in the certificate: verify-full refuses it, verify-ca does not check names.
    let error = refusal(&server.url("127.0.0.2", "stock", &format!("sslmode=verify-full&{ca}"))).await;
    assert!(error.contains("certificate"), "unexpected error: {error}");
    assert!(encrypted(&server.url("127.0.0.2", "stock", &format!("sslmode=verify-ca&{ca}"))).await?);

    // The server takes TLS connections only: sslmode=disable is turned away by pg_hba.conf.
    let error = refusal(&server.url("127.0.0.1", "stock", "sslmode=disable")).await;
    assert!(error.contains("pg_hba.conf"), "unexpected error: {error}");

    // require and prefer (the default) encrypt without checking the certificate when given no CA; require
    // given a CA checks the chain, as libpq does.
    let error = refusal(&server.url("127.0.0.1", "stock", &format!("sslmode=require&{wrong_ca}"))).await;
    assert!(error.contains("certificate"), "unexpected error: {error}");
    assert!(encrypted(&server.url("127.0.0.1", "stock", "sslmode=require")).await?);
    assert!(encrypted(&server.url("127.0.0.2", "stock", "sslmode=prefer")).await?);
    assert!(encrypted(&server.url("127.0.0.1", "stock", "application_name=tls-test")).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_tls_is_reached_as_before_unless_tls_is_required() -> Result<()> {
    let scratch = Scratch::new("postgres-plain")?;
    let server = TlsPostgres::start(&scratch.path().join("pg"), free_port()?, None)?;

    // prefer (the default) falls back to plain TCP, as libpq does; disable never tries TLS.
    let url = server.url("127.0.0.1", "stock", "");
    platform::db::create_database_if_missing(&url).await?;
    platform::db::migrate(&url, stock_svc::store::MIGRATIONS).await?;
    assert!(!encrypted(&url).await?, "connected over TLS to a server without TLS");
    assert!(!encrypted(&server.url("127.0.0.1", "stock", "sslmode=disable")).await?);

    // require and stronger refuse to go on without TLS.
    let error = refusal(&server.url("127.0.0.1", "stock", "sslmode=require")).await;
    assert!(error.contains("TLS"), "unexpected error: {error}");
    Ok(())
}

/// Hands every delivery on to the test.
struct Forward(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

#[async_trait]
impl BatchHandler for Forward {
    async fn handle(&self, batch: &[Delivery]) -> Result<Vec<Verdict>> {
        for delivery in batch {
            let _ = self.0.send(delivery.body.clone());
        }
        Ok(vec![Verdict::Done; batch.len()])
    }
}

const QUEUE: &str = "tls_round_trip";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_round_trip_over_amqps_with_a_trusted_ca_only() -> Result<()> {
    let scratch = Scratch::new("rabbitmq")?;
    let pki = Pki::generate(&scratch.path().join("pki"), "test CA")?;
    let other = Pki::generate(&scratch.path().join("other-pki"), "another CA")?;
    let node = format!("tls-{}", std::process::id());
    let rabbit = TlsRabbit::start(&scratch.path().join("rabbit"), &node, free_port()?, free_port()?, &pki)?;

    let broker = Broker::new(&format!("{}?cacertfile={}", rabbit.url(), pki.ca.display()), "tls-test", &[QUEUE])?;
    let publisher = Publisher::new(broker.clone());
    let sent = b"over TLS".to_vec();
    let message = Outgoing { queue: QUEUE.into(), body: sent.clone(), message_id: "tls-1".into(), traceparent: None };
    publisher.publish(&[message]).await.context("publishing over amqps")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let consumer =
        tokio::spawn(platform::amqp::consume(broker, QUEUE, ConsumerSettings::default(), Arc::new(Forward(tx))));
    let received = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.context("no delivery within 30 s")?;
    consumer.abort();
    assert_eq!(received, Some(sent));

    let untrusting = Broker::new(&format!("{}?cacertfile={}", rabbit.url(), other.ca.display()), "tls-test", &[QUEUE])?;
    let error = match untrusting.connect().await {
        Ok(_) => panic!("connected to a broker whose certificate another CA signed"),
        Err(e) => format!("{e:#}"),
    };
    eprintln!("refused as expected: {error}");
    assert!(error.to_lowercase().contains("certificate"), "unexpected error: {error}");

    // The CA may come from AMQP_CA_FILE instead (no other test in this binary reads it).
    std::env::set_var("AMQP_CA_FILE", &pki.ca);
    let from_env = Broker::new(&rabbit.url(), "tls-test", &[QUEUE]);
    std::env::remove_var("AMQP_CA_FILE");
    let (connection, _channel) = from_env?.connect().await.context("connecting with AMQP_CA_FILE")?;
    let _ = connection.close().await;
    Ok(())
}
