//! Map-to-map similarity for the model-sensitivity ("cascading randomisation") test of
//! Adebayo et al., "Sanity checks for saliency maps": the map of the trained model is
//! compared with maps of progressively randomised models by
//!
//! * Spearman rank correlation, of the signed values and of their absolute values
//!   (ties get the average of their ranks; the coefficient is Pearson's correlation of
//!   the ranks), and
//! * SSIM (Wang et al. 2004) with a 7×7 uniform window, `K1 = 0.01`, `K2 = 0.03`,
//!   `C1 = (K1·L)²`, `C2 = (K2·L)²` for the data range `L` the caller gives, sample
//!   (n − 1) covariances, averaged over the windows that lie fully inside the map. This
//!   is what scikit-image's `structural_similarity(a, b, data_range=L)` computes with its
//!   defaults (`win_size=7`, `gaussian_weights=False`, `use_sample_covariance=True`):
//!   skimage filters the whole image and then drops the 3-pixel border whose windows
//!   would reach outside, which leaves exactly these windows.
//!
//! The data range is the caller's choice because it depends on how maps are normalised
//! before comparison (e.g. 1 for maps scaled to [0, 1], 2 for [−1, 1]);
//! [`joint_data_range`] gives `max − min` over both maps when no normalisation applies.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

use super::map::Heatmap;

/// Side of the square SSIM window.
pub const SSIM_WINDOW: usize = 7;
/// SSIM luminance constant factor.
pub const SSIM_K1: f64 = 0.01;
/// SSIM contrast/structure constant factor.
pub const SSIM_K2: f64 = 0.03;

/// 1-based ranks of `values`, ties sharing the mean of the ranks they span. Values must
/// be comparable (no NaN); NaN sorts last under `total_cmp` and is ranked like a number.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold ranks start+1..=end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        for &index in &order[start..end] {
            ranks[index] = rank;
        }
        start = end;
    }
    ranks
}

/// Pearson's correlation of two equally long sequences; `None` when either is constant.
fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let mean_a = a.iter().sum::<f64>() / n;
    let mean_b = b.iter().sum::<f64>() / n;
    let (mut covariance, mut variance_a, mut variance_b) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        covariance += (x - mean_a) * (y - mean_b);
        variance_a += (x - mean_a) * (x - mean_a);
        variance_b += (y - mean_b) * (y - mean_b);
    }
    (variance_a > 0.0 && variance_b > 0.0)
        .then(|| (covariance / (variance_a * variance_b).sqrt()).clamp(-1.0, 1.0))
}

fn check_values(a: &[f32], b: &[f32]) -> Result<()> {
    ensure!(
        a.len() == b.len(),
        "cannot correlate maps of {} and {} values",
        a.len(),
        b.len()
    );
    ensure!(!a.is_empty(), "cannot correlate empty maps");
    ensure!(
        a.iter().chain(b).all(|v| v.is_finite()),
        "maps to correlate contain NaN or infinite values"
    );
    Ok(())
}

/// Spearman's rank correlation of the signed values; `None` when either map is
/// constant (the coefficient is undefined). Errors on different lengths, empty or
/// non-finite input.
pub fn spearman(a: &[f32], b: &[f32]) -> Result<Option<f64>> {
    check_values(a, b)?;
    let ranks_a = average_ranks(&a.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let ranks_b = average_ranks(&b.iter().map(|&v| v as f64).collect::<Vec<_>>());
    Ok(pearson(&ranks_a, &ranks_b))
}

/// Spearman's rank correlation of the absolute values (see [`spearman`]).
pub fn spearman_abs(a: &[f32], b: &[f32]) -> Result<Option<f64>> {
    check_values(a, b)?;
    let ranks_a = average_ranks(&a.iter().map(|&v| v.abs() as f64).collect::<Vec<_>>());
    let ranks_b = average_ranks(&b.iter().map(|&v| v.abs() as f64).collect::<Vec<_>>());
    Ok(pearson(&ranks_a, &ranks_b))
}

/// `max − min` over the values of both maps (non-finite values ignored); 0 when they
/// are all equal.
pub fn joint_data_range(a: &Heatmap, b: &Heatmap) -> f64 {
    let (min, max) = a
        .values()
        .iter()
        .chain(b.values())
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v as f64), hi.max(v as f64))
        });
    if max >= min {
        max - min
    } else {
        0.0
    }
}

