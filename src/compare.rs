//! Comparison of tensors against references (golden files, the CPU oracle), with the two
//! tolerance modes of the golden README: a tight elementwise bound for small cases and a
//! statistical bound for large networks, where rare ReLU-zero or max-pool near-tie flips
//! legitimately move a few elements; and the plain relative-maximum bound of the GPU op
//! and rule tests against the oracle. This is the one tolerance check of the crate and
//! its tests.
//!
//! All measurements are computed in float64.

use std::fmt;

use crate::tensor::Tensor;

/// How close `actual` must be to `reference`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tolerance {
    /// `|a − r| ≤ rel_max · max|r|` for every element, and
    /// `|Σa − Σr| ≤ rel_sum · Σ|r|` (conservation).
    Elementwise { rel_max: f32, rel_sum: f32 },
    /// `‖a − r‖₂ / ‖r‖₂ ≤ rel_l2` and `max|a − r| ≤ rel_max · max|r|`.
    Statistical { rel_l2: f32, rel_max: f32 },
    /// `max|a − r| ≤ rel_max · max|r|` only (the GPU op and rule tests; the bound is
    /// float64 so that it is exactly the decimal written).
    MaxRel { rel_max: f64 },
}

impl Tolerance {
    /// The golden README's bound for the public small cases (≥ 30× headroom over the
    /// float32-vs-float64 discrepancy of the reference).
    pub const GOLDEN: Tolerance = Tolerance::Elementwise {
        rel_max: 1e-4,
        rel_sum: 1e-4,
    };
    /// The golden README's bound for VGG16-scale networks.
    pub const LARGE_NET: Tolerance = Tolerance::Statistical {
        rel_l2: 1e-3,
        rel_max: 2e-2,
    };
}

/// Measured agreement of one tensor with its reference.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The name given to [`compare`] / [`measure`].
    pub name: String,
    /// The (common) shape of both tensors.
    pub shape: Vec<usize>,
    /// `max|a − r|`
    pub max_abs_err: f64,
    /// `max|r|`
    pub ref_max_abs: f64,
    /// `max|a − r| / max|r|` (0 when both are 0, infinite when only the error is not).
    pub rel_max_err: f64,
    /// `‖a − r‖₂ / ‖r‖₂` (same conventions).
    pub rel_l2_err: f64,
    /// `Σa`
    pub sum_actual: f64,
    /// `Σr`
    pub sum_ref: f64,
    /// `|Σa − Σr| / Σ|r|`
    pub rel_sum_err: f64,
    /// Multi-index of the element with the largest `|a − r|` (the first NaN, if any).
    pub worst_index: Vec<usize>,
    /// `a` at `worst_index`.
    pub worst_actual: f32,
    /// `r` at `worst_index`.
    pub worst_ref: f32,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?}: rel_max {:.3e} (max|a-r| {:.3e}, max|r| {:.3e}, worst at {:?}: {} vs {}), \
             rel_l2 {:.3e}, rel_sum {:.3e} (sum {} vs {})",
            self.name,
            self.shape,
            self.rel_max_err,
            self.max_abs_err,
            self.ref_max_abs,
            self.worst_index,
            self.worst_actual,
            self.worst_ref,
            self.rel_l2_err,
            self.rel_sum_err,
            self.sum_actual,
            self.sum_ref
        )
    }
}

fn ratio(num: f64, den: f64) -> f64 {
    if num == 0.0 {
        0.0
    } else if den == 0.0 {
        f64::INFINITY
    } else {
        num / den
    }
}

/// `true` when `v` is above `bound` or NaN.
fn exceeds(v: f64, bound: impl Into<f64>) -> bool {
    v.is_nan() || v > bound.into()
}

fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[k] = flat % d;
            flat /= d;
        }
    }
    idx
}

/// Measures `actual` against `reference` without judging.
/// Panics if the shapes differ (use [`compare`] for a checked comparison).
pub fn measure(name: &str, actual: &Tensor, reference: &Tensor) -> Report {
    assert_eq!(actual.shape, reference.shape, "{name}: shape mismatch");
    let (mut max_err, mut worst, mut ref_max) = (0.0f64, 0usize, 0.0f64);
    let (mut err_sq, mut ref_sq) = (0.0f64, 0.0f64);
    let (mut sum_a, mut sum_r, mut sum_abs_r) = (0.0f64, 0.0f64, 0.0f64);
    let mut saw_nan = false;
    for (k, (&a, &r)) in actual.data.iter().zip(&reference.data).enumerate() {
        let (a, r) = (a as f64, r as f64);
        let e = (a - r).abs();
        if e.is_nan() {
            if !saw_nan {
                worst = k;
            }
            saw_nan = true;
        } else if !saw_nan && e > max_err {
            max_err = e;
            worst = k;
        }
        ref_max = ref_max.max(r.abs());
        err_sq += e * e;
        ref_sq += r * r;
        sum_a += a;
        sum_r += r;
        sum_abs_r += r.abs();
    }
    if saw_nan {
        max_err = f64::NAN;
    }
    Report {
        name: name.to_string(),
        shape: reference.shape.clone(),
        max_abs_err: max_err,
        ref_max_abs: ref_max,
        rel_max_err: ratio(max_err, ref_max),
        rel_l2_err: ratio(err_sq.sqrt(), ref_sq.sqrt()),
        sum_actual: sum_a,
        sum_ref: sum_r,
        rel_sum_err: ratio((sum_a - sum_r).abs(), sum_abs_r),
        worst_index: unravel(worst, &reference.shape),
        worst_actual: actual.data.get(worst).copied().unwrap_or(0.0),
        worst_ref: reference.data.get(worst).copied().unwrap_or(0.0),
    }
}

