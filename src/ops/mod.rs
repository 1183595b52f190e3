//! One file per op family: each op is one WGSL shader in `shaders/` plus the small
//! dispatcher here. The CPU twin of every op lives in `crate::reference`.

pub mod classify;
pub mod conv;
pub mod elementwise;
pub mod gemm;
pub mod linear;
pub mod pool;
pub mod rap;
pub mod reduce;
pub mod rsp;
pub mod saliency;
pub mod split_fp32;
pub mod zbox;

pub use classify::{logit_seed, one_hot, softmax, top_k, ClassIndices, Seed, NO_CLASS};
pub use conv::{conv2d, conv2d_dgrad, conv2d_wgrad, conv2d_z, GpuConv, Weights};
pub use elementwise::{
    add, batch_norm, batch_norm_grad, live_mask_batch_norm, lrp_batch_norm, mul, relu, relu_grad,
    residual_split, stab_div, GpuBatchNorm, ResidualSplit,
};
pub use linear::{linear, linear_grad, linear_grad_with, linear_z, GpuLinear};
pub use pool::{adaptive_avg_pool2d, adaptive_avg_pool2d_grad, max_pool2d, max_pool2d_route};
pub use reduce::{min_max, sum_and_abs_sum, sum_and_count_nonzero};
pub use saliency::{grad_cam, upsample_bilinear};
pub use zbox::zbox_first_conv;
