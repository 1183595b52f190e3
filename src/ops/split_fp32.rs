//! The arithmetic of the split-fp32 cooperative-matrix GEMM, on the CPU.
//!
//! Matrix units multiply f16 operands exactly (an f16 × f16 product has at most 22
//! significant bits and fits f32) and add into f32 accumulators. Split-fp32 (after
//! Ootomo & Yokota, 2022) keeps f32 accuracy on them by writing each f32 operand as
//! f16 *planes*: `v · 2^s = p0 + p1 · 2^-11 + p2 · 2^-22`, each plane the f16 rounding
//! of what the planes before it left over, stored times `2^(11·plane)` so that it stays
//! a normal f16 over the same range as `p0`. `2^s` is a power of two chosen per block
//! of rows of A (per block of columns of B) in a pack pass, which puts the block's
//! largest magnitude in `[2^14, 2^15)`; since it is constant along K it factors out of
//! every sum and is undone once, on store.
//!
//! The GEMM multiplies the plane pairs `(i, j)` with `i + j ≤ max_order` and keeps one
//! f32 accumulator per order `d = i + j` (a product of order `d` weighs `2^(-11·d)`);
//! [`Order::flush`] moves the unit's accumulators into f32 ones outside it every few
//! K steps (the chosen scheme: every 32 k, which a truncating unit needs). This module is the specification the kernel follows and the emulation
//! `tests/gpu/split_fp32.rs` measures on the golden cases' convolutions
//! (`docs/split-fp32.md`): no code here runs on the GPU.

use half::f16;

/// Bits each plane carries (f16's significand, implicit bit included); plane `p` is
/// stored times `2^(PLANE_SHIFT · p)`.
pub const PLANE_SHIFT: i32 = 11;

/// A block's scale puts its largest magnitude in `[2^TOP_EXP, 2^(TOP_EXP + 1))`:
/// below f16's largest finite value 65504 even after rounding, so that the smallest
/// normal f16 `2^-14` lies `2^28` to `2^29` below the block's maximum.
pub const TOP_EXP: i32 = 14;

/// K of one matrix-unit step (a 16×16×16 multiply-add).
pub const MMA_K: usize = 16;

/// A dense row-major f32 matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(rows * cols, data.len(), "matrix {rows}×{cols}");
        Matrix { rows, cols, data }
    }

    pub fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.cols + c]
    }

    pub fn transpose(&self) -> Matrix {
        let mut t = vec![0.0; self.data.len()];
        for r in 0..self.rows {
            for c in 0..self.cols {
                t[c * self.rows + r] = self.at(r, c);
            }
        }
        Matrix::new(self.cols, self.rows, t)
    }
}

/// Which planes a GEMM uses and which plane products it sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheme {
    /// 1 (f16 only), 2 (hi, lo) or 3 (hi, mid, lo).
    pub planes: usize,
    /// Products `p_i(A) · p_j(B)` with `i + j ≤ max_order` are summed.
    pub max_order: usize,
}

impl Scheme {
    /// hi · hi: plain f16 inputs (the half-precision mode).
    pub const F16: Scheme = Scheme {
        planes: 1,
        max_order: 0,
    };
    /// hi·hi + hi·lo + lo·hi: three products, the split-fp32 scheme.
    pub const SPLIT2: Scheme = Scheme {
        planes: 2,
        max_order: 1,
    };
    /// SPLIT2 plus lo·lo: four products.
    pub const SPLIT2_LOLO: Scheme = Scheme {
        planes: 2,
        max_order: 2,
    };
    /// Three planes, the six products of order ≤ 2.
    pub const SPLIT3: Scheme = Scheme {
        planes: 3,
        max_order: 2,
    };

    /// The plane pairs `(i, j)` in the order the kernel issues them within one K step:
    /// by order, then A's plane first (`hi·hi`, `hi·lo`, `lo·hi`, …).
    pub fn products(self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for d in 0..=self.max_order {
            for i in 0..self.planes.min(d + 1) {
                if d - i < self.planes {
                    out.push((i, d - i));
                }
            }
        }
        out
    }

    /// Number of accumulators (one per order).
    pub fn orders(self) -> usize {
        self.max_order + 1
    }
}

