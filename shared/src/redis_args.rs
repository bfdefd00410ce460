//! The Redis flags of every binary that reads or writes the totals (the consumer, the
//! report), declared once so their names, environment variables and secrecy agree.

/// Where Redis is and how to trust it.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Redis URL: redis://[:password@]host:port[/db] or rediss:// for TLS; a Redis Cluster
    /// as redis+cluster://[:password@]host:port[,host:port…] (seed nodes; rediss+cluster://
    /// for TLS).
    #[arg(
        id = "redis_url",
        long = "redis-url",
        value_name = "REDIS_URL",
        env = "TRADEFLOW_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        // It holds the password: never echoed by --help.
        hide_env_values = true
    )]
    pub url: String,

    /// PEM file of the CA that signed Redis's TLS certificate (`rediss://` with a
    /// private CA; public CAs are trusted without it).
    #[arg(
        id = "redis_ca_file",
        long = "redis-ca-file",
        value_name = "REDIS_CA_FILE",
        env = "TRADEFLOW_REDIS_CA_FILE"
    )]
    pub ca_file: Option<std::path::PathBuf>,
}

impl RedisArgs {
    /// The URL's scheme is one the clients understand (checked before any I/O).
    pub fn validate(&self) -> Result<(), String> {
        let schemes = [
            "redis://",
            "rediss://",
            "unix://",
            "redis+cluster://",
            "rediss+cluster://",
        ];
        if !schemes.iter().any(|s| self.url.starts_with(s)) {
            return Err("--redis-url must start with redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://".into());
        }
        Ok(())
    }
}
