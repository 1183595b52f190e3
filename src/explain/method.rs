//! The attribution methods as one table, [`METHODS`]: per method its name, how its
//! signal starts at the logits, which rule set carries it back, where the walk stops
//! and what is done to the result. The GPU driver (`explain::baselines::record`, RSP's
//! `explain::rsp::record`) and the CPU oracle's driver
//! (`reference::baselines::explain_method`) read the same entry; each side owns its rule
//! sets, chosen by [`RuleSet`] (zennit's composites are the model: a method is a map
//! from layer kinds to small rules, the first layer gets its own).

pub use crate::ops::Seed;

/// The ε of the LRP-ε rule (a fixed value, not tuned per model).
pub const LRP_EPSILON: f32 = 0.25;

/// An attribution method, by its command-line name; its description is its entry in
/// [`METHODS`] ([`Method::spec`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Rsp,
    GradCam,
    Gradient,
    GradientTimesInput,
    LrpEpsilon,
    LrpAlphaBeta,
    Clrp,
    Sglrp,
    Rap,
}

/// How the seed row is scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedScale {
    /// As [`Seed`] writes it (a gradient).
    One,
    /// Times the target's logit: LRP starts from the prediction itself (spec §6).
    TargetLogit,
}

/// The rule set that carries the signal from the logits towards the input. Each side
/// (GPU `explain::`, CPU `reference::`) maps it to its own rule objects.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RuleSet {
    /// Plain backpropagation of the gradient.
    Gradient,
    /// LRP's ε-rule in every layer but the first (z^B).
    LrpEpsilon(f32),
    /// LRP's z⁺ (α1β0) rule in every layer but the first (z^B).
    LrpPositive,
    /// RAP's absolute influence at the top, its positive/negative split and uniform
    /// shift below.
    Rap,
    /// RSP: the gradient to the explanation layer, the initial relevance there
    /// (`Init`), then the sectional rule to the input. Its own driver
    /// (`explain::rsp`, `reference::rsp`).
    Rsp,
}

/// Where the walk stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkStop {
    /// At the image.
    Input,
    /// At the explanation layer `A` (the last convolutional block's output).
    ExplainLayer,
}

/// What is done to the signal where the walk stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Post {
    /// Nothing: the signal is the map.
    None,
    /// `⊙ input` (gradient × input).
    TimesInput,
    /// `ReLU` (CLRP keeps the evidence for the target over the dual concept).
    Relu,
    /// `ReLU(Σ_c mean_hw(∂y/∂A_c)·A_c)`, resized bilinearly to the input.
    GradCam,
}

/// One method: everything the drivers need to run it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MethodSpec {
    pub method: Method,
    /// The command-line name (`rsp`, `gradcam`, `lrp-ab`, ...).
    pub name: &'static str,
    /// One line on the method, for lists of choices.
    pub description: &'static str,
    /// What a seed row holds at the logits.
    pub seed: Seed,
    pub scale: SeedScale,
    pub rules: RuleSet,
    pub stop: WalkStop,
    pub post: Post,
    /// The fewest classes the method is defined for (contrastive methods need 2).
    pub min_classes: usize,
}

impl MethodSpec {
    /// A method that starts from the target's one-hot row, walks `rules` to the
    /// input and keeps what arrives there.
    const fn one_hot(
        method: Method,
        name: &'static str,
        description: &'static str,
        rules: RuleSet,
    ) -> Self {
        MethodSpec {
            method,
            name,
            description,
            seed: Seed::OneHot,
            scale: SeedScale::One,
            rules,
            stop: WalkStop::Input,
            post: Post::None,
            min_classes: 1,
        }
    }
}

