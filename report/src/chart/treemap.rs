//! The treemap of trade counts, as the live page draws it (web/assets/app.js): a
//! squarified layout (Bruls, Huizing, van Wijk), the 150 busiest symbols as tiles and the
//! rest summed into one "N others" tile, the top 3 highlighted, `N=` total in the title.
//! [`squarify`] is a line-by-line port of the page's function, so both agree.

use plotters::prelude::*;

use super::text::{self, Canvas};
use super::{canvas, draw_err, encode, thousands, ChartError, Png, INK, OTHERS, TILE, TOP};

/// Tiles beyond this are summed into one "others" tile (the page's `TREEMAP_MAX`).
pub const TREEMAP_MAX: usize = 150;
const TITLE_H: u32 = 44;

/// A tile: which item (index into the input) and where.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tile {
    pub index: usize,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

fn worst(sum: f64, max: f64, min: f64, side: f64) -> f64 {
    let (s2, sum2) = (side * side, sum * sum);
    ((s2 * max) / sum2).max(sum2 / (s2 * min))
}

/// Lays `values` (sorted descending, all > 0) out in the rectangle; each tile's area is
/// proportional to its value. Returns one tile per value, in order.
pub fn squarify(values: &[u64], x: f64, y: f64, w: f64, h: f64) -> Vec<Tile> {
    let mut out = Vec::with_capacity(values.len());
    let total: f64 = values.iter().map(|&v| v as f64).sum();
    if total <= 0.0 || w <= 0.0 || h <= 0.0 {
        return out;
    }
    let (mut x, mut y, mut w, mut h) = (x, y, w, h);
    let scale = (w * h) / total;
    let area = |k: usize| values[k] as f64 * scale;
    let mut i = 0;
    while i < values.len() {
        let side = w.min(h);
        let mut j = i + 1;
        let (mut sum, mut max, mut min) = (area(i), area(i), area(i));
        let mut best = worst(sum, max, min, side);
        while j < values.len() {
            let a = area(j);
            let nw = worst(sum + a, max.max(a), min.min(a), side);
            if nw > best {
                break;
            }
            sum += a;
            max = max.max(a);
            min = min.min(a);
            best = nw;
            j += 1;
        }
        // Tiles i..j fill a strip across the shorter side: a column at the left while
        // the space left is wide, a row at the top while it is tall.
        let wide = w >= h;
        let thick = if wide { sum / h } else { sum / w };
        let mut along = if wide { y } else { x };
        for k in i..j {
            let len = area(k) / thick;
            let (tx, ty, tw, th) = if wide {
                (x, along, thick, len)
            } else {
                (along, y, len, thick)
            };
            out.push(Tile {
                index: k,
                x: tx,
                y: ty,
                w: tw,
                h: th,
            });
            along += len;
        }
        if wide {
            x += thick;
            w -= thick;
        } else {
            y += thick;
            h -= thick;
        }
        i = j;
    }
    out
}

/// One tile's content: a symbol, or the sum of the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub label: String,
    pub trades: u64,
    pub others: bool,
}

/// The tiles of `symbols` (name, trades; most trades first): those with trades, the
/// first [`TREEMAP_MAX`] each on its own, the rest as one "N others" item.
pub fn items(symbols: &[(String, u64)]) -> Vec<Item> {
    let live: Vec<&(String, u64)> = symbols.iter().filter(|(_, n)| *n > 0).collect();
    let mut out: Vec<Item> = live
        .iter()
        .take(TREEMAP_MAX)
        .map(|(s, n)| Item {
            label: s.clone(),
            trades: *n,
            others: false,
        })
        .collect();
    let rest = &live[live.len().min(TREEMAP_MAX)..];
    if !rest.is_empty() {
        out.push(Item {
            label: format!("{} others", thousands(rest.len() as u64)),
            trades: rest.iter().map(|(_, n)| n).sum(),
            others: true,
        });
    }
    out
}

