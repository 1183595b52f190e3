//! Convolution: forward, data gradient (transposed convolution) and weight gradient,
//! each an implicit GEMM op file (`shaders/conv2d_*.wgsl`) completed by the GEMM kernel
//! variant `gemm::select` picks (tiled, direct, subgroup, cooperative-matrix or
//! Winograd; see [`crate::ops::gemm`]).

use super::elementwise::{elementwise, ElementwiseOp, Layout};
use super::gemm::{self, GemmProblem};
pub use super::gemm::{ConvMode, ConvShape, GemmKernel, GemmOp, GemmTile, Weights};
use crate::gpu::{Binding, GpuContext, GpuTensor, Recorder};
use crate::layers::{Conv2d, ConvGeometry};

/// A convolution's weights on the GPU.
pub struct GpuConv {
    pub geom: ConvGeometry,
    /// `[C_out, C_in, kh, kw]`
    pub weight: GpuTensor,
    /// `[C_out]` (zeros for bias-free convolutions)
    pub bias: GpuTensor,
}

impl GpuConv {
    pub fn upload(ctx: &GpuContext, conv: &Conv2d) -> Self {
        let geom = conv.geometry();
        let zeros = vec![0.0; geom.c_out];
        GpuConv {
            geom,
            weight: ctx.upload_weights(&conv.weight.shape, &conv.weight.data),
            bias: ctx.upload_slice(&[geom.c_out], conv.bias.as_deref().unwrap_or(&zeros)),
        }
    }
}

/// Records one implicit-GEMM convolution `op` over an `m × n` output tile grid for `z`
/// independent problems (images, or image × section), split `k_splits` ways along K,
/// with the kernel variant [`gemm::select`] picks (forced, autotuned, or the heuristic
/// tile).
pub(crate) fn conv_gemm(
    rec: &mut Recorder,
    op: GemmOp,
    bindings: &[Binding; 5],
    mnz: (usize, usize, usize),
    k_splits: usize,
) {
    with_problem(op, bindings, mnz, k_splits, |problem| {
        gemm::dispatch(rec, problem)
    });
}

/// Calls `f` with the GEMM problem of one convolution dispatch (see [`conv_gemm`]).
fn with_problem<R>(
    op: GemmOp,
    bindings: &[Binding; 5],
    mnz: (usize, usize, usize),
    k_splits: usize,
    f: impl FnOnce(&GemmProblem) -> R,
) -> R {
    let shape = match op {
        GemmOp::ConvForward { shape, .. }
        | GemmOp::ConvData { shape, .. }
        | GemmOp::ConvWeights { shape, .. } => shape,
        _ => unreachable!("{} is not a convolution", op.shader()),
    };
    f(&GemmProblem {
        op,
        bindings,
        params: &shape.params(k_splits),
        mnz,
        splits: k_splits,
    })
}

/// Records the transposed-convolution kernel (`conv2d_dgrad.wgsl`, in `mode`) for
/// `problems` images with `m` output rows: one dispatch per stride phase (the residues
/// of y + pad and x + pad modulo the stride), each a GEMM over that phase's input
/// pixels and kernel taps. Phases that meet no tap still run, to write zeros.
pub(crate) fn dgrad_gemm(
    rec: &mut Recorder,
    (mode, weights): (ConvMode, Weights),
    bindings: &[Binding; 5],
    shape: ConvShape,
    m: usize,
    problems: usize,
) {
    let g = shape.geom;
    let (h, w) = shape.hw;
    let s = g.stride;
    // Pixels y in 0..len with (y + pad) mod s = r.
    let phase_len = |r: usize, len: usize| {
        let start = (r + s - g.padding % s) % s;
        len.saturating_sub(start).div_ceil(s)
    };
    for py in 0..s {
        for px in 0..s {
            let pixels = phase_len(py, h) * phase_len(px, w);
            if pixels == 0 {
                continue;
            }
            let op = GemmOp::ConvData {
                mode,
                weights,
                phase: (py, px),
                shape,
            };
            conv_gemm(rec, op, bindings, (m, pixels, problems), 1);
        }
    }
}

/// Split-K factor for a weight-gradient GEMM: its K (all output pixels) is long and its
/// tile grid (C_out × taps) small in early layers, which would leave most of the device
/// idle. Enough splits that even the largest tiles (128×128) fill the device
/// (`fill_workgroups`, the adapter's [`GpuContext::fill_workgroups`]) four times; each
/// split keeps at least 512 values of K, and the partials fit one binding.
pub fn wgrad_splits(
    g: &ConvGeometry,
    (h, w): (usize, usize),
    problems: usize,
    fill_workgroups: usize,
    max_binding: u64,
) -> usize {
    let (ho, wo) = g.out_hw(h, w);
    let tiles = g.c_out.div_ceil(128) * (g.c_in * g.kh * g.kw).div_ceil(128) * problems;
    let map_bytes = (problems * g.c_out * g.c_in * g.kh * g.kw * 4) as u64;
    (4 * fill_workgroups)
        .div_ceil(tiles)
        .min((ho * wo / 512).max(1))
        .min((max_binding / map_bytes.max(1)) as usize)
        .max(1)
}

