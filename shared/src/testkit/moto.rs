//! moto in server mode: a local AWS API (here for SSM Parameter Store) on a free
//! loopback port, installed by scripts/install-tools into `.tools/moto` (a venv, pinned).
//! Its state lives in memory only; the `Service` is killed by pid when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{launch, state_dir, tools_dir, Service, Spec};

/// Starts moto's server on 127.0.0.1 and a free port; `endpoint()` is the URL to give
/// the SDK (`endpoint_url`). Any region and any credentials are accepted: set the
/// placeholders with `testkit::local_aws_env()`. Returns once SSM answers: moto sets up
/// its SSM backend at the first SSM call, which took from 2.5 s to over 15 s on a busy
/// machine here: more than a client's timeouts allow.
pub fn moto() -> Service {
    let moto = start();
    warm_ssm(moto.port)
        .unwrap_or_else(|e| panic!("moto's SSM did not answer: {e}\n{}", moto.log()));
    moto
}

fn start() -> Service {
    let port = super::free_port();
    let state = state_dir("moto");
    launch(Spec {
        name: "moto",
        // The venv's python itself (not the moto_server script, whose #! names the path
        // the venv was made at): this pid is the server's.
        program: tools_dir().join("moto/bin/python"),
        args: vec![
            "-m".into(),
            "moto.server".into(),
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ],
        // Placeholders: nothing in the server reaches for real credentials.
        envs: vec![
            ("AWS_ACCESS_KEY_ID".into(), "local".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "local".into()),
            ("PYTHONUNBUFFERED".into(), "1".into()),
        ],
        cwd: Some(state.path().to_path_buf()),
        port,
        tls_port: None,
        state,
    })
}

/// One DescribeParameters call (moto takes any signature), waited for up to a minute.
fn warm_ssm(port: u16) -> std::io::Result<()> {
    let body = "{}";
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        c,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         X-Amz-Target: AmazonSSM.DescribeParameters\r\n\
         Content-Type: application/x-amz-json-1.1\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=local/20260101/eu-west-1/ssm/aws4_request, \
         SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    c.read_to_string(&mut answer)?;
    match answer.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(std::io::Error::other(format!("answered {answer:.200}"))),
    }
}
