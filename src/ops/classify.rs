//! The classifier's outputs: softmax probabilities, top-k classes, and the seeds that
//! start a backward pass at the logits.

use crate::gpu::{grid_1d, Access, Binding, GpuTensor, Recorder};

/// Row-wise softmax of `[N, classes]` logits.
pub fn softmax(rec: &mut Recorder, logits: &GpuTensor) -> GpuTensor {
    let (n, classes) = (logits.shape[0], logits.shape[1]);
    let out = rec.ctx.empty(&[n, classes]);
    rec.dispatch(
        "softmax",
        &[],
        &[Binding::read(logits), Binding::write(&out)],
        &[classes as u32, 0, 0, 0],
        [n as u32, 1, 1],
    );
    out
}

/// Marks "no class forced" in [`top_k`]'s `first` argument.
pub const NO_CLASS: u32 = u32::MAX;

/// Class indices (u32) resident on the GPU.
pub struct ClassIndices {
    /// `[rows · k]`: per row, the forced class (if any) then the best others.
    pub top: wgpu::Buffer,
    /// `[rows]`: the explained class of each row (`top[row · k]`).
    pub target: wgpu::Buffer,
    pub rows: usize,
    pub k: usize,
}

/// Top-`k` classes per row of `scores` (descending, ties to the lower index). Where
/// `first[row]` is a class, it is placed first and the rest are the best others.
pub fn top_k(rec: &mut Recorder, scores: &GpuTensor, first: &[u32], k: usize) -> ClassIndices {
    let (rows, classes) = (scores.shape[0], scores.shape[1]);
    assert!(
        k >= 1 && k <= classes,
        "top_k: k = {k} with {classes} classes"
    );
    assert_eq!(first.len(), rows);
    let ctx = rec.ctx;
    let forced = ctx.constant_buffer(bytemuck::cast_slice(first), wgpu::BufferUsages::STORAGE);
    let top = ctx.constant_buffer(&vec![0u8; rows * k * 4], wgpu::BufferUsages::STORAGE);
    let target = ctx.constant_buffer(&vec![0u8; rows * 4], wgpu::BufferUsages::STORAGE);
    rec.dispatch(
        "topk",
        &[],
        &[
            Binding::read(scores),
            Binding::raw(&forced, Access::Read),
            Binding::raw(&top, Access::ReadWrite),
            Binding::raw(&target, Access::ReadWrite),
        ],
        &[classes as u32, k as u32, rows as u32, 0],
        [rows.div_ceil(64) as u32, 1, 1],
    );
    ClassIndices {
        top,
        target,
        rows,
        k,
    }
}

/// What a row of [`logit_seed`] holds for its class `t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seed {
    /// `[c = t]`: the gradient (or LRP relevance) of logit `t` alone.
    OneHot = 0,
    /// `[c = t] − [c ≠ t]/(C − 1)`: the target against the mean of all other classes
    /// (CLRP's dual concept, same total relevance).
    Contrastive = 1,
    /// `∂softmax_t/∂z_c = y_t([c = t] − y_c)` (SGLRP); needs the probabilities.
    SoftmaxGradient = 2,
}

/// Seed rows `[R, classes]` at the logits, from the class of each row. `scores`: for
/// [`Seed::SoftmaxGradient`] the softmax `[R, classes]` (required); otherwise, if given,
/// the logits, and each row is scaled by its target's logit (LRP's start).
pub fn logit_seed(
    rec: &mut Recorder,
    seed: Seed,
    class_of_row: &wgpu::Buffer,
    rows: usize,
    classes: usize,
    scores: Option<&GpuTensor>,
) -> GpuTensor {
    assert!(
        seed != Seed::SoftmaxGradient || scores.is_some(),
        "logit_seed: the softmax gradient needs the probabilities"
    );
    let out = rec.ctx.empty(&[rows, classes]);
    let numel = rows * classes;
    let times_logit = seed != Seed::SoftmaxGradient && scores.is_some();
    let scores = scores.map(Binding::read).unwrap_or(rec.unused());
    rec.dispatch(
        "logit_seed",
        &[
            ("MODE", seed as u32 as f64),
            ("TIMES_LOGIT", times_logit as u8 as f64),
        ],
        &[
            Binding::raw(class_of_row, Access::Read),
            scores,
            Binding::write(&out),
        ],
        &[classes as u32, numel as u32, 0, 0],
        grid_1d(numel),
    );
    out
}

/// One-hot rows `[R, classes]` from the class of each row.
pub fn one_hot(
    rec: &mut Recorder,
    class_of_row: &wgpu::Buffer,
    rows: usize,
    classes: usize,
) -> GpuTensor {
    logit_seed(rec, Seed::OneHot, class_of_row, rows, classes, None)
}