/// The weight-shaped correlation of `x` with `s` for `problems` (z) at once, by the
/// wgrad kernel in `mode` (plain: gradient per image; sections: z = 2·image +
/// section), split along K when that helps and summed in split order.
pub(crate) fn wgrad_gemm(
    rec: &mut Recorder,
    mode: ConvMode,
    x: &GpuTensor,
    s: &GpuTensor,
    g: &ConvGeometry,
    problems: usize,
) -> GpuTensor {
    let (h, w) = (x.shape[2], x.shape[3]);
    let taps = g.c_in * g.kh * g.kw;
    let shape = [problems, g.c_out, g.c_in, g.kh, g.kw];
    let ctx = rec.ctx;
    let splits = wgrad_splits(g, (h, w), problems, ctx.fill_workgroups, ctx.max_binding);
    let partial = rec
        .ctx
        .empty(&[problems * splits, g.c_out, g.c_in, g.kh, g.kw]);
    let unused = rec.unused();
    let conv = ConvShape {
        geom: *g,
        hw: (h, w),
    };
    conv_gemm(
        rec,
        GemmOp::ConvWeights { mode, shape: conv },
        &[
            Binding::read(x),
            Binding::read(s),
            unused,
            unused,
            Binding::write(&partial),
        ],
        (g.c_out, taps, problems),
        splits,
    );
    if splits == 1 {
        return partial;
    }
    elementwise(
        rec,
        ElementwiseOp::SplitSum,
        false,
        &shape,
        [Some(&partial), None, None],
        Layout {
            per_image: g.c_out * taps,
            channels: 1,
            hw: 1,
            rows_per_image: splits,
        },
    )
}

