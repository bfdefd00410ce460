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

pub fn dynamodb_client(conf: &aws_config::SdkConfig, args: &AwsArgs) -> aws_sdk_dynamodb::Client {
    let mut b = aws_sdk_dynamodb::config::Builder::from(conf);
    if let Some(url) = &args.dynamodb_endpoint {
        b = b.endpoint_url(url);
    }
    aws_sdk_dynamodb::Client::from_conf(b.build())
}
