//! Per-image reductions in a fixed order (deterministic): RSP shift statistics, the
//! z^B input bounds and RAP's normalisation sums. Two stages, so a large image is reduced by many workgroups.

use crate::gpu::{Binding, GpuTensor, Recorder};

/// Elements one stage-1 workgroup reduces (at least).
const CHUNK: usize = 16384;

/// The reductions of reduce.wgsl (its `MODE`), named alike there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reduction {
    SumAndCountNonzero = 0,
    MinMax = 1,
    SumAndAbsSum = 2,
}

impl Reduction {
    #[cfg(test)]
    pub(crate) const ALL: [Reduction; 3] = [
        Reduction::SumAndCountNonzero,
        Reduction::MinMax,
        Reduction::SumAndAbsSum,
    ];
}

fn reduce(rec: &mut Recorder, mode: Reduction, a: &GpuTensor, b: Option<&GpuTensor>) -> GpuTensor {
    let n = a.shape[0];
    let (len_a, len_b) = (a.numel() / n, b.map_or(0, |b| b.numel() / n));
    let chunks = (len_a.max(len_b) / CHUNK).clamp(1, 1024);
    let params = [len_a as u32, len_b as u32, chunks as u32, 0];
    let partial = rec.ctx.empty(&[n, chunks, 2]);
    let bb = b.map(Binding::read).unwrap_or(rec.unused());
    rec.dispatch(
        "reduce",
        &[("MODE", mode as u32 as f64), ("FINAL", 0.0)],
        &[Binding::read(a), bb, Binding::write(&partial)],
        &params,
        [chunks as u32, n as u32, 1],
    );
    let out = rec.ctx.empty(&[n, 2]);
    let unused = rec.unused();
    rec.dispatch(
        "reduce",
        &[("MODE", mode as u32 as f64), ("FINAL", 1.0)],
        &[Binding::read(&partial), unused, Binding::write(&out)],
        &params,
        [n as u32, 1, 1],
    );
    out
}

/// Per image: `[Σ a, #{b ≠ 0}]`.
pub fn sum_and_count_nonzero(rec: &mut Recorder, a: &GpuTensor, b: &GpuTensor) -> GpuTensor {
    reduce(rec, Reduction::SumAndCountNonzero, a, Some(b))
}

/// Per image: `[Σ a, Σ |a|]`.
pub fn sum_and_abs_sum(rec: &mut Recorder, a: &GpuTensor) -> GpuTensor {
    reduce(rec, Reduction::SumAndAbsSum, a, None)
}

/// Per image: `[min a, max a]`.
pub fn min_max(rec: &mut Recorder, a: &GpuTensor) -> GpuTensor {
    reduce(rec, Reduction::MinMax, a, None)
}
