//! Heatmap rendering: colour maps (diverging ones symmetric around zero: red = evidence
//! for the target, blue = hostile, zero in the middle of the map), optionally blended
//! over the photo, and atomic file writes (temp file + rename; an interrupted run leaves
//! no partial file).

use std::path::Path;

use anyhow::{Context, Result};
use image::Rgb;
pub use image::RgbImage;

use crate::tensor::Tensor;

/// A colour map, by its command-line name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMap {
    /// matplotlib's `bwr`: blue, white at zero, red.
    Bwr,
    /// matplotlib's `seismic`: dark blue, blue, white at zero, red, dark red.
    Seismic,
    /// Zennit's `coldnhot`: cyan, blue, black at zero, red, yellow.
    ColdNHot,
    /// matplotlib's `jet` (the Grad-CAM convention).
    Jet,
    /// Black to white.
    Gray,
}

impl ColorMap {
    pub const ALL: [ColorMap; 5] = [
        ColorMap::Bwr,
        ColorMap::Seismic,
        ColorMap::ColdNHot,
        ColorMap::Jet,
        ColorMap::Gray,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ColorMap::Bwr => "bwr",
            ColorMap::Seismic => "seismic",
            ColorMap::ColdNHot => "coldnhot",
            ColorMap::Jet => "jet",
            ColorMap::Gray => "gray",
        }
    }

    pub fn from_name(name: &str) -> Option<ColorMap> {
        ColorMap::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Control points `(position in [0, 1], rgb in [0, 1])`, linearly interpolated.
    fn stops(self) -> &'static [(f32, [f32; 3])] {
        match self {
            ColorMap::Bwr => &[
                (0.0, [0.0, 0.0, 1.0]),
                (0.5, [1.0, 1.0, 1.0]),
                (1.0, [1.0, 0.0, 0.0]),
            ],
            ColorMap::Seismic => &[
                (0.0, [0.0, 0.0, 0.3]),
                (0.25, [0.0, 0.0, 1.0]),
                (0.5, [1.0, 1.0, 1.0]),
                (0.75, [1.0, 0.0, 0.0]),
                (1.0, [0.5, 0.0, 0.0]),
            ],
            ColorMap::ColdNHot => &[
                (0.0, [0.0, 1.0, 1.0]),
                (0.25, [0.0, 0.0, 1.0]),
                (0.5, [0.0, 0.0, 0.0]),
                (0.75, [1.0, 0.0, 0.0]),
                (1.0, [1.0, 1.0, 0.0]),
            ],
            // matplotlib's segment data, merged at the union of its breakpoints.
            ColorMap::Jet => &[
                (0.0, [0.0, 0.0, 0.5]),
                (0.11, [0.0, 0.0, 1.0]),
                (0.125, [0.0, 0.0, 1.0]),
                (0.34, [0.0, 0.86, 1.0]),
                (0.35, [0.0, 0.9, 0.9677]),
                (0.375, [0.0806, 1.0, 0.8871]),
                (0.64, [0.9355, 1.0, 0.0323]),
                (0.65, [0.9677, 0.963, 0.0]),
                (0.66, [1.0, 0.9259, 0.0]),
                (0.89, [1.0, 0.0741, 0.0]),
                (0.91, [0.9091, 0.0, 0.0]),
                (1.0, [0.5, 0.0, 0.0]),
            ],
            ColorMap::Gray => &[(0.0, [0.0, 0.0, 0.0]), (1.0, [1.0, 1.0, 1.0])],
        }
    }

    /// Whether zero belongs in the middle of the map (the signed maps' colour maps).
    pub fn diverging(self) -> bool {
        matches!(self, ColorMap::Bwr | ColorMap::Seismic | ColorMap::ColdNHot)
    }

    /// The colour at `t` in [0, 1].
    pub fn colour(self, t: f32) -> [u8; 3] {
        let stops = self.stops();
        let t = if t.is_nan() { 0.5 } else { t.clamp(0.0, 1.0) };
        let i = stops
            .iter()
            .rposition(|(p, _)| *p <= t)
            .unwrap()
            .min(stops.len() - 2);
        let ((p0, c0), (p1, c1)) = (stops[i], stops[i + 1]);
        let f = ((t - p0) / (p1 - p0)).clamp(0.0, 1.0);
        let mut out = [0u8; 3];
        for k in 0..3 {
            out[k] = ((c0[k] + (c1[k] - c0[k]) * f) * 255.0).round() as u8;
        }
        out
    }
}

/// Positions in [0, 1] of a map's values on `cmap`, and how strong each value is (0 at
/// zero, 1 at the largest |value|). A map with negative values, or any map on a
/// diverging colour map, is scaled by its max |value| so that zero stays in the middle
/// (signed maps are never min-max normalised); a non-negative map on a sequential map
/// (Grad-CAM on `jet`) is min-max normalised.
fn positions(map: &Tensor, cmap: ColorMap) -> Vec<(f32, f32)> {
    let signed = map.data.iter().any(|&v| v < 0.0);
    if signed || cmap.diverging() {
        let m = map.max_abs();
        let scale = if m > 0.0 { 1.0 / m } else { 0.0 };
        map.data
            .iter()
            .map(|&v| {
                let u = (v * scale).clamp(-1.0, 1.0);
                ((u + 1.0) / 2.0, u.abs())
            })
            .collect()
    } else {
        let lo = map.data.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = map.data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let scale = if hi > lo { 1.0 / (hi - lo) } else { 0.0 };
        map.data
            .iter()
            .map(|&v| {
                let t = ((v - lo) * scale).clamp(0.0, 1.0);
                (t, t)
            })
            .collect()
    }
}

