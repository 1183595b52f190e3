//! `rsp`: see `rsp --help`. All logic lives in the library (`rsp::cli`).

fn main() -> std::process::ExitCode {
    rsp::cli::main()
}
