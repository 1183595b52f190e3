//! The WGSL sources in `shaders/`, embedded at build time. The GEMM op files (the
//! three convolutions and Winograd's `winograd_gemm.wgsl`) share one geometry header
//! and are completed by one of the GEMM skeletons (the kernel variants the GEMM op
//! family chooses among), composed here.

use super::dtype::DType;

/// How a GEMM-shaped op file is completed into a kernel: the skeleton that owns
/// `main` and calls the op's `load_a`/`load_b`/`store_c`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skeleton {
    /// Not a GEMM op: the file is the whole module.
    #[default]
    None,
    /// `gemm_tiled.wgsl`: workgroup tiles staged through workgroup memory.
    Tiled,
    /// `gemm_large.wgsl`: 128-wide workgroup tiles of 256 threads with 8×8, 8×4 or
    /// 4×8 register blocks, the next K tile prefetched into registers (GPUs).
    Large,
    /// `gemm_direct.wgsl`: no workgroup memory or barriers (CPU-class devices).
    Direct,
    /// `gemm_pack.wgsl`: writes the op's A or B operand as a plain padded matrix.
    Pack,
    /// `gemm_planes.wgsl`: writes the op's A or B operand as f16 planes with block
    /// scales for the cooperative-matrix kernel.
    Planes,
    /// `gemm_subgroup.wgsl`: vec4 loads of the packed operands and subgroup
    /// broadcasts (devices with 8-wide subgroups and `Features::SUBGROUP`).
    Subgroup,
    /// `gemm_coop.wgsl`: cooperative-matrix (tensor core) products of f16 operands
    /// into f32 accumulators (`Features::EXPERIMENTAL_COOPERATIVE_MATRIX`, 16×16×16
    /// f16 → f32, 32-lane subgroups).
    Coop,
    /// `gemm_dot.wgsl`: one invocation per output, ascending K (few columns of C).
    Dot,
    /// `gemm_tree.wgsl`: one workgroup per output, strided K and a tree sum (few
    /// columns of C, long K; not bit-identical).
    Tree,
    /// `gemm_winograd.wgsl`: the transforms of a Winograd F(2×2, 3×3) convolution
    /// around the GEMMs of `winograd_gemm.wgsl` (only for `conv2d_fwd`).
    Winograd,
}

impl Skeleton {
    /// The skeleton's WGSL (empty for `None`).
    pub fn source(self) -> &'static str {
        match self {
            Skeleton::None => "",
            Skeleton::Tiled => include_str!("../../shaders/gemm_tiled.wgsl"),
            Skeleton::Large => include_str!("../../shaders/gemm_large.wgsl"),
            Skeleton::Direct => include_str!("../../shaders/gemm_direct.wgsl"),
            Skeleton::Pack => include_str!("../../shaders/gemm_pack.wgsl"),
            Skeleton::Planes => include_str!("../../shaders/gemm_planes.wgsl"),
            Skeleton::Subgroup => include_str!("../../shaders/gemm_subgroup.wgsl"),
            Skeleton::Coop => include_str!("../../shaders/gemm_coop.wgsl"),
            Skeleton::Winograd => include_str!("../../shaders/gemm_winograd.wgsl"),
            Skeleton::Dot => include_str!("../../shaders/gemm_dot.wgsl"),
            Skeleton::Tree => include_str!("../../shaders/gemm_tree.wgsl"),
        }
    }

    /// Whether the skeleton's module needs `wgpu::Features::SUBGROUP`.
    pub fn needs_subgroups(self) -> bool {
        matches!(self, Skeleton::Subgroup | Skeleton::Coop)
    }

    /// Whether the skeleton's module needs `wgpu::Features::SHADER_F16`: f16 types, or
    /// `pack2x16float`/`unpack2x16float`, which Mesa's Vulkan drivers offer only with
    /// it.
    pub fn needs_f16(self) -> bool {
        matches!(self, Skeleton::Planes | Skeleton::Coop)
    }

    /// Whether the skeleton's module needs cooperative matrices (and f16).
    pub fn needs_cooperative_matrix(self) -> bool {
        self == Skeleton::Coop
    }

    /// Whether the skeleton completes op file `op` (the Winograd transforms need the
    /// forward convolution's `load_input`; every other skeleton fits every GEMM op).
    pub fn fits_op(self, op: &str) -> bool {
        self != Skeleton::Winograd || op == "conv2d_fwd"
    }

    /// Every GEMM skeleton (for validation tests).
    pub const GEMM: [Skeleton; 10] = [
        Skeleton::Tiled,
        Skeleton::Large,
        Skeleton::Direct,
        Skeleton::Dot,
        Skeleton::Tree,
        Skeleton::Pack,
        Skeleton::Planes,
        Skeleton::Subgroup,
        Skeleton::Coop,
        Skeleton::Winograd,
    ];
}
/// Convolution parameters and tap indexing, prepended to each convolution kernel.
const CONV_COMMON: &str = include_str!("../../shaders/conv_common.wgsl");

