//! Starts the configured source as a task of its own: replay, tail, synthetic, or the
//! Binance websocket (with the REST gap filler behind it when backfill is on).

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{PipelineError, CHANNEL_CAPACITY};
use crate::config::{BackfillMode, Config, SourceKind};
use crate::source::{self, SourceTrade};

pub(super) type SourceTask = tokio::task::JoinHandle<Result<(), String>>;

pub(super) fn spawn_source(
    config: &Config,
    tx: source::TradeTx,
    stop: CancellationToken,
) -> Result<SourceTask, PipelineError> {
    Ok(match config.source {
        SourceKind::Replay => {
            let path = config.replay_file.clone().expect("validated");
            tokio::spawn(async move {
                source::replay::run(&path, tx, stop)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("replay {}: {e}", path.display()))
            })
        }
        SourceKind::Tail => {
            let cfg = source::tail::TailConfig {
                path: config.tail_file.clone(),
                from_start: config.tail_from_start,
                poll: config.tail_poll,
            };
            tokio::spawn(async move {
                source::tail::run(cfg, tx, stop)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("tail: {e}"))
            })
        }
        SourceKind::Synthetic => {
            let cfg = source::synthetic::SyntheticConfig {
                symbols: config.parsed_symbols()?,
                rate: config.synthetic_rate,
                count: config.synthetic_count,
                seed: config.synthetic_seed,
            };
            tokio::spawn(async move {
                source::synthetic::run(cfg, tx, stop).await;
                Ok(())
            })
        }
        SourceKind::Binance => {
            let selection = if config.all_symbols {
                source::symbols::Selection::AllTrading {
                    rest_url: config.rest_url(),
                }
            } else if let Some(p) = &config.symbols_file {
                source::symbols::Selection::File(p.clone())
            } else {
                source::symbols::Selection::List(config.symbols.clone())
            };
            // The other timings keep Binance-suited defaults.
            let mut cfg = source::binance::BinanceConfig {
                url: config.binance_url.clone(),
                symbols: Vec::new(),
                dead_timeout: config.ws_dead_timeout,
                max_connection_age: config.ws_max_age,
                ..Default::default()
            };
            let backfill = (config.backfill == BackfillMode::HistoricalTrades).then(|| {
                source::backfill::BackfillConfig {
                    base_url: config.rest_url(),
                    max_gap: config.backfill_max_gap,
                    deadline: config.backfill_deadline,
                    weight_per_minute: config.backfill_weight_per_minute,
                    ..Default::default()
                }
            });
            tokio::spawn(async move {
                cfg.symbols = source::symbols::resolve(&selection)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(backfill) = backfill else {
                    return source::binance::run(cfg, tx, stop)
                        .await
                        .map_err(|e| format!("binance: {e:#}"));
                };
                // websocket → gap filler → pipeline; the filler ends when the source
                // does, after releasing what it held.
                let (ws_tx, ws_rx) = mpsc::channel::<SourceTrade>(CHANNEL_CAPACITY);
                let filler = tokio::spawn(source::backfill::run(backfill, ws_rx, tx, stop.clone()));
                let ws = source::binance::run(cfg, ws_tx, stop).await;
                let filled = filler.await.map_err(|e| format!("backfill task: {e}"))?;
                ws.map_err(|e| format!("binance: {e:#}"))?;
                filled.map_err(|e| format!("backfill: {e}"))
            })
        }
    })
}
