//! `tradeflow-report slack`: the report posted where the team reads it. One Block Kit
//! message (totals, top symbols by trades and by USD value, unvalued symbols, trades per
//! minute of the last hour, freshness; see [`message`]) and, with a bot token, the
//! charts as PNG ([`crate::chart`]) through Slack's upload flow ([`api`]). An incoming
//! webhook posts the message only.
//!
//! The secret (bot token or webhook URL) comes from an environment variable or from an
//! SSM SecureString named by `--slack-secret-ssm-parameter` ([`tradeflow_shared::secret`]);
//! never from a command-line value (it would show in `/proc/*/cmdline`), never printed.
//!
//! A run that fails (Redis unreachable, prices, charts, Slack) exits non-zero with the
//! reason on stderr (the journal) and, unless Slack itself refused us, posts a message
//! saying the report failed.

pub mod api;
pub mod http;
pub mod message;

use std::time::Duration;

use tradeflow_shared::secret::{self, Secret, SecretSource, SsmAccess};

use crate::chart::{self, Png};
use crate::error::ReportError;
use crate::prices::PriceFeed;
use crate::web::snapshot::WebSnapshot;
use crate::web::{Source, SourceConfig};
use crate::Args;
use api::{Destination, Slack, SlackError};
use message::{Message, Shape};

pub const TOKEN_ENV: &str = "TRADEFLOW_SLACK_TOKEN";
pub const WEBHOOK_ENV: &str = "TRADEFLOW_SLACK_WEBHOOK_URL";

#[derive(Debug, Clone, clap::Args)]
pub struct SlackArgs {
    /// Bot token (xoxb-…, scopes chat:write and files:write): posts the message and the
    /// charts. From the environment only (a value on the command line is refused).
    #[arg(long, env = TOKEN_ENV, hide_env_values = true, value_parser = secret_value)]
    pub slack_token: Option<Secret>,
    /// Incoming webhook URL: posts the message without charts. From the environment only.
    #[arg(long, env = WEBHOOK_ENV, hide_env_values = true, value_parser = secret_value)]
    pub slack_webhook_url: Option<Secret>,
    /// Name of an SSM SecureString holding the bot token or the webhook URL (read at each
    /// run with the default AWS credential chain).
    #[arg(long, env = "TRADEFLOW_SLACK_SSM_PARAMETER", value_name = "NAME")]
    pub slack_secret_ssm_parameter: Option<String>,
    /// Channel id (C…) to post to with a bot token.
    #[arg(long, env = "TRADEFLOW_SLACK_CHANNEL")]
    pub slack_channel: Option<String>,
    /// Slack's Web API base URL.
    #[arg(
        long,
        env = "TRADEFLOW_SLACK_API_URL",
        default_value = "https://slack.com/api/"
    )]
    pub slack_api_url: String,
    /// All Slack calls, retries after a 429 included, must start within this.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub slack_deadline: Duration,
    /// Timeout of one Slack request.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub slack_timeout: Duration,
    /// Symbols listed by trades and by USD value.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub slack_top: u16,
    /// Symbols in the trades-per-minute chart and lines.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub chart_symbols: u16,
    /// Post the message only, even with a bot token.
    #[arg(long)]
    pub no_charts: bool,
    /// Reading Redis (connect included) longer than this fails the run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,
    /// AWS region of the SSM parameter.
    #[arg(long, env = "AWS_REGION", default_value = "eu-west-1")]
    pub aws_region: String,
    /// SSM endpoint override (local emulators only).
    #[arg(long, env = "TRADEFLOW_SSM_ENDPOINT", hide_env_values = true)]
    pub ssm_endpoint: Option<String>,
}

fn secret_value(s: &str) -> Result<Secret, String> {
    if s.trim().is_empty() {
        return Err("empty".into());
    }
    Ok(Secret::new(s.trim()))
}

/// Chart sizes: wide enough for a desktop, legible when a phone shrinks them.
const TREEMAP_SIZE: (u32, u32) = (1200, 700);
const MINUTES_SIZE: (u32, u32) = (1200, 560);

/// What one run posts.
pub struct Composed {
    pub message: Message,
    pub charts: Vec<Png>,
}

