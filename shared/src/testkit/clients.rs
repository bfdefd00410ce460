//! AWS clients for the local emulators, built as our binaries build theirs
//! (`tradeflow_shared::aws`: its region and timeouts), credentials from
//! [`local_aws_env`](super::local_aws_env).

use crate::aws::{dynamodb_client, kinesis_client, sdk_config, AwsArgs};

fn args(kinesis: Option<&str>, dynamodb: Option<&str>) -> AwsArgs {
    AwsArgs {
        region: "eu-west-1".into(),
        kinesis_endpoint: kinesis.map(str::to_string),
        dynamodb_endpoint: dynamodb.map(str::to_string),
    }
}

/// A Kinesis client for the emulator at `endpoint`.
pub async fn kinesis_client_at(endpoint: &str) -> aws_sdk_kinesis::Client {
    let args = args(Some(endpoint), None);
    kinesis_client(&sdk_config(&args).await, &args)
}

/// Kinesis and DynamoDB clients for the emulators at these endpoints.
pub async fn clients_at(
    kinesis: &str,
    dynamodb: &str,
) -> (aws_sdk_kinesis::Client, aws_sdk_dynamodb::Client) {
    let args = args(Some(kinesis), Some(dynamodb));
    let conf = sdk_config(&args).await;
    (kinesis_client(&conf, &args), dynamodb_client(&conf, &args))
}
