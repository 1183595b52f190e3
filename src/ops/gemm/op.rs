//! What a GEMM problem computes, typed: the op file, its mode and its geometry, and what
//! the GEMM machinery derives from them — the override constants, the bound on K that
//! sizes packed operands, the products each output sums and whether Winograd applies.
//! The op files' names and `MODE` numbers are written here and nowhere else in Rust.
//! [`GemmProblem`] is one dispatch of an op before a variant is chosen.

use super::variants::GemmKernel;
use crate::gpu::{Binding, Recorder};
use crate::layers::ConvGeometry;

/// The mode of the convolution op files (their `MODE` override).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvMode {
    /// A plain convolution, its adjoint or its weight gradient, one problem per image.
    Plain,
    /// RSP's sections (spec §3): two problems per image (z = 2·image + section), the
    /// positive and the negative relevance each against its own channel maps.
    Sections,
    /// The bounded-input z^B rule: `W`, `W⁺` and `W⁻` stacked along K against `x`, `L`
    /// and `H` (forward), the three terms `x`, `−L`, `−H` (transposed).
    ZBox,
}

impl ConvMode {
    /// Each mode with its name in conv_common.wgsl (`MODE_` + name).
    pub const NAMES: [(ConvMode, &'static str); 3] = [
        (ConvMode::Plain, "PLAIN"),
        (ConvMode::Sections, "SECTIONS"),
        (ConvMode::ZBox, "ZBOX"),
    ];

    /// The `MODE` override of the convolution op files.
    pub(crate) fn constant(self) -> f64 {
        match self {
            ConvMode::Plain => 0.0,
            ConvMode::Sections => 1.0,
            ConvMode::ZBox => 2.0,
        }
    }
}

/// Which weights a convolution or linear layer multiplies by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// The layer's own weights and bias.
    Signed,
    /// `pos(W)` and no bias: the z⁺ of LRP-α1β0 (its inputs are non-negative).
    Positive,
    /// `min(W, 0)` and no bias: the negative contributions (RAP).
    Negative,
}

impl Weights {
    fn constants(self) -> [(&'static str, f64); 2] {
        [
            ("POS_WEIGHTS", (self == Weights::Positive) as u8 as f64),
            ("NEG_WEIGHTS", (self == Weights::Negative) as u8 as f64),
        ]
    }
}

/// A convolution's geometry and input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub geom: ConvGeometry,
    /// Input height and width.
    pub hw: (usize, usize),
}

impl ConvShape {
    /// The uniform block of the convolution op files (`ConvParams` in
    /// conv_common.wgsl); the last word is Winograd's per-pass count.
    pub fn params(&self, k_splits: usize) -> [u32; 12] {
        let g = &self.geom;
        let (h, w) = self.hw;
        let (ho, wo) = g.out_hw(h, w);
        [
            g.c_in, h, w, g.c_out, ho, wo, g.kh, g.kw, g.stride, g.padding, k_splits, 0,
        ]
        .map(|v| v as u32)
    }

    fn constants(&self) -> [(&'static str, f64); 3] {
        [
            ("KH", self.geom.kh as f64),
            ("KW", self.geom.kw as f64),
            ("STRIDE", self.geom.stride as f64),
        ]
    }

    fn out_pixels(&self) -> usize {
        let (ho, wo) = self.geom.out_hw(self.hw.0, self.hw.1);
        ho * wo
    }
}

/// One GEMM op: an op file completed by a skeleton, with everything that specialises
/// it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GemmOp {
    /// `conv2d_fwd.wgsl`: output channels × output pixels, K = the input's taps (three
    /// stacked copies in [`ConvMode::ZBox`]).
    ConvForward {
        mode: ConvMode,
        relu: bool,
        weights: Weights,
        shape: ConvShape,
    },
    /// `conv2d_dgrad.wgsl` for one stride phase `(y, x)`: input channels (× sections or
    /// terms) × the phase's input pixels, K = output channels × the phase's taps.
    /// [`ConvMode::Sections`] doubles `C⁺ − C⁻` for kernels taller than one row (the
    /// authors' full rule).
    ConvData {
        mode: ConvMode,
        weights: Weights,
        phase: (usize, usize),
        shape: ConvShape,
    },
    /// `conv2d_wgrad.wgsl`: output channels × taps, K = output pixels.
    ConvWeights { mode: ConvMode, shape: ConvShape },
    /// `linear_fwd.wgsl` over one weight chunk, K = input features.
    LinearForward {
        relu: bool,
        weights: Weights,
        in_features: usize,
    },
    /// `linear_grad.wgsl` over one weight chunk, K = the chunk's rows.
    LinearGrad { weights: Weights, rows: usize },
    /// `winograd_gemm.wgsl`: the 16 GEMMs of each problem of a Winograd convolution,
    /// K = input channels; `sections`: weights per problem, two problems per image.
    WinogradGemm { sections: bool, c_in: usize },
}