/// Posts the report (or, when it cannot be made, a failure notice) and returns how the
/// run went.
pub async fn run(args: &Args, s: &SlackArgs) -> Result<(), ReportError> {
    // Without a destination there is nobody to tell: the error goes to the journal only.
    let dest = destination(s).await?;
    let http = http::Http::new(s.slack_timeout)
        .map_err(|e| ReportError::Config(format!("Slack client: {e}")))?;
    let slack = Slack::new(http, &s.slack_api_url, dest, s.slack_deadline);
    let outcome = match compose(
        args,
        s,
        matches!(slack.destination(), Destination::Bot { .. }),
    )
    .await
    {
        Ok(c) => deliver(&slack, &c).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &outcome {
        notify_failure(&slack, e).await;
    }
    outcome
}

/// Reads Redis and makes the message and the charts.
pub async fn compose(
    args: &Args,
    s: &SlackArgs,
    with_charts: bool,
) -> Result<Composed, ReportError> {
    let source = Source::new(SourceConfig {
        redis_url: args.redis.url.clone(),
        ca_file: args.redis.ca_file.clone(),
        key_prefix: args.key_prefix.clone(),
        top_series: s.chart_symbols as usize,
        min_interval: Duration::ZERO,
        timeout: s.redis_timeout,
        prices: PriceFeed::new(&args.prices, args.prices.prices_refresh)?,
    });
    let snap = source.snapshot().await;
    if !snap.ok {
        return Err(ReportError::Snapshot(
            snap.error
                .clone()
                .unwrap_or_else(|| "Redis cannot be read".into()),
        ));
    }
    compose_from(&snap, s.slack_top as usize, with_charts && !s.no_charts)
}

/// The message (and charts) for a snapshot read.
pub fn compose_from(
    snap: &WebSnapshot,
    top: usize,
    with_charts: bool,
) -> Result<Composed, ReportError> {
    if snap.total_trades == 0 {
        return Ok(Composed {
            message: message::empty(snap),
            charts: Vec::new(),
        });
    }
    let charts = if with_charts {
        charts(snap)?
    } else {
        Vec::new()
    };
    let note =
        (!charts.is_empty()).then_some("charts: treemap of trades, trades per minute (below)");
    Ok(Composed {
        message: message::report(snap, Shape { top }, note),
        charts,
    })
}

/// The treemap of trade counts and the per-minute lines.
pub fn charts(snap: &WebSnapshot) -> Result<Vec<Png>, ReportError> {
    let symbols: Vec<(String, u64)> = snap
        .symbols
        .iter()
        .map(|s| (s.symbol.clone(), s.trades))
        .collect();
    let (w, h) = TREEMAP_SIZE;
    let mut out = vec![chart::treemap::render(&symbols, snap.total_trades, w, h)?];
    if !snap.minutes.series.is_empty() {
        let (w, h) = MINUTES_SIZE;
        out.push(chart::minutes::render(&snap.minutes, w, h)?);
    }
    Ok(out)
}

async fn deliver(slack: &Slack, c: &Composed) -> Result<(), ReportError> {
    slack.post(&c.message.text, &c.message.blocks).await?;
    if !c.charts.is_empty() {
        slack
            .upload(&c.charts, "tradeflow hourly report: charts")
            .await?;
    }
    Ok(())
}

/// Tells the channel the run failed, unless Slack itself refused us (it would again).
async fn notify_failure(slack: &Slack, e: &ReportError) {
    if let ReportError::Slack(s) = e {
        if s.is_final() {
            return;
        }
    }
    let m = message::failure(&e.to_string(), tradeflow_shared::telemetry::now_ms());
    if let Err(post) = slack.post(&m.text, &m.blocks).await {
        tracing::warn!(error = %post, "could not post the failure notice to Slack");
    }
}

/// The destination from the flags: one secret (token or webhook, from the environment
/// or SSM) and, for a token, the channel.
pub async fn destination(s: &SlackArgs) -> Result<Destination, ReportError> {
    let given = [
        s.slack_token.is_some(),
        s.slack_webhook_url.is_some(),
        s.slack_secret_ssm_parameter.is_some(),
    ];
    match given.iter().filter(|g| **g).count() {
        0 => {
            return Err(ReportError::Config(format!(
                "no Slack destination: set {TOKEN_ENV} (with --slack-channel), {WEBHOOK_ENV}, \
                 or --slack-secret-ssm-parameter"
            )))
        }
        1 => {}
        _ => {
            return Err(ReportError::Config(
                "give one Slack secret: a token, a webhook URL or an SSM parameter".into(),
            ))
        }
    }
    let secret = if let Some(t) = &s.slack_token {
        from_environment(TOKEN_ENV, "--slack-token", t)?;
        t.clone()
    } else if let Some(w) = &s.slack_webhook_url {
        from_environment(WEBHOOK_ENV, "--slack-webhook-url", w)?;
        w.clone()
    } else {
        let name = s.slack_secret_ssm_parameter.clone().unwrap_or_default();
        let access = SsmAccess {
            region: s.aws_region.clone(),
            endpoint: s.ssm_endpoint.clone(),
        };
        secret::resolve(&SecretSource::Ssm(name), &access).await?
    };
    // An SSM parameter holds either; a webhook is a URL, a token is not.
    let is_url = secret.expose().starts_with("https://") || secret.expose().starts_with("http://");
    if s.slack_webhook_url.is_some() || (s.slack_secret_ssm_parameter.is_some() && is_url) {
        return Ok(Destination::Webhook(secret));
    }
    let channel = s
        .slack_channel
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            ReportError::Config(
                "a bot token needs --slack-channel (TRADEFLOW_SLACK_CHANNEL), a channel id".into(),
            )
        })?;
    Ok(Destination::Bot {
        token: secret,
        channel,
    })
}

/// A secret flag must come from its environment variable: a command-line value is in
/// `/proc/*/cmdline` and `ps` for everyone on the host.
fn from_environment(var: &str, flag: &str, value: &Secret) -> Result<(), ReportError> {
    match std::env::var(var) {
        Ok(v) if v.trim() == value.expose() => Ok(()),
        _ => Err(ReportError::Config(format!(
            "{flag} was given on the command line, where every user of the host can read it: \
             set {var} in the environment instead"
        ))),
    }
}

impl From<SlackError> for ReportError {
    fn from(e: SlackError) -> Self {
        ReportError::Slack(e)
    }
}
