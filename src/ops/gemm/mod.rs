//! The implicit-GEMM family (convolution forward, transposed convolution, weight
//! gradient, in every mode): one op file (`shaders/conv2d_*.wgsl`) completed by one
//! GEMM skeleton, specialised by override constants. An op describes its GEMM as a
//! [`GemmProblem`]; [`select`] picks the variant (forced, tuned or the fallback: the
//! heuristic tile, checked) and [`record`] records it.
//!
//! - `op`: what a problem computes, typed ([`GemmOp`], [`GemmProblem`]).
//! - `record`: recording the chosen variant ([`record`]).
//! - `variants`: the registry, one table entry per variant ([`VARIANTS`]).
//! - `scratch`: the recordings that need scratch (Winograd, packed operands, f16
//!   planes).
//! - `trial`: the autotuner's check and timing of one candidate.
//!
//! The exact variants sum each output element in ascending K order with one fma per
//! k (split-K chunks aligned the same way), so they give the fallback's bits;
//! Winograd and the cooperative-matrix kernels do not and are accepted within their
//! tolerance. The autotuner (`crate::gpu::tune`) checks either on the device before it
//! trusts a variant.

use std::fmt;

mod op;
mod record;
mod scratch;
mod trial;
mod variants;

pub(crate) use op::GemmProblem;
pub use op::{ConvMode, ConvShape, GemmOp, Weights};
pub(crate) use record::record;

pub use variants::{Accuracy, GemmKernel, GemmTile, Needs, Offer, Recording, Variant, VARIANTS};

pub(crate) use scratch::record_operand_planes;
use scratch::{PackedSizes, PlaneSizes, WinogradSizes, MAX_PACKED_BYTES};
use trial::TrialBench;

use crate::gpu::tune::Candidate;
use crate::gpu::{grid_1d, Autotune, GpuContext, Precision, Recorder};

/// Every variant the adapter could run for `p`, the fallback first: the heuristic tile
/// with runtime checks, the same tile without them, then in table order every variant
/// whose [`Offer`] holds for this adapter, run and problem and that fits. Inexact
/// variants are left out under `--exact-kernels`. The list stays short because each
/// candidate costs a pipeline compilation and a timing when a problem is tuned.
pub(crate) fn candidates(ctx: &GpuContext, p: &GemmProblem) -> Vec<GemmKernel> {
    let (m, n, z) = p.mnz;
    let tile = GemmTile::for_problem((m, n), z, p.splits, ctx.fill_workgroups);
    let cpu = ctx.adapter.device_type == wgpu::DeviceType::Cpu;
    let offered = |k: GemmKernel| match k.offer {
        Offer::Forced => false,
        Offer::Gpu => !cpu,
        Offer::GpuHalfFilled => !cpu && 2 * m >= k.block.0 && 2 * n >= k.block.1,
        Offer::Cpu => cpu,
        Offer::FewColumns => n <= variants::FEW_COLUMNS,
        Offer::Everywhere => true,
        Offer::AtPrecision(precision) => ctx.precision == precision,
        Offer::TestHook => ctx.offer_broken_variant,
    };
    let heuristic = [
        GemmKernel::tiled(tile, false),
        GemmKernel::tiled(tile, true),
    ];
    let mut out: Vec<GemmKernel> = Vec::new();
    for k in heuristic
        .into_iter()
        .chain(GemmKernel::all().filter(|&k| offered(k)))
    {
        if fits(k, ctx, p) && !out.contains(&k) && (k.exact() || !ctx.exact_kernels) {
            out.push(k);
        }
    }
    out
}

/// Whether the adapter can run `kernel` on `p`: [`GemmKernel::supported`]; for packed
/// operands and f16 planes, scratch and grids within the limits; for Winograd, a 3×3 stride-1 forward
/// convolution whose scratch and grid fit.
pub(crate) fn fits(kernel: GemmKernel, ctx: &GpuContext, p: &GemmProblem) -> bool {
    if !kernel.supported(ctx) {
        return false;
    }
    let dim = ctx.limits.max_compute_workgroups_per_dimension as usize;
    let (bytes, grids) = match kernel.recording {
        Recording::Single | Recording::HalfGrid => (0, Vec::new()),
        Recording::Winograd => {
            let Some(sizes) = WinogradSizes::of(p) else {
                return false;
            };
            (4 * sizes.largest() as u64, vec![grid_1d(sizes.largest())])
        }
        Recording::Packed { .. } => {
            let packed = PackedSizes::of(p, kernel.block);
            let bytes = 4 * packed.a_len().max(packed.b_len()) as u64;
            (bytes, vec![packed.pack_a_groups(), packed.pack_b_groups()])
        }
        Recording::Planes => {
            let sizes = PlaneSizes::of(p, kernel);
            let bytes = 4 * sizes.a_words().max(sizes.b_words()) as u64;
            (bytes, sizes.grids().to_vec())
        }
    };
    let own = kernel.groups((p.mnz.0, p.mnz.1), p.mnz.2, p.splits);
    bytes <= ctx.max_binding
        && bytes <= MAX_PACKED_BYTES
        && grids
            .iter()
            .chain([&own])
            .flatten()
            .all(|&g| g as usize <= dim)
}

