//! Saliency maps as plain row-major `f32` grids, the bilinear resize the benchmarks use to
//! bring a map to the image (or mask) size, and the argmax that turns a map into a point.

use anyhow::{ensure, Result};

/// A single-channel map (a saliency or attribution heatmap), row-major: the value at
/// column `x`, row `y` is `values[y * width + x]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    width: usize,
    height: usize,
    values: Vec<f32>,
}

impl Heatmap {
    /// Wraps `values` (row-major, `width * height` of them). Errors on an empty size or a
    /// length that does not match.
    pub fn new(width: usize, height: usize, values: Vec<f32>) -> Result<Self> {
        ensure!(
            width > 0 && height > 0,
            "heatmap size {width}x{height} is empty"
        );
        ensure!(
            values.len() == width * height,
            "heatmap of {width}x{height} needs {} values, got {}",
            width * height,
            values.len()
        );
        Ok(Self {
            width,
            height,
            values,
        })
    }

    /// A map whose value at `(x, y)` is `value(x, y)`.
    pub fn from_fn(
        width: usize,
        height: usize,
        mut value: impl FnMut(usize, usize) -> f32,
    ) -> Self {
        let mut values = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                values.push(value(x, y));
            }
        }
        Self {
            width,
            height,
            values,
        }
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The values, row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Consumes the map, returning its row-major values.
    pub fn into_values(self) -> Vec<f32> {
        self.values
    }

    /// The value at column `x`, row `y` (panics when out of range, like slice indexing).
    pub fn get(&self, x: usize, y: usize) -> f32 {
        assert!(
            x < self.width && y < self.height,
            "({x}, {y}) outside the map"
        );
        self.values[y * self.width + x]
    }

    /// Bilinear resize to `width × height` with the maths of PyTorch's
    /// `F.interpolate(mode='bilinear', align_corners=False)` (no `scale_factor`): output
    /// index `i` samples the source at `(i + 0.5) · in/out − 0.5`, clamped below at 0, and
    /// the neighbour index is clamped at the last row/column. Arithmetic is `f32`, as torch
    /// does for `float` tensors, so argmax ties break the same way in practice.
    ///
    /// A size of zero is treated as one (a zero-sized image is not meaningful here).
    pub fn resize_bilinear(&self, width: usize, height: usize) -> Heatmap {
        let width = width.max(1);
        let height = height.max(1);
        if width == self.width && height == self.height {
            return self.clone();
        }
        let columns = source_taps(self.width, width);
        let rows = source_taps(self.height, height);
        let mut values = Vec::with_capacity(width * height);
        for row in &rows {
            let upper = &self.values[row.first * self.width..(row.first + 1) * self.width];
            let lower = &self.values[row.second * self.width..(row.second + 1) * self.width];
            for column in &columns {
                let top = column.first_weight * upper[column.first]
                    + column.second_weight * upper[column.second];
                let bottom = column.first_weight * lower[column.first]
                    + column.second_weight * lower[column.second];
                values.push(row.first_weight * top + row.second_weight * bottom);
            }
        }
        Heatmap {
            width,
            height,
            values,
        }
    }

    /// The first maximum in row-major order as `(x, y)`, the convention of `torch.argmax`
    /// on the flattened map. NaN values are never the maximum; `None` when every value
    /// is NaN.
    pub fn argmax(&self) -> Option<(usize, usize)> {
        let mut best: Option<(usize, f32)> = None;
        for (index, &value) in self.values.iter().enumerate() {
            if value.is_nan() {
                continue;
            }
            match best {
                Some((_, best_value)) if value <= best_value => {}
                _ => best = Some((index, value)),
            }
        }
        best.map(|(index, _)| (index % self.width, index / self.width))
    }

    /// The largest non-NaN value, if any.
    pub fn max(&self) -> Option<f32> {
        self.values
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .reduce(f32::max)
    }
}

/// The two source samples (and their weights) that one output index interpolates.
struct Tap {
    first: usize,
    second: usize,
    first_weight: f32,
    second_weight: f32,
}

/// Source taps of each of `output_len` output indices when resampling `input_len` samples
/// (align_corners=False, torch's clamping).
fn source_taps(input_len: usize, output_len: usize) -> Vec<Tap> {
    let scale = input_len as f32 / output_len as f32;
    (0..output_len)
        .map(|index| {
            let source = ((index as f32 + 0.5) * scale - 0.5).max(0.0);
            let first = (source as usize).min(input_len - 1);
            let second = (first + 1).min(input_len - 1);
            let second_weight = source - first as f32;
            Tap {
                first,
                second,
                first_weight: 1.0 - second_weight,
                second_weight,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_the_length() {
        assert!(Heatmap::new(2, 2, vec![0.0; 3]).is_err());
        assert!(Heatmap::new(0, 2, vec![]).is_err());
        assert!(Heatmap::new(2, 2, vec![0.0; 4]).is_ok());
    }

    /// torch: `F.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(4, 4),
    /// mode='bilinear', align_corners=False)`, worked by hand: the output columns sample
    /// the source at x = -0.25→0 (clamped), 0.25, 0.75, 1.25 (neighbour clamped to 1).
    #[test]
    fn bilinear_2x2_to_4x4_matches_torch() {
        let map = Heatmap::new(2, 2, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let resized = map.resize_bilinear(4, 4);
        let expected = [
            1.0, 1.25, 1.75, 2.0, //
            1.5, 1.75, 2.25, 2.5, //
            2.5, 2.75, 3.25, 3.5, //
            3.0, 3.25, 3.75, 4.0,
        ];
        assert_eq!(resized.width(), 4);
        assert_eq!(resized.height(), 4);
        for (got, want) in resized.values().iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{:?}", resized.values());
        }
    }

    /// Downsampling 4 → 2 samples the source at 0.5 and 2.5 (scale 2): plain averages of
    /// neighbouring pairs.
    #[test]
    fn bilinear_downsampling_averages_pairs() {
        let map = Heatmap::new(4, 1, vec![0.0, 2.0, 4.0, 8.0]).unwrap();
        let resized = map.resize_bilinear(2, 1);
        assert_eq!(resized.values(), &[1.0, 6.0]);
    }

    #[test]
    fn bilinear_same_size_is_identity_and_non_square_works() {
        let map = Heatmap::from_fn(3, 2, |x, y| (x + 10 * y) as f32);
        assert_eq!(map.resize_bilinear(3, 2), map);
        // 3 wide → 6 wide, 2 high → 1 high (the row samples y = 0.5: the mean of the rows).
        let resized = map.resize_bilinear(6, 1);
        let expected = [5.0, 5.25, 5.75, 6.25, 6.75, 7.0];
        for (got, want) in resized.values().iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{:?}", resized.values());
        }
    }

    #[test]
    fn argmax_takes_the_first_maximum_and_skips_nan() {
        let map = Heatmap::new(3, 2, vec![0.0, 5.0, f32::NAN, 5.0, 1.0, 2.0]).unwrap();
        assert_eq!(map.argmax(), Some((1, 0)));
        let all_nan = Heatmap::new(1, 2, vec![f32::NAN, f32::NAN]).unwrap();
        assert_eq!(all_nan.argmax(), None);
        let nan_first = Heatmap::new(2, 1, vec![f32::NAN, -3.0]).unwrap();
        assert_eq!(nan_first.argmax(), Some((1, 0)));
    }
}
