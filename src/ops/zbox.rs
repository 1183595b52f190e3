//! The bounded-input z^B rule (Montavon et al.) for the convolution that reads the
//! image, with `L = min(x)` and `H = max(x)` per image: RSP's first-layer rule (spec §3)
//! and LRP's, owned by neither method.

use super::conv::{conv_gemm, dgrad_gemm, ConvMode, ConvShape, GemmOp, GpuConv, Weights};
use super::elementwise::{elementwise, ElementwiseOp, Layout};
use super::reduce::min_max;
use crate::gpu::{Binding, GpuTensor, Recorder};

/// First convolution (3 input channels): the bounded-input z^B rule on the real
/// weights with L = min(x), H = max(x) per image.
pub fn zbox_first_conv(
    rec: &mut Recorder,
    x: &GpuTensor,
    r: &GpuTensor,
    conv: &GpuConv,
) -> GpuTensor {
    let g = &conv.geom;
    let (n, h, w) = (x.shape[0], x.shape[2], x.shape[3]);
    let (ho, wo) = g.out_hw(h, w);
    let ctx = rec.ctx;
    let bounds = min_max(rec, x);
    // S = sdiv(R, conv(x, W) − conv(L, W⁺) − conv(H, W⁻)).
    let s = ctx.empty(&[n, g.c_out, ho, wo]);
    let shape = ConvShape {
        geom: *g,
        hw: (h, w),
    };
    let zbox = GemmOp::ConvForward {
        mode: ConvMode::ZBox,
        relu: false,
        weights: Weights::Signed,
        shape,
    };
    conv_gemm(
        rec,
        zbox,
        &[
            Binding::read(x),
            Binding::read(&conv.weight),
            Binding::read(r),
            Binding::read(&bounds),
            Binding::write(&s),
        ],
        (g.c_out, ho * wo, n),
        1,
    );
    // x ⊙ convT(S, W), −L ⊙ convT(S, W⁺), −H ⊙ convT(S, W⁻), then their sum.
    let terms = ctx.empty(&[n, 3, g.c_in, h, w]);
    dgrad_gemm(
        rec,
        (ConvMode::ZBox, Weights::Signed),
        &[
            Binding::read(&s),
            Binding::read(&conv.weight),
            Binding::read(x),
            Binding::read(&bounds),
            Binding::write(&terms),
        ],
        shape,
        3 * g.c_in,
        n,
    );
    let per_image = g.c_in * h * w;
    elementwise(
        rec,
        ElementwiseOp::ZbSum,
        false,
        &[n, g.c_in, h, w],
        [Some(&terms), None, None],
        Layout {
            per_image,
            channels: 1,
            hw: 1,
            rows_per_image: 1,
        },
    )
}
