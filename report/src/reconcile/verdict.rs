//! What one reconcile run found, and the exit status it means:
//! 0 every settled minute of every symbol matches; 1 some minute differs (whatever else
//! happened: a difference found is certain); 2 nothing differed but not everything
//! could be checked (exchange or Redis unreadable, a symbol the exchange does not know,
//! malformed replies, no symbol or no settled minute) — never a false "all match".

use super::compare::Outcome;
use super::window::Window;

pub const EXIT_MATCH: u8 = 0;
pub const EXIT_DIFFER: u8 = 1;
pub const EXIT_UNCHECKED: u8 = 2;

/// One symbol: what was compared, and why it was not (fully) checked.
#[derive(Debug, Clone, Default)]
pub struct SymbolRun {
    pub symbol: String,
    pub outcome: Outcome,
    pub error: Option<String>,
}

/// The whole run.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// The settled minutes (`None` when there are none: `error` says why).
    pub window: Option<Window>,
    pub since_ms: u64,
    pub until_ms: u64,
    pub settle_s: u64,
    /// The exchange's REST base URL.
    pub exchange: String,
    pub symbols: Vec<SymbolRun>,
    /// Why the run stopped before checking everything (nothing per symbol to add).
    pub error: Option<String>,
}

impl Run {
    pub fn minutes_checked(&self) -> u64 {
        self.symbols.iter().map(|s| s.outcome.minutes_checked).sum()
    }

    pub fn minutes_differing(&self) -> u64 {
        self.symbols
            .iter()
            .map(|s| s.outcome.differences.len() as u64)
            .sum()
    }

    pub fn trades_missing(&self) -> u64 {
        self.symbols
            .iter()
            .map(|s| s.outcome.trades_missing())
            .sum()
    }

    pub fn trades_extra(&self) -> u64 {
        self.symbols.iter().map(|s| s.outcome.trades_extra()).sum()
    }

    /// Every symbol checked over the whole window.
    pub fn complete(&self) -> bool {
        self.error.is_none()
            && self.window.is_some()
            && !self.symbols.is_empty()
            && self.symbols.iter().all(|s| s.error.is_none())
    }

    pub fn exit_status(&self) -> u8 {
        if self.minutes_differing() > 0 {
            EXIT_DIFFER
        } else if self.complete() {
            EXIT_MATCH
        } else {
            EXIT_UNCHECKED
        }
    }

    pub fn verdict(&self) -> &'static str {
        match self.exit_status() {
            EXIT_MATCH => "match",
            EXIT_DIFFER => "differ",
            _ => "unchecked",
        }
    }

    /// The reasons something was not checked, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.error.iter().cloned().collect();
        if self.error.is_none() && self.symbols.is_empty() {
            out.push("no symbol to check".into());
        }
        out.extend(
            self.symbols
                .iter()
                .filter_map(|s| Some(format!("{}: {}", s.symbol, s.error.as_ref()?))),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::compare::{Difference, Kind};
    use super::*;

    fn run(symbols: Vec<SymbolRun>, error: Option<&str>) -> Run {
        Run {
            window: Some(Window {
                first_ms: 0,
                last_ms: 0,
            }),
            symbols,
            error: error.map(str::to_string),
            ..Run::default()
        }
    }

    fn sym(differs: bool, error: Option<&str>) -> SymbolRun {
        let mut s = SymbolRun {
            symbol: "BTCUSDT".into(),
            error: error.map(str::to_string),
            ..SymbolRun::default()
        };
        s.outcome.minutes_checked = 1;
        if differs {
            s.outcome.differences.push(Difference {
                open_time_ms: 0,
                kind: Kind::Extra,
                theirs: None,
                ours: None,
                fields: vec!["trades"],
            });
        }
        s
    }

    #[test]
    fn a_difference_wins_then_anything_unchecked_then_match() {
        assert_eq!(run(vec![sym(false, None)], None).exit_status(), EXIT_MATCH);
        assert_eq!(run(vec![sym(true, None)], None).exit_status(), EXIT_DIFFER);
        let partial = run(vec![sym(true, None), sym(false, Some("down"))], None);
        assert_eq!(partial.exit_status(), EXIT_DIFFER);
        assert_eq!(partial.problems(), ["BTCUSDT: down"]);
        let r = run(vec![sym(false, None), sym(false, Some("-1121"))], None);
        assert_eq!(r.exit_status(), EXIT_UNCHECKED);
        // Nothing to check is not a match.
        assert_eq!(run(vec![], None).exit_status(), EXIT_UNCHECKED);
        assert_eq!(run(vec![], None).problems(), ["no symbol to check"]);
        let none = Run {
            window: None,
            ..run(vec![sym(false, None)], None)
        };
        assert_eq!(none.exit_status(), EXIT_UNCHECKED);
        assert_eq!(
            run(vec![sym(false, None)], Some("redis down")).verdict(),
            "unchecked"
        );
    }
}
