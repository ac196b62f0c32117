//! What `/proc` says about a process's CPU time and the machine's load, for the benchmarks'
//! "CPU per operation" figures (steadier than wall-clock rates on a shared machine).

use std::time::Duration;

/// User + system CPU time of a process (`"self"` or a pid), and of its reaped children.
/// A process that has gone reads as zero.
pub fn cpu_times(pid: &str) -> (Duration, Duration) {
    let s = cpu_split(pid);
    (s.user + s.system, s.child_user + s.child_system)
}

/// CPU time of a process and of its reaped children, split into user and system (kernel)
/// time. A process that has gone reads as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSplit {
    /// User time of the process.
    pub user: Duration,
    /// System time of the process.
    pub system: Duration,
    /// User time of its reaped children.
    pub child_user: Duration,
    /// System time of its reaped children.
    pub child_system: Duration,
}

/// The user/system split behind [`cpu_times`].
pub fn cpu_split(pid: &str) -> CpuSplit {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime is field 14 of the whole line and
    // the unit is USER_HZ (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let tick = |i: usize| Duration::from_millis(f.get(i).copied().unwrap_or(0) * 10);
    CpuSplit {
        user: tick(11),
        system: tick(12),
        child_user: tick(13),
        child_system: tick(14),
    }
}

/// Resident set size of a process in bytes (`VmRSS`), 0 when it cannot be read.
pub fn rss_bytes(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` prints them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
