//! What the machine spent during a load phase's measured window: CPU time of every process, grouped into the
//! system's parts (each service, each database's PostgreSQL backends, RabbitMQ, nginx, the load generator), and the
//! resident memory of each service at the window's end. Read from /proc, so it only works on Linux, and only sees
//! processes on this machine: it is meant for the benchmark's single-machine runs.
//!
//! The figure the benchmark is judged by is the CPU of everything but the load generator per fresh checkout. It is
//! taken from the machine's counters (/proc/stat), which include interrupts and kernel threads, minus the load
//! generator's own time; the per-group figures say where it went.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use procfs::process::Process;
use procfs::{CurrentSI, KernelStats};
use serde::Serialize;

/// The group of this load generator itself, left out of the system's figures.
pub const LOADGEN: &str = "loadgen";

/// The services whose resident memory is reported.
const SERVICES: [&str; 4] = ["order-svc", "payment-svc", "stock-svc", "coordinator"];

/// CPU time and memory of one process at one moment.
struct ProcessSample {
    group: String,
    ticks: u64,
    rss_kib: u64,
}

/// The machine's and every process's CPU counters at one moment.
pub struct Snapshot {
    at: Instant,
    busy_ticks: u64,
    total_ticks: u64,
    processes: HashMap<i32, ProcessSample>,
}

/// One group's share of the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupUsage {
    /// CPU time in the window, as a percentage of one CPU (a busy 2-CPU machine is 200).
    pub cpu_percent: f64,
    /// CPU milliseconds per fresh checkout of the window.
    pub cpu_ms_per_fresh_checkout: Option<f64>,
}

/// What the window cost.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    /// Length of the window the counters span, in seconds.
    pub seconds: f64,
    /// CPUs of the machine.
    pub cpus: usize,
    /// The whole machine's busy time (all but idle and iowait), as a percentage of one CPU.
    pub machine_cpu_percent: f64,
    /// The machine's busy time less the load generator's, as a percentage of one CPU.
    pub system_cpu_percent: f64,
    /// `system_cpu_percent` as a share of the whole machine (100 when every CPU is busy with the system).
    pub system_share_of_machine_percent: f64,
    /// CPU milliseconds of everything but the load generator per fresh checkout.
    pub system_cpu_ms_per_fresh_checkout: Option<f64>,
    /// Per group of processes, largest first in the printed report.
    pub groups: BTreeMap<String, GroupUsage>,
    /// Resident memory of each service at the window's end, in MiB (the largest process when there are replicas).
    pub service_rss_mib: BTreeMap<String, f64>,
}

impl Snapshot {
    /// Reads the counters now. Processes that vanish while being read are skipped.
    pub fn take() -> anyhow::Result<Snapshot> {
        let at = Instant::now();
        let cpu = KernelStats::current()?.total;
        let idle = cpu.idle + cpu.iowait.unwrap_or(0);
        let total = cpu.user
            + cpu.nice
            + cpu.system
            + cpu.idle
            + cpu.iowait.unwrap_or(0)
            + cpu.irq.unwrap_or(0)
            + cpu.softirq.unwrap_or(0)
            + cpu.steal.unwrap_or(0);
        let myself = std::process::id();
        let mut processes = HashMap::new();
        for process in procfs::process::all_processes()?.flatten() {
            let Ok(stat) = process.stat() else { continue };
            let group = if u32::try_from(process.pid).ok() == Some(myself) {
                LOADGEN.to_owned()
            } else {
                group_of(&stat.comm, stat.ppid, &command_line(&process))
            };
            let rss_kib = process.status().ok().and_then(|status| status.vmrss).unwrap_or(0);
            processes.insert(process.pid, ProcessSample { group, ticks: stat.utime + stat.stime, rss_kib });
        }
        Ok(Snapshot { at, busy_ticks: total - idle, total_ticks: total, processes })
    }

    /// What happened between `start` and this snapshot, with `fresh` checkouts counted in between.
    pub fn since(&self, start: &Snapshot, fresh: u64) -> Usage {
        let ticks_per_s = procfs::ticks_per_second() as f64;
        let seconds = self.at.duration_since(start.at).as_secs_f64();
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let percent = |ticks: u64| if seconds > 0.0 { 100.0 * ticks as f64 / ticks_per_s / seconds } else { 0.0 };
        let per_checkout = |ticks: u64| (fresh > 0).then(|| 1000.0 * ticks as f64 / ticks_per_s / fresh as f64);

        // A process present at both ends contributes its difference; one started in the window all of its time.
        let mut group_ticks: BTreeMap<String, u64> = BTreeMap::new();
        for (pid, end) in &self.processes {
            let before = start.processes.get(pid).filter(|before| before.group == end.group);
            let ticks = end.ticks.saturating_sub(before.map_or(0, |before| before.ticks));
            *group_ticks.entry(end.group.clone()).or_default() += ticks;
        }
        let loadgen_ticks = group_ticks.get(LOADGEN).copied().unwrap_or(0);
        let busy = self.busy_ticks.saturating_sub(start.busy_ticks);
        let total = self.total_ticks.saturating_sub(start.total_ticks);
        let system = busy.saturating_sub(loadgen_ticks);

        let mut service_rss_mib = BTreeMap::new();
        for sample in self.processes.values().filter(|sample| SERVICES.contains(&sample.group.as_str())) {
            let mib = sample.rss_kib as f64 / 1024.0;
            let entry = service_rss_mib.entry(sample.group.clone()).or_insert(0.0_f64);
            *entry = entry.max(mib);
        }
        Usage {
            seconds,
            cpus,
            machine_cpu_percent: percent(busy),
            system_cpu_percent: percent(system),
            system_share_of_machine_percent: if total > 0 { 100.0 * system as f64 / total as f64 } else { 0.0 },
            system_cpu_ms_per_fresh_checkout: per_checkout(system),
            groups: group_ticks
                .into_iter()
                .filter(|(_, ticks)| *ticks > 0)
                .map(|(group, ticks)| {
                    (group, GroupUsage { cpu_percent: percent(ticks), cpu_ms_per_fresh_checkout: per_checkout(ticks) })
                })
                .collect(),
            service_rss_mib,
        }
    }
}

