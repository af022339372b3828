//! The shared start-up path with a service of the test's own: it serves the shared routes and the service's
//! own, and when its server stops, the background tasks the service started are stopped too.
#![cfg(feature = "testing")]

use std::fmt;

use actix_web::web;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use platform::{
    amqp::ConsumerSettings,
    config::ServiceSettings,
    startup::{Application, Parts, Routes, Service},
    testing::fresh_database,
};
use tokio::sync::oneshot;

/// A service with one route and one background task, which holds `stopped` for as long as it runs.
struct Probe;

struct ProbeConfig {
    service: ServiceSettings,
    stopped: oneshot::Sender<()>,
}

impl fmt::Display for ProbeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.service)
    }
}

impl Service for Probe {
    const NAME: &'static str = "probe";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/probe_migrations");
    const QUEUES: &'static [&'static str] = &[];
    type Config = ProbeConfig;

    fn settings(config: &ProbeConfig) -> &ServiceSettings {
        &config.service
    }

    fn wire(config: ProbeConfig, parts: &mut Parts) -> anyhow::Result<impl Routes> {
        let stopped = config.stopped;
        parts.spawn(async move {
            let _held_until_stopped = stopped;
            std::future::pending::<()>().await
        });
        Ok(|cfg: &mut web::ServiceConfig| {
            cfg.route("/probe", web::get().to(async || "probe"));
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_server_stops_the_background_tasks() {
    let (stopped, mut is_stopped) = oneshot::channel();
    let service = ServiceSettings {
        http_addr: "127.0.0.1:0".into(),
        http_workers: 1,
        database_url: fresh_database("startup").await.expect("a test database"),
        db_pool_size: 1,
        // The probe never connects to the broker.
        amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
        consumer: ConsumerSettings::default(),
    };
    let app = Application::<Probe>::build(ProbeConfig { service, stopped }).await.expect("the probe starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let server = app.server_handle();
    let running = tokio::spawn(app.run_until_stopped());

    let get = async |path: &str| reqwest::get(format!("{base}{path}")).await.expect("an answer").status().as_u16();
    assert_eq!((get("/probe").await, get("/health").await, get("/nowhere").await), (200, 200, 404));
    assert_eq!(is_stopped.try_recv(), Err(oneshot::error::TryRecvError::Empty), "the task runs while serving");

    server.stop(true).await;
    running.await.expect("the application ends").expect("it served without an error");
    assert_eq!(is_stopped.try_recv(), Err(oneshot::error::TryRecvError::Closed), "the task was stopped");
}
