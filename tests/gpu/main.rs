//! The library suite: every op, rule, model, baseline and kernel variant on the default
//! adapter against the independent CPU oracle (`src/reference/`), golden parity of the
//! GPU path and of the oracle, the autotuner, the split-fp32 scheme, weight and image
//! loading, and the generated benchmark. One binary, so a fresh build links it once and
//! its tests share the GPU contexts of `common`; what each module checks:
//! `docs/testing.md`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/support.rs"]
mod support;

mod adapters;
mod autotune;
mod bad_weights;
mod baselines;
mod golden;
mod images;
mod models;
mod onnx;
mod ops;
mod reference;
mod rules;
mod split_fp32;
mod synth;
mod winograd;
