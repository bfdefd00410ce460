//! What the kernel says a process cost: CPU time from its CPU clock (nanoseconds;
//! `/proc/<pid>/stat` utime + stime, in 10 ms ticks, where the clock cannot be read)
//! and peak resident memory from `/proc/<pid>/status` (VmHWM). Measuring each
//! process on its own is what keeps the emulator's cost out of our figures.

use std::path::PathBuf;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on
/// every Linux this runs on, and the kernel ABI fixes USER_HZ at 100 on x86/arm).
pub const TICKS_PER_SEC: f64 = 100.0;

/// One reading of a process's `/proc/<pid>/stat`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    /// Process state letter (`R`, `S`, `Z` for exited but not yet reaped, ...).
    pub state: char,
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted from the LAST `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15 (1-based).
    let state = fields.first()?.chars().next()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Stat {
        state,
        cpu_seconds: (utime + stime) as f64 / TICKS_PER_SEC,
    })
}

/// Reads a `kB` field (e.g. `VmHWM`) of `/proc/<pid>/status` text, in KiB.
pub fn parse_status_kib(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn proc_file(pid: u32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

/// The process's stat now, or None once it is gone (reaped).
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(proc_file(pid, "stat")).ok()?)
}

/// CPU seconds the process used so far; 0 once it is gone. The process's own CPU clock
/// (nanoseconds, every thread including ended ones) where the kernel lets us read it,
/// else `/proc/<pid>/stat` in clock ticks: 10 ms steps are 2 % of a 0.5 s pass, too
/// coarse for the difference of two passes.
pub fn cpu_seconds(pid: u32) -> f64 {
    precise_cpu_seconds(pid).unwrap_or_else(|| stat(pid).map_or(0.0, |s| s.cpu_seconds))
}

/// The process's CPU clock (`clock_getcpuclockid`): the kernel's exact runtime of the
/// thread group, readable while the process runs or is a zombie (not once reaped).
pub fn precise_cpu_seconds(pid: u32) -> Option<f64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: both calls only write the out-parameters we pass, which outlive them.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

/// A `kB` field of the process's status (`VmRSS`, `VmHWM`, …) in KiB; None for a
/// zombie (its memory is gone) or a reaped pid.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    parse_status_kib(
        &std::fs::read_to_string(proc_file(pid, "status")).ok()?,
        field,
    )
}

/// Peak RSS (VmHWM) in KiB; None for a zombie (its memory is gone) or a reaped pid.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// Follows one child process: keeps the highest VmHWM seen and the last CPU reading,
/// which stays readable after exit as long as the child is not reaped (a zombie
/// keeps its accumulated times), so call [`Tracker::sample`] before `wait()`.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    pub pid: u32,
    pub cpu_at_start: f64,
    pub cpu_seconds: f64,
    pub peak_rss_kib: u64,
    pub exited: bool,
}

impl Tracker {
    pub fn new(pid: u32) -> Self {
        let mut t = Tracker {
            pid,
            ..Tracker::default()
        };
        t.sample();
        t.cpu_at_start = t.cpu_seconds;
        t
    }

    /// Reads /proc now; returns false once the process has exited.
    pub fn sample(&mut self) -> bool {
        if let Some(s) = stat(self.pid) {
            let cpu = precise_cpu_seconds(self.pid).unwrap_or(s.cpu_seconds);
            self.cpu_seconds = self.cpu_seconds.max(cpu);
            if s.state == 'Z' || s.state == 'X' {
                self.exited = true;
            }
        } else {
            self.exited = true;
        }
        if let Some(k) = peak_rss_kib(self.pid) {
            self.peak_rss_kib = self.peak_rss_kib.max(k);
        }
        !self.exited
    }

    /// CPU seconds used since the tracker was created.
    pub fn cpu_used(&self) -> f64 {
        (self.cpu_seconds - self.cpu_at_start).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces_and_parens() {
        let text =
            "4242 (tradeflow (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 \
                    1077396 3133440 399 18446744073709551615";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.state, 'S');
        assert!((s.cpu_seconds - 3.25).abs() < 1e-9);
    }

    #[test]
    fn stat_of_a_zombie_and_garbage() {
        let z = "7 (python3) Z 1 7 7 0 -1 4 1 0 0 0 12 3 0 0 20 0 1 0 5 0 0 0";
        assert_eq!(parse_stat(z).unwrap().state, 'Z');
        assert!(parse_stat("").is_none());
        assert!(parse_stat("1 (a) R 1 2").is_none());
        assert!(parse_stat("1 (a) R 1 2 3 4 5 6 7 8 9 x 1").is_none());
    }

    #[test]
    fn status_fields() {
        let text = "Name:\tcat\nVmPeak:\t  8000 kB\nVmHWM:\t     1596 kB\nVmRSS:\t 1500 kB\n";
        assert_eq!(parse_status_kib(text, "VmHWM"), Some(1596));
        assert_eq!(parse_status_kib(text, "VmRSS"), Some(1500));
        assert_eq!(parse_status_kib(text, "VmSwap"), None);
    }

    #[test]
    fn the_cpu_clock_agrees_with_proc_stat_to_a_tick() {
        let pid = std::process::id();
        // Burn a little CPU so both readings are well above zero.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let precise = precise_cpu_seconds(pid).expect("own CPU clock");
        let ticks = stat(pid).unwrap().cpu_seconds;
        // Threads of the test harness run too: allow a few ticks either way.
        assert!((precise - ticks).abs() < 0.1, "{precise} vs {ticks}");
        assert!(precise_cpu_seconds(u32::MAX).is_none());
    }

    #[test]
    fn a_zombie_keeps_its_cpu_clock_until_reaped() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = std::time::Instant::now();
        while stat(pid).unwrap().state != 'Z' {
            assert!(start.elapsed().as_secs() < 30, "child never ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let precise = precise_cpu_seconds(pid).expect("a zombie's CPU clock");
        let ticks = stat(pid).unwrap().cpu_seconds;
        assert!(
            precise > 0.0 && (precise - ticks).abs() < 0.02,
            "{precise} vs {ticks}"
        );
        child.wait().unwrap();
        assert!(precise_cpu_seconds(pid).is_none());
    }

    #[test]
    fn tracks_this_process() {
        let mut t = Tracker::new(std::process::id());
        assert!(t.sample());
        assert!(t.peak_rss_kib > 0);
        assert!(t.cpu_used() >= 0.0);
    }
}