/// The split of K, prepended to every GEMM op file.
const GEMM_COMMON: &str = include_str!("../../shaders/gemm_common.wgsl");

/// What an op file is: a whole module, or a GEMM op that a [`Skeleton`] completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// The file is the whole module.
    Plain,
    /// A GEMM op with its own parameters (gemm_m/n/k, loads, store).
    Gemm,
    /// A GEMM op over convolution geometry (`conv_common.wgsl` prepended).
    ConvGemm,
}

impl OpKind {
    pub fn is_gemm(self) -> bool {
        self != OpKind::Plain
    }
}

/// Every compute shader by name: (name, op source, kind).
pub const SHADERS: &[(&str, &str, OpKind)] = &[
    (
        "conv2d_fwd",
        include_str!("../../shaders/conv2d_fwd.wgsl"),
        OpKind::ConvGemm,
    ),
    (
        "conv2d_dgrad",
        include_str!("../../shaders/conv2d_dgrad.wgsl"),
        OpKind::ConvGemm,
    ),
    (
        "conv2d_wgrad",
        include_str!("../../shaders/conv2d_wgrad.wgsl"),
        OpKind::ConvGemm,
    ),
    (
        "winograd_gemm",
        include_str!("../../shaders/winograd_gemm.wgsl"),
        OpKind::ConvGemm,
    ),
    (
        "elementwise",
        include_str!("../../shaders/elementwise.wgsl"),
        OpKind::Plain,
    ),
    (
        "residual_rule",
        include_str!("../../shaders/residual_rule.wgsl"),
        OpKind::Plain,
    ),
    (
        "reduce",
        include_str!("../../shaders/reduce.wgsl"),
        OpKind::Plain,
    ),
    (
        "maxpool",
        include_str!("../../shaders/maxpool.wgsl"),
        OpKind::Plain,
    ),
    (
        "avgpool",
        include_str!("../../shaders/avgpool.wgsl"),
        OpKind::Plain,
    ),
    (
        "channel_copy",
        include_str!("../../shaders/channel_copy.wgsl"),
        OpKind::Plain,
    ),
    (
        "linear_fwd",
        include_str!("../../shaders/linear_fwd.wgsl"),
        OpKind::Gemm,
    ),
    (
        "linear_grad",
        include_str!("../../shaders/linear_grad.wgsl"),
        OpKind::Gemm,
    ),
    (
        "softmax",
        include_str!("../../shaders/softmax.wgsl"),
        OpKind::Plain,
    ),
    (
        "topk",
        include_str!("../../shaders/topk.wgsl"),
        OpKind::Plain,
    ),
    (
        "logit_seed",
        include_str!("../../shaders/logit_seed.wgsl"),
        OpKind::Plain,
    ),
    (
        "gradcam",
        include_str!("../../shaders/gradcam.wgsl"),
        OpKind::Plain,
    ),
    ("rap", include_str!("../../shaders/rap.wgsl"), OpKind::Plain),
    (
        "upsample_bilinear",
        include_str!("../../shaders/upsample_bilinear.wgsl"),
        OpKind::Plain,
    ),
    (
        "rsp_init",
        include_str!("../../shaders/rsp_init.wgsl"),
        OpKind::Plain,
    ),
];

