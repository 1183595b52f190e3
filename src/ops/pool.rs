//! Max pooling (forward and argmax routing) and average pooling, adaptive or windowed
//! (forward and gradient).

use crate::gpu::{grid_1d, Binding, GpuTensor, Recorder};
use crate::layers::{AvgPool2d, MaxPool2d};

#[allow(clippy::too_many_arguments)]
fn maxpool_dispatch(
    rec: &mut Recorder,
    mode: u32,
    x: &GpuTensor,
    r: Option<&GpuTensor>,
    pool: &MaxPool2d,
    out_shape: &[usize],
    rows_per_image: usize,
    eps: f32,
) -> GpuTensor {
    let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3]);
    let (ho, wo) = pool.out_hw(h, w);
    // Forward: an activation; backward: the dtype of the relevance it routes.
    let out = match r {
        None => rec.ctx.empty_activation(out_shape),
        Some(r) => rec.ctx.empty_as(out_shape, r.dtype),
    };
    let numel = out.numel();
    let params = [
        c as u32,
        h as u32,
        w as u32,
        ho as u32,
        wo as u32,
        pool.kernel as u32,
        pool.stride as u32,
        pool.padding as u32,
        rows_per_image as u32,
        numel as u32,
        eps.to_bits(),
        0,
    ];
    let rb = r.map(Binding::read).unwrap_or(rec.unused());
    rec.dispatch(
        "maxpool",
        &[("MODE", mode as f64)],
        &[Binding::read(x), rb, Binding::write(&out)],
        &params,
        grid_1d(numel),
    );
    out
}

/// Max pool forward. Ties go to the first position in row-major window order.
pub fn max_pool2d(rec: &mut Recorder, x: &GpuTensor, pool: &MaxPool2d) -> GpuTensor {
    let (ho, wo) = pool.out_hw(x.shape[2], x.shape[3]);
    maxpool_dispatch(
        rec,
        0,
        x,
        None,
        pool,
        &[x.shape[0], x.shape[1], ho, wo],
        1,
        0.0,
    )
}

/// Routes each output cell's value of `r` to the argmax of `x + eps` in its window.
/// `r` has `rows_per_image` rows per image of `x`; the result is shaped like `r` at
/// the input resolution. `eps = 0`: gradient; `eps = 1e-9`: RSP winner-take-all.
pub fn max_pool2d_route(
    rec: &mut Recorder,
    x: &GpuTensor,
    r: &GpuTensor,
    pool: &MaxPool2d,
    rows_per_image: usize,
    eps: f32,
) -> GpuTensor {
    let shape = [r.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    maxpool_dispatch(rec, 1, x, Some(r), pool, &shape, rows_per_image, eps)
}

fn avgpool_dispatch(
    rec: &mut Recorder,
    mode: u32,
    src: &GpuTensor,
    pool: &AvgPool2d,
    out_shape: &[usize],
    in_hw: (usize, usize),
    out_hw: (usize, usize),
) -> GpuTensor {
    // Forward: an activation; backward: the dtype of the gradient it spreads.
    let out = if mode == 0 {
        rec.ctx.empty_activation(out_shape)
    } else {
        rec.ctx.empty_as(out_shape, src.dtype)
    };
    let numel = out.numel();
    let window = match *pool {
        AvgPool2d::Adaptive { .. } => [0, 0, 0, 0, 0],
        AvgPool2d::Window {
            kernel,
            stride,
            padding,
            count_include_pad,
            ..
        } => [1, kernel, stride, padding, count_include_pad as usize],
    };
    let mut params = vec![in_hw.0, in_hw.1, out_hw.0, out_hw.1, numel];
    params.extend(window);
    params.extend([0, 0]);
    let params: Vec<u32> = params.into_iter().map(|v| v as u32).collect();
    rec.dispatch(
        "avgpool",
        &[("MODE", mode as f64)],
        &[Binding::read(src), Binding::write(&out)],
        &params,
        grid_1d(numel),
    );
    out
}

/// Average pool of `x` `[N, C, H, W]` (adaptive, PyTorch's bins, or windowed).
pub fn avg_pool2d(rec: &mut Recorder, x: &GpuTensor, pool: &AvgPool2d) -> GpuTensor {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let out_hw = pool.out_hw(h, w);
    avgpool_dispatch(rec, 0, x, pool, &[n, c, out_hw.0, out_hw.1], (h, w), out_hw)
}

/// Gradient of the average pool: `g` `[R, C, oh, ow]` to `[R, C, H, W]`.
pub fn avg_pool2d_grad(
    rec: &mut Recorder,
    g: &GpuTensor,
    pool: &AvgPool2d,
    in_hw: (usize, usize),
) -> GpuTensor {
    let (r, c, oh, ow) = (g.shape[0], g.shape[1], g.shape[2], g.shape[3]);
    avgpool_dispatch(rec, 1, g, pool, &[r, c, in_hw.0, in_hw.1], in_hw, (oh, ow))
}
