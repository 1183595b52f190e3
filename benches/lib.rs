//! The criterion benchmarks of rsp's kernels live in `kernels.rs` (`cargo bench -p
//! rsp-benches`); a crate of their own so that the main crate's `cargo test` never
//! builds criterion. This library is empty.
