//! Against moto's SSM (a real AWS-API server on loopback), through the real SDK path:
//! default credential chain (the placeholders of `local_aws_env`), endpoint override,
//! GetParameter with decryption.

use super::*;
use crate::testkit;

const VALUE: &str = "xoxb-1234-5678-do-not-print-me";

async fn put(client: &aws_sdk_ssm::Client, name: &str, value: &str, kind: ParameterType) {
    client
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(kind)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutParameter {name}: {}", DisplayErrorContext(e)));
}

/// Everything a caller could print about an outcome: Display and Debug, both ways.
fn printed(r: &Result<Secret, SecretError>) -> String {
    match r {
        Ok(s) => format!("{s} {s:?} {r:?}"),
        Err(e) => format!("{e} {e:?} {r:?}"),
    }
}

#[tokio::test]
async fn secure_strings_are_read_decrypted_and_failures_name_the_parameter_only() {
    testkit::local_aws_env();
    let moto = testkit::moto();
    let access = SsmAccess {
        region: "eu-west-1".into(),
        endpoint: Some(moto.endpoint()),
    };
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .load()
        .await;
    let client = ssm_client(&conf, Some(&moto.endpoint()));
    put(
        &client,
        "/tradeflow/slack-token",
        VALUE,
        ParameterType::SecureString,
    )
    .await;
    put(&client, "/tradeflow/plain", VALUE, ParameterType::String).await;

    // Decrypted: without WithDecryption, moto answers "kms:alias/aws/ssm:<value>".
    let source = SecretSource::Ssm("/tradeflow/slack-token".into());
    let got = resolve(&source, &access).await;
    assert_eq!(
        got.as_ref().map(Secret::expose).ok(),
        Some(VALUE),
        "{got:?}"
    );
    assert!(!printed(&got).contains(VALUE), "{}", printed(&got));

    // Missing: a clear error that names the parameter.
    let missing = resolve(&SecretSource::Ssm("/tradeflow/nope".into()), &access).await;
    assert!(
        matches!(&missing, Err(SecretError::ParameterNotFound(n)) if n == "/tradeflow/nope"),
        "{missing:?}"
    );
    assert_eq!(
        missing.as_ref().unwrap_err().to_string(),
        "SSM parameter /tradeflow/nope does not exist (check the name and the region)"
    );

    // A plain String holding the secret is refused, and its value is not in the error.
    let plain = from_ssm(&client, "/tradeflow/plain").await;
    assert!(
        matches!(&plain, Err(SecretError::NotSecureString { kind, .. }) if kind == "String"),
        "{plain:?}"
    );
    assert!(printed(&plain).contains("/tradeflow/plain"));
    assert!(!printed(&plain).contains(VALUE), "{}", printed(&plain));

    // An unreachable endpoint: an error naming the parameter, never a hang.
    let dead = SsmAccess {
        region: "eu-west-1".into(),
        endpoint: Some(format!("http://127.0.0.1:{}", testkit::free_port())),
    };
    let failed = resolve(&source, &dead).await;
    assert!(
        matches!(&failed, Err(SecretError::Ssm { name, .. }) if name == "/tradeflow/slack-token"),
        "{failed:?}"
    );
    assert!(!printed(&failed).contains(VALUE));
}

#[test]
fn env_secrets_print_redacted_and_errors_name_the_variable() {
    let var = "TRADEFLOW_TEST_SECRET_ENV_PRINTING";
    std::env::set_var(var, VALUE);
    let got = from_env(var);
    assert_eq!(got.as_ref().map(Secret::expose).ok(), Some(VALUE));
    assert!(!printed(&got).contains(VALUE), "{}", printed(&got));
    assert_eq!(format!("{:?}", got.unwrap()), "Secret(<redacted>)");

    std::env::set_var(var, "");
    assert_eq!(
        from_env(var).unwrap_err().to_string(),
        format!("environment variable {var} is empty")
    );
    std::env::remove_var(var);
    assert_eq!(
        from_env(var).unwrap_err().to_string(),
        format!("environment variable {var} is not set")
    );
    assert_eq!(
        SecretSource::Ssm("/a/b".into()).to_string(),
        "SSM parameter /a/b"
    );
}