/// The fallback: the heuristic tile with runtime checks.
fn fallback(ctx: &GpuContext, p: &GemmProblem) -> GemmKernel {
    let (m, n, z) = p.mnz;
    GemmKernel::tiled(
        GemmTile::for_problem((m, n), z, p.splits, ctx.fill_workgroups),
        false,
    )
}

/// Records `p` with the variant [`select`] picks (forced, autotuned, or the heuristic
/// tile).
pub(crate) fn dispatch(rec: &mut Recorder, p: &GemmProblem) {
    let kernel = select(rec.ctx, p);
    record(rec, kernel, p, p.bindings);
}

/// What a tuned choice is remembered by: the adapter and precision, the op with its
/// constants (mode, kernel size, stride) and binding types, and the problem's sizes
/// anchored to the next power of two, so that problems of similar shape (images of
/// other sizes, `rsp eval --size 0`) share one choice instead of each being timed.
/// Every exact variant gives the same bits on any shape, so sharing only changes
/// speed; the inexact ones were checked on a problem of the same op and mode.
struct TuneKey {
    adapter: String,
    precision: Precision,
    op: &'static str,
    constants: Vec<(&'static str, f64)>,
    /// M, N, K, problems, K splits, each anchored.
    sizes: [usize; 5],
    dtypes: Vec<&'static str>,
}

impl TuneKey {
    fn of(ctx: &GpuContext, p: &GemmProblem) -> TuneKey {
        let (m, n, z) = p.mnz;
        TuneKey {
            adapter: ctx.adapter_key(),
            precision: ctx.precision,
            op: p.op.shader(),
            constants: p.constants(),
            sizes: [m, n, p.op.k_bound(), z, p.splits].map(usize::next_power_of_two),
            dtypes: p.bindings.iter().map(|b| b.dtype.wgsl()).collect(),
        }
    }
}

impl fmt::Display for TuneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let constants: Vec<String> = self
            .constants
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let [m, n, k, z, splits] = self.sizes;
        write!(
            f,
            "{} | {}{} {} | m~{m} n~{n} k~{k} z~{z} splits~{splits} | {}",
            self.adapter,
            match self.precision {
                Precision::F32 => "",
                Precision::F16 => "precision f16 | ",
            },
            self.op,
            constants.join(" "),
            self.dtypes.join(",")
        )
    }
}

/// The variant to run: the one forced by the context, else the autotuner's choice
/// (measured on first use), else the heuristic tile with runtime checks.
pub(crate) fn select(ctx: &GpuContext, p: &GemmProblem) -> GemmKernel {
    if let Some(k) = ctx.gemm_kernel.as_deref().and_then(GemmKernel::parse) {
        return if fits(k, ctx, p) { k } else { fallback(ctx, p) };
    }
    if ctx.tuner.mode() == Autotune::Off {
        return fallback(ctx, p);
    }
    let cands = candidates(ctx, p);
    let names: Vec<Candidate> = cands
        .iter()
        .map(|k| Candidate {
            name: k.to_string(),
            exact: k.exact(),
            untuned: k.untuned,
        })
        .collect();
    let key = TuneKey::of(ctx, p).to_string();
    let mut bench: Option<TrialBench> = None;
    let (m, n, z) = p.mnz;
    let flops = 2.0 * m as f64 * n as f64 * p.op.k_useful() as f64 * z as f64;
    let chosen = ctx.tuner.choose(&key, &names, flops, |name| {
        let kernel = GemmKernel::parse(name).expect("candidate names parse");
        bench
            .get_or_insert_with(|| TrialBench::new(ctx, p))
            .trial(ctx, p, kernel)
    });
    GemmKernel::parse(&chosen).unwrap_or(cands[0])
}
