//! Shared test helpers: the GPU context (a missing adapter is a failure, never a skip)
//! and the golden files read in place from ../shared/golden.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use rsp::gpu::{ContextOptions, GpuContext};
use rsp::models::weights::TensorFile;
use rsp::Tensor;

/// The default adapter (lavapipe in CI). Panics with a clear message if there is none.
pub fn gpu() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        GpuContext::new(&ContextOptions::default()).unwrap_or_else(|e| {
            panic!("GPU tests need a wgpu adapter (CI installs mesa-vulkan-drivers for lavapipe): {e:#}")
        })
    })
}

pub fn golden_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/golden"))
}

pub fn golden(case: &str) -> TensorFile {
    let path = golden_dir().join(format!("{case}.safetensors"));
    assert!(
        path.exists(),
        "golden file {} is missing: the tests read ../shared/golden in place",
        path.display()
    );
    TensorFile::read(&path).unwrap()
}

pub fn get(f: &TensorFile, name: &str) -> Tensor {
    f.get(name).unwrap().clone()
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn random(shape: &[usize], seed: u64) -> Tensor {
    rsp::models::zoo::random_tensor(shape, seed, -1.0, 1.0)
}

/// A second context on the default adapter that stores layer weights in f16. The
/// engine's f16 mode is optional, but every adapter the tests run on (lavapipe, the
/// NVIDIA machine) has shader f16, so its absence is a failure here, not a skip.
pub fn gpu_f16() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        GpuContext::new(&ContextOptions {
            weights: rsp::gpu::DType::F16,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("f16 weight tests need an adapter with shader f16: {e:#}"))
    })
}

/// A context on the default adapter that runs every convolution GEMM with tile shape
/// `GemmTile::ALL[i]` (one context per shape, created once).
pub fn gpu_with_tile(i: usize) -> &'static GpuContext {
    static CTXS: [OnceLock<GpuContext>; 9] = [const { OnceLock::new() }; 9];
    CTXS[i].get_or_init(|| {
        GpuContext::new(&ContextOptions {
            gemm_tile: Some(rsp::ops::conv::GemmTile::ALL[i]),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e:#}"))
    })
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
