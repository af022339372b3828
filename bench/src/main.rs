//! `loadgen`: reproduces the WDM course's stress test against a running system (optionally creating its data set
//! first), reports throughput split into fresh and repeat checkouts and the latency distribution, and can check
//! afterwards that no stock or credit was lost or created. See docs/performance.md for how to use the figures.

mod api;
mod check;
mod load;
mod machine;
mod options;
mod stats;
mod usage;

use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;

use crate::api::Api;
use crate::check::CheckReport;
use crate::machine::Machine;
use crate::options::{Mode, Options};
use crate::stats::Summary;

/// Everything one invocation did, as written to `--out`.
#[derive(Serialize)]
struct Report {
    url: String,
    mode: &'static str,
    clients: Option<usize>,
    rate_per_s: Option<f64>,
    warmup_s: f64,
    init_seconds: Option<f64>,
    load: Option<Summary>,
    check: Option<CheckReport>,
    machine: Machine,
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match Options::parse(std::env::args_os()) {
        Ok(options) => options,
        // `--help` (exit 0) or a command line that is not understood (exit 2).
        Err(error) => error.exit(),
    };
    match run(&options).await {
        Ok(report) => {
            let passed = report.check.as_ref().is_none_or(|check| check.passed);
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(options: &Options) -> anyhow::Result<Report> {
    let connections = match options.mode {
        Mode::Closed { clients } => clients,
        Mode::Rate { .. } => options.max_in_flight,
    }
    .max(options.check_concurrency);
    let api = Api::new(&options.url, connections, options.timeout)?;

    let mut init_seconds = None;
    if options.init {
        eprintln!("==> batch_init {:?} at {}", options.data, options.url);
        let started = Instant::now();
        api.batch_init(&options.data).await?;
        init_seconds = Some(started.elapsed().as_secs_f64());
    }

    let mut load_summary = None;
    if !options.duration.is_zero() {
        eprintln!(
            "==> {} for {} s after {} s of warm-up",
            describe(options.mode),
            options.duration.as_secs_f64(),
            options.warmup.as_secs_f64()
        );
        let plan = load::Plan {
            mode: options.mode,
            orders: options.data.orders,
            warmup: options.warmup,
            duration: options.duration,
            max_in_flight: options.max_in_flight,
        };
        load_summary = Some(load::run(&api, plan).await);
    }

    let mut check_report = None;
    if options.check {
        eprintln!("==> conservation check over all items, users and orders");
        check_report = Some(check::run(&api, &options.data, options.check_concurrency).await);
    }

    let (clients, rate_per_s) = match options.mode {
        Mode::Closed { clients } => (Some(clients), None),
        Mode::Rate { per_second } => (None, Some(per_second)),
    };
    let report = Report {
        url: options.url.clone(),
        mode: match options.mode {
            Mode::Closed { .. } => "closed",
            Mode::Rate { .. } => "rate",
        },
        clients,
        rate_per_s,
        warmup_s: options.warmup.as_secs_f64(),
        init_seconds,
        load: load_summary,
        check: check_report,
        machine: Machine::describe(),
    };
    print_report(&report);
    std::fs::write(&options.out, serde_json::to_string_pretty(&report)? + "\n")
        .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", options.out))?;
    eprintln!("==> wrote {}", options.out);
    Ok(report)
}

fn describe(mode: Mode) -> String {
    match mode {
        Mode::Closed { clients } => format!("closed loop, {clients} clients"),
        Mode::Rate { per_second } => format!("open loop, {per_second} checkouts/s"),
    }
}

fn print_usage(usage: &usage::Usage) {
    let ms = |value: Option<f64>| value.map_or("-".to_owned(), |ms| format!("{ms:.3}"));
    println!(
        "  CPU           machine {:.0}%, system (all but loadgen) {:.0}% = {:.0}% of the machine's {} CPUs, \
         {} ms per fresh checkout",
        usage.machine_cpu_percent,
        usage.system_cpu_percent,
        usage.system_share_of_machine_percent,
        usage.cpus,
        ms(usage.system_cpu_ms_per_fresh_checkout)
    );
    let mut groups: Vec<_> = usage.groups.iter().collect();
    groups.sort_by(|a, b| b.1.cpu_percent.total_cmp(&a.1.cpu_percent));
    for (group, figures) in groups.into_iter().filter(|(_, figures)| figures.cpu_percent >= 0.5) {
        println!(
            "    {group:<22} {:>5.1}%  {:>6} ms/checkout",
            figures.cpu_percent,
            ms(figures.cpu_ms_per_fresh_checkout)
        );
    }
    let rss: Vec<String> = usage.service_rss_mib.iter().map(|(service, mib)| format!("{service} {mib:.0}")).collect();
    println!("  RSS MiB       {}", rss.join(", "));
}

fn print_report(report: &Report) {
    let machine = &report.machine;
    println!(
        "machine: {} CPUs, {} MiB, {}",
        machine.nproc,
        machine.memory_mib.map_or("?".to_owned(), |mib| mib.to_string()),
        machine.cpu_model.as_deref().unwrap_or("unknown CPU")
    );
    if let Some(seconds) = report.init_seconds {
        println!("init: {seconds:.1} s");
    }
    if let Some(load) = &report.load {
        let status = &load.status;
        println!("load: {} over {:.0} s", report.mode, load.duration_s);
        println!("  requests      {} ({:.1}/s)", load.total_requests, load.requests_per_s);
        println!("  fresh         {} ({:.1}/s)", load.fresh_checkouts, load.fresh_checkouts_per_s);
        println!("  repeat        {} ({:.1}/s)", load.repeat_checkouts, load.repeat_checkouts_per_s);
        println!(
            "  status        2xx {}  4xx {}  5xx {}  other {}  errors {} (timeout {}, connect {}, other {})  dropped {}",
            status.success,
            status.client_error,
            status.server_error,
            status.other,
            status.errors,
            status.timeouts,
            status.connect_errors,
            status.other_errors,
            status.dropped
        );
        if let Some(latency) = &load.latency {
            println!(
                "  latency ms    p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
                latency.p50_ms, latency.p95_ms, latency.p99_ms, latency.max_ms
            );
        }
        if let Some(usage) = &load.usage {
            print_usage(usage);
        }
    }
    if let Some(check) = &report.check {
        println!(
            "check: {} (attempt {}, {:.0} s): {} paid orders; stock taken {} vs paid quantities {}; \
             credit spent {} vs paid totals {}; {} unreadable",
            if check.passed { "PASS" } else { "FAIL" },
            check.attempts,
            check.seconds,
            check.paid_orders,
            check.stock_taken,
            check.paid_quantities,
            check.credit_spent,
            check.paid_totals,
            check.unreadable
        );
        if let Some(error) = &check.first_error {
            println!("  first read error: {error}");
        }
    }
}