/// The exponent of `|v|`'s leading bit (`v ≠ 0`, finite), subnormals included.
fn exponent(v: f32) -> i32 {
    let bits = v.abs().to_bits();
    let e = (bits >> 23) as i32;
    if e == 0 {
        -149 + (31 - bits.leading_zeros() as i32)
    } else {
        e - 127
    }
}

/// `v · 2^e`, exact wherever the result is a normal f32 (`2^e` itself may not be one).
pub fn ldexp(v: f32, e: i32) -> f32 {
    (v as f64 * 2f64.powi(e)) as f32
}

/// The scale exponent `s` of a block whose largest magnitude is `max_abs`: `2^s ·
/// max_abs ∈ [2^TOP_EXP, 2^(TOP_EXP + 1))`; 0 for an all-zero block.
pub fn scale_exponent(max_abs: f32) -> i32 {
    if max_abs == 0.0 {
        0
    } else {
        TOP_EXP - exponent(max_abs)
    }
}

/// The planes of a scaled value `v` (`|v| < 2^(TOP_EXP + 1)`): plane `p` is
/// `f16(r_p · 2^(11p))`, `r_p` what the planes before it left over (exact in f32).
/// The round trip through f16 must really round: a kernel should use
/// `pack2x16float`/`unpack2x16float` rather than `f32(f16(x))`, which a compiler may
/// fold away.
pub fn split(v: f32, planes: usize) -> [f16; 3] {
    let mut out = [f16::ZERO; 3];
    let mut rest = v;
    for (p, slot) in out.iter_mut().enumerate().take(planes) {
        let shift = PLANE_SHIFT * p as i32;
        *slot = f16::from_f32(ldexp(rest, shift));
        rest -= ldexp(slot.to_f32(), -shift);
    }
    out
}

/// Along which axis an operand's scales vary: A has one per block of rows, B one per
/// block of columns, so that each is constant along K.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    Rows,
    Cols,
}

/// An operand after the pack pass: its planes (row-major, like the matrix) and the
/// scale exponent of every block.
#[derive(Clone, Debug)]
pub struct Packed {
    pub rows: usize,
    pub cols: usize,
    pub axis: Axis,
    /// Rows (Axis::Rows) or columns per scale; `usize::MAX`: one scale for the matrix.
    pub block: usize,
    pub exps: Vec<i32>,
    pub planes: Vec<Vec<f16>>,
}

impl Packed {
    /// The scale exponent of row `r` (Axis::Rows) or column `r` (Axis::Cols).
    pub fn exp(&self, r: usize) -> i32 {
        self.exps[r / self.block]
    }
}

/// The pack pass: per block of `block` rows or columns along `axis`, the scale
/// exponent of its largest magnitude, then every value scaled and split.
pub fn pack(m: &Matrix, axis: Axis, block: usize, planes: usize) -> Packed {
    let lines = match axis {
        Axis::Rows => m.rows,
        Axis::Cols => m.cols,
    };
    let block = block.clamp(1, lines.max(1));
    let mut max = vec![0.0f32; lines.div_ceil(block)];
    for r in 0..m.rows {
        for c in 0..m.cols {
            let line = if axis == Axis::Rows { r } else { c };
            let b = &mut max[line / block];
            *b = b.max(m.at(r, c).abs());
        }
    }
    let exps: Vec<i32> = max.iter().map(|&x| scale_exponent(x)).collect();
    let mut out = vec![Vec::with_capacity(m.data.len()); planes];
    for r in 0..m.rows {
        for c in 0..m.cols {
            let line = if axis == Axis::Rows { r } else { c };
            let parts = split(ldexp(m.at(r, c), exps[line / block]), planes);
            for (plane, part) in out.iter_mut().zip(parts) {
                plane.push(part);
            }
        }
    }
    Packed {
        rows: m.rows,
        cols: m.cols,
        axis,
        block,
        exps,
        planes: out,
    }
}

/// How the matrix unit adds one 16-deep step of products into its accumulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitSum {
    /// Each (exact) product added in ascending k with one f32 round-to-nearest add.
    Sequential,
    /// A model of NVIDIA's tensor cores (Fasi et al., 2021): the accumulator and the
    /// 16 products aligned to the largest exponent among them, each truncated to 24 bits
    /// below it, summed exactly, and the sum truncated (rounded toward zero) to f32.
    /// Pessimistic: newer units keep more alignment bits.
    Truncating,
}

