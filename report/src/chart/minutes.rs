//! Trades per minute of the top symbols over the last hour (the live page's line chart):
//! one line per symbol, minutes in UTC on the x axis, a legend with each symbol's
//! trades in the hour.

use plotters::prelude::*;

use super::text::{self, Canvas};
use super::{canvas, draw_err, encode, fonts, thousands, ChartError, Png, FONT, INK, PALETTE};
use crate::web::snapshot::MinuteSeries;

/// Room above the plot (the caption), the margin around it, left of it (the y labels).
const TOP: i32 = 52;
const MARGIN: i32 = 12;
const LEFT: i32 = 76;

/// `HH:MM` (UTC) of a minute since the epoch.
pub fn hhmm(minute: u64) -> String {
    format!("{:02}:{:02}", (minute / 60) % 24, minute % 60)
}

/// Renders `m` (its series all of the same length).
pub fn render(m: &MinuteSeries, width: u32, height: u32) -> Result<Png, ChartError> {
    const NAME: &str = "tradeflow-trades-per-minute.png";
    fonts();
    let n = m.series.first().map_or(60, |s| s.counts.len()).max(1) as u64;
    let start = m.start_minute;
    let end = start + n - 1;
    let max = m
        .series
        .iter()
        .flat_map(|s| s.counts.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let caption = format!(
        "Trades per minute, top {} symbols ({}–{} UTC)",
        m.series.len(),
        hhmm(start),
        hhmm(end)
    );
    let mut rgb = canvas(width, height);
    let labels: Vec<String> = m
        .series
        .iter()
        .map(|s| format!("{} {}/h", s.symbol, thousands(s.counts.iter().sum())))
        .collect();
    // The legend box, top left inside the plot: swatches drawn here, names below.
    let (lx, ly, row) = (LEFT + 16, TOP + 10, 24);
    let lw = labels
        .iter()
        .map(|l| text::width(l, 15.0, false) as i32)
        .max()
        .unwrap_or(0)
        + 52;
    {
        let e = draw_err(NAME);
        let area = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        let mut chart = ChartBuilder::on(&area)
            .margin(MARGIN)
            .margin_top(TOP)
            .x_label_area_size(36)
            .y_label_area_size(LEFT - MARGIN)
            .build_cartesian_2d(start..end.max(start + 1), 0u64..max + max / 10 + 1)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_labels(7)
            .y_labels(6)
            .x_label_formatter(&|m| hhmm(*m))
            .y_label_formatter(&|v| thousands(*v))
            // Digits and ':' only: plotters' own text is right for those.
            .label_style((FONT, 15).into_font().color(&INK))
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(&e)?;
        for (i, s) in m.series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    s.counts
                        .iter()
                        .enumerate()
                        .map(|(k, c)| (start + k as u64, *c)),
                    colour.stroke_width(3),
                ))
                .map_err(&e)?;
        }
        if !labels.is_empty() {
            let h = row * labels.len() as i32 + 8;
            let frame = [(lx, ly), (lx + lw, ly + h)];
            area.draw(&Rectangle::new(frame, WHITE.mix(0.9).filled()))
                .map_err(&e)?;
            area.draw(&Rectangle::new(frame, RGBColor(0xcc, 0xcc, 0xcc)))
                .map_err(&e)?;
            for i in 0..labels.len() {
                let y = ly + 4 + row * i as i32 + row / 2;
                let swatch = PALETTE[i % PALETTE.len()].stroke_width(4);
                area.draw(&PathElement::new(vec![(lx + 10, y), (lx + 36, y)], swatch))
                    .map_err(&e)?;
            }
        }
        area.present().map_err(&e)?;
    }
    let mut c = Canvas::new(&mut rgb, width, height);
    let cw = text::width(&caption, 22.0, true) as i32;
    c.text(&caption, (width as i32 - cw) / 2, 12, 22.0, true, INK);
    for (i, l) in labels.iter().enumerate() {
        c.text(l, lx + 44, ly + 6 + row * i as i32, 15.0, false, INK);
    }
    let lines: Vec<String> = m
        .series
        .iter()
        .map(|s| format!("{} {} trades", s.symbol, thousands(s.counts.iter().sum())))
        .collect();
    let alt = format!("{caption}: {}", lines.join(", "));
    encode(NAME, alt, width, height, &rgb)
}

#[cfg(test)]
mod tests {
    #[test]
    fn minutes_read_as_utc_clock() {
        assert_eq!(super::hhmm(0), "00:00");
        assert_eq!(super::hhmm(24 * 60 * 19_000 + 11 * 60 + 41), "11:41");
    }
}
