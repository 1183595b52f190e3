//! The `rsp` binary and its server end to end: explanations and every bad input through
//! the command line, `rsp eval`, weight downloads from a loopback hub, and `rsp serve`
//! under concurrent clients and in headless Chromium. One binary, so a fresh build
//! links it once; what each module checks: `docs/testing.md`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/serve.rs"]
mod serve;
#[path = "../common/support.rs"]
mod support;

mod download;
mod eval;
mod onnx;
mod run;
mod serve_browser;
mod serve_load;