/// The order of the emulated GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order {
    pub unit: UnitSum,
    /// Every `flush` K steps the unit's accumulators are added (round to nearest) into
    /// f32 accumulators outside the unit and restarted from zero; 0: never (the unit's
    /// accumulators run over the whole of K).
    pub flush: usize,
}

/// `acc + Σ terms` as `unit` adds one step.
fn unit_step(unit: UnitSum, acc: f32, terms: &[f32]) -> f32 {
    match unit {
        UnitSum::Sequential => terms.iter().fold(acc, |a, &t| a + t),
        UnitSum::Truncating => {
            let emax = std::iter::once(&acc)
                .chain(terms)
                .filter(|t| **t != 0.0)
                .map(|&t| exponent(t))
                .max();
            let Some(emax) = emax else { return 0.0 };
            let q = 2f64.powi(emax - 23);
            let trunc = |t: f32| (t as f64 / q).trunc() * q;
            let sum = trunc(acc) + terms.iter().map(|&t| trunc(t)).sum::<f64>();
            let near = sum as f32;
            if (near as f64).abs() > sum.abs() {
                // Round toward zero: one step back toward 0.
                f32::from_bits(near.to_bits() - 1)
            } else {
                near
            }
        }
    }
}

/// `C = A · B` from A packed per rows and B packed per columns, as the kernel computes
/// it: K in steps of [`MMA_K`]; within a step, for each plane pair of
/// [`Scheme::products`] in turn, the step's products summed into that pair's order
/// accumulator (`order`); on store, `Σ_d acc_d · 2^(-11d)` (highest order first, f32
/// round to nearest) times `2^-(s_A(m) + s_B(n))`.
pub fn gemm(a: &Packed, b: &Packed, scheme: Scheme, order: Order) -> Matrix {
    assert_eq!(
        a.cols, b.rows,
        "gemm: A is {}×{}, B {}×{}",
        a.rows, a.cols, b.rows, b.cols
    );
    assert!(
        a.axis == Axis::Rows && b.axis == Axis::Cols,
        "gemm: A per rows, B per columns"
    );
    assert!(a.planes.len() >= scheme.planes && b.planes.len() >= scheme.planes);
    assert!(scheme.max_order <= 2, "gemm: at most three orders");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let products = scheme.products();
    // f16 → f32 is exact; converting once keeps the emulation fast.
    let widen = |p: &Vec<f16>| p.iter().map(|h| h.to_f32()).collect::<Vec<f32>>();
    let pa: Vec<Vec<f32>> = a.planes.iter().map(widen).collect();
    let pb: Vec<Vec<f32>> = b.planes.iter().map(widen).collect();
    let mut out = vec![0.0f32; m * n];
    let mut terms = Vec::with_capacity(MMA_K);
    for r in 0..m {
        for c in 0..n {
            let mut unit = [0.0f32; 3];
            let mut outer = [0.0f32; 3];
            for (step, k0) in (0..k).step_by(MMA_K).enumerate() {
                let k1 = (k0 + MMA_K).min(k);
                for &(i, j) in &products {
                    let (ra, cb) = (&pa[i][r * k..(r + 1) * k], &pb[j]);
                    terms.clear();
                    terms.extend((k0..k1).map(|kk| ra[kk] * cb[kk * n + c]));
                    unit[i + j] = unit_step(order.unit, unit[i + j], &terms);
                }
                if order.flush > 0 && ((step + 1) % order.flush == 0 || k1 == k) {
                    for (o, u) in outer.iter_mut().zip(unit.iter_mut()) {
                        *o += std::mem::take(u);
                    }
                }
            }
            let acc = if order.flush > 0 { &outer } else { &unit };
            let mut sum = 0.0f32;
            for d in (0..scheme.orders()).rev() {
                sum += ldexp(acc[d], -PLANE_SHIFT * d as i32);
            }
            out[r * n + c] = ldexp(ldexp(sum, -a.exp(r)), -b.exp(c));
        }
    }
    Matrix::new(m, n, out)
}

