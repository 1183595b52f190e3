//! CPU reference (oracle) for the RSP engine: plain, single-purpose float32 loops that
//! follow `docs/method.md` and the authors' released arithmetic (the golden vectors
//! described in `tests/golden/README.md` are reproduced to ~1e-6 of their maximum).
//!
//! - [`ops`]: tensor kernels (convolution and its two adjoints, linear, pooling, ...).
//! - [`rsp`]: one function per RSP rule (`docs/method.md` §3) and the
//!   initialisations (§2).
//! - [`walk`]: the forward pass with the activations the rules read, and the backward
//!   walk over a rule set.
//! - [`rules`]: rule pieces shared by the methods (the gradient and head gradient, the
//!   z^B first-layer rule, the live-mask batch norm).
//! - [`model`]: [`model::explain`], RSP's driver, which produces an
//!   [`crate::Explanation`].
//! - [`baselines`]: the comparison methods (gradient, gradient × input, Grad-CAM,
//!   LRP-ε, LRP-α1β0, CLRP, SGLRP, RAP).
//!
//! Nothing here is fast or clever on purpose: it is what the GPU engine is compared
//! against (with [`crate::compare`]).

pub mod baselines;
pub mod model;
pub mod ops;
pub mod rsp;
pub mod rules;
pub mod walk;

pub use model::explain;
pub use rules::head_gradient;
pub use walk::{forward, ForwardTrace};