/// The storage bindings of an op file whose element type follows the bound tensor's
/// (f32, or f16 for weights and, under `--precision f16`, activations and relevance),
/// as (alias, binding index): every `@binding(i) var<storage, …> name: array<alias>`
/// whose alias ends in `_t`. The shader reads such a binding through `f32(...)` and
/// writes it through `alias(...)`, so arithmetic stays f32; the composed module
/// starts with `alias x_t = f32;` or with `enable f16; alias x_t = f16;`.
fn parse_typed_bindings(src: &'static str) -> Vec<(&'static str, usize)> {
    src.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("@group(0) @binding(")?;
            let (index, rest) = rest.split_once(')')?;
            let rest = rest.trim().strip_prefix("var<storage")?;
            let alias = rest.split_once("array<")?.1.split_once('>')?.0;
            (alias.ends_with("_t") && !alias.contains('<'))
                .then(|| Some((alias, index.parse().ok()?)))
                .flatten()
        })
        .collect()
}

/// The typed bindings of shader `name`, in binding order (empty for shaders whose
/// bindings are all fixed).
pub fn typed_bindings(name: &str) -> &'static [(&'static str, usize)] {
    type Typed = Vec<(&'static str, usize)>;
    static TYPED: std::sync::OnceLock<Vec<(&'static str, Typed)>> = std::sync::OnceLock::new();
    TYPED
        .get_or_init(|| {
            SHADERS
                .iter()
                .map(|(n, src, _)| (*n, parse_typed_bindings(src)))
                .collect()
        })
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[], |(_, t)| t)
}

/// Whether shader `name` is a GEMM op file that needs a [`Skeleton`].
pub fn is_gemm(name: &str) -> bool {
    SHADERS
        .iter()
        .any(|(n, _, kind)| *n == name && kind.is_gemm())
}

/// The complete WGSL module of shader `name`, every typed binding f32, GEMM ops on
/// the tiled skeleton.
pub fn source(name: &str) -> Option<String> {
    let skeleton = if is_gemm(name) {
        Skeleton::Tiled
    } else {
        Skeleton::None
    };
    source_typed(name, &[], skeleton)
}

/// The complete WGSL module of shader `name` with the given element types for its
/// typed bindings, in [`typed_bindings`] order (missing ones are f32), completed by
/// `skeleton` if it is a GEMM op (`None` when `skeleton` does not fit the shader).
pub fn source_typed(name: &str, types: &[DType], skeleton: Skeleton) -> Option<String> {
    let (_, src, kind) = SHADERS.iter().find(|(n, _, _)| *n == name)?;
    if kind.is_gemm() == (skeleton == Skeleton::None) || !skeleton.fits_op(name) {
        return None;
    }
    let typed = typed_bindings(name);
    let types: Vec<DType> = (0..typed.len())
        .map(|i| types.get(i).copied().unwrap_or_default())
        .collect();
    let mut header = String::new();
    if types.contains(&DType::F16) || skeleton.needs_cooperative_matrix() {
        header.push_str("enable f16;\n");
    }
    if skeleton.needs_cooperative_matrix() {
        header.push_str("enable wgpu_cooperative_matrix;\n");
    }
    for ((alias, _), t) in typed.iter().zip(&types) {
        header.push_str(&format!("alias {alias} = {};\n", t.wgsl()));
    }
    Some(match kind {
        OpKind::Plain => format!("{header}{src}"),
        OpKind::Gemm => format!("{header}{GEMM_COMMON}\n{src}\n{}", skeleton.source()),
        OpKind::ConvGemm => format!(
            "{header}{CONV_COMMON}\n{GEMM_COMMON}\n{src}\n{}",
            skeleton.source()
        ),
    })
}
