//! AWS client configuration. Credentials always come from the default provider chain
//! (environment, profile, web identity, ECS, EC2 instance profile) — never from flags.
//! An endpoint URL is only for local emulators.

use aws_config::{BehaviorVersion, Region};

/// Flags shared by every binary that talks to AWS.
#[derive(Debug, Clone, clap::Args)]
pub struct AwsArgs {
    /// AWS region.
    #[arg(long, env = "AWS_REGION", default_value = "eu-west-1")]
    pub region: String,
    /// Kinesis endpoint override (local emulators only), e.g. http://127.0.0.1:4567.
    #[arg(long, env = "TRADEFLOW_KINESIS_ENDPOINT")]
    pub kinesis_endpoint: Option<String>,
    /// DynamoDB endpoint override (local emulators only).
    #[arg(long, env = "TRADEFLOW_DYNAMODB_ENDPOINT")]
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
    let mut b = aws_sdk_kinesis::config::Builder::from(conf);
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
    let mut b = aws_sdk_kinesis::config::Builder::from(conf);
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
    let mut b = aws_sdk_dynamodb::config::Builder::from(conf);
    if let Some(url) = &args.dynamodb_endpoint {
        b = b.endpoint_url(url);
    }
    aws_sdk_dynamodb::Client::from_conf(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

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
