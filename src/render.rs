//! Heatmap rendering: a diverging colormap symmetric around zero (matplotlib's
//! `seismic`: blue = hostile, white = 0, red = target), optionally over the photo, and
//! atomic file writes (temp file + rename; an interrupted run leaves no partial file).

use std::path::Path;

use anyhow::{Context, Result};
use image::Rgb;
pub use image::RgbImage;

use crate::tensor::Tensor;

/// matplotlib's `seismic` control points: (position, r, g, b).
const SEISMIC: [(f32, [f32; 3]); 5] = [
    (0.0, [0.0, 0.0, 0.3]),
    (0.25, [0.0, 0.0, 1.0]),
    (0.5, [1.0, 1.0, 1.0]),
    (0.75, [1.0, 0.0, 0.0]),
    (1.0, [0.5, 0.0, 0.0]),
];

/// Colour of `v` in [-1, 1].
pub fn seismic(v: f32) -> [u8; 3] {
    let t = ((v.clamp(-1.0, 1.0) + 1.0) / 2.0).clamp(0.0, 1.0);
    let i = SEISMIC.iter().rposition(|(p, _)| *p <= t).unwrap().min(3);
    let (p0, c0) = SEISMIC[i];
    let (p1, c1) = SEISMIC[i + 1];
    let f = (t - p0) / (p1 - p0);
    let mut out = [0u8; 3];
    for k in 0..3 {
        out[k] = ((c0[k] + (c1[k] - c0[k]) * f) * 255.0).round() as u8;
    }
    out
}

/// Renders a signed `[H, W]` heatmap, scaled by its max |value|.
pub fn heatmap_image(map: &Tensor) -> RgbImage {
    let (h, w) = (map.shape[0], map.shape[1]);
    let m = map.max_abs();
    let scale = if m > 0.0 { 1.0 / m } else { 0.0 };
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        Rgb(seismic(map.data[y as usize * w + x as usize] * scale))
    })
}

/// The heatmap blended over the photo (same size), weighting the heatmap by how far
/// each value is from zero so that neutral regions show the photo.
pub fn overlay(photo: &RgbImage, map: &Tensor) -> RgbImage {
    let heat = heatmap_image(map);
    let m = map.max_abs().max(f32::MIN_POSITIVE);
    RgbImage::from_fn(heat.width(), heat.height(), |x, y| {
        let a = 0.35 + 0.5 * (map.data[(y * heat.width() + x) as usize].abs() / m).min(1.0);
        let (p, h) = (photo.get_pixel(x, y), heat.get_pixel(x, y));
        let mut c = [0u8; 3];
        for k in 0..3 {
            c[k] = (p[k] as f32 * (1.0 - a) + h[k] as f32 * a).round() as u8;
        }
        Rgb(c)
    })
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}", path.display())
    })
}

/// Encodes and writes a PNG atomically.
pub fn save_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .context("PNG encoding failed")?;
    write_atomic(path, &bytes)
}