/// Compares `actual` with `reference` under `tol`. Returns the measurements on success;
/// on failure (shape mismatch, NaN, or a bound exceeded) a message naming the tensor,
/// the violated bound, the measured numbers and the worst element.
pub fn compare(
    name: &str,
    actual: &Tensor,
    reference: &Tensor,
    tol: Tolerance,
) -> Result<Report, String> {
    if actual.shape != reference.shape {
        return Err(format!(
            "{name}: shape mismatch: actual {:?}, reference {:?}",
            actual.shape, reference.shape
        ));
    }
    let rep = measure(name, actual, reference);
    let failures: Vec<String> = match tol {
        Tolerance::Elementwise { rel_max, rel_sum } => {
            let mut v = Vec::new();
            if exceeds(rep.rel_max_err, rel_max) {
                v.push(format!(
                    "elementwise rel_max {:.3e} > {rel_max:e}",
                    rep.rel_max_err
                ));
            }
            if exceeds(rep.rel_sum_err, rel_sum) {
                v.push(format!("rel_sum {:.3e} > {rel_sum:e}", rep.rel_sum_err));
            }
            v
        }
        Tolerance::Statistical { rel_l2, rel_max } => {
            let mut v = Vec::new();
            if exceeds(rep.rel_l2_err, rel_l2) {
                v.push(format!("rel_l2 {:.3e} > {rel_l2:e}", rep.rel_l2_err));
            }
            if exceeds(rep.rel_max_err, rel_max) {
                v.push(format!("rel_max {:.3e} > {rel_max:e}", rep.rel_max_err));
            }
            v
        }
        Tolerance::MaxRel { rel_max } => {
            let mut v = Vec::new();
            if exceeds(rep.rel_max_err, rel_max) {
                v.push(format!("rel_max {:.3e} > {rel_max:e}", rep.rel_max_err));
            }
            v
        }
    };
    if failures.is_empty() {
        Ok(rep)
    } else {
        Err(format!("MISMATCH {}: {rep}", failures.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::new(shape.to_vec(), data.to_vec())
    }

    #[test]
    fn identical_tensors_pass_both_modes() {
        let a = t(&[2, 2], &[1.0, -2.0, 3.0, 0.0]);
        for tol in [Tolerance::GOLDEN, Tolerance::LARGE_NET] {
            let rep = compare("a", &a, &a, tol).unwrap();
            assert_eq!(rep.max_abs_err, 0.0);
            assert_eq!(rep.rel_l2_err, 0.0);
        }
    }

    #[test]
    fn reports_worst_index_and_numbers() {
        let r = t(&[2, 3], &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        let a = t(&[2, 3], &[1.0, 1.0, 1.0, 1.0, 1.5, 1.0]);
        let err = compare("x", &a, &r, Tolerance::GOLDEN).unwrap_err();
        assert!(err.contains("[1, 1]"), "{err}");
        assert!(err.contains("x "), "{err}");
        let rep = measure("x", &a, &r);
        assert!((rep.rel_max_err - 0.5).abs() < 1e-12);
    }

    #[test]
    fn shape_mismatch_and_nan_fail() {
        let r = t(&[2], &[1.0, 2.0]);
        assert!(compare("s", &t(&[1, 2], &[1.0, 2.0]), &r, Tolerance::GOLDEN).is_err());
        assert!(compare("n", &t(&[2], &[f32::NAN, 2.0]), &r, Tolerance::LARGE_NET).is_err());
    }

    #[test]
    fn max_rel_mode_bounds_only_the_largest_error() {
        let r = t(&[4], &[2.0, -1.0, 0.5, 0.0]);
        // Errors of 1e-5 · max|r| everywhere: the sum moves by more, which is not checked.
        let a = t(&[4], &[2.00002, -0.99998, 0.50002, 0.00002]);
        let tol = Tolerance::MaxRel { rel_max: 1.5e-5 };
        assert!(compare("m", &a, &r, tol).is_ok());
        let err = compare("m", &a, &r, Tolerance::MaxRel { rel_max: 5e-6 }).unwrap_err();
        assert!(err.contains("rel_max"), "{err}");
        assert!(compare("z", &r, &r, Tolerance::MaxRel { rel_max: 0.0 }).is_ok());
        assert!(compare("n", &t(&[4], &[f32::NAN; 4]), &r, tol).is_err());
    }

    #[test]
    fn statistical_mode_tolerates_one_outlier() {
        let n = 10_000;
        let r = Tensor::new(vec![n], (0..n).map(|i| 1.0 + (i % 7) as f32).collect());
        let mut a = r.clone();
        a.data[17] += 0.05; // 0.7 % of max|r|
        assert!(compare("o", &a, &r, Tolerance::LARGE_NET).is_ok());
        assert!(compare("o", &a, &r, Tolerance::GOLDEN).is_err());
    }
}
