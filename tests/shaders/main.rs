//! Checks that need no adapter: every WGSL file parses and validates with naga, every
//! module the engine builds translates through every backend's writer (and the external
//! validators), and the source tree's layering. One binary; what each module checks:
//! `docs/testing.md`.

#[path = "../common/mod.rs"]
mod common;

mod layering;
mod translate;
mod valid;
