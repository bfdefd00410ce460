//! A server process on a loopback port with its state in a temporary folder: started,
//! waited for until it listens, stopped, killed and restarted on the same port and
//! state. Its process is a [`Process`], so it is killed by pid when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::process::Process;

/// How long a server may take to listen after its start.
const LISTEN_LIMIT: Duration = Duration::from_secs(60);
/// How long a polite stop waits before killing.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// A running server process. Dropping it kills it (by pid) and waits for it.
pub struct Service {
    pub name: &'static str,
    pub port: u16,
    /// Extra port (kinesis-mock's TLS port).
    pub tls_port: Option<u16>,
    process: Process,
    // Declared after `process`, so the folder goes only once the server is dead.
    state: tempfile::TempDir,
}

impl Service {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The folder holding this server's state (AOF, dynalite's data, the WAL).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Stops it politely (SIGTERM), waiting up to 10 s before killing it.
    pub fn stop(&mut self) {
        self.process.stop(STOP_LIMIT);
    }

    /// Starts it again on the same port with the same state folder.
    pub fn start(&mut self) {
        assert!(self.pid().is_none(), "{} is already running", self.name);
        if let Err(e) = self.process.start() {
            panic!(
                "cannot start {} ({}): {e}. Run scripts/install-tools first.",
                self.name,
                self.process.program().display()
            );
        }
        self.wait_listening();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    fn wait_listening(&mut self) {
        let port = self.port;
        let process = &mut self.process;
        let up = super::wait::poll_blocking(LISTEN_LIMIT, Duration::from_millis(50), || {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Ok(()));
            }
            process.wait_exit(Duration::ZERO).map(Err)
        });
        match up {
            Some(Ok(())) => {}
            Some(Err(status)) => panic!(
                "{} exited with {status} before listening; log:\n{}",
                self.name,
                self.log()
            ),
            None => panic!(
                "{} did not listen on port {} within {LISTEN_LIMIT:?}",
                self.name, self.port
            ),
        }
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        self.process.output()
    }
}

/// What to start: the program, its flags, its port(s) and state folder.
pub(crate) struct Spec {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    port: u16,
    tls_port: Option<u16>,
    state: tempfile::TempDir,
}

impl Spec {
    /// `name` on `port`, its state (and log) in a new temporary folder.
    pub(crate) fn new(name: &'static str, program: PathBuf, port: u16) -> Spec {
        let state = tempfile::Builder::new()
            .prefix(&format!("tradeflow-{name}-"))
            .tempdir()
            .expect("temp dir");
        Spec {
            name,
            program,
            args: Vec::new(),
            envs: Vec::new(),
            cwd: None,
            port,
            tls_port: None,
            state,
        }
    }

    /// The state folder, for flags that name it.
    pub(crate) fn state_dir(&self) -> &Path {
        self.state.path()
    }

    pub(crate) fn args(mut self, args: Vec<String>) -> Spec {
        self.args = args;
        self
    }

    pub(crate) fn envs(mut self, envs: Vec<(String, String)>) -> Spec {
        self.envs = envs;
        self
    }

    pub(crate) fn cwd(mut self, dir: PathBuf) -> Spec {
        self.cwd = Some(dir);
        self
    }

    pub(crate) fn tls_port(mut self, port: u16) -> Spec {
        self.tls_port = Some(port);
        self
    }

    /// Starts it and waits until it listens; panics (with its log) if it does not.
    pub(crate) fn launch(self) -> Service {
        let mut process = Process::new(self.name, &self.program, self.state.path())
            .args(&self.args)
            .envs(&self.envs);
        if let Some(dir) = &self.cwd {
            process = process.current_dir(dir);
        }
        let mut s = Service {
            name: self.name,
            port: self.port,
            tls_port: self.tls_port,
            process,
            state: self.state,
        };
        s.start();
        s
    }
}
