//! Command-line arguments shared by several commands (the GPU flags), and how the
//! library's enums are named and described on the command line.

use clap::builder::PossibleValue;
use clap::{Args, ValueEnum};

use crate::eval::faithfulness::{DeletionBaseline, RegionFill};
use crate::explain::{InitKind, Method};
use crate::gpu::{AdapterChoice, Autotune, Backend, ContextOptions, DType, GpuContext, Precision};
use crate::preprocess::Normalisation;

/// ImageNet-1k class names in index order (the names of models whose weights carry
/// none).
pub const IMAGENET_CLASSES: &str = include_str!("imagenet_classes.txt");

/// The GPU flags of every command that runs a model: backend, weight storage,
/// precision, matrix units, exact kernels and autotuning.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// wgpu backend: auto (the native API, OpenGL as a fallback), vulkan, metal, dx12 or gl.
    #[arg(long, default_value = "auto", value_parser = parse_backend)]
    pub backend: Backend,
    /// The adapter to run on, among the backend's (`rsp adapters` lists them): index:N,
    /// pci:BUS (e.g. pci:0000:3b:00.0, the bus NVML and nvidia-smi report) or
    /// name:SUBSTRING (case-insensitive). Default: the best by type (discrete,
    /// integrated, virtual, CPU). NVIDIA's Vulkan driver ignores CUDA_VISIBLE_DEVICES:
    /// one process per GPU chooses here.
    #[arg(long, env = "RSP_ADAPTER", value_parser = parse_adapter, value_name = "index:N|pci:BUS|name:TEXT")]
    pub adapter: Option<AdapterChoice>,
    /// Storage of the model's convolution and linear weights on the GPU: f32, or f16
    /// (half the weight memory and bandwidth; arithmetic stays f32; maps differ from
    /// f32 by about the rounding of the weights; needs an adapter with shader f16).
    #[arg(long, value_enum, default_value_t = DType::F32, value_name = "f32|f16")]
    pub weights_dtype: DType,
    /// Arithmetic: f32 (default; parity with the authors' code), or f16 (weights,
    /// activations and RSP's relevance stored in f16, arithmetic in f32, and on GPUs
    /// with matrix units convolution operands rounded to f16 with f32 accumulation;
    /// maps drift from f32 by the amounts in docs/precision.md; needs shader f16).
    #[arg(long, value_enum, default_value_t = Precision::F32, value_name = "f32|f16")]
    pub precision: Precision,
    /// Never use the GPU's matrix units (cooperative matrices), even where the adapter
    /// has them and they pass the autotuner's check.
    #[arg(long)]
    pub no_matrix_units: bool,
    /// Only kernel variants that give the same bits as the fallback kernel (no
    /// Winograd, no matrix units): results reproducible bit for bit on this device
    /// whatever the autotuner measures.
    #[arg(long)]
    pub exact_kernels: bool,
    /// Convolution kernels chosen by measurement on this device: on (reuse the cached
    /// choices in $RSP_CACHE_DIR/autotune.json, else the user cache dir +
    /// rsp/autotune.json, and time what is missing), off (fixed heuristics, nothing
    /// timed or written) or fresh (time everything met again). Variants on the f32
    /// cores give the same numbers; matrix-unit variants are accepted only within a
    /// tolerance of them. `$RSP_AUTOTUNE` sets it where no flag does (for example off
    /// in a CI job that never reuses its measurements).
    #[arg(long, env = "RSP_AUTOTUNE", default_value = "on", value_parser = parse_autotune, value_name = "on|off|fresh")]
    pub autotune: Autotune,
    /// The most seconds one run spends timing kernel variants; problems past it run an
    /// untimed default (the device class's usual winner, else the heuristic kernel) and
    /// are timed by later runs (`rsp tune` times them all at once, without a budget). 0:
    /// no limit.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS", value_parser = parse_budget, allow_hyphen_values = true)]
    pub autotune_budget: f64,
}

impl DeviceArgs {
    /// Context options for these flags (everything else at its default).
    pub fn context_options(&self) -> ContextOptions {
        ContextOptions {
            backend: self.backend,
            adapter: self.adapter.clone(),
            weights: self.weights_dtype,
            precision: self.precision,
            disable_matrix_units: self.no_matrix_units,
            exact_kernels: self.exact_kernels,
            autotune: self.autotune,
            autotune_budget: (self.autotune_budget > 0.0)
                .then(|| std::time::Duration::from_secs_f64(self.autotune_budget)),
            progress: true,
            ..Default::default()
        }
    }
}

/// After a run whose autotuning budget ran out: how much was measured and how the rest
/// gets measured (one line on stderr).
pub fn note_deferred_tuning(ctx: &GpuContext) {
    let deferred = ctx.tuner.deferred().len();
    if deferred > 0 {
        eprintln!(
            "note: autotuning timed {} kernel problems in {:.1} s (--autotune-budget); {deferred} \
             more ran an untimed default kernel and are timed by later runs, or all at once by \
             `rsp tune --weights FILE --size S --batch B` (this run's model, size and batch)",
            ctx.tuner.measured().len(),
            ctx.tuner.spent().as_secs_f64()
        );
    }
}

/// Command-line values for library enums that list their variants (`ALL`) with a
/// `name()` and a `description()`: `--help` lists them, and anything else is clap's
/// "invalid value" error.
macro_rules! named_value_enum {
    ($($ty:ty),*) => {$(
        impl ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &<$ty>::ALL
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(PossibleValue::new(self.name()).help(self.description()))
            }
        }
    )*};
}

named_value_enum!(
    DType,
    Precision,
    Method,
    InitKind,
    Normalisation,
    DeletionBaseline,
    RegionFill
);

fn parse_adapter(s: &str) -> std::result::Result<AdapterChoice, String> {
    s.parse()
}

fn parse_budget(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("'{s}' is not a number of seconds >= 0")),
    }
}

fn parse_autotune(s: &str) -> std::result::Result<Autotune, String> {
    s.parse()
}

fn parse_backend(s: &str) -> std::result::Result<Backend, String> {
    s.parse()
}
