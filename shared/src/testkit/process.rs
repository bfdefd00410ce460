//! A child process started by a test, the chaos run or a benchmark: its stdout and stderr
//! go to a log file (appended to across restarts), signals go to its pid, and dropping it
//! kills it (SIGKILL, after a SIGCONT in case it was paused), so a failing or panicking
//! test leaves nothing running. Every process the test kit's users start goes through
//! here; [`Service`](super::Service) adds a port and a state folder on top.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often a stop waits between two looks at the child.
const EXIT_POLL: Duration = Duration::from_millis(50);

pub struct Process {
    pub name: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    /// stdout to a file of its own (a program whose output is its result).
    stdout: Option<PathBuf>,
    /// Started before: later starts append to the log instead of starting it afresh.
    started: bool,
    child: Option<Child>,
}

impl Process {
    /// A process not started yet, without arguments, logging to `<log_dir>/<name>.log`.
    pub fn new(name: &str, program: &Path, log_dir: &Path) -> Process {
        Process {
            name: name.to_string(),
            log: log_dir.join(format!("{name}.log")),
            program: program.to_path_buf(),
            args: Vec::new(),
            envs: Vec::new(),
            cwd: None,
            stdout: None,
            started: false,
            child: None,
        }
    }

    /// Started at once with `args` and `envs`; panics (naming the program) if it cannot
    /// be.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(String, String)],
        log_dir: &Path,
    ) -> Process {
        let mut p = Process::new(name, program, log_dir).args(args).envs(envs);
        p.start()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        p
    }

    /// Its command-line arguments.
    pub fn args(mut self, args: &[String]) -> Process {
        self.args = args.to_vec();
        self
    }

    /// Variables added to the environment it inherits.
    pub fn envs(mut self, envs: &[(String, String)]) -> Process {
        self.envs = envs.to_vec();
        self
    }

    /// Runs it in `dir`.
    pub fn current_dir(mut self, dir: &Path) -> Process {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// Logs to `path` instead of `<log_dir>/<name>.log`.
    pub fn log_to(mut self, path: &Path) -> Process {
        self.log = path.to_path_buf();
        self
    }

    /// Sends its stdout to `path` (created afresh at each start); stderr stays the log.
    pub fn stdout_to(mut self, path: &Path) -> Process {
        self.stdout = Some(path.to_path_buf());
        self
    }

    /// Starts it (again, after a stop). The first start begins a fresh log; a restart
    /// appends to it, so the log tells the whole story.
    pub fn start(&mut self) -> std::io::Result<()> {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.started)
            .truncate(!self.started)
            .open(&self.log)?;
        let stdout = match &self.stdout {
            Some(path) => File::create(path)?,
            None => log.try_clone()?,
        };
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        self.child = Some(cmd.spawn()?);
        self.started = true;
        Ok(())
    }

    /// The program it runs.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Its pid while started (until stopped, killed or reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Started and not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Sends a signal by name as `kill` takes it (`-STOP`, `-CONT`, `-TERM`, …).
    pub fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
        }
    }

    /// SIGSTOP: frozen as a process the scheduler forgot (it keeps its connections).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Process::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// SIGKILL, as a crash, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `within` for it to exit by itself (looking at least once), and reaps
    /// it if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let c = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(EXIT_POLL);
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `within`. Its exit status when
    /// it exited by itself.
    pub fn stop(&mut self, within: Duration) -> Option<ExitStatus> {
        self.child.as_ref()?;
        self.signal("-TERM");
        let status = self.wait_exit(within);
        self.kill();
        status
    }

    /// [`Process::stop`]; true when it exited by itself with status 0 (a clean shutdown).
    pub fn terminate(&mut self, within: Duration) -> bool {
        self.stop(within).is_some_and(|s| s.success())
    }

    /// Everything it logged so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first line of its log `find` picks something from.
    pub fn first_in_log<T>(&self, find: impl FnMut(&str) -> Option<T>) -> Option<T> {
        self.output().lines().find_map(find)
    }

    /// The latest such line (a restarted process appends to its log).
    pub fn last_in_log<T>(&self, find: impl FnMut(&str) -> Option<T>) -> Option<T> {
        self.output().lines().rev().find_map(find)
    }

    /// Blocks until a line of its log gives something to `find`, or panics with the log
    /// after `limit` (`what` says what was awaited).
    pub fn wait_for_log<T>(
        &self,
        what: &str,
        limit: Duration,
        mut find: impl FnMut(&str) -> Option<T>,
    ) -> T {
        super::wait::poll_blocking(limit, EXIT_POLL, || self.first_in_log(&mut find))
            .unwrap_or_else(|| {
                panic!(
                    "{}: no {what} within {limit:?}; log:\n{}",
                    self.name,
                    self.output()
                )
            })
    }

    /// As [`Process::wait_for_log`], without blocking the async runtime.
    pub async fn wait_for_log_async<T>(
        &self,
        what: &str,
        limit: Duration,
        mut find: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let every = Duration::from_millis(100);
        super::wait::poll(limit, every, || {
            let found = self.first_in_log(&mut find);
            async move { found }
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "{}: no {what} within {limit:?}; log:\n{}",
                self.name,
                self.output()
            )
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A stopped process is continued first so nothing is left behind, whatever
            // the kernel makes of a SIGKILL to a stopped process.
            self.resume();
            self.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(name: &str, script: &str, dir: &Path) -> Process {
        Process::new(name, Path::new("/bin/sh"), dir)
            .args(&["-c".to_string(), script.to_string()])
            .envs(&[("GREETING".to_string(), "hello".to_string())])
    }

    fn alive(pid: u32) -> bool {
        // A zombie still has a /proc entry; its state letter says it is gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    }

    #[test]
    fn logs_output_with_env_and_restarts_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sh("echo", "echo $GREETING; echo oops >&2", dir.path());
        p.start().unwrap();
        assert!(p.wait_exit(Duration::from_secs(10)).unwrap().success());
        assert_eq!(p.output(), "hello\noops\n");
        p.start().unwrap();
        p.wait_exit(Duration::from_secs(10)).unwrap();
        assert_eq!(p.output(), "hello\noops\nhello\noops\n");
        assert_eq!(
            p.last_in_log(|l| l.strip_prefix("he").map(str::to_string)),
            Some("llo".to_string())
        );
        // A new process of the same name starts its log afresh.
        let mut q = sh("echo", "echo again", dir.path());
        q.start().unwrap();
        q.wait_exit(Duration::from_secs(10)).unwrap();
        assert_eq!(p.output(), "again\n");
    }

    #[test]
    fn stdout_to_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("result.json");
        let mut p = sh("split", "echo '{}'; echo note >&2", dir.path()).stdout_to(&out);
        p.start().unwrap();
        p.wait_exit(Duration::from_secs(10)).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{}\n");
        assert_eq!(p.output(), "note\n");
    }

    /// `script` running (given the time to install its signal traps).
    fn running(name: &str, script: &str, dir: &Path) -> Process {
        let mut p = sh(name, script, dir);
        p.start().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        p
    }

    #[test]
    fn sigterm_then_kill_and_exit_statuses() {
        let dir = tempfile::tempdir().unwrap();
        let forever = "while :; do sleep 0.05; done";
        let mut polite = running(
            "polite",
            &format!("trap 'exit 0' TERM; {forever}"),
            dir.path(),
        );
        assert!(polite.terminate(Duration::from_secs(10)));
        assert_eq!(polite.pid(), None);

        let mut stubborn = running("stubborn", &format!("trap '' TERM; {forever}"), dir.path());
        let pid = stubborn.pid().unwrap();
        let t = Instant::now();
        assert_eq!(stubborn.stop(Duration::from_millis(300)), None);
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert!(!alive(pid), "killed after the grace time");

        let mut failing = sh("failing", "exit 3", dir.path());
        failing.start().unwrap();
        assert_eq!(
            failing.wait_exit(Duration::from_secs(10)).unwrap().code(),
            Some(3)
        );
        assert!(!failing.terminate(Duration::from_secs(1)), "already reaped");
    }

    #[test]
    fn paused_processes_are_killed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sh("sleeper", "echo ready; exec sleep 60", dir.path());
        p.start().unwrap();
        p.wait_for_log("ready line", Duration::from_secs(10), |l| {
            (l == "ready").then_some(())
        });
        let pid = p.pid().unwrap();
        p.pause();
        assert!(p.is_running());
        drop(p);
        assert!(!alive(pid));
    }

    #[test]
    #[should_panic(expected = "no port line")]
    fn waiting_for_a_log_line_gives_up_with_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sh("quiet", "echo something else; exec sleep 60", dir.path());
        p.start().unwrap();
        p.wait_for_log("port line", Duration::from_millis(300), |l| {
            l.strip_prefix("port ").map(str::to_string)
        });
    }
}
