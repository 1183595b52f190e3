//! Attribution methods. RSP (Relative Sectional Propagation) is the product; its rules
//! run as WGSL shaders over the activations the forward pass keeps on the GPU. The
//! baselines it is compared with are rule sets over one shared backward walk
//! ([`propagate`]).

pub mod baselines;
pub mod propagate;
pub mod rsp;
pub mod rules;

pub use baselines::explain_method;
pub use rsp::{explain, RspOptions};

/// The ε of the LRP-ε rule (a fixed value, not tuned per model).
pub const LRP_EPSILON: f32 = 0.25;

/// An attribution method, by its command-line name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Relative Sectional Propagation (Nam, Choi, Lee, AAAI 2021).
    Rsp,
    /// Grad-CAM (Selvaraju et al. 2017) at RSP's explanation layer, resized to the input.
    GradCam,
    /// The gradient of the target logit w.r.t. the input (Simonyan et al. 2014).
    Gradient,
    /// Gradient ⊙ input (Shrikumar et al. 2016).
    GradientTimesInput,
    /// LRP with the ε-rule in every layer but the first (z^B).
    LrpEpsilon,
    /// LRP-αβ with α = 1, β = 0 (z⁺) in every layer but the first (z^B).
    LrpAlphaBeta,
    /// Contrastive LRP (Gu, Yang, Tresp 2018): target minus the dual "all other classes".
    Clrp,
    /// Softmax-gradient LRP (Iwana, Kuroki, Uchida 2019).
    Sglrp,
    /// Relative Attributing Propagation (Nam, Kim, Lee, AAAI 2020).
    Rap,
}

impl Method {
    /// Every method, RSP first.
    pub const ALL: [Method; 9] = [
        Method::Rsp,
        Method::GradCam,
        Method::Gradient,
        Method::GradientTimesInput,
        Method::LrpEpsilon,
        Method::LrpAlphaBeta,
        Method::Clrp,
        Method::Sglrp,
        Method::Rap,
    ];

    /// The command-line name (`rsp`, `gradcam`, `lrp-ab`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Method::Rsp => "rsp",
            Method::GradCam => "gradcam",
            Method::Gradient => "gradient",
            Method::GradientTimesInput => "gradxinput",
            Method::LrpEpsilon => "lrp-eps",
            Method::LrpAlphaBeta => "lrp-ab",
            Method::Clrp => "clrp",
            Method::Sglrp => "sglrp",
            Method::Rap => "rap",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    /// One line on the method, for lists of choices.
    pub fn description(self) -> &'static str {
        match self {
            Method::Rsp => "Relative Sectional Propagation (Nam, Choi, Lee, AAAI 2021)",
            Method::GradCam => {
                "Grad-CAM (Selvaraju et al. 2017) at RSP's explanation layer, resized to the input"
            }
            Method::Gradient => "The gradient of the target logit w.r.t. the input (Simonyan et al. 2014)",
            Method::GradientTimesInput => "Gradient ⊙ input (Shrikumar et al. 2016)",
            Method::LrpEpsilon => "LRP with the ε-rule in every layer but the first (z^B)",
            Method::LrpAlphaBeta => "LRP-αβ with α = 1, β = 0 (z⁺) in every layer but the first (z^B)",
            Method::Clrp => {
                "Contrastive LRP (Gu, Yang, Tresp 2018): target minus the dual \"all other classes\""
            }
            Method::Sglrp => "Softmax-gradient LRP (Iwana, Kuroki, Uchida 2019)",
            Method::Rap => "Relative Attributing Propagation (Nam, Kim, Lee, AAAI 2020)",
        }
    }

    /// Whether the method starts from the target's logit (one-hot × logit), as LRP does.
    pub fn is_lrp(self) -> bool {
        matches!(
            self,
            Method::LrpEpsilon | Method::LrpAlphaBeta | Method::Clrp
        )
    }

    /// The ε of [`Method::LrpEpsilon`].
    pub fn lrp_epsilon(self) -> f32 {
        LRP_EPSILON
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

use crate::tensor::Tensor;

/// Small constant the authors add in normalisations and to max-pool/residual inputs.
pub const RSP_EPS: f32 = 1e-9;

/// How the initial relevance at the explanation layer is formed (spec §2).
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// Grad-CAM without channel sum, max-normalised (the authors' default).
    GradCam,
    /// Top-K comparative gradients (K ≥ 2).
    Comparative { k: usize },
    /// Caller-supplied initial relevance `[N, C, h, w]`, shaped like the explanation layer.
    Given(Tensor),
}

/// `Explanation::target` entry when no class was explained (features-only weights
/// explained from a given initial relevance without a target).
pub const NO_TARGET: usize = usize::MAX;

/// The result of explaining a batch.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// `[N, classes]`
    pub logits: Tensor,
    /// Explained class per image ([`NO_TARGET`] where none was).
    pub target: Vec<usize>,
    /// Initial relevance at the explanation layer `[N, C, h, w]`.
    pub init: Tensor,
    /// Pixel relevance `[N, 3, H, W]`.
    pub relevance: Tensor,
    /// Relevance at the input of named modules (golden naming: `features.13`,
    /// `layer4.0.conv3`, ...), recorded only when asked for.
    pub layers: Vec<(String, Tensor)>,
}

impl Explanation {
    /// Signed heatmap `[N, H, W]`: the channel sum of the pixel relevance.
    pub fn heatmap(&self) -> Tensor {
        let (n, c, h, w) = (
            self.relevance.shape[0],
            self.relevance.shape[1],
            self.relevance.shape[2],
            self.relevance.shape[3],
        );
        let mut out = vec![0.0f32; n * h * w];
        for i in 0..n {
            for ch in 0..c {
                let src = &self.relevance.data[(i * c + ch) * h * w..(i * c + ch + 1) * h * w];
                for (o, s) in out[i * h * w..(i + 1) * h * w].iter_mut().zip(src) {
                    *o += s;
                }
            }
        }
        Tensor::new(vec![n, h, w], out)
    }
}
