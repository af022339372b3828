//! A description of the machine the benchmark ran on, so that figures are never quoted without it.

use serde::Serialize;

/// CPU count, memory and CPU model of this machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs this process may use (what `nproc` prints).
    pub nproc: usize,
    /// `MemTotal` from /proc/meminfo, in MiB.
    pub memory_mib: Option<u64>,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: Option<String>,
}

impl Machine {
    /// Reads the description; fields that cannot be read are left empty.
    pub fn describe() -> Machine {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_mib: field(&meminfo, "MemTotal")
                .and_then(|value| value.trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib / 1024),
            cpu_model: field(&cpuinfo, "model name").map(str::to_owned),
        }
    }
}

/// The value of the first `name: value` line of a /proc file.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_are_found_by_name() {
        let text = "MemFree:  10 kB\nMemTotal:       24514560 kB\n";
        assert_eq!(field(text, "MemTotal"), Some("24514560 kB"));
        assert_eq!(field(text, "Cached"), None);
    }
}
