//! AWS client configuration. Credentials always come from the default provider chain
//! (environment, profile, web identity, ECS, EC2 instance profile) — never from flags.
//! An endpoint URL is only for local emulators.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

/// The SDK bounds only the TCP connect by default: a call on a connection that goes
/// silent (half-open TCP, a stalled endpoint) would wait for ever and stall a shard or
/// the lease loop. Every call here is bounded per attempt and overall; a timed-out
/// attempt is retried by the SDK like any other transient error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// GetRecords may return up to 10 MB: generous.
const KINESIS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const KINESIS_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// DynamoDB answers in milliseconds; a lease renewal must fail fast enough to be retried
/// well within the failover time (default 10 s).
const DYNAMODB_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
const DYNAMODB_OPERATION_TIMEOUT: Duration = Duration::from_secs(8);

fn timeouts(attempt: Duration, operation: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build()
}

/// For SubscribeToShard: its answer is an event stream that stays open for up to five
/// minutes, so only the connect is bounded here; the fan-out reader watches the stream
/// for silence itself.
pub fn streaming_call_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .disable_operation_attempt_timeout()
        .disable_operation_timeout()
        .build()
}

/// Flags shared by every binary that talks to AWS.
#[derive(Debug, Clone, clap::Args)]
pub struct AwsArgs {
    /// AWS region.
    #[arg(long, env = "AWS_REGION", default_value = "eu-west-1")]
    pub region: String,
    /// Kinesis endpoint override (local emulators only), e.g. http://127.0.0.1:4567.
    // Endpoints are URLs and may carry credentials: never echoed by --help.
    #[arg(long, env = "TRADEFLOW_KINESIS_ENDPOINT", hide_env_values = true)]
    pub kinesis_endpoint: Option<String>,
    /// DynamoDB endpoint override (local emulators only).
    #[arg(long, env = "TRADEFLOW_DYNAMODB_ENDPOINT", hide_env_values = true)]
    pub dynamodb_endpoint: Option<String>,
}

/// The contents of a PEM certificate file, checked to hold at least one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemFile(pub Vec<u8>);

/// A clap `value_parser` for PEM flags.
pub fn read_pem_file(path: &str) -> Result<PemFile, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    // Checked here so a wrong file fails at start, not at the first TLS handshake.
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Ok(PemFile(bytes))
}

pub async fn sdk_config(args: &AwsArgs) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(args.region.clone()))
        .load()
        .await
}

pub fn kinesis_client(conf: &aws_config::SdkConfig, args: &AwsArgs) -> aws_sdk_kinesis::Client {
    let mut b = aws_sdk_kinesis::config::Builder::from(conf)
        .timeout_config(timeouts(KINESIS_ATTEMPT_TIMEOUT, KINESIS_OPERATION_TIMEOUT));
    if let Some(url) = &args.kinesis_endpoint {
        b = b.endpoint_url(url);
    }
    aws_sdk_kinesis::Client::from_conf(b.build())
}

/// As `kinesis_client`, also trusting the CA certificates of `ca` (besides the system
/// roots) for the Kinesis endpoint.
pub fn kinesis_client_trusting(
    conf: &aws_config::SdkConfig,
    args: &AwsArgs,
    ca: Option<&PemFile>,
) -> aws_sdk_kinesis::Client {
    let mut b = aws_sdk_kinesis::config::Builder::from(conf)
        .timeout_config(timeouts(KINESIS_ATTEMPT_TIMEOUT, KINESIS_OPERATION_TIMEOUT));
    if let Some(url) = &args.kinesis_endpoint {
        b = b.endpoint_url(url);
    }
    if let Some(pem) = ca {
        b = b.http_client(http_client_trusting(pem));
    }
    aws_sdk_kinesis::Client::from_conf(b.build())
}

/// The SDK's default rustls client (HTTP/1.1 and HTTP/2, as SubscribeToShard needs),
/// trusting the system roots plus `pem`. Verification stays on.
fn http_client_trusting(pem: &PemFile) -> aws_sdk_kinesis::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    let trust = tls::TrustStore::default().with_pem_certificate(pem.0.clone());
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(
            tls::TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .expect("a trust store alone is a valid TLS context"),
        )
        .build_https()
}

pub fn dynamodb_client(conf: &aws_config::SdkConfig, args: &AwsArgs) -> aws_sdk_dynamodb::Client {
    let mut b = aws_sdk_dynamodb::config::Builder::from(conf).timeout_config(timeouts(
        DYNAMODB_ATTEMPT_TIMEOUT,
        DYNAMODB_OPERATION_TIMEOUT,
    ));
    if let Some(url) = &args.dynamodb_endpoint {
        b = b.endpoint_url(url);
    }
    aws_sdk_dynamodb::Client::from_conf(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that accepts connections and never answers.
    async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        (url, task)
    }

    fn local_args(url: &str) -> AwsArgs {
        AwsArgs {
            region: "eu-west-1".into(),
            kinesis_endpoint: Some(url.into()),
            dynamodb_endpoint: Some(url.into()),
        }
    }

    async fn local_sdk_config() -> aws_config::SdkConfig {
        // Explicit dummy credentials: the default chain could reach for instance metadata.
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                "local", "local", None, None, "test",
            ))
            .load()
            .await
    }

    #[tokio::test]
    async fn calls_to_a_silent_endpoint_fail_instead_of_hanging() {
        let (url, server) = silent_server().await;
        let conf = local_sdk_config().await;
        let args = local_args(&url);
        // The outer bound only turns a hang into a failure; the SDK's own timeout must
        // end the call first (8 s overall).
        let ddb = dynamodb_client(&conf, &args);
        let answer = tokio::time::timeout(Duration::from_secs(60), ddb.list_tables().send()).await;
        assert!(
            matches!(answer, Ok(Err(_))),
            "DynamoDB call hung: {answer:?}"
        );
        // Kinesis is configured the same way (its 30 s bound is not waited out here).
        for kinesis in [
            kinesis_client(&conf, &args),
            kinesis_client_trusting(&conf, &args, None),
        ] {
            let t = kinesis.config().timeout_config().expect("timeouts set");
            assert_eq!(t.operation_attempt_timeout(), Some(KINESIS_ATTEMPT_TIMEOUT));
            assert_eq!(t.operation_timeout(), Some(KINESIS_OPERATION_TIMEOUT));
            assert_eq!(t.connect_timeout(), Some(CONNECT_TIMEOUT));
        }
        assert_eq!(streaming_call_timeouts().operation_attempt_timeout(), None);
        server.abort();
    }

    #[test]
    fn pem_flags_must_name_a_certificate_file() {
        assert!(read_pem_file("/nonexistent/ca.pem").is_err());
        let dir = std::env::temp_dir().join(format!("tradeflow-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        assert!(read_pem_file(bad.to_str().unwrap()).is_err());
        let good = dir.join("good.pem");
        std::fs::write(
            &good,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(read_pem_file(good.to_str().unwrap()).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
