//! What to explain and how: the method (a [`Method`]), RSP's initialisation ([`InitKind`],
//! [`Init`]), SmoothGrad ([`Smooth`]), the library's [`Request`] for one batch, and
//! [`ExplainOptions`], the options the command line and the Python binding share,
//! with their defaults written once ([`ExplainOptions::DEFAULT`]: `clap`'s defaults
//! and the binding's signature read them from here).

use anyhow::Result;

use super::method::Method;
use crate::error::Param;
use crate::tensor::Tensor;

/// Which initial relevance RSP starts from, as the command line and Python name it
/// (an [`Init`] without its data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitKind {
    GradCam,
    Comparative,
}

impl InitKind {
    pub const ALL: [InitKind; 2] = [InitKind::GradCam, InitKind::Comparative];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            InitKind::GradCam => "gradcam",
            InitKind::Comparative => "comparative",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<InitKind> {
        InitKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// One line on the initialisation, for lists of choices.
    pub fn description(self) -> &'static str {
        match self {
            InitKind::GradCam => {
                "Grad-CAM without channel sum, max-normalised (the authors' default)"
            }
            InitKind::Comparative => "Top-K comparative gradients (--compare-k classes)",
        }
    }
}

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

/// What to explain and how.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    /// RSP's initial relevance (ignored by the other methods, which start at the
    /// logits; a [`Init::Given`] relevance is refused for them).
    pub init: Init,
    /// Class to explain per image; `None`: the top-1 prediction of each image.
    pub targets: Option<Vec<usize>>,
    /// Keep and return the signal at every module's input (golden naming).
    pub record_layers: bool,
    /// Average the method over noisy copies of each image (SmoothGrad).
    pub smooth: Option<Smooth>,
}

impl Default for Request {
    /// [`ExplainOptions::DEFAULT`]'s request for each image's top class.
    fn default() -> Self {
        ExplainOptions::DEFAULT.request(None, None)
    }
}

/// SmoothGrad-style averaging (Smilkov et al. 2017), a modifier for any method: each
/// image is explained `samples` times with Gaussian noise of standard deviation
/// `noise · (max − min)` of that image added, for the class explained on the clean
/// image, and the maps (and initial relevances) are averaged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Smooth {
    pub samples: usize,
    pub noise: f32,
    /// Seed of the noise (the same seed gives the same maps).
    pub seed: u64,
}

impl Request {
    /// `method` for `targets`, with RSP's default initialisation.
    pub fn method(method: Method, targets: Option<Vec<usize>>) -> Self {
        Request {
            method,
            targets,
            ..Request::default()
        }
    }
}

/// How to explain, apart from the inputs and the classes.
#[derive(Clone, Debug, PartialEq)]
pub struct ExplainOptions {
    pub method: Method,
    /// RSP's initial relevance.
    pub init: InitKind,
    /// Classes compared by [`InitKind::Comparative`] (K ≥ 2).
    pub compare_k: usize,
    /// Images per GPU batch.
    pub batch_size: usize,
    /// SmoothGrad: average every map over this many noisy copies of each image.
    pub smooth: Option<usize>,
    /// SmoothGrad's noise: standard deviation as a fraction of each image's range.
    pub noise: f32,
    /// Keep the signal at every module's input (golden naming).
    pub record_layers: bool,
}

impl ExplainOptions {
    /// RSP with the authors' Grad-CAM initialisation, 8 images per batch.
    pub const DEFAULT: ExplainOptions = ExplainOptions {
        method: Method::Rsp,
        init: InitKind::GradCam,
        compare_k: 3,
        batch_size: 8,
        smooth: None,
        noise: 0.15,
        record_layers: false,
    };

    /// Refuses options no run can use (each error names its option as the command
    /// line spells it): an empty batch, SmoothGrad without samples, a negative or
    /// non-finite noise.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            crate::error::bail_option!(Param::BatchSize, "must be at least 1");
        }
        if self.smooth == Some(0) {
            crate::error::bail_option!(Param::Smooth, "needs at least 1 sample");
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            crate::error::bail_option!(
                Param::Noise,
                "must be a finite value >= 0, got {}",
                self.noise
            );
        }
        Ok(())
    }

    /// The request for one batch: `targets` one class per image (`None`: each image's
    /// top prediction); `given` a caller's initial relevance, which replaces
    /// [`ExplainOptions::init`].
    pub fn request(&self, targets: Option<Vec<usize>>, given: Option<&Tensor>) -> Request {
        let init = match (given, self.init) {
            (Some(t), _) => Init::Given(t.clone()),
            (None, InitKind::GradCam) => Init::GradCam,
            (None, InitKind::Comparative) => Init::Comparative { k: self.compare_k },
        };
        Request {
            method: self.method,
            init,
            targets,
            record_layers: self.record_layers,
            smooth: self.smooth.map(|samples| Smooth {
                samples,
                noise: self.noise,
                seed: 0,
            }),
        }
    }
}

impl Default for ExplainOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}
