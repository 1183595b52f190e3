//! Shared test helpers: the GPU context (a missing adapter is a failure, never a skip)
//! and the golden files: the small cases in `tests/golden/` (always), the full-size ones
//! from the directory named by `$RSP_EXTRA_GOLDEN` (the `extra_*` tests, ignored unless
//! asked for).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rsp::gpu::{ContextOptions, GpuContext};
use rsp::models::weights::TensorFile;
use rsp::Tensor;

/// A context on the default adapter (lavapipe in CI) opened with `opts`, shared by every
/// test of the binary that asks for the same options, so the pipelines one test
/// compiled are reused by the next. For tests that read no per-context state: tests of
/// the autotuner's memory open their own contexts. Panics with a clear message if
/// there is no adapter.
pub fn gpu_with(opts: ContextOptions) -> &'static GpuContext {
    type Slot = &'static OnceLock<GpuContext>;
    static SLOTS: Mutex<BTreeMap<String, Slot>> = Mutex::new(BTreeMap::new());
    let slot: Slot = *SLOTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(format!("{opts:?}"))
        .or_insert_with(|| Box::leak(Box::new(OnceLock::new())));
    slot.get_or_init(|| {
        GpuContext::new(&opts).unwrap_or_else(|e| {
            panic!(
                "GPU tests need a wgpu adapter (CI installs mesa-vulkan-drivers for lavapipe); \
                 {opts:?}: {e:#}"
            )
        })
    })
}

/// The default adapter with default options.
pub fn gpu() -> &'static GpuContext {
    gpu_with(ContextOptions::default())
}

/// The golden cases shipped in the repository (see `tests/golden/README.md`).
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The small golden cases in `tests/golden/`, every one checked by the default suite.
pub const GOLDEN_CASES: [&str; 3] = [
    "vgg_tiny",
    "resnet_bottleneck_narrow",
    "resnet_basic_narrow",
];

/// The in-repository ResNet case (Bottleneck, 1000 classes) the CLI tests run on.
pub const RESNET_CASE: &str = "resnet_bottleneck_narrow";

/// A golden case from `tests/golden/`. A missing or unreadable file is a failure.
pub fn golden(case: &str) -> TensorFile {
    read_golden(&golden_dir().join(format!("{case}.safetensors")))
}

fn read_golden(path: &Path) -> TensorFile {
    assert!(path.exists(), "golden file {} is missing", path.display());
    TensorFile::read(path)
        .unwrap_or_else(|e| panic!("golden file {} is unreadable: {e:#}", path.display()))
}

/// The environment variable naming the directory of the full-size golden files.
pub const EXTRA_GOLDEN_VAR: &str = "RSP_EXTRA_GOLDEN";

/// The full-size golden cases the `extra_*` tests read from `$RSP_EXTRA_GOLDEN`.
pub const EXTRA_GOLDEN_CASES: [&str; 1] = ["resnet_tiny"];

/// The directory named by `$RSP_EXTRA_GOLDEN`. The `extra_*` tests that call it are
/// ignored unless asked for, so an unset, empty or wrong variable is a failure here,
/// never a silent pass.
pub fn extra_golden_dir(test: &str) -> PathBuf {
    let value = std::env::var_os(EXTRA_GOLDEN_VAR).unwrap_or_else(|| {
        panic!(
            "{test}: {EXTRA_GOLDEN_VAR} is not set; this full-size check needs it to name the \
             directory of the full-size golden files"
        )
    });
    let dir = PathBuf::from(value);
    assert!(
        !dir.as_os_str().is_empty(),
        "{test}: {EXTRA_GOLDEN_VAR} is set but empty; name the directory of the full-size \
         golden files"
    );
    assert!(
        dir.is_dir(),
        "{test}: {EXTRA_GOLDEN_VAR}={} is not a directory",
        dir.display()
    );
    dir
}

/// The path of a full-size case in `$RSP_EXTRA_GOLDEN` (see [`extra_golden_dir`]). A
/// missing file is a failure.
pub fn extra_golden_path(case: &str, test: &str) -> PathBuf {
    let path = extra_golden_dir(test).join(format!("{case}.safetensors"));
    assert!(
        path.is_file(),
        "{test}: {EXTRA_GOLDEN_VAR} is set but {} is missing",
        path.display()
    );
    path
}

/// A full-size golden case from `$RSP_EXTRA_GOLDEN`.
pub fn extra_golden(case: &str, test: &str) -> TensorFile {
    read_golden(&extra_golden_path(case, test))
}

pub fn get(f: &TensorFile, name: &str) -> Tensor {
    f.get(name).unwrap().clone()
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn random(shape: &[usize], seed: u64) -> Tensor {
    rsp::models::zoo::random_tensor(shape, seed, -1.0, 1.0)
}

/// A second context on the default adapter in `--precision f16` (weights, activations
/// and RSP's relevance stored in f16). The engine's f16 mode is optional, but every
/// adapter the tests run on (lavapipe, the NVIDIA machine) has shader f16, so its
/// absence is a failure here, not a skip.
pub fn gpu_f16() -> &'static GpuContext {
    gpu_with(ContextOptions {
        precision: rsp::gpu::Precision::F16,
        ..Default::default()
    })
}

/// A context on the default adapter with only the layer weights in f16
/// (`--weights-dtype f16`); activations stay f32.
pub fn gpu_f16_weights() -> &'static GpuContext {
    gpu_with(ContextOptions {
        weights: rsp::gpu::DType::F16,
        ..Default::default()
    })
}

/// The exact kernel variants every convolution op and conv rule is run with, each
/// required to give the same bits: the checked tiled kernel of every tile shape, then
/// every large-tile variant (`gemm_large.wgsl`, offered on GPUs; forced here on any
/// adapter whose limits hold it) and the dot-product kernel (`gemm_dot.wgsl`).
pub fn exact_tile_variants() -> Vec<String> {
    use rsp::gpu::shaders::Skeleton;
    use rsp::ops::gemm::{GemmKernel, Recording};
    GemmKernel::all()
        .filter(|k| {
            k.recording == Recording::Single
                && ((k.skeleton == Skeleton::Tiled && !k.unchecked)
                    || k.skeleton == Skeleton::Large)
        })
        .map(|k| k.to_string())
        .collect()
}

/// A context on the default adapter that runs every convolution GEMM with the variant
/// `name` (shared, see [`gpu_with`]).
pub fn gpu_forcing(name: &str) -> &'static GpuContext {
    gpu_with(ContextOptions {
        gemm_kernel: Some(name.to_string()),
        ..Default::default()
    })
}

/// [`gpu_forcing`] `exact_tile_variants()[i]`.
pub fn gpu_with_tile(i: usize) -> &'static GpuContext {
    gpu_forcing(&exact_tile_variants()[i])
}

/// `t` with every value rounded to the nearest f16 (what the f16 weight mode stores).
pub fn round_to_f16(t: &Tensor) -> Tensor {
    Tensor::new(
        t.shape.clone(),
        t.data
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect(),
    )
}