/// Renders the treemap of `symbols` (most trades first) with `total` trades in the title.
pub fn render(
    symbols: &[(String, u64)],
    total: u64,
    width: u32,
    height: u32,
) -> Result<Png, ChartError> {
    const NAME: &str = "tradeflow-treemap.png";
    let items = items(symbols);
    let values: Vec<u64> = items.iter().map(|i| i.trades).collect();
    let tiles = squarify(
        &values,
        0.0,
        TITLE_H as f64,
        width as f64,
        (height - TITLE_H) as f64,
    );
    let title = format!("Transactions (N={})", thousands(total));
    let mut rgb = canvas(width, height);
    {
        let area = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        let e = draw_err(NAME);
        for t in &tiles {
            let it = &items[t.index];
            let colour = match (it.others, t.index < 3) {
                (true, _) => OTHERS,
                (false, true) => TOP,
                (false, false) => TILE,
            };
            let (x0, y0) = (t.x.round() as i32, t.y.round() as i32);
            let (x1, y1) = ((t.x + t.w).round() as i32, (t.y + t.h).round() as i32);
            area.draw(&Rectangle::new([(x0, y0), (x1, y1)], colour.filled()))
                .map_err(&e)?;
            // A white border separates neighbours.
            area.draw(&Rectangle::new([(x0, y0), (x1, y1)], WHITE.stroke_width(1)))
                .map_err(&e)?;
        }
        area.present().map_err(&e)?;
    }
    let mut c = Canvas::new(&mut rgb, width, height);
    c.text(&title, 10, 10, 24.0, true, INK);
    for t in &tiles {
        let it = &items[t.index];
        let (x, y) = (t.x.round() as i32 + 6, t.y.round() as i32 + 5);
        // Labels only where they fit (the page's rule); the alt text has the numbers.
        let name_w = text::width(&it.label, 17.0, true) as f64 + 10.0;
        if t.w > name_w && t.h > 26.0 {
            c.text(&it.label, x, y, 17.0, true, WHITE);
            let num = thousands(it.trades);
            if t.w > text::width(&num, 15.0, false) as f64 + 10.0 && t.h > 48.0 {
                c.text(&num, x, y + 22, 15.0, false, WHITE);
            }
        }
    }
    let top: Vec<String> = items
        .iter()
        .filter(|i| !i.others)
        .take(3)
        .map(|i| format!("{} {}", i.label, thousands(i.trades)))
        .collect();
    let alt = format!(
        "Treemap of trades per symbol, {title}; largest: {}",
        if top.is_empty() {
            "none".into()
        } else {
            top.join(", ")
        }
    );
    encode(NAME, alt, width, height, &rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_area_in_proportion() {
        let values = [600, 300, 60, 30, 6, 3, 1];
        let tiles = squarify(&values, 0.0, 0.0, 400.0, 250.0);
        assert_eq!(tiles.len(), values.len());
        let total: f64 = values.iter().sum::<u64>() as f64;
        for t in &tiles {
            let want = values[t.index] as f64 / total * 400.0 * 250.0;
            assert!((t.w * t.h - want).abs() < 1e-6, "{t:?}");
            assert!(t.x >= -1e-9 && t.y >= -1e-9, "{t:?}");
            assert!(
                t.x + t.w <= 400.0 + 1e-6 && t.y + t.h <= 250.0 + 1e-6,
                "{t:?}"
            );
        }
        // Squarified: the biggest tile is not a sliver.
        let big = tiles[0];
        assert!(big.w / big.h < 3.0 && big.h / big.w < 3.0, "{big:?}");
        assert!(squarify(&[], 0.0, 0.0, 1.0, 1.0).is_empty());
        assert!(squarify(&[5], 0.0, 0.0, 0.0, 1.0).is_empty());
    }

    #[test]
    fn beyond_the_cap_symbols_fold_into_others() {
        let syms: Vec<(String, u64)> = (0..200u64)
            .map(|i| (format!("S{i}USDT"), 1000 - i))
            .chain([("IDLEUSDT".to_string(), 0)])
            .collect();
        let it = items(&syms);
        assert_eq!(it.len(), TREEMAP_MAX + 1);
        let others = it.last().unwrap();
        assert!(others.others);
        assert_eq!(others.label, "50 others");
        assert_eq!(others.trades, (150..200u64).map(|i| 1000 - i).sum::<u64>());
    }
}
