//! Attribution methods. RSP (Relative Sectional Propagation) is the product; its rules
//! run as WGSL shaders over the activations the forward pass keeps on the GPU.

pub mod rsp;
pub mod rules;

pub use rsp::{explain, RspOptions};

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