/// Mean SSIM of two equally sized maps (at least 7×7) for the data range `data_range`
/// (see the module docs for the exact convention).
pub fn ssim(a: &Heatmap, b: &Heatmap, data_range: f64) -> Result<f64> {
    ensure!(
        a.width() == b.width() && a.height() == b.height(),
        "SSIM needs maps of the same size, got {}x{} and {}x{}",
        a.width(),
        a.height(),
        b.width(),
        b.height()
    );
    ensure!(
        a.width() >= SSIM_WINDOW && a.height() >= SSIM_WINDOW,
        "SSIM needs maps of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {}x{}",
        a.width(),
        a.height()
    );
    ensure!(
        data_range.is_finite() && data_range > 0.0,
        "SSIM data range must be positive, got {data_range}"
    );
    ensure!(
        a.values().iter().chain(b.values()).all(|v| v.is_finite()),
        "maps for SSIM contain NaN or infinite values"
    );
    let c1 = (SSIM_K1 * data_range).powi(2);
    let c2 = (SSIM_K2 * data_range).powi(2);
    let count = (SSIM_WINDOW * SSIM_WINDOW) as f64;
    let sample_correction = count / (count - 1.0);
    let width = a.width();
    let (values_a, values_b) = (a.values(), b.values());

    let mut total = 0.0;
    let mut windows = 0usize;
    for top in 0..=a.height() - SSIM_WINDOW {
        for left in 0..=width - SSIM_WINDOW {
            let (mut sum_a, mut sum_b, mut sum_aa, mut sum_bb, mut sum_ab) =
                (0.0, 0.0, 0.0, 0.0, 0.0);
            for y in top..top + SSIM_WINDOW {
                let row = y * width;
                for x in left..left + SSIM_WINDOW {
                    let va = values_a[row + x] as f64;
                    let vb = values_b[row + x] as f64;
                    sum_a += va;
                    sum_b += vb;
                    sum_aa += va * va;
                    sum_bb += vb * vb;
                    sum_ab += va * vb;
                }
            }
            let (mean_a, mean_b) = (sum_a / count, sum_b / count);
            let variance_a = sample_correction * (sum_aa / count - mean_a * mean_a);
            let variance_b = sample_correction * (sum_bb / count - mean_b * mean_b);
            let covariance = sample_correction * (sum_ab / count - mean_a * mean_b);
            let luminance = (2.0 * mean_a * mean_b + c1) / (mean_a * mean_a + mean_b * mean_b + c1);
            let structure = (2.0 * covariance + c2) / (variance_a + variance_b + c2);
            total += luminance * structure;
            windows += 1;
        }
    }
    Ok(total / windows as f64)
}

/// The three similarities of one pair of maps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Similarity {
    /// Spearman of the signed values (`None`: a map is constant).
    pub spearman: Option<f64>,
    /// Spearman of the absolute values (`None`: a map is constant in magnitude).
    pub spearman_abs: Option<f64>,
    /// Mean SSIM.
    pub ssim: f64,
}

