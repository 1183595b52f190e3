//! rsp: Relative Sectional Propagation (Nam, Choi, Lee, AAAI 2021) explanations of VGG
//! and ResNet classifiers, computed by WGSL compute shaders through wgpu.

#[cfg(feature = "cli")]
pub mod app;
pub mod compare;
pub mod error;
pub mod eval;
pub mod explain;
pub mod files;
pub mod gpu;
pub mod layers;
pub mod models;
pub mod ops;
pub mod preprocess;
pub mod reference;
pub mod render;
pub mod rng;
pub mod tensor;

pub use error::{Error, ErrorKind};
pub use explain::{ExplainOptions, Explanation, Init, InitKind};
pub use models::Model;
pub use tensor::Tensor;