fn dims4(t: &GpuTensor) -> (usize, usize, usize, usize) {
    assert_eq!(
        t.shape.len(),
        4,
        "expected an NCHW tensor, got {:?}",
        t.shape
    );
    (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
}

/// `conv(x, W) + b`, optionally followed by ReLU. `x`: `[N, C_in, H, W]`.
pub fn conv2d(rec: &mut Recorder, x: &GpuTensor, conv: &GpuConv, relu: bool) -> GpuTensor {
    conv2d_with(rec, x, conv, relu, Weights::Signed)
}

/// The pre-activation `z` of a convolution with the given [`Weights`].
pub fn conv2d_z(rec: &mut Recorder, x: &GpuTensor, conv: &GpuConv, weights: Weights) -> GpuTensor {
    conv2d_with(rec, x, conv, false, weights)
}

fn conv2d_with(
    rec: &mut Recorder,
    x: &GpuTensor,
    conv: &GpuConv,
    relu: bool,
    weights: Weights,
) -> GpuTensor {
    let (n, c, h, w) = dims4(x);
    let g = &conv.geom;
    assert_eq!(
        c, g.c_in,
        "conv2d: input has {c} channels, weight expects {}",
        g.c_in
    );
    let (ho, wo) = g.out_hw(h, w);
    let out = rec.ctx.empty_activation(&[n, g.c_out, ho, wo]);
    conv_gemm(
        rec,
        forward(relu, weights, g, (h, w)),
        &[
            Binding::read(x),
            Binding::read(&conv.weight),
            Binding::read(&conv.bias),
            rec.unused(),
            Binding::write(&out),
        ],
        (g.c_out, ho * wo, n),
        1,
    );
    out
}

/// A plain forward convolution.
fn forward(relu: bool, weights: Weights, g: &ConvGeometry, hw: (usize, usize)) -> GemmOp {
    GemmOp::ConvForward {
        mode: ConvMode::Plain,
        relu,
        weights,
        shape: ConvShape { geom: *g, hw },
    }
}

/// The scale headers and f16 planes of A (the weights) and B (the im2col of `x`) that
/// the cooperative-matrix `kernel` reads for `conv2d(x, conv)`, as u32 words in
/// `gemm_planes.wgsl`'s layout. The pack pass runs on any adapter with
/// `pack2x16float`, so tests check it against `split_fp32::pack` where the adapter
/// has no matrix units.
#[doc(hidden)]
pub fn conv2d_planes(
    ctx: &GpuContext,
    x: &GpuTensor,
    conv: &GpuConv,
    kernel: GemmKernel,
) -> anyhow::Result<(Vec<u32>, Vec<u32>)> {
    let (n, _, h, w) = dims4(x);
    let g = &conv.geom;
    let (ho, wo) = g.out_hw(h, w);
    let out = ctx.empty_activation(&[n, g.c_out, ho, wo]);
    let mut rec = Recorder::new(ctx);
    let bindings = [
        Binding::read(x),
        Binding::read(&conv.weight),
        Binding::read(&conv.bias),
        rec.unused(),
        Binding::write(&out),
    ];
    let (a, b) = with_problem(
        forward(false, Weights::Signed, g, (h, w)),
        &bindings,
        (g.c_out, ho * wo, n),
        1,
        |p| gemm::record_operand_planes(&mut rec, kernel, p, &bindings),
    );
    rec.submit();
    let mut words = ctx.read_buffers(&[(a.buffer(), a.words()), (b.buffer(), b.words())])?;
    let b = words.pop().expect("two buffers read");
    Ok((words.pop().expect("two buffers read"), b))
}

/// Transposed convolution `convT(S, W)` (or `convT(S, pos(W))`): the adjoint of
/// `conv2d` w.r.t. its input, shaped like an input of spatial size `in_hw`.
pub fn conv2d_dgrad(
    rec: &mut Recorder,
    s: &GpuTensor,
    weight: &GpuTensor,
    g: &ConvGeometry,
    in_hw: (usize, usize),
    weights: Weights,
) -> GpuTensor {
    let (n, _, _, _) = dims4(s);
    // A backward signal, stored like the one it receives.
    let out = rec.ctx.empty_as(&[n, g.c_in, in_hw.0, in_hw.1], s.dtype);
    let bindings = [
        Binding::read(s),
        Binding::read(weight),
        rec.unused(),
        rec.unused(),
        Binding::write(&out),
    ];
    let shape = ConvShape {
        geom: *g,
        hw: in_hw,
    };
    dgrad_gemm(rec, (ConvMode::Plain, weights), &bindings, shape, g.c_in, n);
    out
}

/// Per-image weight gradient `wgrad(x, S)`: `[N, C_out, C_in, kh, kw]`.
pub fn conv2d_wgrad(
    rec: &mut Recorder,
    x: &GpuTensor,
    s: &GpuTensor,
    g: &ConvGeometry,
) -> GpuTensor {
    wgrad_gemm(rec, ConvMode::Plain, x, s, g, x.shape[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large GPU's fill target (see `GpuContext::fill_workgroups`).
    const FILL: usize = 256;

    #[test]
    fn tile_follows_the_problem_shape() {
        let tile = |wg_x, wg_y| GemmTile { wg_x, wg_y };
        // The first layer's z^B data gradient: M = 3·3 rows.
        assert_eq!(GemmTile::for_problem((9, 50176), 1, 1, FILL), tile(16, 4));
        // A 24-channel layer of a small model.
        assert_eq!(GemmTile::for_problem((24, 4096), 2, 1, FILL), tile(16, 8));
        // VGG16 conv5 at 64 px: 4×4 pixels.
        assert_eq!(GemmTile::for_problem((512, 16), 1, 1, FILL), tile(4, 16));
        assert_eq!(GemmTile::ALL.len(), 9);
        assert_eq!(GemmTile::parse("64x16"), Some(tile(4, 16)));
        assert_eq!(GemmTile::parse("32x32"), Some(GemmTile::SMALL));
        assert_eq!(GemmTile::parse("48x64"), None);
        assert_eq!(GemmTile::parse("64"), None);
        assert!(GemmTile::ALL.contains(&GemmTile::LARGE));
        // VGG16 conv1_2 at 224 px, batch 1: 784 workgroups of 64×64.
        assert_eq!(
            GemmTile::for_problem((64, 50176), 1, 1, FILL),
            GemmTile::LARGE
        );
        // VGG16 conv5 at 224 px, batch 1: 32 workgroups of 64×64, 112 of 32×32.
        assert_eq!(
            GemmTile::for_problem((512, 196), 1, 1, FILL),
            GemmTile::SMALL
        );
        assert_eq!(GemmTile::SMALL.workgroups((512, 196), 1, 1), 112);
        // The same layer at batch 16 fills the GPU with 64×64 tiles.
        assert_eq!(
            GemmTile::for_problem((512, 196), 16, 1, FILL),
            GemmTile::LARGE
        );
        // Split-K counts towards the workgroups.
        assert_eq!(
            GemmTile::for_problem((512, 196), 1, 8, FILL),
            GemmTile::LARGE
        );
        // A CPU device (lavapipe) is filled by a few workgroups: 64×64 keeps the reuse.
        assert_eq!(GemmTile::for_problem((512, 196), 1, 1, 4), GemmTile::LARGE);
    }
}
