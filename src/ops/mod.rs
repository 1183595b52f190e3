//! One file per op family: each op is one WGSL shader in `shaders/` plus the small
//! dispatcher here. The CPU twin of every op lives in `crate::reference`.

pub mod classify;
pub mod conv;
pub mod elementwise;
pub mod linear;
pub mod pool;
pub mod reduce;

pub use classify::{one_hot, softmax, top_k, ClassIndices, NO_CLASS};
pub use conv::{conv2d, conv2d_dgrad, conv2d_wgrad, GpuConv};
pub use elementwise::{add, batch_norm, relu, relu_grad, GpuBatchNorm};
pub use linear::{linear, linear_grad, GpuLinear};
pub use pool::{adaptive_avg_pool2d, adaptive_avg_pool2d_grad, max_pool2d, max_pool2d_route};
pub use reduce::{min_max, sum_and_count_nonzero};