/// The f32 fallback's order: ascending k, one fma per k, from zero.
pub fn gemm_f32(a: &Matrix, b: &Matrix) -> Matrix {
    assert_eq!(a.cols, b.rows);
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let mut out = vec![0.0f32; m * n];
    for r in 0..m {
        for c in 0..n {
            out[r * n + c] = (0..k).fold(0.0f32, |acc, kk| a.at(r, kk).mul_add(b.at(kk, c), acc));
        }
    }
    Matrix::new(m, n, out)
}

/// The reference: every product and sum in f64.
pub fn gemm_f64(a: &Matrix, b: &Matrix) -> Vec<f64> {
    assert_eq!(a.cols, b.rows);
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let mut out = vec![0.0f64; m * n];
    for r in 0..m {
        for c in 0..n {
            out[r * n + c] = (0..k)
                .map(|kk| a.at(r, kk) as f64 * b.at(kk, c) as f64)
                .sum();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_in_kernel_order() {
        assert_eq!(Scheme::F16.products(), vec![(0, 0)]);
        assert_eq!(Scheme::SPLIT2.products(), vec![(0, 0), (0, 1), (1, 0)]);
        assert_eq!(
            Scheme::SPLIT2_LOLO.products(),
            vec![(0, 0), (0, 1), (1, 0), (1, 1)]
        );
        assert_eq!(
            Scheme::SPLIT3.products(),
            vec![(0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (2, 0)]
        );
    }

    #[test]
    fn scale_puts_the_maximum_in_the_top_binade() {
        for &x in &[1.0f32, 0.75, 3.0e-9, 1.0e-40, 6.0e5, f32::MAX] {
            let s = ldexp(x, scale_exponent(x));
            assert!((16384.0..32768.0).contains(&s), "{x}: {s}");
        }
        assert_eq!(scale_exponent(0.0), 0);
    }

    #[test]
    fn planes_hold_the_value() {
        let v = 12345.678f32;
        let [hi, lo, lo2] = split(v, 3);
        let back = hi.to_f64() + lo.to_f64() / 2048.0 + lo2.to_f64() / 2048.0 / 2048.0;
        assert_eq!(back, v as f64);
        let [hi, lo, _] = split(v, 2);
        let two = hi.to_f64() + lo.to_f64() / 2048.0;
        assert!((two - v as f64).abs() <= v as f64 * 2f64.powi(-22));
    }

    #[test]
    fn truncating_sum_rounds_toward_zero() {
        // 1 + 2^-24 + 2^-24: exactly 1 + 2^-23 when summed before rounding; the
        // alignment to 1's exponent truncates both small terms away.
        let tiny = 2f32.powi(-24);
        assert_eq!(unit_step(UnitSum::Sequential, 1.0, &[tiny, tiny]), 1.0);
        assert_eq!(unit_step(UnitSum::Truncating, 1.0, &[tiny, tiny]), 1.0);
        assert_eq!(
            unit_step(UnitSum::Truncating, 1.0, &[0.5 * tiny * 3.0]),
            1.0
        );
        assert_eq!(
            unit_step(UnitSum::Truncating, -1.0, &[-3.0 * tiny]),
            -1.0 - 2.0 * tiny
        );
    }

    #[test]
    fn split2_gemm_is_close_to_f64() {
        let a = Matrix::new(
            2,
            40,
            (0..80)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
                .collect(),
        );
        let b = Matrix::new(
            40,
            3,
            (0..120)
                .map(|i| ((i * 53 % 29) as f32 - 14.0) / 3.0)
                .collect(),
        );
        let (pa, pb) = (pack(&a, Axis::Rows, 64, 2), pack(&b, Axis::Cols, 64, 2));
        let order = Order {
            unit: UnitSum::Sequential,
            flush: 0,
        };
        let c = gemm(&pa, &pb, Scheme::SPLIT2, order);
        for (x, r) in c.data.iter().zip(gemm_f64(&a, &b)) {
            assert!(
                (*x as f64 - r).abs() <= 1e-5 * (r.abs() + 1.0),
                "{x} vs {r}"
            );
        }
    }
}
