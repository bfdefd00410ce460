//! The run's result as a Prometheus text file, for node_exporter's textfile collector
//! (the hourly job is a oneshot: nothing stays up to be scraped). Written to a temporary
//! file in the same folder and renamed over the old one, so a scrape never reads half a
//! file; readable by all (the collector runs as another user; nothing here is secret).
//!
//! `…_last_success_timestamp_seconds` is the last run that checked every symbol (exit
//! 0 or 1); a run that could not is written with the previous file's value, so an alert
//! can tell how long reconcile has been failing. Symbols are labels here — unlike the
//! binaries' metrics — because an alert must name the symbol that differs; one series
//! per symbol and metric, and the file is replaced whole each run.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use super::verdict::Run;

pub const PREFIX: &str = "tradeflow_reconcile_";
const LAST_SUCCESS: &str = "tradeflow_reconcile_last_success_timestamp_seconds";

/// The file's text for `run` at `now_ms`; `last_success_s` is the previous file's.
pub fn text(run: &Run, now_ms: u64, last_success_s: Option<f64>) -> String {
    let now_s = now_ms as f64 / 1000.0;
    let last_success = if run.complete() {
        Some(now_s)
    } else {
        last_success_s
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, values: Vec<(Option<&str>, f64)>| {
        let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(out, "# TYPE {PREFIX}{name} gauge");
        for (symbol, v) in values {
            match symbol {
                Some(s) => {
                    let _ = writeln!(out, "{PREFIX}{name}{{symbol=\"{s}\"}} {v}");
                }
                None => {
                    let _ = writeln!(out, "{PREFIX}{name} {v}");
                }
            }
        }
    };
    let per_symbol = |f: &dyn Fn(&super::verdict::SymbolRun) -> u64| {
        run.symbols
            .iter()
            .map(|s| (Some(s.symbol.as_str()), f(s) as f64))
            .collect::<Vec<_>>()
    };
    gauge(
        "last_run_timestamp_seconds",
        "When reconcile last ran (Unix seconds).",
        vec![(None, now_s)],
    );
    if let Some(t) = last_success {
        gauge(
            "last_success_timestamp_seconds",
            "When reconcile last checked every symbol (exit 0 or 1; Unix seconds).",
            vec![(None, t)],
        );
    }
    gauge(
        "last_run_exit_code",
        "Exit status of the last run: 0 all match, 1 a difference, 2 could not check.",
        vec![(None, f64::from(run.exit_status()))],
    );
    gauge(
        "symbols_unchecked",
        "Symbols the last run could not check (fully).",
        vec![(
            None,
            run.symbols.iter().filter(|s| s.error.is_some()).count() as f64,
        )],
    );
    gauge(
        "minutes_checked",
        "Settled minutes compared with the exchange's klines in the last run.",
        per_symbol(&|s| s.outcome.minutes_checked),
    );
    gauge(
        "minutes_differing",
        "Settled minutes that differ from the exchange's klines in the last run.",
        per_symbol(&|s| s.outcome.differences.len() as u64),
    );
    gauge(
        "trades_missing",
        "Trades the exchange has that tradeflow does not, over the differing minutes.",
        per_symbol(&|s| s.outcome.trades_missing()),
    );
    gauge(
        "trades_extra",
        "Trades tradeflow has that the exchange does not, over the differing minutes.",
        per_symbol(&|s| s.outcome.trades_extra()),
    );
    out
}

/// The last success recorded in a previous file's text.
pub fn last_success(previous: &str) -> Option<f64> {
    previous.lines().find_map(|l| {
        l.strip_prefix(LAST_SUCCESS)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Writes `run`'s file at `path` (temporary file, then rename), carrying the last
/// success over from the file it replaces.
pub fn write(path: &Path, run: &Run, now_ms: u64) -> std::io::Result<()> {
    let previous = std::fs::read_to_string(path).ok();
    let body = text(run, now_ms, previous.as_deref().and_then(last_success));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
    // Not `*.prom`: the collector ignores it until the rename.
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body.as_bytes())?;
        f.sync_all()?;
        set_readable(&f)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn set_readable(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_readable(_: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::compare::{Difference, Kind};
    use super::super::verdict::SymbolRun;
    use super::super::window::Window;
    use super::*;

    fn run(differs: bool, error: Option<&str>) -> Run {
        let mut s = SymbolRun {
            symbol: "BTCUSDT".into(),
            error: error.map(str::to_string),
            ..SymbolRun::default()
        };
        s.outcome.minutes_checked = 120;
        if differs {
            s.outcome.differences.push(Difference {
                open_time_ms: 0,
                kind: Kind::Missing,
                theirs: None,
                ours: None,
                fields: vec!["trades"],
            });
        }
        Run {
            window: Some(Window {
                first_ms: 0,
                last_ms: 0,
            }),
            symbols: vec![s],
            ..Run::default()
        }
    }

    #[test]
    fn the_file_says_what_the_run_found_and_keeps_the_last_success() {
        let t = text(&run(true, None), 1_717_002_000_500, Some(1.0));
        assert!(t.contains("tradeflow_reconcile_last_run_timestamp_seconds 1717002000.5\n"));
        assert!(t.contains("tradeflow_reconcile_last_success_timestamp_seconds 1717002000.5\n"));
        assert!(t.contains("tradeflow_reconcile_last_run_exit_code 1\n"));
        assert!(t.contains("tradeflow_reconcile_minutes_checked{symbol=\"BTCUSDT\"} 120\n"));
        assert!(t.contains("tradeflow_reconcile_minutes_differing{symbol=\"BTCUSDT\"} 1\n"));
        assert!(t.contains("# TYPE tradeflow_reconcile_trades_missing gauge\n"));
        assert_eq!(last_success(&t), Some(1_717_002_000.5));
        // A run that could not check keeps the previous success, or has none.
        let failed = text(
            &run(false, Some("down")),
            1_717_005_600_000,
            last_success(&t),
        );
        assert_eq!(last_success(&failed), Some(1_717_002_000.5));
        assert!(failed.contains("tradeflow_reconcile_last_run_exit_code 2\n"));
        assert!(failed.contains("tradeflow_reconcile_symbols_unchecked 1\n"));
        assert_eq!(last_success(&text(&run(false, Some("x")), 0, None)), None);
    }

    #[test]
    fn the_file_is_replaced_whole_and_readable_by_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tradeflow_reconcile.prom");
        write(&path, &run(false, None), 1_000_000).unwrap();
        write(&path, &run(false, Some("down")), 4_600_000).unwrap();
        let t = std::fs::read_to_string(&path).unwrap();
        assert_eq!(last_success(&t), Some(1000.0));
        assert!(t.contains("last_run_timestamp_seconds 4600\n"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["tradeflow_reconcile.prom"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        assert!(write(&dir.path().join("no/such/dir.prom"), &run(false, None), 0).is_err());
    }
}