/// Renders an `[H, W]` map on `cmap` (see [`ColorMap`] for the normalisation).
pub fn heatmap_image(map: &Tensor, cmap: ColorMap) -> RgbImage {
    let (h, w) = (map.shape[0], map.shape[1]);
    let pos = positions(map, cmap);
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        Rgb(cmap.colour(pos[y as usize * w + x as usize].0))
    })
}

/// The heatmap blended over the photo (same size). Each pixel's opacity grows with the
/// strength of its value, from `0.7·alpha` at zero to `1.7·alpha` (at most 1) at the
/// largest, so that neutral regions show the photo; `alpha` in [0, 1].
pub fn overlay(photo: &RgbImage, map: &Tensor, cmap: ColorMap, alpha: f32) -> RgbImage {
    let w = photo.width();
    let pos = positions(map, cmap);
    RgbImage::from_fn(w, photo.height(), |x, y| {
        let (t, strength) = pos[(y * w + x) as usize];
        let a = (alpha * (0.7 + strength)).min(1.0);
        let (p, h) = (photo.get_pixel(x, y), cmap.colour(t));
        let mut c = [0u8; 3];
        for k in 0..3 {
            c[k] = (p[k] as f32 * (1.0 - a) + h[k] as f32 * a).round() as u8;
        }
        Rgb(c)
    })
}

/// Encodes and writes a PNG atomically.
pub fn save_png(path: &Path, img: &RgbImage) -> Result<()> {
    crate::files::write_atomic(path, &png_bytes(img)?)
}

/// A picture encoded as PNG.
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .context("PNG encoding failed")?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bwr_puts_zero_at_white_and_signs_at_red_and_blue() {
        let map = Tensor::new(vec![1, 4], vec![-2.0, 0.0, 1.0, 2.0]);
        let img = heatmap_image(&map, ColorMap::Bwr);
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 255]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(2, 0).0, [255, 128, 128]);
        assert_eq!(img.get_pixel(3, 0).0, [255, 0, 0]);
    }

    #[test]
    fn signed_maps_are_never_min_max_normalised() {
        // A signed map on a sequential colour map: zero stays at the middle.
        let map = Tensor::new(vec![1, 3], vec![-1.0, 0.0, 4.0]);
        let img = heatmap_image(&map, ColorMap::Gray);
        assert_eq!(img.get_pixel(1, 0).0, [128, 128, 128]);
        assert_eq!(img.get_pixel(2, 0).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(0, 0).0, [96, 96, 96]);
        // A non-negative map on jet is min-max normalised (Grad-CAM's convention).
        let cam = Tensor::new(vec![1, 2], vec![1.0, 3.0]);
        let img = heatmap_image(&cam, ColorMap::Jet);
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 128]);
        assert_eq!(img.get_pixel(1, 0).0, [128, 0, 0]);
    }

    #[test]
    fn coldnhot_and_seismic_endpoints() {
        assert_eq!(ColorMap::ColdNHot.colour(0.0), [0, 255, 255]);
        assert_eq!(ColorMap::ColdNHot.colour(0.5), [0, 0, 0]);
        assert_eq!(ColorMap::ColdNHot.colour(1.0), [255, 255, 0]);
        assert_eq!(ColorMap::Seismic.colour(0.5), [255, 255, 255]);
        assert_eq!(ColorMap::Seismic.colour(1.0), [128, 0, 0]);
        for c in ColorMap::ALL {
            assert_eq!(ColorMap::from_name(c.name()), Some(c));
        }
    }

    #[test]
    fn overlay_alpha_zero_shows_the_photo_and_one_the_map_at_its_peak() {
        let photo = RgbImage::from_pixel(2, 1, Rgb([10, 20, 30]));
        let map = Tensor::new(vec![1, 2], vec![0.0, 1.0]);
        let none = overlay(&photo, &map, ColorMap::Bwr, 0.0);
        assert_eq!(none.get_pixel(0, 0).0, [10, 20, 30]);
        assert_eq!(none.get_pixel(1, 0).0, [10, 20, 30]);
        let full = overlay(&photo, &map, ColorMap::Bwr, 1.0);
        assert_eq!(full.get_pixel(1, 0).0, [255, 0, 0]);
        // The default 0.5 blends zero at 35 % and the peak at 85 %.
        let half = overlay(&photo, &map, ColorMap::Bwr, 0.5);
        assert_eq!(
            half.get_pixel(0, 0).0[0],
            (10.0 * 0.65 + 255.0 * 0.35f32).round() as u8
        );
    }
}