impl GemmOp {
    /// The op file (`shaders/NAME.wgsl`).
    pub fn shader(&self) -> &'static str {
        match self {
            GemmOp::ConvForward { .. } => "conv2d_fwd",
            GemmOp::ConvData { .. } => "conv2d_dgrad",
            GemmOp::ConvWeights { .. } => "conv2d_wgrad",
            GemmOp::LinearForward { .. } => "linear_fwd",
            GemmOp::LinearGrad { .. } => "linear_grad",
            GemmOp::WinogradGemm { .. } => "winograd_gemm",
        }
    }

    /// The op file's override constants.
    pub fn constants(&self) -> Vec<(&'static str, f64)> {
        let mut c = Vec::new();
        match *self {
            GemmOp::ConvForward {
                mode,
                relu,
                weights,
                shape,
            } => {
                c.extend([("MODE", mode.constant()), ("RELU", relu as u8 as f64)]);
                c.extend(weights.constants());
                c.extend(shape.constants());
            }
            GemmOp::ConvData {
                mode,
                weights,
                phase,
                shape,
            } => {
                let doubled = mode == ConvMode::Sections && shape.geom.kh != 1;
                c.extend([
                    ("MODE", mode.constant()),
                    ("FACTOR", if doubled { 2.0 } else { 1.0 }),
                ]);
                c.extend(weights.constants());
                c.extend([("PHASE_Y", phase.0 as f64), ("PHASE_X", phase.1 as f64)]);
                c.extend(shape.constants());
            }
            GemmOp::ConvWeights { mode, shape } => {
                c.push(("MODE", mode.constant()));
                c.extend(shape.constants());
            }
            GemmOp::LinearForward { relu, weights, .. } => {
                c.push(("RELU", relu as u8 as f64));
                c.extend(weights.constants());
            }
            GemmOp::LinearGrad { weights, .. } => c.extend(weights.constants()),
            GemmOp::WinogradGemm { sections, .. } => c.extend([
                ("PER_Z_WEIGHTS", sections as u8 as f64),
                ("Z_PER_IMAGE", if sections { 2.0 } else { 1.0 }),
            ]),
        }
        c
    }

    /// At least `gemm_k()` of the op file (packed operands are sized by it): for the
    /// transposed convolution, the taps of the widest stride phase.
    pub fn k_bound(&self) -> usize {
        match *self {
            GemmOp::ConvForward { mode, shape, .. } => {
                let g = shape.geom;
                let copies = if mode == ConvMode::ZBox { 3 } else { 1 };
                g.c_in * g.kh * g.kw * copies
            }
            GemmOp::ConvData { shape, .. } => {
                let g = shape.geom;
                2 * g.c_out * g.kh.div_ceil(g.stride) * g.kw.div_ceil(g.stride)
            }
            GemmOp::ConvWeights { shape, .. } => shape.out_pixels(),
            GemmOp::LinearForward { in_features, .. } => in_features,
            GemmOp::LinearGrad { rows, .. } => rows,
            GemmOp::WinogradGemm { c_in, .. } => c_in,
        }
    }

    /// `gemm_k()` exactly: the products each output sums (for the profile's flops).
    pub fn k_useful(&self) -> usize {
        match *self {
            GemmOp::ConvData {
                mode,
                phase: (py, px),
                shape,
                ..
            } => {
                let g = shape.geom;
                let s = g.stride;
                let taps = |k: usize, phase: usize| (k + s - 1 - phase) / s;
                let sections = if mode == ConvMode::Sections { 2 } else { 1 };
                sections * g.c_out * taps(g.kh, py) * taps(g.kw, px)
            }
            _ => self.k_bound(),
        }
    }

    /// The shape of the Winograd F(2×2, 3×3) convolution that can replace this op, with
    /// `k_splits` splits of K: a forward 3×3 stride-1 convolution, plain or in sections
    /// (the z^B mode stacks three weight copies on K), unsplit.
    pub fn winograd(&self, k_splits: usize) -> Option<(ConvShape, bool)> {
        match *self {
            GemmOp::ConvForward {
                mode: mode @ (ConvMode::Plain | ConvMode::Sections),
                shape,
                ..
            } if shape.geom.kh == 3
                && shape.geom.kw == 3
                && shape.geom.stride == 1
                && k_splits == 1 =>
            {
                Some((shape, mode == ConvMode::Sections))
            }
            _ => None,
        }
    }
}

/// One GEMM dispatch as the op records it, before a variant is chosen.
#[derive(Clone, Copy)]
pub(crate) struct GemmProblem<'a, 'b> {
    pub op: GemmOp,
    pub bindings: &'a [Binding<'b>],
    /// The op file's uniform block.
    pub params: &'a [u32],
    pub mnz: (usize, usize, usize),
    pub splits: usize,
}

impl GemmProblem<'_, '_> {
    /// The op's own override constants, before the variant's.
    pub(super) fn constants(&self) -> Vec<(&'static str, f64)> {
        self.op.constants()
    }

    /// Records `kernel`'s own dispatch over its grid of blocks with the op's `bindings`
    /// and, after them, the scratch operands `extra` its skeleton reads.
    pub(super) fn record_with(
        &self,
        rec: &mut Recorder,
        kernel: GemmKernel,
        bindings: &[Binding],
        extra: &[Binding],
    ) {
        let (m, n, z) = self.mnz;
        let mut constants = self.constants();
        constants.extend_from_slice(kernel.constants());
        rec.dispatch_with_extra(
            kernel.shader(self.op.shader()),
            &constants,
            bindings,
            self.params,
            extra,
            kernel.groups((m, n), z, self.splits),
        );
        rec.note_gemm(m, n, self.op.k_useful(), z);
    }
}