/// Every method, RSP first; [`Method::ALL`] is this order.
pub const METHODS: &[MethodSpec] = &[
    MethodSpec::one_hot(
        Method::Rsp,
        "rsp",
        "Relative Sectional Propagation (Nam, Choi, Lee, AAAI 2021)",
        RuleSet::Rsp,
    ),
    MethodSpec {
        stop: WalkStop::ExplainLayer,
        post: Post::GradCam,
        ..MethodSpec::one_hot(
            Method::GradCam,
            "gradcam",
            "Grad-CAM (Selvaraju et al. 2017) at RSP's explanation layer, resized to the input",
            RuleSet::Gradient,
        )
    },
    MethodSpec::one_hot(
        Method::Gradient,
        "gradient",
        "The gradient of the target logit w.r.t. the input (Simonyan et al. 2014)",
        RuleSet::Gradient,
    ),
    MethodSpec {
        post: Post::TimesInput,
        ..MethodSpec::one_hot(
            Method::GradientTimesInput,
            "gradxinput",
            "Gradient ⊙ input (Shrikumar et al. 2016)",
            RuleSet::Gradient,
        )
    },
    MethodSpec {
        scale: SeedScale::TargetLogit,
        ..MethodSpec::one_hot(
            Method::LrpEpsilon,
            "lrp-eps",
            "LRP with the ε-rule in every layer but the first (z^B)",
            RuleSet::LrpEpsilon(LRP_EPSILON),
        )
    },
    MethodSpec {
        scale: SeedScale::TargetLogit,
        ..MethodSpec::one_hot(
            Method::LrpAlphaBeta,
            "lrp-ab",
            "LRP-αβ with α = 1, β = 0 (z⁺) in every layer but the first (z^B)",
            RuleSet::LrpPositive,
        )
    },
    MethodSpec {
        seed: Seed::Contrastive,
        scale: SeedScale::TargetLogit,
        post: Post::Relu,
        min_classes: 2,
        ..MethodSpec::one_hot(
            Method::Clrp,
            "clrp",
            "Contrastive LRP (Gu, Yang, Tresp 2018): target minus the dual \"all other classes\"",
            RuleSet::LrpPositive,
        )
    },
    MethodSpec {
        seed: Seed::SoftmaxGradient,
        min_classes: 2,
        ..MethodSpec::one_hot(
            Method::Sglrp,
            "sglrp",
            "Softmax-gradient LRP (Iwana, Kuroki, Uchida 2019)",
            RuleSet::LrpPositive,
        )
    },
    MethodSpec::one_hot(
        Method::Rap,
        "rap",
        "Relative Attributing Propagation (Nam, Kim, Lee, AAAI 2020)",
        RuleSet::Rap,
    ),
];

impl Method {
    /// Every method, in [`METHODS`]' order (RSP first).
    pub const ALL: [Method; METHODS.len()] = {
        let mut all = [Method::Rsp; METHODS.len()];
        let mut i = 0;
        while i < METHODS.len() {
            all[i] = METHODS[i].method;
            i += 1;
        }
        all
    };

    /// The method's entry in [`METHODS`].
    pub fn spec(self) -> &'static MethodSpec {
        METHODS
            .iter()
            .find(|s| s.method == self)
            .expect("every method has an entry (tested)")
    }

    /// The command-line name (`rsp`, `gradcam`, `lrp-ab`, ...).
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<Method> {
        METHODS.iter().find(|s| s.name == name).map(|s| s.method)
    }

    /// One line on the method, for lists of choices.
    pub fn description(self) -> &'static str {
        self.spec().description
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_has_one_entry_and_a_unique_name() {
        for m in Method::ALL {
            assert_eq!(METHODS.iter().filter(|s| s.method == m).count(), 1, "{m:?}");
            assert_eq!(Method::from_name(m.name()), Some(m));
        }
        let mut names: Vec<_> = METHODS.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METHODS.len());
    }

    #[test]
    fn entries_are_consistent() {
        for s in METHODS {
            // Grad-CAM's post-processing is defined at the explanation layer only.
            assert_eq!(
                s.post == Post::GradCam,
                s.stop == WalkStop::ExplainLayer,
                "{}",
                s.name
            );
            // The softmax gradient is a probability's gradient: it is never rescaled
            // by a logit.
            assert!(s.seed != Seed::SoftmaxGradient || s.scale == SeedScale::One);
            let contrastive = s.seed != Seed::OneHot;
            assert_eq!(s.min_classes, if contrastive { 2 } else { 1 }, "{}", s.name);
        }
    }
}