/// Compares two equally sized maps by [`spearman`], [`spearman_abs`] and [`ssim`].
pub fn compare(a: &Heatmap, b: &Heatmap, data_range: f64) -> Result<Similarity> {
    ensure!(
        a.width() == b.width() && a.height() == b.height(),
        "cannot compare maps of {}x{} and {}x{}",
        a.width(),
        a.height(),
        b.width(),
        b.height()
    );
    Ok(Similarity {
        spearman: spearman(a.values(), b.values())?,
        spearman_abs: spearman_abs(a.values(), b.values())?,
        ssim: ssim(a, b, data_range)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn average_ranks_share_ties() {
        assert_eq!(average_ranks(&[10.0, 30.0, 20.0]), vec![1.0, 3.0, 2.0]);
        assert_eq!(
            average_ranks(&[5.0, 1.0, 5.0, 5.0, 0.0]),
            vec![4.0, 2.0, 4.0, 4.0, 1.0]
        );
    }

    #[test]
    fn spearman_hand_computed() {
        // No ties: d = [0, 1, 1, 0], ρ = 1 − 6·2 / (4·15) = 0.8.
        let rho = spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0])
            .unwrap()
            .unwrap();
        assert!(close(rho, 0.8, 1e-12));
        // Ties: ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4] → 4.5 / √(4.5 · 5) = 3/√10.
        let rho = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0])
            .unwrap()
            .unwrap();
        assert!(close(rho, 3.0 / 10f64.sqrt(), 1e-12));
    }

    #[test]
    fn spearman_of_monotone_transforms_and_reversals() {
        let a: Vec<f32> = (0..50).map(|i| ((i * 37) % 50) as f32 - 20.0).collect();
        let cubed: Vec<f32> = a.iter().map(|v| v * v * v + 3.0).collect();
        let reversed: Vec<f32> = a.iter().map(|v| -2.0 * v).collect();
        assert!(close(spearman(&a, &cubed).unwrap().unwrap(), 1.0, 1e-12));
        assert!(close(
            spearman(&a, &reversed).unwrap().unwrap(),
            -1.0,
            1e-12
        ));
        // Negating keeps the magnitudes: absolute-value Spearman stays 1.
        assert!(close(
            spearman_abs(&a, &reversed).unwrap().unwrap(),
            1.0,
            1e-12
        ));
    }

    #[test]
    fn spearman_abs_hand_computed() {
        // |a| = |b| → 1; signed ranks [1, 2, 3] vs [3, 1, 2]: Σd² = 6, ρ = 1 − 36/24.
        let (a, b) = ([-3.0, 1.0, 2.0], [3.0, 1.0, 2.0]);
        assert!(close(spearman_abs(&a, &b).unwrap().unwrap(), 1.0, 1e-12));
        assert!(close(spearman(&a, &b).unwrap().unwrap(), -0.5, 1e-12));
    }

    #[test]
    fn spearman_degenerate_input() {
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).unwrap(), None);
        assert_eq!(spearman_abs(&[-1.0, 1.0], &[1.0, 2.0]).unwrap(), None);
        assert!(spearman(&[1.0], &[1.0, 2.0]).is_err());
        assert!(spearman(&[], &[]).is_err());
        assert!(spearman(&[f32::NAN, 1.0], &[1.0, 2.0]).is_err());
    }

    /// A deterministic pattern in [0, 1] whose f32 values are easy to reproduce
    /// elsewhere (`((7x + 13y + shift) mod 11) / 10`).
    fn wavy(width: usize, height: usize, shift: usize) -> Heatmap {
        Heatmap::from_fn(width, height, |x, y| {
            ((7 * x + 13 * y + shift) % 11) as f32 / 10.0
        })
    }

    #[test]
    fn ssim_of_a_map_with_itself_is_one() {
        let map = wavy(12, 9, 0);
        assert!(close(ssim(&map, &map, 1.0).unwrap(), 1.0, 1e-12));
        let constant = Heatmap::new(7, 7, vec![0.25; 49]).unwrap();
        assert!(close(ssim(&constant, &constant, 1.0).unwrap(), 1.0, 1e-12));
    }

    /// Constant maps a = 0 and b = 1 over one 7×7 window: zero variances, so the
    /// structure term is C2 / C2 = 1 and SSIM = C1 / (1 + C1) with C1 = (0.01·1)².
    #[test]
    fn ssim_of_constant_maps_hand_computed() {
        let zeros = Heatmap::new(7, 7, vec![0.0; 49]).unwrap();
        let ones = Heatmap::new(7, 7, vec![1.0; 49]).unwrap();
        let c1 = 1e-4;
        assert!(close(
            ssim(&zeros, &ones, 1.0).unwrap(),
            c1 / (1.0 + c1),
            1e-15
        ));
    }

    /// A 0/1 pattern x with k ones among 49 and its complement y = 1 − x, one window:
    /// means p = k/49 and 1 − p, sample variances c·p(1−p) with c = 49/48, covariance
    /// −c·p(1−p). SSIM = (2p(1−p) + C1)(C2 − 2c·p(1−p)) / ((p² + (1−p)² + C1)(2c·p(1−p) + C2)).
    #[test]
    fn ssim_of_a_pattern_and_its_complement_hand_computed() {
        let x = Heatmap::from_fn(7, 7, |i, j| ((i * 3 + j * 5) % 4 == 0) as u8 as f32);
        let y = Heatmap::new(7, 7, x.values().iter().map(|v| 1.0 - v).collect()).unwrap();
        let k = x.values().iter().filter(|&&v| v == 1.0).count() as f64;
        let p = k / 49.0;
        let c = 49.0 / 48.0;
        let (c1, c2) = (1e-4, 9e-4);
        let q = p * (1.0 - p);
        let expected = (2.0 * q + c1) * (c2 - 2.0 * c * q)
            / ((p * p + (1.0 - p) * (1.0 - p) + c1) * (2.0 * c * q + c2));
        assert!(close(ssim(&x, &y, 1.0).unwrap(), expected, 1e-12));
        assert!(expected < 0.0);
    }

    /// Reference value from scikit-image 0.26
    /// `structural_similarity(a, b, data_range=1.0)` on these float32 maps (converted to
    /// float64), checked once when this was written.
    #[test]
    fn ssim_matches_scikit_image() {
        let a = wavy(12, 9, 0);
        let b = wavy(12, 9, 4);
        let value = ssim(&a, &b, 1.0).unwrap();
        assert!(close(value, SKIMAGE_WAVY, 1e-9), "{value}");
    }
    const SKIMAGE_WAVY: f64 = -0.3931863416585471;

    #[test]
    fn ssim_rejects_bad_input() {
        let map = wavy(7, 7, 0);
        assert!(ssim(&map, &wavy(8, 7, 0), 1.0).is_err());
        assert!(ssim(&wavy(6, 7, 0), &wavy(6, 7, 0), 1.0).is_err());
        assert!(ssim(&map, &map, 0.0).is_err());
        assert!(ssim(&map, &map, f64::NAN).is_err());
    }

    #[test]
    fn compare_and_joint_range() {
        let a = wavy(8, 8, 0);
        let similarity = compare(&a, &a, joint_data_range(&a, &a)).unwrap();
        assert!(close(similarity.spearman.unwrap(), 1.0, 1e-12));
        assert!(close(similarity.ssim, 1.0, 1e-12));
        let b = Heatmap::new(2, 1, vec![-1.0, 3.0]).unwrap();
        assert_eq!(joint_data_range(&b, &b), 4.0);
        assert!(compare(&a, &wavy(8, 9, 0), 1.0).is_err());
    }
}
