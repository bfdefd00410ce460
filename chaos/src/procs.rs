//! Child processes of the run (producer, consumers): JSON logs appended to one file per
//! name across restarts, signals by pid, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Proc {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    pub fn new(
        name: &str,
        program: &Path,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        dir: &Path,
    ) -> Proc {
        Proc {
            name: name.into(),
            program: program.into(),
            args,
            envs,
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    pub fn start(&mut self) -> std::io::Result<()> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `within`. True if it exited by
    /// itself.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A stopped process does not die of SIGKILL until continued on some kernels'
        // accounting; continue it first so nothing is left behind.
        self.signal("-CONT");
        self.kill();
    }
}

/// The address a process logged for its /metrics server (JSON logs).
/// The latest one when the process was restarted (its log is appended to).
pub fn metrics_addr(p: &Proc) -> Option<String> {
    p.output().lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        if !v["message"].as_str()?.starts_with("serving /metrics") {
            return None;
        }
        v["local"].as_str().map(str::to_string)
    })
}

/// Sum of every series of `metric` in one scrape of `http://addr/metrics`.
pub async fn scrape(addr: &str, metric: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).await.ok()?;
        Some(sum_metric(&body, metric))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .ok()
        .flatten()
}

/// Sum of the series of `metric` in a Prometheus text body (0 when absent).
pub fn sum_metric(body: &str, metric: &str) -> f64 {
    body.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_series_of_one_metric_only() {
        let body = "# HELP x\nm_total{a=\"1\"} 2\nm_total{a=\"2\"} 3\nm_total_other 9\nm_total 1\n";
        assert_eq!(sum_metric(body, "m_total"), 6.0);
        assert_eq!(sum_metric(body, "absent"), 0.0);
    }
}
