//! Per-image reductions in a fixed order (deterministic): RSP shift statistics and the
//! z^B input bounds.

use crate::gpu::{Binding, GpuTensor, Recorder};

fn reduce(rec: &mut Recorder, mode: u32, a: &GpuTensor, b: Option<&GpuTensor>) -> GpuTensor {
    let n = a.shape[0];
    let out = rec.ctx.empty(&[n, 2]);
    let bb = b.map(Binding::read).unwrap_or(rec.unused());
    rec.dispatch(
        "reduce",
        &[("MODE", mode as f64)],
        &[Binding::read(a), bb, Binding::write(&out)],
        &[
            (a.numel() / n) as u32,
            b.map_or(0, |b| b.numel() / n) as u32,
            0,
            0,
        ],
        [n as u32, 1, 1],
    );
    out
}

/// Per image: `[Σ a, #{b ≠ 0}]`.
pub fn sum_and_count_nonzero(rec: &mut Recorder, a: &GpuTensor, b: &GpuTensor) -> GpuTensor {
    reduce(rec, 0, a, Some(b))
}

/// Per image: `[min a, max a]`.
pub fn min_max(rec: &mut Recorder, a: &GpuTensor) -> GpuTensor {
    reduce(rec, 1, a, None)
}
