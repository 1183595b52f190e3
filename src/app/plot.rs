//! Line charts as PNG (the model-sensitivity and faithfulness curves), drawn with
//! plotters into an RGB buffer and written atomically. Text needs a TrueType font: the
//! first of `$RSP_FONT` and a few usual system paths (DejaVu Sans on Debian: package
//! `fonts-dejavu-core`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::render::save_png;

/// Where a sans-serif TrueType font is usually found.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers the font once per process; the error says where fonts were looked for.
fn ensure_font() -> Result<()> {
    static FONT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os("RSP_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONT_PATHS.iter().map(PathBuf::from))
            .collect();
        let Some((path, bytes)) = candidates
            .iter()
            .find_map(|p| std::fs::read(p).ok().map(|b| (p, b)))
        else {
            return Err(format!(
                "no TrueType font for the plot text: set RSP_FONT=/path/to/font.ttf (looked at {})",
                FONT_PATHS.join(", ")
            ));
        };
        // plotters keeps the font for the process lifetime.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a usable TrueType font", path.display()))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// One named curve of a [`line_chart`].
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

/// Writes a line chart of `series` over the categorical x axis `x_labels` (one value per
/// label) to `path` (PNG, `size` pixels).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_labels: &[String],
    y_label: &str,
    y_range: (f64, f64),
    series: &[Series],
    size: (u32, u32),
) -> Result<()> {
    ensure_font()?;
    if x_labels.is_empty() {
        bail!("{}: nothing to plot", path.display());
    }
    let (w, h) = size;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let plot_err =
            |e: &dyn std::fmt::Display| anyhow!("{}: plotting failed: {e}", path.display());
        root.fill(&WHITE).map_err(|e| plot_err(&e))?;
        let n = x_labels.len();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(90)
            .y_label_area_size(60)
            .build_cartesian_2d(0usize..n.saturating_sub(1).max(1), y_range.0..y_range.1)
            .map_err(|e| plot_err(&e))?;
        chart
            .configure_mesh()
            .x_labels(n)
            .x_label_formatter(&|i| x_labels.get(*i).cloned().unwrap_or_default())
            .x_label_style(
                ("sans-serif", 12)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            )
            .y_desc(y_label)
            .draw()
            .map_err(|e| plot_err(&e))?;
        for (k, s) in series.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    s.values.iter().enumerate().map(|(i, &v)| (i, v)),
                    color.stroke_width(2),
                ))
                .map_err(|e| plot_err(&e))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| plot_err(&e))?;
        root.present().map_err(|e| plot_err(&e))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).expect("buffer sized w·h·3");
    save_png(path, &img)
}
