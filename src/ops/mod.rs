//! One file per op family: each op is one WGSL shader in `shaders/` plus the small
//! dispatcher here. The CPU twin of every op lives in `crate::reference`.

pub mod classify;
pub mod concat;
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
pub use concat::{channel_slice, concat_channels};
pub use conv::{conv2d, conv2d_dgrad, conv2d_wgrad, conv2d_z, GpuConv, Weights};
pub use elementwise::{
    add, batch_norm, batch_norm_grad, live_mask_batch_norm, lrp_batch_norm, mul, relu, relu_grad,
    residual_split, stab_div, GpuBatchNorm, ResidualSplit,
};
pub use linear::{linear, linear_grad, linear_grad_with, linear_z, GpuLinear};
pub use pool::{avg_pool2d, avg_pool2d_grad, max_pool2d, max_pool2d_route};
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

    /// Asserts that `wgsl` (the file `file`) declares `const PREFIX NAME: u32 = Vu;` for
    /// every `(Debug name, value)` of `selectors`.
    fn assert_named<T: std::fmt::Debug>(
        wgsl: &str,
        file: &str,
        prefix: &str,
        selectors: impl IntoIterator<Item = (T, u32)>,
    ) {
        for (selector, value) in selectors {
            let name = upper_snake(&format!("{selector:?}"));
            let line = format!("const {prefix}{name}: u32 = {value}u;");
            assert!(wgsl.contains(&line), "{file} lacks `{line}`");
        }
    }

    /// Every selector is named in the shader with the Rust value, so that grep finds
    /// an op in both languages by one name.
    #[test]
    fn selectors_are_named_alike_in_rust_and_wgsl() {
        let shader = |name| {
            crate::gpu::shaders::SHADERS
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, src, _)| *src)
                .unwrap_or_else(|| panic!("no shader {name}"))
        };
        assert_named(
            shader("elementwise"),
            "elementwise.wgsl",
            "OP_",
            ElementwiseOp::ALL.map(|op| (op, op as u32)),
        );
        assert_named(
            shader("reduce"),
            "reduce.wgsl",
            "",
            Reduction::ALL.map(|m| (m, m as u32)),
        );
        assert_named(
            shader("rap"),
            "rap.wgsl",
            "",
            RapStep::ALL.map(|s| (s, s as u32)),
        );
        assert_named(
            shader("rsp_init"),
            "rsp_init.wgsl",
            "",
            [InitialRelevance::GradCam, InitialRelevance::Comparative].map(|i| (i, i as u32)),
        );
        let conv_common = include_str!("../../shaders/conv_common.wgsl");
        let modes = ConvMode::NAMES.map(|(mode, name)| (name, mode.constant() as u32));
        for (name, value) in modes {
            let line = format!("const MODE_{name}: u32 = {value}u;");
            assert!(
                conv_common.contains(&line),
                "conv_common.wgsl lacks `{line}`"
            );
        }
    }
}
