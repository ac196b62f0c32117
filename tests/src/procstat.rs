//! What `/proc` says about a process's CPU time and the machine's load, for the benchmarks'
//! "CPU per operation" figures (steadier than wall-clock rates on a shared machine).

use std::time::Duration;

/// User + system CPU time of a process (`"self"` or a pid), and of its reaped children.
/// A process that has gone reads as zero.
pub fn cpu_times(pid: &str) -> (Duration, Duration) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime is field 14 of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let tick = |n: u64| Duration::from_millis(n * 10); // USER_HZ = 100 on Linux
    let field = |i: usize| f.get(i).copied().unwrap_or(0);
    (
        tick(field(11) + field(12)), // utime + stime
        tick(field(13) + field(14)), // cutime + cstime
    )
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
