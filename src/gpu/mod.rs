//! The GPU side: device and adapters, resident tensors, the buffer pool, compiled
//! pipelines and the dispatch recorder.
//!
//! The files depend on each other in one direction only (no file imports one that
//! imports it back): `dtype`, `pool` and `profiler` stand alone; `shaders` uses `dtype`;
//! `pipelines` and `tune` use `shaders`; `context` owns the pipeline cache, pool,
//! profiler and tuner; `tensor` allocates from a context; `recorder` dispatches
//! pipelines over tensors. `tests/shaders/layering.rs` checks this.

pub mod context;
pub mod dtype;
pub mod pipelines;
pub mod pool;
pub mod profiler;
pub mod recorder;
pub mod shaders;
pub mod tensor;
pub mod tune;

pub use context::{
    list_adapters, AdapterChoice, AdapterSummary, Backend, ContextOptions, DeviceLimits,
    GpuContext, PciAddress, MIN_STORAGE_BUFFERS,
};
pub use dtype::{DType, Precision};
pub use pipelines::{Access, ModuleSpec, ShaderRef};
pub use recorder::{grid_1d, Binding, Recorder};
pub use tensor::GpuTensor;
pub use tune::{Autotune, Tuner};
