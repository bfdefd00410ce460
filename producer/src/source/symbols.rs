//! Which symbols the Binance source subscribes to: the `--symbols` list, a file of
//! symbols, or every symbol Binance lists as TRADING (`GET /api/v3/exchangeInfo`).

use std::path::Path;
use std::time::Duration;
use tradeflow_shared::retry::{GiveUp, Next, Policy, Retry};

use tradeflow_shared::rest::RestClient;
use tradeflow_shared::Symbol;

const EXCHANGE_INFO: &str = "/api/v3/exchangeInfo?symbolStatus=TRADING";
/// The full answer is a few MB; far more is not an exchangeInfo.
const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SymbolsError {
    #[error("symbols file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("symbols file {path}, line {line}: {reason}")]
    BadSymbol {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("exchangeInfo from {url}: {reason}")]
    ExchangeInfo { url: String, reason: String },
}

/// Where the symbols come from.
#[derive(Debug, Clone)]
pub enum Selection {
    List(Vec<String>),
    File(std::path::PathBuf),
    AllTrading { rest_url: String },
}

/// The symbols of a file: one per line, any case; blank lines and `#` comments skipped;
/// duplicates kept once. Any other line is an error naming it.
pub fn parse_file(path: &str, text: &str) -> Result<Vec<String>, SymbolsError> {
    let mut out: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let s = line.split('#').next().unwrap_or_default().trim();
        if s.is_empty() {
            continue;
        }
        let up = s.to_ascii_uppercase();
        Symbol::new(&up).map_err(|e| SymbolsError::BadSymbol {
            path: path.into(),
            line: i + 1,
            reason: format!("{s:?}: {e}"),
        })?;
        if !out.contains(&up) {
            out.push(up);
        }
    }
    if out.is_empty() {
        return Err(SymbolsError::File {
            path: path.into(),
            reason: "no symbols in it".into(),
        });
    }
    Ok(out)
}

/// The TRADING symbols of an exchangeInfo answer. Symbols our keys cannot hold are
/// skipped and returned separately (to be logged), not fatal.
pub fn parse_exchange_info(body: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    #[derive(serde::Deserialize)]
    struct Info {
        symbols: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        symbol: String,
        status: String,
    }
    let info: Info = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let (mut ok, mut skipped) = (Vec::new(), Vec::new());
    for e in info.symbols.into_iter().filter(|e| e.status == "TRADING") {
        match Symbol::new(&e.symbol) {
            Ok(_) => ok.push(e.symbol),
            Err(_) => skipped.push(e.symbol),
        }
    }
    if ok.is_empty() {
        return Err("no TRADING symbol in the answer".into());
    }
    Ok((ok, skipped))
}

/// Resolves the selection (I/O for files and exchangeInfo; a few retries for the latter).
pub async fn resolve(sel: &Selection) -> Result<Vec<String>, SymbolsError> {
    match sel {
        Selection::List(l) => Ok(l.clone()),
        Selection::File(p) => {
            let path = p.display().to_string();
            let text = read(p).map_err(|reason| SymbolsError::File {
                path: path.clone(),
                reason,
            })?;
            parse_file(&path, &text)
        }
        Selection::AllTrading { rest_url } => {
            let fail = |reason: String| SymbolsError::ExchangeInfo {
                url: format!("{rest_url}{EXCHANGE_INFO}"),
                reason,
            };
            let client = RestClient::new(
                rest_url,
                Duration::from_secs(30),
                MAX_BODY,
                "tradeflow-producer",
            )
            .map_err(|e| fail(e.to_string()))?;
            // Read once at start: a few tries, then a clear error (the service manager
            // restarts the producer).
            let mut retry = Retry::new(
                "producer.exchange_info",
                Policy::new(
                    Duration::from_secs(1),
                    Duration::from_secs(16),
                    GiveUp::Attempts(5),
                ),
            );
            loop {
                let last = match client.get(EXCHANGE_INFO).await {
                    Ok(r) if r.is_success() => {
                        let (ok, skipped) = parse_exchange_info(&r.body).map_err(fail)?;
                        if !skipped.is_empty() {
                            tracing::warn!(count = skipped.len(), symbols = ?skipped, "TRADING symbols skipped: not valid as tradeflow symbols");
                        }
                        tracing::info!(symbols = ok.len(), "symbols from exchangeInfo");
                        return Ok(ok);
                    }
                    Ok(r) => format!("HTTP {}: {}", r.status, r.body_excerpt(200)),
                    Err(e) => e.to_string(),
                };
                match retry.failed("", &last) {
                    Next::RetryIn(wait) => tokio::time::sleep(wait).await,
                    Next::GiveUp => return Err(fail(last)),
                }
            }
        }
    }
}

fn read(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_hold_one_symbol_per_line() {
        let got = parse_file("f", "btcusdt\n\n# majors\nETHUSDT  # eth\nbtcusdt\n").unwrap();
        assert_eq!(got, ["BTCUSDT", "ETHUSDT"]);
        assert!(matches!(
            parse_file("f", "BTCUSDT\nBTC USDT\n"),
            Err(SymbolsError::BadSymbol { line: 2, .. })
        ));
        assert!(parse_file("f", "# nothing\n").is_err());
    }

    #[test]
    fn exchange_info_gives_the_trading_symbols() {
        let body = br#"{"timezone":"UTC","symbols":[
            {"symbol":"ETHBTC","status":"TRADING","baseAsset":"ETH"},
            {"symbol":"LUNAUST","status":"BREAK"},
            {"symbol":"BAD SYM","status":"TRADING"}]}"#;
        let (ok, skipped) = parse_exchange_info(body).unwrap();
        assert_eq!(ok, ["ETHBTC"]);
        assert_eq!(skipped, ["BAD SYM"]);
        assert!(parse_exchange_info(b"{}").is_err());
        assert!(parse_exchange_info(br#"{"symbols":[]}"#).is_err());
    }
}
