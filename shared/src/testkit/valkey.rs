//! valkey-server 8.0, a Redis 7.2-compatible server, for the tests of what redis-server
//! 7.0 (Debian bookworm's, the suite's default) lacks or does differently: `WAITAOF`,
//! and `WAIT` after a read-only script (7.0 counts any script call as a write for
//! `WAIT`; 7.2 and later, like ElastiCache's Redis 7.1+/Valkey, do not).
//! `scripts/install-tools` unpacks it into `.tools/valkey`.

use std::path::PathBuf;

use super::{free_port, launch, state_dir, tools_dir, Service, Spec};

/// The valkey-server binary; panics with what to run when it is missing.
pub fn valkey_server() -> PathBuf {
    let p = tools_dir().join("valkey/usr/bin/valkey-server");
    assert!(
        p.exists(),
        "{} missing: run scripts/install-tools",
        p.display()
    );
    p
}

/// valkey-server on loopback with AOF (`appendfsync everysec`), as [`super::redis`];
/// `replica_of` makes it a replica of that port's server.
pub fn valkey(replica_of: Option<u16>) -> Service {
    let port = free_port();
    let state = state_dir("valkey");
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &state.path().display().to_string(),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(primary) = replica_of {
        args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.to_string(),
        ]);
    }
    launch(Spec {
        name: "valkey",
        program: valkey_server(),
        args,
        envs: vec![],
        cwd: None,
        port,
        tls_port: None,
        state,
    })
}
