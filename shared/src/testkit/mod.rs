//! Starts the real local servers the integration tests run against — redis-server,
//! dynalite (DynamoDB), ferrokinesis and kinesis-mock (Kinesis) — each on a free
//! loopback port, with its state in a temporary folder. A `Service` is stopped by its
//! pid when dropped, so a failing test leaves nothing behind.
//!
//! Where the programs are: `scripts/install-tools` puts them under `<workspace>/.tools`
//! (`TRADEFLOW_TOOLS` overrides); redis-server comes from the PATH.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The folder the test tools were installed into.
pub fn tools_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TRADEFLOW_TOOLS") {
        return PathBuf::from(dir);
    }
    workspace_root().join(".tools")
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("shared/ has a parent")
        .to_path_buf()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback")
}

/// A running server process. Dropping it kills it (by pid) and waits for it.
pub struct Service {
    pub name: &'static str,
    pub port: u16,
    /// Extra port (kinesis-mock's TLS port).
    pub tls_port: Option<u16>,
    child: Option<Child>,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    state: tempfile::TempDir,
    log: PathBuf,
}

impl Service {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The folder holding this server's state (AOF, dynalite's data, the WAL).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops it politely (SIGTERM), waiting up to 10 s before killing it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same state folder.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open service log");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({}): {e}. Run scripts/install-tools first.",
                self.name,
                self.program.display()
            )
        });
        self.child = Some(child);
        self.wait_listening();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "{} exited with {status} before listening; log:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not listen on port {} within 60 s",
                    self.name, self.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Spec {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    port: u16,
    tls_port: Option<u16>,
    state: tempfile::TempDir,
}

fn launch(spec: Spec) -> Service {
    let log = spec.state.path().join(format!("{}.log", spec.name));
    let mut s = Service {
        name: spec.name,
        port: spec.port,
        tls_port: spec.tls_port,
        child: None,
        program: spec.program,
        args: spec.args,
        envs: spec.envs,
        cwd: spec.cwd,
        state: spec.state,
        log,
    };
    s.start();
    s
}

fn state_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("tradeflow-{name}-"))
        .tempdir()
        .expect("temp dir")
}

/// redis-server on loopback with AOF (`appendfsync everysec`), as in production.
pub fn redis() -> Service {
    let port = free_port();
    let state = state_dir("redis");
    let args = vec![
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--dir".into(),
        state.path().display().to_string(),
        "--appendonly".into(),
        "yes".into(),
        "--appendfsync".into(),
        "everysec".into(),
        "--save".into(),
        String::new(),
        "--daemonize".into(),
        "no".into(),
    ];
    launch(Spec {
        name: "redis",
        program: which("redis-server"),
        args,
        envs: vec![],
        cwd: None,
        port,
        tls_port: None,
        state,
    })
}

/// dynalite keeping its tables on disk (they survive a restart).
pub fn dynalite() -> Service {
    let port = free_port();
    let state = state_dir("dynalite");
    let args = vec![
        "--port".into(),
        port.to_string(),
        "--path".into(),
        state.path().join("db").display().to_string(),
    ];
    launch(Spec {
        name: "dynalite",
        program: tools_dir().join("node_modules/.bin/dynalite"),
        args,
        envs: vec![],
        cwd: None,
        port,
        tls_port: None,
        state,
    })
}

/// ferrokinesis with a write-ahead log (survives kill -9) and the given extra flags
/// (for instance `--enforce-limits`).
pub fn ferrokinesis(extra: &[&str]) -> Service {
    ferrokinesis_with(true, extra)
}

/// ferrokinesis holding its streams in memory only: no write-ahead log (which grows by
/// the whole stream's state at every reshard), but a restart loses everything.
pub fn ferrokinesis_volatile(extra: &[&str]) -> Service {
    ferrokinesis_with(false, extra)
}

