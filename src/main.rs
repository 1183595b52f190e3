//! `rsp`: see `rsp --help`. All logic lives in the library's application layer
//! (`rsp::app`).

fn main() -> std::process::ExitCode {
    rsp::app::main()
}
