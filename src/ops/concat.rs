//! Channel concatenation (forward) and its backward, the split of a signal into the
//! channel slices of the concatenated inputs: `shaders/channel_copy.wgsl`.

use crate::gpu::{grid_1d, Binding, GpuTensor, Recorder};

fn copy_channels(
    rec: &mut Recorder,
    src: &GpuTensor,
    src_offset: usize,
    out: &GpuTensor,
    out_offset: usize,
    count: usize,
) {
    let plane: usize = src.shape[2..].iter().product();
    let numel = src.shape[0] * count * plane;
    let params = [
        count,
        plane,
        src.shape[1],
        src_offset,
        out.shape[1],
        out_offset,
        numel,
        0,
    ]
    .map(|v| v as u32);
    rec.dispatch(
        "channel_copy",
        &[],
        &[Binding::read(src), Binding::write(out)],
        &params,
        grid_1d(numel),
    );
}

/// `inputs` (each `[N, C_i, H, W]`) concatenated along the channels: one copy per input
/// into its slice of one activation.
pub fn concat_channels(rec: &mut Recorder, inputs: &[&GpuTensor]) -> GpuTensor {
    let first = inputs[0];
    let channels: usize = inputs.iter().map(|t| t.shape[1]).sum();
    let mut shape = first.shape.clone();
    shape[1] = channels;
    let out = rec.ctx.empty_activation(&shape);
    let mut offset = 0;
    for t in inputs {
        assert_eq!(
            (t.shape[0], &t.shape[2..]),
            (first.shape[0], &first.shape[2..]),
            "concat: inputs differ in batch or spatial size"
        );
        copy_channels(rec, t, 0, &out, offset, t.shape[1]);
        offset += t.shape[1];
    }
    out
}

/// Channels `offset .. offset + count` of `r` `[R, C, H, W]`, as a tensor of their own.
pub fn channel_slice(rec: &mut Recorder, r: &GpuTensor, offset: usize, count: usize) -> GpuTensor {
    let mut shape = r.shape.clone();
    shape[1] = count;
    let out = rec.ctx.empty_as(&shape, r.dtype);
    copy_channels(rec, r, offset, &out, 0, count);
    out
}
