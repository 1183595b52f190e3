//! The GPU side: device and adapters, resident tensors, the buffer pool, compiled
//! pipelines and the dispatch recorder (scheduler).

pub mod context;
pub mod pipelines;
pub mod pool;
pub mod profiler;
pub mod scheduler;
pub mod shaders;
pub mod tensor;
pub mod tune;

pub use context::{list_adapters, AdapterSummary, Backend, ContextOptions, GpuContext};
pub use pipelines::{Access, ShaderRef};
pub use scheduler::{grid_1d, Binding, Recorder};
pub use tensor::{DType, GpuTensor};
pub use tune::{Autotune, Tuner};
