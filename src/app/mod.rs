//! The application layer: the `rsp` command line (argument parsing, printing, progress
//! bars, files written for the user) over the library. Nothing outside `app` imports
//! it (`tests/shaders/layering.rs`).
//!
//! - [`cli`]: `rsp` itself: predictions and heatmaps of inputs, `rsp adapters`, and the
//!   dispatch to the subcommands below.
//! - [`args`]: the GPU flags every command shares, and the command-line names of the
//!   library's enums.
//! - [`bench`]: `rsp bench` and `rsp tune`.
//! - [`eval_command`]: `rsp eval` (the benchmarks end to end), with [`plot`] for its
//!   curves.
//! - [`synth`]: `rsp synth`, the generated benchmark dataset.
//! - [`inputs`]: the CLI's INPUT arguments (files, folders, globs) expanded.
//! - [`output`]: output folders, checked up front and created at the first write.
//!
//! Imports between these files go one way: `cli` uses the command files, which use
//! `args`, `inputs`, `output` and `plot`.

pub mod args;
pub mod bench;
pub mod cli;
pub mod eval_command;
pub mod inputs;
pub mod inspect;
pub mod output;
pub mod plot;
pub mod serve;
pub mod synth;

pub use cli::main;
