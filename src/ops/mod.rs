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

#[cfg(test)]
mod tests {
    use super::elementwise::ElementwiseOp;
    use super::gemm::ConvMode;
    use super::rap::RapStep;
    use super::reduce::Reduction;
    use super::rsp::InitialRelevance;

    /// `BatchNormGrad` → `BATCH_NORM_GRAD`.
    fn upper_snake(camel: &str) -> String {
        let mut out = String::new();
        for (i, ch) in camel.chars().enumerate() {
            if ch.is_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_uppercase());
        }
        out
    }

    /// Every selector is named in the shader with the Rust value, so that grep finds
    /// an op in both languages by one name.
    #[test]
    fn selectors_are_named_alike_in_rust_and_wgsl() {
        let wgsl = include_str!("../../shaders/elementwise.wgsl");
        for op in ElementwiseOp::ALL {
            let line = format!(
                "const OP_{}: u32 = {}u;",
                upper_snake(&format!("{op:?}")),
                op as u32
            );
            assert!(wgsl.contains(&line), "elementwise.wgsl lacks `{line}`");
        }
        let wgsl = include_str!("../../shaders/reduce.wgsl");
        for mode in Reduction::ALL {
            let line = format!(
                "const {}: u32 = {}u;",
                upper_snake(&format!("{mode:?}")),
                mode as u32
            );
            assert!(wgsl.contains(&line), "reduce.wgsl lacks `{line}`");
        }
        let wgsl = include_str!("../../shaders/rap.wgsl");
        for step in RapStep::ALL {
            let line = format!(
                "const {}: u32 = {}u;",
                upper_snake(&format!("{step:?}")),
                step as u32
            );
            assert!(wgsl.contains(&line), "rap.wgsl lacks `{line}`");
        }
        let wgsl = include_str!("../../shaders/rsp_init.wgsl");
        for init in [InitialRelevance::GradCam, InitialRelevance::Comparative] {
            let line = format!(
                "const {}: u32 = {}u;",
                upper_snake(&format!("{init:?}")),
                init as u32
            );
            assert!(wgsl.contains(&line), "rsp_init.wgsl lacks `{line}`");
        }
        let wgsl = include_str!("../../shaders/conv_common.wgsl");
        for (mode, name) in ConvMode::NAMES {
            let line = format!("const MODE_{name}: u32 = {}u;", mode.constant() as u32);
            assert!(wgsl.contains(&line), "conv_common.wgsl lacks `{line}`");
        }
    }
}
