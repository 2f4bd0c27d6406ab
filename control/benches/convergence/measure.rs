//! Process accounting from /proc (RSS, peak RSS, CPU ticks), a background RSS sampler, and
//! percentiles.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One reading of `/proc/PID/status` and `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub utime: u64,
    pub stime: u64,
    pub threads: u64,
}

impl ProcSample {
    pub fn ticks(&self) -> u64 {
        self.utime + self.stime
    }
}

/// `pid` is a number or `self`.
pub fn read_proc(pid: &str) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    let num = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some(ProcSample {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        utime: num(11),
        stime: num(12),
        threads: field("Threads:"),
    })
}

/// Clock ticks per second for /proc/PID/stat (`getconf CLK_TCK`, usually 100).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// RSS of a process sampled every `period` on a thread of its own.
pub struct Sampler {
    samples: Arc<Mutex<Vec<(Instant, u64)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Sampler {
    pub fn start(pid: u32, period: Duration) -> Sampler {
        let samples: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let pid = pid.to_string();
        std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(p) = read_proc(&pid) {
                    s.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((Instant::now(), p.rss_kib));
                }
                std::thread::sleep(period);
            }
        });
        Sampler { samples, stop }
    }

    /// Largest sampled RSS (KiB) between `from` and `to`.
    pub fn peak(&self, from: Instant, to: Instant) -> u64 {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(0)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Nearest-rank percentile (`p` in 0..=100) of unsorted values; 0 when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
