//! Map-level ops of the baselines: Grad-CAM's weighted channel sum and the bilinear
//! resize that brings a feature-resolution map to the input size.

use crate::gpu::{grid_1d, Binding, GpuTensor, Recorder};

/// Grad-CAM `ReLU(Σ_c mean(∂y/∂A_c) · A_c)` from the explanation-layer activation `act`
/// `[N, C, h, w]` and its gradient `grad` (same shape): `[N, 1, h, w]`.
pub fn grad_cam(rec: &mut Recorder, act: &GpuTensor, grad: &GpuTensor) -> GpuTensor {
    assert_eq!(
        act.shape, grad.shape,
        "grad_cam: act and grad differ in shape"
    );
    let (n, c, h, w) = (act.shape[0], act.shape[1], act.shape[2], act.shape[3]);
    let alpha = rec.ctx.empty(&[n, c]);
    rec.dispatch(
        "gradcam",
        &[("MODE", 0.0)],
        &[
            Binding::read(act),
            Binding::read(grad),
            Binding::write(&alpha),
        ],
        &[c as u32, (h * w) as u32, (n * c) as u32, 0],
        grid_1d(n * c),
    );
    let cam = rec.ctx.empty(&[n, 1, h, w]);
    rec.dispatch(
        "gradcam",
        &[("MODE", 1.0)],
        &[
            Binding::read(act),
            Binding::read(&alpha),
            Binding::write(&cam),
        ],
        &[c as u32, (h * w) as u32, (n * h * w) as u32, 0],
        grid_1d(n * h * w),
    );
    cam
}

/// Bilinear resize (half-pixel centres, as torch's `align_corners=False`) of every
/// plane of `maps` `[N, C, h, w]` to `out_hw`.
pub fn upsample_bilinear(
    rec: &mut Recorder,
    maps: &GpuTensor,
    out_hw: (usize, usize),
) -> GpuTensor {
    let (n, c, h, w) = (maps.shape[0], maps.shape[1], maps.shape[2], maps.shape[3]);
    let out = rec.ctx.empty(&[n, c, out_hw.0, out_hw.1]);
    let numel = out.numel();
    rec.dispatch(
        "upsample_bilinear",
        &[],
        &[Binding::read(maps), Binding::write(&out)],
        &[
            h as u32,
            w as u32,
            out_hw.0 as u32,
            out_hw.1 as u32,
            numel as u32,
            0,
            0,
            0,
        ],
        grid_1d(numel),
    );
    out
}