fn command_line(process: &Process) -> String {
    process.cmdline().map(|words| words.join(" ")).unwrap_or_default()
}

/// The part of the system a process belongs to, from its name, parent and command line. PostgreSQL backends
/// name their database in their command line ("postgres: USER DATABASE HOST(PORT) STATE"), so each database's
/// backends are a group of their own; the server's own processes (checkpointer, WAL writer, autovacuum) are one.
fn group_of(comm: &str, ppid: i32, command_line: &str) -> String {
    match comm {
        "beam.smp" | "erl_child_setup" | "epmd" | "inet_gethost" => return "rabbitmq".to_owned(),
        "nginx" => return "nginx".to_owned(),
        "postgres" => return postgres_group(command_line),
        _ => {}
    }
    if SERVICES.contains(&comm) || comm == LOADGEN || comm == "pgbench" {
        return comm.to_owned();
    }
    // Kernel threads are children of kthreadd (pid 2).
    if ppid == 2 || ppid == 0 {
        return "kernel threads".to_owned();
    }
    "other".to_owned()
}

fn postgres_group(command_line: &str) -> String {
    let Some(title) = command_line.strip_prefix("postgres: ") else { return "postgres (server)".to_owned() };
    let mut words: Vec<&str> = title.split_whitespace().collect();
    // A server with a cluster_name (Debian's "15/main") puts it first.
    if words.first().is_some_and(|word| word.ends_with(':')) {
        words.remove(0);
    }
    match words.as_slice() {
        ["autovacuum", "worker", ..] => "postgres autovacuum".to_owned(),
        // A backend's title has a user, a database and a client address; background processes have none of those.
        [_user, database, client, ..] if client.contains('(') || client.starts_with('[') => {
            format!("postgres {database}")
        }
        _ => "postgres (server)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_grouped_by_database_and_background_processes_apart() {
        assert_eq!(postgres_group("postgres: postgres orders 127.0.0.1(51234) idle"), "postgres orders");
        assert_eq!(postgres_group("postgres: postgres coordinator [local] COMMIT"), "postgres coordinator");
        assert_eq!(postgres_group("postgres: 15/main: postgres stock 127.0.0.1(47452) idle"), "postgres stock");
        assert_eq!(postgres_group("postgres: 15/main: checkpointer "), "postgres (server)");
        assert_eq!(postgres_group("postgres: 15/main: autovacuum worker orders"), "postgres autovacuum");
        assert_eq!(postgres_group("postgres: 15/main: autovacuum launcher "), "postgres (server)");
        assert_eq!(postgres_group("/usr/lib/postgresql/15/bin/postgres -D /var/lib/x"), "postgres (server)");
    }

    #[test]
    fn processes_are_grouped_by_what_they_are() {
        assert_eq!(group_of("beam.smp", 1, ""), "rabbitmq");
        assert_eq!(group_of("order-svc", 1, ""), "order-svc");
        assert_eq!(group_of("kworker/0:1", 2, ""), "kernel threads");
        assert_eq!(group_of("bash", 100, "bash scripts/bench.sh"), "other");
    }

    #[test]
    fn a_window_counts_this_process_apart_from_the_system() {
        let ticks_per_s = procfs::ticks_per_second();
        let own_ticks = || {
            let stat = Process::myself().unwrap().stat().unwrap();
            stat.utime + stat.stime
        };
        let start = Snapshot::take().unwrap();
        // Burn a fifth of a second of CPU in this process, which is the load generator's group.
        let (began, mut x) = (own_ticks(), 0u64);
        while own_ticks() < began + ticks_per_s / 5 {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        let end = Snapshot::take().unwrap();
        let usage = end.since(&start, 1);
        let loadgen = usage.groups[LOADGEN].cpu_ms_per_fresh_checkout.unwrap();
        assert!(loadgen >= 190.0, "{usage:?}");
        assert!(usage.machine_cpu_percent >= usage.system_cpu_percent, "{usage:?}");
        assert!(usage.system_cpu_ms_per_fresh_checkout.is_some());
        assert_eq!(end.since(&start, 0).system_cpu_ms_per_fresh_checkout, None);
    }
}
