//! The WGSL sources in `shaders/`, embedded at build time. The three convolution
//! kernels share one tiled-GEMM skeleton and one geometry header, composed here.

/// Tiled GEMM skeleton appended to each convolution kernel.
const GEMM_TILED: &str = include_str!("../../shaders/gemm_tiled.wgsl");
/// Convolution parameters and tap indexing, prepended to each convolution kernel.
const CONV_COMMON: &str = include_str!("../../shaders/conv_common.wgsl");

/// Every compute shader by name: (name, op source, is an implicit-GEMM convolution).
pub const SHADERS: &[(&str, &str, bool)] = &[
    (
        "conv2d_fwd",
        include_str!("../../shaders/conv2d_fwd.wgsl"),
        true,
    ),
    (
        "conv2d_dgrad",
        include_str!("../../shaders/conv2d_dgrad.wgsl"),
        true,
    ),
    (
        "conv2d_wgrad",
        include_str!("../../shaders/conv2d_wgrad.wgsl"),
        true,
    ),
    (
        "elementwise",
        include_str!("../../shaders/elementwise.wgsl"),
        false,
    ),
    (
        "residual_rule",
        include_str!("../../shaders/residual_rule.wgsl"),
        false,
    ),
    ("reduce", include_str!("../../shaders/reduce.wgsl"), false),
    ("maxpool", include_str!("../../shaders/maxpool.wgsl"), false),
    ("avgpool", include_str!("../../shaders/avgpool.wgsl"), false),
    ("linear", include_str!("../../shaders/linear.wgsl"), false),
    (
        "linear_grad",
        include_str!("../../shaders/linear_grad.wgsl"),
        false,
    ),
    ("softmax", include_str!("../../shaders/softmax.wgsl"), false),
    ("topk", include_str!("../../shaders/topk.wgsl"), false),
    (
        "logit_seed",
        include_str!("../../shaders/logit_seed.wgsl"),
        false,
    ),
    ("gradcam", include_str!("../../shaders/gradcam.wgsl"), false),
    ("rap", include_str!("../../shaders/rap.wgsl"), false),
    (
        "upsample_bilinear",
        include_str!("../../shaders/upsample_bilinear.wgsl"),
        false,
    ),
    (
        "rsp_init",
        include_str!("../../shaders/rsp_init.wgsl"),
        false,
    ),
];

/// The complete WGSL module of shader `name`.
pub fn source(name: &str) -> Option<String> {
    SHADERS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, src, conv)| {
            if *conv {
                format!("{CONV_COMMON}\n{src}\n{GEMM_TILED}")
            } else {
                src.to_string()
            }
        })
}
