//! Secrets (a Slack bot token, a webhook URL) read at run time from an environment
//! variable or from an AWS SSM Parameter Store SecureString, never from a flag's value:
//! flags show in `/proc/*/cmdline` and `--help`. A [`Secret`] prints as `<redacted>`
//! (Debug and Display), and a [`SecretError`] names the variable or the parameter but
//! never holds the value, so neither can leak it into a log line or an error message.
//!
//! SSM: GetParameter with `WithDecryption=true`, credentials from the default provider
//! chain (environment, profile, web identity, ECS, EC2 instance profile). The IAM policy
//! needs `ssm:GetParameter` on the parameter, and `kms:Decrypt` when the parameter is
//! encrypted with a customer managed key (infra/aws/tradeflow.yaml grants exactly that).

use std::fmt;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ssm::error::{DisplayErrorContext, SdkError};
use aws_sdk_ssm::operation::get_parameter::GetParameterError;
use aws_sdk_ssm::types::ParameterType;

/// A secret value. Only [`Secret::expose`] gives it out.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it (an Authorization header, a URL).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a secret is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The environment variable of that name (set by systemd's EnvironmentFile=, say).
    Env(String),
    /// The SSM parameter of that name, a SecureString.
    Ssm(String),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(var) => write!(f, "environment variable {var}"),
            SecretSource::Ssm(name) => write!(f, "SSM parameter {name}"),
        }
    }
}

/// Why a secret could not be read. Names where it was looked for, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error("environment variable {0} is empty")]
    EnvEmpty(String),
    #[error("environment variable {0} is not valid UTF-8")]
    EnvNotUnicode(String),
    #[error("SSM parameter {0} does not exist (check the name and the region)")]
    ParameterNotFound(String),
    #[error(
        "SSM parameter {name} is of type {kind}, not SecureString: store the secret encrypted"
    )]
    NotSecureString { name: String, kind: String },
    #[error("SSM parameter {0} is empty")]
    ParameterEmpty(String),
    /// Any other failure of the call (access denied, KMS, network, throttling), with the
    /// SDK's description: an error answer or a transport failure holds no parameter value.
    #[error("reading SSM parameter {name}: {detail}")]
    Ssm { name: String, detail: String },
}

/// How to reach Parameter Store: the region, and an endpoint for local servers only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmAccess {
    pub region: String,
    /// e.g. `http://127.0.0.1:5000` (moto in tests); None = the regional AWS endpoint.
    pub endpoint: Option<String>,
}

/// A parameter read is small; a stalled endpoint must fail the report, not hang it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);

/// Reads the secret from where `source` says. The SSM client is only built (and the
/// credential chain only consulted) for an SSM source.
pub async fn resolve(source: &SecretSource, ssm: &SsmAccess) -> Result<Secret, SecretError> {
    match source {
        SecretSource::Env(var) => from_env(var),
        SecretSource::Ssm(name) => {
            let conf = aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new(ssm.region.clone()))
                .load()
                .await;
            from_ssm(&ssm_client(&conf, ssm.endpoint.as_deref()), name).await
        }
    }
}

/// The value of environment variable `var`; unset or empty is an error naming it.
pub fn from_env(var: &str) -> Result<Secret, SecretError> {
    match std::env::var(var) {
        Ok(v) if v.is_empty() => Err(SecretError::EnvEmpty(var.to_string())),
        Ok(v) => Ok(Secret(v)),
        Err(std::env::VarError::NotPresent) => Err(SecretError::EnvMissing(var.to_string())),
        Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::EnvNotUnicode(var.to_string())),
    }
}

/// An SSM client from `conf` (region, credentials), with bounded calls and an optional
/// endpoint override.
pub fn ssm_client(conf: &aws_config::SdkConfig, endpoint: Option<&str>) -> aws_sdk_ssm::Client {
    let mut b = aws_sdk_ssm::config::Builder::from(conf).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build(),
    );
    if let Some(url) = endpoint {
        b = b.endpoint_url(url);
    }
    aws_sdk_ssm::Client::from_conf(b.build())
}

/// GetParameter `name` with decryption. Only a SecureString is accepted: a plain String
/// parameter would mean the secret sits unencrypted in Parameter Store.
pub async fn from_ssm(client: &aws_sdk_ssm::Client, name: &str) -> Result<Secret, SecretError> {
    let out = client
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| ssm_error(name, e))?;
    let param = out
        .parameter
        .ok_or_else(|| SecretError::ParameterNotFound(name.to_string()))?;
    match &param.r#type {
        Some(ParameterType::SecureString) => {}
        other => {
            let kind = other.as_ref().map_or("unknown", |t| t.as_str()).to_string();
            return Err(SecretError::NotSecureString {
                name: name.to_string(),
                kind,
            });
        }
    }
    match param.value {
        Some(v) if !v.is_empty() => Ok(Secret(v)),
        _ => Err(SecretError::ParameterEmpty(name.to_string())),
    }
}

fn ssm_error(name: &str, e: SdkError<GetParameterError>) -> SecretError {
    if let Some(GetParameterError::ParameterNotFound(_)) = e.as_service_error() {
        return SecretError::ParameterNotFound(name.to_string());
    }
    SecretError::Ssm {
        name: name.to_string(),
        detail: DisplayErrorContext(e).to_string(),
    }
}

#[cfg(all(test, feature = "testkit"))]
mod tests;
