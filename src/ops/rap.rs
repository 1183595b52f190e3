//! The elementwise steps of RAP (`shaders/rap.wgsl`); the contractions around them are
//! the positive/negative-weight convolution and linear kernels.

use crate::gpu::{grid_1d, Binding, GpuTensor, Recorder};

/// Selector of `rap.wgsl`'s `MODE`, each value named there alike (upper snake case).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RapStep {
    /// Top layer, the row through `pos(W)`: `seed·([P≠0] + sdiv(b·sdiv(P, P+N), P))`.
    TopPositive = 0,
    /// Top layer, the row through `min(W, 0)`.
    TopNegative = 1,
    /// Hidden layer, the signal through `pos(W)`.
    HiddenPositive = 2,
    /// Hidden layer, the signal through `min(W, 0)`.
    HiddenNegative = 3,
    /// `|C|·ΣC/Σ|C|` per image (stats from `sum_and_abs_sum`).
    Normalise = 4,
    /// `C − [C≠0]·(ΣC − ΣR)/#{C≠0}` per image.
    Shift = 5,
}

impl RapStep {
    #[cfg(test)]
    pub(crate) const ALL: [RapStep; 6] = [
        RapStep::TopPositive,
        RapStep::TopNegative,
        RapStep::HiddenPositive,
        RapStep::HiddenNegative,
        RapStep::Normalise,
        RapStep::Shift,
    ];
}

/// One RAP step over `a`'s shape; `linear` selects the fully connected variant of the
/// hidden steps.
pub fn rap_step(
    rec: &mut Recorder,
    step: RapStep,
    linear: bool,
    inputs: [Option<&GpuTensor>; 4],
    a: &GpuTensor,
) -> GpuTensor {
    let out = rec.ctx.empty(&a.shape);
    let numel = a.numel();
    let per_image = numel / a.shape[0];
    let [i0, i1, i2, i3] = inputs.map(|t| t.map(Binding::read).unwrap_or(rec.unused()));
    rec.dispatch(
        "rap",
        &[
            ("MODE", step as u32 as f64),
            ("LINEAR", linear as u8 as f64),
        ],
        &[i0, i1, i2, i3, Binding::write(&out)],
        &[numel as u32, per_image as u32, 0, 0],
        grid_1d(numel),
    );
    out
}
