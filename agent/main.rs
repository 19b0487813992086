//! `logveil`: see the README. Everything lives in the library so integration tests and
//! benches share it.

fn main() -> std::process::ExitCode {
    logveil::cli::main()
}
