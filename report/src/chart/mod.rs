//! The report's charts as PNG, drawn by the report itself: `plotters` into an RGB
//! buffer, text in DejaVu Sans embedded in the binary (the `dejavu` crate), encoded by
//! `png`. No browser, no system fonts, no network: the hourly timer's sandbox has none.
//!
//! [`treemap`]: trade counts as tiles (squarified, top 3 highlighted, as the live
//! page); [`minutes`]: trades per minute of the top symbols over the last hour.

pub mod minutes;
pub mod text;
pub mod treemap;

use std::sync::OnceLock;

use plotters::style::{register_font, FontStyle, RGBColor};

/// The family name every chart asks for; [`fonts`] registers DejaVu Sans under it.
pub const FONT: &str = "sans-serif";

/// Colours shared with the live page (style.css): highlighted tiles, others, lines.
pub const TOP: RGBColor = RGBColor(0xd9, 0x5f, 0x02);
pub const TILE: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
pub const OTHERS: RGBColor = RGBColor(0x9a, 0xa5, 0xb1);
pub const INK: RGBColor = RGBColor(0x1b, 0x1f, 0x24);
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd9, 0x5f, 0x02),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// A rendered chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Png {
    /// File name for the upload, e.g. `tradeflow-treemap.png`.
    pub name: String,
    /// What it shows, for Slack's `alt_txt` (screen readers) and the file title.
    pub alt: String,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("chart {name}: drawing failed: {why}")]
    Draw { name: String, why: String },
    #[error("chart {name}: PNG encoding failed: {why}")]
    Encode { name: String, why: String },
}

/// Registers the embedded fonts once per process (plotters keeps them in a global).
pub fn fonts() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // The bytes are DejaVu's own files, parsed at compile time's include: a failure
        // here is a broken build, not a run-time condition.
        register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("embedded DejaVu Sans does not parse"));
        register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
            .unwrap_or_else(|_| panic!("embedded DejaVu Sans Bold does not parse"));
    });
}

/// An RGB buffer of `width × height`, white.
pub(crate) fn canvas(width: u32, height: u32) -> Vec<u8> {
    vec![0xff; width as usize * height as usize * 3]
}

/// Encodes an RGB8 buffer as PNG.
pub(crate) fn encode(
    name: &str,
    alt: String,
    width: u32,
    height: u32,
    rgb: &[u8],
) -> Result<Png, ChartError> {
    let err = |e: png::EncodingError| ChartError::Encode {
        name: name.to_string(),
        why: e.to_string(),
    };
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(err)?;
        w.write_image_data(rgb).map_err(err)?;
        w.finish().map_err(err)?;
    }
    Ok(Png {
        name: name.to_string(),
        alt,
        width,
        height,
        bytes,
    })
}

/// A plotters error as a [`ChartError`].
pub(crate) fn draw_err<E: std::fmt::Debug>(name: &str) -> impl Fn(E) -> ChartError + '_ {
    move |e| ChartError::Draw {
        name: name.to_string(),
        why: format!("{e:?}"),
    }
}

/// `12345` → `12,345` (as the page's `Intl.NumberFormat("en-US")`).
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1_000), "1,000");
        assert_eq!(super::thousands(12_345_678), "12,345,678");
    }
}