fn ferrokinesis_with(durable: bool, extra: &[&str]) -> Service {
    let port = free_port();
    let state = state_dir("ferrokinesis");
    let mut args = vec!["--port".into(), port.to_string()];
    if durable {
        args.push("--state-dir".into());
        args.push(state.path().join("state").display().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    launch(Spec {
        name: "ferrokinesis",
        program: tools_dir().join("bin/ferrokinesis"),
        args,
        envs: vec![],
        cwd: None,
        port,
        tls_port: None,
        state,
    })
}

/// Writes `ca.pem` (a CA made for this test only), and `server.pem`/`server.key` signed
/// by it for IP 127.0.0.1 and DNS localhost, into `dir` (openssl, which
/// scripts/install-tools installs).
pub fn tls_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (scripts/install-tools installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=tradeflow test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext.cnf");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
}

/// Where a durable ferrokinesis keeps its write-ahead log.
pub fn ferrokinesis_wal(service: &Service) -> PathBuf {
    service.state_dir().join("state").join("wal.log")
}

/// Waits until ferrokinesis's `/_health` says UP (it replays its log before that), or
/// returns what it said last (e.g. a log it could not decode) after `limit`.
pub fn wait_ferrokinesis_up(service: &Service, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let last = match http_get(service.port, "/_health") {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => format!("HTTP {status}: {}", body.trim()),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A plain HTTP/1.1 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    c.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {text:.80}")))?;
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    Ok((status, body))
}

/// ferrokinesis 0.7 keeps its durable state in a write-ahead log (`FKWALv2\n`, then
/// entries of a little-endian u64 length and that many bytes). A kill -9 in the middle
/// of an append leaves a torn last entry; its next start ignores it but appends new
/// entries *after* the torn bytes, and the start after that cannot decode the log: the
/// store stays DOWN and every call fails (reproduced with boto3 alone: kill, restart,
/// write, kill, restart). Before restarting a killed ferrokinesis, this cuts the log back
/// to its last whole entry — what a durable log does on recovery; the torn entry was
/// never acknowledged (the append ends with an fsync before the answer). Returns the
/// bytes cut (0 when the log ended on an entry).
pub fn cut_torn_wal(wal: &Path) -> std::io::Result<u64> {
    let mut f = match std::fs::OpenOptions::new().read(true).write(true).open(wal) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let total = f.metadata()?.len();
    let whole = wal_whole_prefix(&mut f, total)?;
    if whole < total {
        f.set_len(whole)?;
        f.sync_all()?;
    }
    Ok(total - whole)
}

/// Length of the log's prefix made of the header and whole entries.
fn wal_whole_prefix<R: std::io::Read + std::io::Seek>(
    r: &mut R,
    total: u64,
) -> std::io::Result<u64> {
    use std::io::SeekFrom;
    const MAGIC: u64 = 8;
    if total < MAGIC {
        return Ok(0);
    }
    let mut at = MAGIC;
    loop {
        if at + 8 > total {
            return Ok(at);
        }
        r.seek(SeekFrom::Start(at))?;
        let mut len = [0u8; 8];
        r.read_exact(&mut len)?;
        let end = (at + 8).saturating_add(u64::from_le_bytes(len));
        if end > total {
            return Ok(at);
        }
        at = end;
    }
}

/// kinesis-mock (npm `kinesis-local`): fills `ChildShards`, serves TLS and fan-out.
/// Keep its streams small: its writes slow down as a shard fills.
pub fn kinesis_mock() -> Service {
    let port = free_port();
    let tls_port = free_port();
    let state = state_dir("kinesis-mock");
    let pkg = tools_dir().join("node_modules/kinesis-local");
    let mut envs: Vec<(String, String)> = vec![
        ("KINESIS_MOCK_PLAIN_PORT".into(), port.to_string()),
        ("KINESIS_MOCK_TLS_PORT".into(), tls_port.to_string()),
        ("LOG_LEVEL".into(), "WARN".into()),
    ];
    for v in [
        "CREATE_STREAM_DURATION",
        "DELETE_STREAM_DURATION",
        "REGISTER_STREAM_CONSUMER_DURATION",
        "START_STREAM_ENCRYPTION_DURATION",
        "STOP_STREAM_ENCRYPTION_DURATION",
        "DEREGISTER_STREAM_CONSUMER_DURATION",
        "MERGE_SHARDS_DURATION",
        "SPLIT_SHARD_DURATION",
        "UPDATE_SHARD_COUNT_DURATION",
        "UPDATE_STREAM_MODE_DURATION",
    ] {
        envs.push((v.into(), "0ms".into()));
    }
    launch(Spec {
        name: "kinesis-mock",
        program: which("node"),
        args: vec![pkg.join("main.js").display().to_string()],
        envs,
        cwd: Some(pkg),
        port,
        tls_port: Some(tls_port),
        state,
    })
}

fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// Creates a stream and waits until it is ACTIVE (the emulators take a moment), or
/// says why not within 30 s.
pub async fn create_active_stream(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    shards: i32,
) -> Result<(), String> {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .map_err(|e| {
            format!(
                "CreateStream {name}: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(e)
            )
        })?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let active = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .ok()
            .and_then(|d| d.stream_description_summary().cloned())
            .is_some_and(|s| s.stream_status().as_str() == "ACTIVE");
        if active {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("stream {name} not ACTIVE after 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sets the dummy credentials and region the SDK needs to sign requests to the local
/// emulators (they accept any). Never real credentials.
pub fn local_aws_env() {
    // Tests run their servers on loopback only; these values are placeholders.
    std::env::set_var("AWS_ACCESS_KEY_ID", "local");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "local");
    std::env::set_var("AWS_REGION", "eu-west-1");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
}

pub mod api_faults;
mod moto;
pub use moto::moto;
mod redis_cluster;
pub use redis_cluster::{ClusterSecurity, RedisCluster};
pub mod slack;
pub use slack::SlackServer;
mod valkey;
pub use valkey::{valkey, valkey_server};

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Vec<u8> {
        let mut e = (n as u64).to_le_bytes().to_vec();
        e.extend(std::iter::repeat_n(b'x', n));
        e
    }

    #[test]
    fn torn_wal_tails_are_found() {
        let mut log = b"FKWALv2\n".to_vec();
        let whole = |log: &Vec<u8>| {
            wal_whole_prefix(&mut std::io::Cursor::new(log), log.len() as u64).unwrap()
        };
        assert_eq!(whole(&log), 8);
        log.extend(entry(5));
        log.extend(entry(0));
        let clean = log.len() as u64;
        assert_eq!(whole(&log), clean);
        // A torn length prefix, then a whole prefix with a torn body.
        log.extend(&entry(10)[..3]);
        assert_eq!(whole(&log), clean);
        log.truncate(clean as usize);
        log.extend(&entry(10)[..12]);
        assert_eq!(whole(&log), clean);
        // A length that runs past the end of the file (garbage after a torn entry).
        log.truncate(clean as usize);
        log.extend(u64::MAX.to_le_bytes());
        assert_eq!(whole(&log), clean);
        assert_eq!(whole(&b"FKW".to_vec()), 0);
    }

    #[test]
    fn cut_torn_wal_truncates_to_the_last_whole_entry() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal.log");
        assert_eq!(cut_torn_wal(&wal).unwrap(), 0, "no log yet");
        let mut log = b"FKWALv2\n".to_vec();
        log.extend(entry(4));
        let clean = log.len();
        log.extend(&entry(9)[..11]);
        std::fs::write(&wal, &log).unwrap();
        assert_eq!(cut_torn_wal(&wal).unwrap(), 11);
        assert_eq!(std::fs::read(&wal).unwrap(), log[..clean]);
        assert_eq!(cut_torn_wal(&wal).unwrap(), 0);
    }
}
