//! CPU reference (oracle) for the RSP engine: plain, single-purpose float32 loops that
//! follow `docs/method.md` and the authors' released arithmetic (the golden vectors
//! described in `tests/golden/README.md` are reproduced to ~1e-6 of their maximum).
//!
//! - [`ops`]: tensor kernels (convolution and its two adjoints, linear, pooling, ...).
//! - [`rsp`]: one function per RSP rule (`docs/method.md` §3) and the
//!   initialisations (§2).
//! - [`model`]: forward pass with the activations the rules read, the head gradient,
//!   and [`model::explain`], which produces an [`crate::Explanation`].
//! - [`baselines`]: the comparison methods (gradient, gradient × input, Grad-CAM,
//!   LRP-ε, LRP-α1β0, CLRP, SGLRP, RAP).
//!
//! Nothing here is fast or clever on purpose: it is what the GPU engine is compared
//! against (with [`crate::compare`]).

pub mod baselines;
pub mod model;
pub mod ops;
pub mod rsp;

pub use model::{explain, forward, head_gradient, ForwardTrace};
