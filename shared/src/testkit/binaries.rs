//! How the tests and the chaos run start our own binaries: the environment they get
//! (the emulators' endpoints and placeholder credentials), and the consumer's flags
//! with the short timings every test fleet uses.

/// Placeholder credentials and region the emulators accept (they check none), as
/// (variable, value) pairs. Never real credentials.
const LOCAL_AWS: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "local"),
    ("AWS_SECRET_ACCESS_KEY", "local"),
    ("AWS_REGION", "eu-west-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// Sets the dummy credentials and region the SDK needs to sign requests to the local
/// emulators (they accept any). Never real credentials.
pub fn local_aws_env() {
    // Tests run their servers on loopback only; these values are placeholders.
    for (k, v) in LOCAL_AWS {
        std::env::set_var(k, v);
    }
}

/// The environment our binaries (producer, consumer) get in tests and the chaos run:
/// the emulators' endpoints, Redis, the placeholder credentials, info logs.
pub fn binary_env(kinesis: &str, dynamodb: &str, redis: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("TRADEFLOW_KINESIS_ENDPOINT".into(), kinesis.into()),
        ("TRADEFLOW_DYNAMODB_ENDPOINT".into(), dynamodb.into()),
        ("TRADEFLOW_REDIS_URL".into(), redis.into()),
    ];
    env.extend(LOCAL_AWS.map(|(k, v)| (k.to_string(), v.to_string())));
    env.push(("TRADEFLOW_LOG".into(), "info".into()));
    env
}

/// tradeflow-consumer's flags for worker `worker` of application `app` on `stream`,
/// with the short timings of the tests (failover 2 s, idle 100 ms, checkpoint every
/// 500 ms) and /metrics on a free port, then `extra` (e.g. `--take-interval 1s`).
pub fn consumer_args(stream: &str, app: &str, worker: &str, extra: &[&str]) -> Vec<String> {
    [
        "--stream",
        stream,
        "--application-name",
        app,
        "--worker-id",
        worker,
        "--failover-time",
        "2s",
        "--idle-interval",
        "100ms",
        "--idle-max-wait",
        "400ms",
        "--checkpoint-interval",
        "500ms",
        "--metrics-addr",
        "127.0.0.1:0",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}
