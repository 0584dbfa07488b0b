//! PNG charts of a report: per section and unit, one horizontal bar per
//! figure (its median) with a whisker over its spread (min–max).
//!
//! Text is drawn with DejaVu Sans from the Debian package `fonts-dejavu-core`
//! (installed by `scripts/setup`) when it is there; without it the charts are
//! drawn without text, in the same order as the report's tables.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::report::{num, Report};

/// Where the font comes from.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const WIDTH: u32 = 1100;
const LABEL_WIDTH: i32 = 520;
const BAR_HEIGHT: i32 = 26;
const TOP: i32 = 40;

/// Writes the charts into `dir`; returns `(section key, file name)` pairs.
pub(crate) fn write(report: &Report, dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = load_font();
    let mut written = Vec::new();
    for section in &report.sections {
        let computed = section.computed();
        let mut units: Vec<&str> = computed.iter().map(|c| c.row.unit).collect();
        units.dedup();
        units.sort_unstable();
        units.dedup();
        for unit in units {
            let bars: Vec<(String, f64, f64, f64)> = computed
                .iter()
                .filter(|c| c.row.unit == unit)
                .map(|c| (c.row.label.clone(), c.summary.median, c.summary.min, c.summary.max))
                .collect();
            let slug: String = unit.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            let file = format!("{}-{slug}.png", section.key);
            draw(&dir.join(&file), &format!("{} ({unit})", section.title), &bars, text)?;
            written.push((section.key.clone(), file));
        }
    }
    Ok(written)
}

/// Registers the font; false when it is not installed.
fn load_font() -> bool {
    let Ok(bytes) = std::fs::read(FONT) else { return false };
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
}

fn draw(path: &Path, title: &str, bars: &[(String, f64, f64, f64)], text: bool) -> anyhow::Result<()> {
    let fail = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e}", path.display());
    let height = (TOP + BAR_HEIGHT * bars.len() as i32 + 20).max(80) as u32;
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(fail)?;
    let top = bars.iter().map(|b| b.3.max(b.1)).filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    let scale = if top > 0.0 { f64::from(WIDTH as i32 - LABEL_WIDTH - 90) / top } else { 0.0 };
    let x = |v: f64| LABEL_WIDTH + if v.is_finite() { (v * scale) as i32 } else { 0 };
    let font = ("sans-serif", 14).into_font();
    if text {
        root.draw(&Text::new(title.to_owned(), (10, 10), ("sans-serif", 18).into_font())).map_err(fail)?;
    }
    for (i, (label, median, min, max)) in bars.iter().enumerate() {
        let y = TOP + i as i32 * BAR_HEIGHT;
        let colour = Palette99::pick(i).to_rgba();
        root.draw(&Rectangle::new([(LABEL_WIDTH, y + 3), (x(*median), y + BAR_HEIGHT - 3)], colour.filled()))
            .map_err(fail)?;
        let mid = y + BAR_HEIGHT / 2;
        let whisker = vec![(x(*min), mid), (x(*max), mid)];
        root.draw(&PathElement::new(whisker, BLACK.stroke_width(2))).map_err(fail)?;
        for end in [*min, *max] {
            root.draw(&PathElement::new(vec![(x(end), mid - 6), (x(end), mid + 6)], BLACK.stroke_width(2)))
                .map_err(fail)?;
        }
        if text {
            let short: String = label.chars().take(70).collect();
            root.draw(&Text::new(short, (8, y + 6), font.clone())).map_err(fail)?;
            root.draw(&Text::new(num(*median), (x(max.max(*median)) + 6, y + 6), font.clone())).map_err(fail)?;
        }
    }
    root.present().map_err(fail)?;
    Ok(())
}
