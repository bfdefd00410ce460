//! Text drawn straight into the RGB buffer with ab_glyph. plotters 0.3.7's ab_glyph
//! backend places each glyph at the pen position without its left side bearing, so
//! letters drift (a visible gap before every `T` of `BTCUSDT`); labels people read go
//! through here instead, each glyph at its true bounds, kerned, anti-aliased.

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use plotters::style::RGBColor;

/// An RGB8 image to write on.
pub struct Canvas<'a> {
    pub rgb: &'a mut [u8],
    pub width: u32,
    pub height: u32,
}

impl<'a> Canvas<'a> {
    /// The `width`×`height` RGB8 image in `rgb`, once plotters has drawn its part.
    pub fn new(rgb: &'a mut [u8], width: u32, height: u32) -> Self {
        Canvas { rgb, width, height }
    }
}

fn face(bold: bool) -> FontRef<'static> {
    let bytes = if bold {
        dejavu::sans::bold()
    } else {
        dejavu::sans::regular()
    };
    // The embedded files are DejaVu's own: a parse failure is a broken build.
    FontRef::try_from_slice(bytes).expect("embedded DejaVu Sans parses")
}

/// Width in pixels of `text` at `size` px.
pub fn width(text: &str, size: f32, bold: bool) -> f32 {
    let f = face(bold);
    let s = f.as_scaled(PxScale::from(size));
    let mut w = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = s.glyph_id(c);
        if let Some(p) = prev {
            w += s.kern(p, id);
        }
        w += s.h_advance(id);
        prev = Some(id);
    }
    w
}

impl Canvas<'_> {
    /// Draws `text` with its top-left corner at (`x`, `y`), `size` px high.
    pub fn text(&mut self, text: &str, x: i32, y: i32, size: f32, bold: bool, colour: RGBColor) {
        let f = face(bold);
        let s = f.as_scaled(PxScale::from(size));
        let baseline = y as f32 + s.ascent();
        let mut caret = x as f32;
        let mut prev = None;
        for c in text.chars() {
            let id = s.glyph_id(c);
            if let Some(p) = prev {
                caret += s.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(s.scale(), point(caret, baseline));
            caret += s.h_advance(id);
            let Some(outline) = f.outline_glyph(glyph) else {
                continue; // a space
            };
            let b = outline.px_bounds();
            outline.draw(|gx, gy, cover| {
                self.blend(
                    b.min.x as i32 + gx as i32,
                    b.min.y as i32 + gy as i32,
                    colour,
                    cover,
                );
            });
        }
    }

    fn blend(&mut self, x: i32, y: i32, c: RGBColor, cover: f32) {
        if x < 0 || y < 0 || x >= self.width as i32 || y >= self.height as i32 {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        let a = cover.clamp(0.0, 1.0);
        for (k, v) in [c.0, c.1, c.2].into_iter().enumerate() {
            let old = self.rgb[i + k] as f32;
            self.rgb[i + k] = (old + (v as f32 - old) * a).round() as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_sit_at_their_advance() {
        // "BT" is as wide as "B" then "T" (no drift), and text is drawn in bounds.
        let w = width("BT", 20.0, false);
        assert!((w - width("B", 20.0, false) - width("T", 20.0, false)).abs() < 1.0);
        let mut rgb = vec![255u8; 100 * 30 * 3];
        let mut c = Canvas {
            rgb: &mut rgb,
            width: 100,
            height: 30,
        };
        c.text("BTC", 2, 2, 20.0, true, RGBColor(0, 0, 0));
        let dark = rgb.chunks(3).filter(|p| p[0] < 128).count();
        assert!(dark > 50, "{dark} dark pixels");
    }
}
